using System.Buffers;
using System.Globalization;
using System.Xml;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// The channels of an OME-TIFF stored as separate pages. Bio-Formats, tifffile, QuPath and most microscope software write
/// a multi-channel image as one grey page (IFD) per plane and say in the OME-XML of the first page which page holds which
/// channel, focal plane and time point. <see cref="ChannelPlanes"/> reads that map; <see cref="MultiPageSource"/> reads the
/// pages of the first focal plane and time point as the channels of one image.
/// </summary>
public static class OmeChannels
{
    /// <summary>OME-XML longer than this is not parsed (a plate of many thousand planes); the page is read alone.</summary>
    public const int MaxXmlChars = 16 << 20;

    /// <summary>Where a channel's plane is: a page of this file (<see cref="File"/> null) or of another file of the same
    /// multi-file set, named as the OME-XML names it (a plain file name, in the same folder); or, where
    /// <see cref="Contiguous"/>, the <see cref="Page"/>-th plane stored raw from page 0's first byte (an ImageJ stack over
    /// 4 GB, see <see cref="TiffPageLayout.ContiguousPlanes"/>).</summary>
    public readonly record struct Plane(string? File, int Page, bool Contiguous = false);

    /// <summary>
    /// The plane of each channel of the first image's first focal plane and time point, from the OME-XML
    /// <paramref name="description"/> of page 0; null when it describes no planar multi-channel image (no OME-XML, one
    /// channel, channels as interleaved samples). <paramref name="problem"/> says why an OME-XML that claims several
    /// channels could not be mapped (then null is returned too). A multi-file set (Bio-Formats' and Micro-Manager's
    /// output split by channel, each TiffData naming its file in a UUID element) maps planes to the other files by name;
    /// a name with a folder in it is refused.
    /// </summary>
    /// <param name="fileName">the file's own name: a plane whose UUID names it is in this file</param>
    /// <param name="pageCount">the pages the file has: no plane of this file is looked for past them, whatever sizes the XML claims</param>
    /// <param name="evenOne">map a single channel too, with any samples per pixel (a companion file's image, whose one
    /// plane is in a TIFF of its set)</param>
    public static Plane[]? ChannelPlanes(string? description, string fileName, int pageCount, out string? problem, bool evenOne = false)
    {
        problem = null;
        if (description is null || description.Length > MaxXmlChars || !description.Contains("<OME", StringComparison.Ordinal)) return null;
        try
        {
            using var reader = SafeReader(description);
            // the first Pixels element: its sizes and order, its Channel and TiffData children
            while (reader.Read())
                if (reader.NodeType == XmlNodeType.Element && reader.LocalName == "Pixels") break;
            if (reader.EOF) return null;
            int sizeC = Int(reader, "SizeC", 1), sizeZ = Int(reader, "SizeZ", 1), sizeT = Int(reader, "SizeT", 1);
            string order = reader.GetAttribute("DimensionOrder") ?? "XYCZT";
            if (sizeC <= 1 && !evenOne) return null;
            if (sizeC > ImageLimits.MaxChannels)
            {
                problem = $"the OME-XML describes {sizeC} channels; at most {ImageLimits.MaxChannels} are read together";
                return null;
            }
            if (order.Length != 5 || !order.StartsWith("XY", StringComparison.Ordinal) || !order.Order().SequenceEqual("CTXYZ"))
            {
                problem = $"the OME-XML's DimensionOrder '{order}' is not a permutation of XYCZT starting with XY";
                return null;
            }
            Int128 planes = (Int128)sizeC * sizeZ * sizeT; // claimed sizes may be absurd: no overflow
            var tiffData = new List<(int Ifd, int C, int Z, int T, long Count, string? File)>();
            int samplesPerPixel = 1;
            if (!reader.IsEmptyElement)
            {
                int depth = reader.Depth;
                while (reader.Read() && reader.Depth > depth)
                {
                    if (reader.NodeType != XmlNodeType.Element) continue;
                    if (reader.LocalName == "Channel" && reader.Depth == depth + 1) samplesPerPixel = Math.Max(samplesPerPixel, Int(reader, "SamplesPerPixel", 1));
                    else if (reader.LocalName == "TiffData" && reader.Depth == depth + 1)
                    {
                        bool hasIfd = reader.GetAttribute("IFD") is not null;
                        tiffData.Add((Int(reader, "IFD", 0), Int(reader, "FirstC", 0), Int(reader, "FirstZ", 0), Int(reader, "FirstT", 0),
                            reader.GetAttribute("PlaneCount") is not null ? Int(reader, "PlaneCount", 1) : hasIfd ? 1 : (long)Int128.Min(planes, long.MaxValue), null));
                    }
                    else if (reader.LocalName == "UUID" && reader.GetAttribute("FileName") is { Length: > 0 } other && tiffData.Count > 0
                             && !string.Equals(System.IO.Path.GetFileName(other), fileName, StringComparison.Ordinal))
                    {
                        // a plane in another file of a multi-file set, which lies beside this one: its name alone, never a path
                        if (other != System.IO.Path.GetFileName(other) || other is "." or ".." || other.Contains('\\') || other.Contains('\0'))
                        {
                            problem = $"the OME-XML names '{other}' as the file of some planes: not a plain file name beside this one";
                            return null;
                        }
                        tiffData[^1] = tiffData[^1] with { File = other };
                    }
                }
            }
            if (samplesPerPixel > 1 && !(evenOne && sizeC == 1)) return null; // channels are the samples of each page, read as such
            // plane index of (c, z, t) in DimensionOrder: the first of C, Z, T after XY varies fastest
            Int128 PlaneIndex(int c, int z, int t)
            {
                Int128 index = 0, stride = 1;
                foreach (char d in order[2..])
                {
                    (int v, int size) = d switch { 'C' => (c, sizeC), 'Z' => (z, sizeZ), _ => (t, sizeT) };
                    index += v * stride; stride *= size;
                }
                return index;
            }
            foreach (var (ifd, c0, z0, t0, count, _) in tiffData)
                if (c0 < 0 || z0 < 0 || t0 < 0 || c0 >= sizeC || z0 >= sizeZ || t0 >= sizeT || ifd < 0 || count > planes)
                {
                    problem = $"a TiffData element of the OME-XML points outside the image (IFD {ifd}, C {c0}, Z {z0}, T {t0}, {count} planes)";
                    return null;
                }
            var result = new Plane[sizeC];
            for (int c = 0; c < sizeC; c++)
            {
                Int128 want = PlaneIndex(c, 0, 0);
                Plane? found = null;
                if (tiffData.Count == 0) { if (want < pageCount) found = new Plane(null, (int)want); }
                else
                    // the last TiffData that covers the plane says where it is (as they are applied in order); one of this
                    // file that would put it past the file's last page does not count
                    for (int k = tiffData.Count - 1; k >= 0 && found is null; k--)
                    {
                        var (ifd, c0, z0, t0, count, file) = tiffData[k];
                        Int128 first = PlaneIndex(c0, z0, t0);
                        if (want < first || want >= first + count) continue;
                        Int128 page = ifd + (want - first);
                        if (page > int.MaxValue || (file is null && page >= pageCount)) continue;
                        found = new Plane(file, (int)page);
                    }
                if (found is not { } f)
                {
                    problem ??= $"the OME-XML does not say which page holds channel {c}";
                    return null;
                }
                result[c] = f;
            }
            if (result.Distinct().Count() != sizeC)
            {
                problem = $"the OME-XML maps two channels to the same page ({string.Join(", ", result.Select(p => p.File is null ? $"{p.Page}" : $"{p.File}:{p.Page}"))})";
                return null;
            }
            return result;
        }
        catch (XmlException e)
        {
            problem = $"its OME-XML is not well-formed ({e.Message})";
            return null;
        }
    }

    /// <summary>
    /// The channel pages of an ImageJ hyperstack (a TIFF saved by ImageJ or Fiji with <c>channels=C</c> in its
    /// description, C ≥ 2): ImageJ writes planes in the order C, Z, T (channels fastest), one page each, so the channels
    /// of the first focal plane and time point are pages 0 to C−1. Null when the description is no such hyperstack; with
    /// <paramref name="problem"/> saying why where it claims channels it cannot map (more than are read together, or
    /// planes stored without a page each, as ImageJ does for stacks over 4 GB, unless they follow page 0 raw).
    /// </summary>
    /// <param name="contiguousPlanes">how many planes the file holds one after another from page 0's first byte
    /// (<see cref="TiffPageLayout.ContiguousPlanes"/>): a file of one page whose description counts more images is such a
    /// stack, and its channels are read from there</param>
    public static Plane[]? ImageJChannelPlanes(string? description, int pageCount, out string? problem, long contiguousPlanes = 0)
    {
        problem = null;
        if (description is null || !description.StartsWith("ImageJ=", StringComparison.Ordinal) || description.Length > 1 << 20) return null;
        long channels = 1, images = 1;
        foreach (var line in description.Split('\n'))
        {
            int eq = line.IndexOf('=');
            if (eq <= 0) continue;
            var (key, value) = (line[..eq], line[(eq + 1)..].Trim());
            if (key is "channels" or "images" && !long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                problem = $"its ImageJ description says {key}={value}, not a count";
                return null;
            }
            if (key == "channels") channels = long.Parse(value, CultureInfo.InvariantCulture);
            else if (key == "images") images = long.Parse(value, CultureInfo.InvariantCulture);
        }
        if (channels < 2)
        {
            // a z-stack or time series over 4 GB: one page, the other planes after it with no directory of their own
            if (pageCount == 1 && images > 1) problem = $"its ImageJ description says {images} images (focal planes or time points) stored one after another; the first is read";
            return null;
        }
        if (channels > ImageLimits.MaxChannels)
        {
            problem = $"its ImageJ description says {channels} channels; at most {ImageLimits.MaxChannels} are read together";
            return null;
        }
        if (pageCount == 1 && images >= channels && contiguousPlanes > 0)
        {
            // ImageJ's stack over 4 GB: every plane follows page 0's raw, channels first (C, then Z, then T)
            if (contiguousPlanes < images)
            {
                problem = $"its ImageJ description says {images} images stored one after another from page 0, but the file holds {contiguousPlanes} there (truncated, or written so by another program)";
                return null;
            }
            return Enumerable.Range(0, (int)channels).Select(c => new Plane(null, c, Contiguous: c > 0)).ToArray();
        }
        if (pageCount < channels || images > pageCount)
        {
            problem = $"its ImageJ description says {images} images in {channels} channels, but the file has {pageCount} page(s) (ImageJ stores large stacks without a page each)";
            return null;
        }
        return Enumerable.Range(0, (int)channels).Select(c => new Plane(null, c)).ToArray();
    }

    /// <summary>How many images (series) an OME-XML describes: a plate's wells, a slide's scenes, several fields in one
    /// file. ActorSeg reads the first; 0 where the text is no readable OME-XML.</summary>
    public static int ImageCount(string? xml)
    {
        if (xml is null || xml.Length > MaxXmlChars || !xml.Contains("<OME", StringComparison.Ordinal)) return 0;
        try
        {
            using var reader = SafeReader(xml);
            int n = 0;
            while (reader.Read())
                if (reader.NodeType == XmlNodeType.Element && reader.LocalName == "Image" && reader.Depth == 1) n++;
            return n;
        }
        catch (XmlException) { return 0; }
    }

    /// <summary>Whether a file is an OME companion file: the OME-XML of a multi-file set kept apart from its TIFFs
    /// (<c>NAME.companion.ome</c>, as Bio-Formats' bfconvert and many acquisition programs write it).</summary>
    public static bool IsCompanion(string path) => path.EndsWith(".companion.ome", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The companion file an OME-TIFF's OME-XML defers to (<c>&lt;BinaryOnly MetadataFile="NAME.companion.ome"/&gt;</c>:
    /// the TIFF holds pixels only, the companion the metadata of the whole set); null when it does not. A name with a
    /// folder in it is refused (<paramref name="problem"/>), as planes in other files are.
    /// </summary>
    public static string? BinaryOnlyMetadataFile(string? description, out string? problem)
    {
        problem = null;
        if (description is null || description.Length > MaxXmlChars || !description.Contains("BinaryOnly", StringComparison.Ordinal)) return null;
        try
        {
            using var reader = SafeReader(description);
            while (reader.Read())
            {
                if (reader.NodeType != XmlNodeType.Element || reader.LocalName != "BinaryOnly") continue;
                var name = reader.GetAttribute("MetadataFile");
                if (string.IsNullOrEmpty(name)) return null;
                if (name != System.IO.Path.GetFileName(name) || name is "." or ".." || name.Contains('\\') || name.Contains('\0'))
                {
                    problem = $"the OME-XML names '{name}' as its metadata file: not a plain file name beside this one";
                    return null;
                }
                return name;
            }
            return null;
        }
        catch (XmlException e)
        {
            problem = $"its OME-XML is not well-formed ({e.Message})";
            return null;
        }
    }

    /// <summary>
    /// The physical size of a pixel, in µm, that the first image of an OME-XML states (PhysicalSizeX/Y of its Pixels, in
    /// their units: µm by default, also pm, Å, nm, mm, cm and m); a missing PhysicalSizeY is taken as PhysicalSizeX. Null
    /// when it states none, or none that is a positive finite length in a unit known here.
    /// </summary>
    public static (double X, double Y)? PhysicalSize(string? xml)
    {
        if (xml is null || xml.Length > MaxXmlChars || !xml.Contains("PhysicalSizeX", StringComparison.Ordinal)) return null;
        try
        {
            using var reader = SafeReader(xml);
            while (reader.Read())
            {
                if (reader.NodeType != XmlNodeType.Element || reader.LocalName != "Pixels") continue;
                double? x = Length(reader.GetAttribute("PhysicalSizeX"), reader.GetAttribute("PhysicalSizeXUnit"));
                double? y = reader.GetAttribute("PhysicalSizeY") is null ? x : Length(reader.GetAttribute("PhysicalSizeY"), reader.GetAttribute("PhysicalSizeYUnit"));
                return x is { } a && y is { } b ? (a, b) : null;
            }
            return null;
        }
        catch (XmlException) { return null; }
    }

    /// <summary>A length in µm from an OME value and unit (null: missing, not a positive finite number, or an unknown unit).</summary>
    private static double? Length(string? value, string? unit)
    {
        if (value is null || !double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v) || v <= 0) return null;
        return MicronsPer(unit ?? "µm") is { } k && double.IsFinite(v * k) ? v * k : null;
    }

    /// <summary>
    /// The length in µm of a unit as OME-XML and ImageJ name them (µm, micron, nm, pm, Å, mm, cm, m, inch, and their
    /// spelled-out forms and ImageJ's escaped <c>\u00B5m</c>); null for a unit that is no length known here (pixel).
    /// </summary>
    public static double? MicronsPer(string unit) => unit.Trim() switch
    {
        "µm" or "μm" or "um" or "micron" or "microns" or "\\u00B5m" or "\\u00b5m" => 1,
        "nm" or "nanometer" or "nanometers" => 1e-3,
        "pm" => 1e-6,
        "\u00c5" or "\u212b" => 1e-4,
        "mm" or "millimeter" or "millimeters" => 1e3,
        "cm" or "centimeter" or "centimeters" => 1e4,
        "m" or "meter" or "meters" => 1e6,
        "inch" or "inches" or "in" => 25_400,
        _ => null,
    };

    /// <summary>A reader for OME-XML that came with a file (anyone's): no DTD, no external resolution, at most
    /// <see cref="MaxXmlChars"/> characters. Every parser here reads through it.</summary>
    private static XmlReader SafeReader(string xml) => XmlReader.Create(new StringReader(xml),
        new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, IgnoreComments = true, MaxCharactersInDocument = MaxXmlChars });

    private static int Int(XmlReader r, string name, int missing)
    {
        var v = r.GetAttribute(name);
        if (v is null) return missing;
        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) || x < 0)
            throw new XmlException($"{name}=\"{v}\" is not a non-negative integer");
        return x;
    }
}

/// <summary>Grey pages of one file read as the channels of one image (an OME-TIFF's channels, see <see cref="OmeChannels"/>).</summary>
public sealed class MultiPageSource : IRegionSource
{
    private readonly IRegionSource[] _pages;
    public string Path { get; }
    /// <summary>The page each channel comes from (of its own file, <see cref="Planes"/>).</summary>
    public IReadOnlyList<int> Pages { get; }
    /// <summary>Where each channel comes from: a page of this file, or of another file of its multi-file set.</summary>
    public IReadOnlyList<OmeChannels.Plane> Planes { get; }
    public int Width { get; }
    public int Height { get; }
    public int Channels => _pages.Length;
    public int BitDepth { get; }

    /// <summary>Takes ownership of <paramref name="pages"/> (one grey source per channel, all of the same size and depth),
    /// read from the planes <paramref name="planes"/> names.</summary>
    /// <summary>The companion file (<c>NAME.companion.ome</c>, beside <see cref="Path"/>) whose OME-XML mapped the planes,
    /// when the set keeps its metadata apart; null when the file's own OME-XML did.</summary>
    public string? MetadataFile { get; init; }

    /// <summary>What mapped the channels to pages, in words: <c>OME-XML</c>, or the <c>ImageJ description</c> of a hyperstack.</summary>
    public string MappedBy { get; }

    /// <summary>The source channel <paramref name="c"/> is read from (a page of this file or of another of its set).</summary>
    public IRegionSource Channel(int c) => _pages[c];

    public MultiPageSource(string path, IReadOnlyList<OmeChannels.Plane> planes, IRegionSource[] pages, string mappedBy = "OME-XML")
    {
        MappedBy = mappedBy;
        if (pages.Length < 2 || pages.Length != planes.Count) throw new ArgumentException("a multi-page image needs two or more pages, one number each");
        static string Name(OmeChannels.Plane p) => p.File is null ? $"page {p.Page}" : $"page {p.Page} of {p.File}";
        var first = pages[0];
        for (int c = 0; c < pages.Length; c++)
        {
            var p = pages[c];
            if (p.Channels != 1)
                throw new InputFileException(path, $"{Name(planes[c])} (channel {c} in the {MappedBy}) has {p.Channels} samples per pixel; channels stored as pages must be grey");
            if (p.Width != first.Width || p.Height != first.Height || p.BitDepth != first.BitDepth)
                throw new InputFileException(path, $"{Name(planes[c])} (channel {c} in the {MappedBy}) is {p.Width}x{p.Height} {p.BitDepth}-bit, but {Name(planes[0])} (channel 0) is {first.Width}x{first.Height} {first.BitDepth}-bit");
        }
        Path = path; Planes = planes.ToArray(); Pages = planes.Select(p => p.Page).ToArray(); _pages = pages;
        Width = first.Width; Height = first.Height; BitDepth = first.BitDepth;
    }

    public void ReadRegion(int x, int y, int w, int h, Span<ushort> dest)
    {
        int n = w * h, C = _pages.Length;
        if (dest.Length < (long)n * C) throw new ArgumentException("destination too small", nameof(dest));
        var plane = ArrayPool<ushort>.Shared.Rent(n);
        try
        {
            for (int c = 0; c < C; c++)
            {
                _pages[c].ReadRegion(x, y, w, h, plane.AsSpan(0, n));
                for (int i = 0, o = c; i < n; i++, o += C) dest[o] = plane[i];
            }
        }
        finally { ArrayPool<ushort>.Shared.Return(plane); }
    }

    public void Dispose()
    {
        foreach (var p in _pages) p.Dispose();
    }
}
