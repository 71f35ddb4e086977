using System.Runtime.InteropServices;
using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>A problem with an input file: always names the file and what is wrong with it.</summary>
public sealed class InputFileException : Exception
{
    public string FilePath { get; }
    public InputFileException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner) => FilePath = path;
}

/// <summary>The checks every input image or mask passes before any reader opens it.</summary>
public static class InputFiles
{
    /// <summary>Throws <see cref="InputFileException"/> naming the file when it is missing, a broken link, empty, or not a
    /// regular file: a named pipe or a device reports no length, and opening one to read would wait for a writer for
    /// ever, so such paths are refused before any reader (OpenSlide's vendor detection, libvips) touches them.</summary>
    public static void Check(string path)
    {
        if (Directory.Exists(path)) throw new InputFileException(path, "is a folder, not an image file");
        if (!File.Exists(path)) throw new InputFileException(path, "file not found");
        try
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: false } target)
                throw new InputFileException(path, $"broken symbolic link (its target {target.FullName} does not exist)");
        }
        catch (IOException e) { throw new InputFileException(path, $"its symbolic links cannot be followed ({e.Message})"); }
        if (!HasData(path)) throw new InputFileException(path, "file is empty (0 bytes), or not a regular file (a named pipe or a device, whose read would never end)");
    }

    /// <summary>For data files (models, arrays): throws <see cref="InvalidDataException"/> naming the file when it exists
    /// but is empty or not a regular file, as opening a named pipe or a device to read would wait for a writer for ever.
    /// A missing file is left to the caller's open, which names it.</summary>
    public static void RefuseNonRegular(string path, string what)
    {
        if (File.Exists(path) && !HasData(path))
            throw new InvalidDataException($"{path}: {what}: empty, or not a regular file (a named pipe or a device, whose read would never end)");
    }

    /// <summary>Whether <paramref name="path"/> (its final link target) is a file with a length: false for a missing or
    /// empty file, a named pipe or a device, which report none; never opens it.</summary>
    public static bool HasData(string path)
    {
        try { return new FileInfo(path) is { Exists: true } fi && new FileInfo(fi.ResolveLinkTarget(true)?.FullName ?? path).Length > 0; }
        catch (IOException) { return false; }
    }
}

/// <summary>Anything that can hand out rectangular regions of an image as 16-bit samples (8-bit widened).</summary>
public interface IRegionSource : IDisposable
{
    int Width { get; }
    int Height { get; }
    int Channels { get; }
    /// <summary>Bits per sample of the stored image (8 or 16).</summary>
    int BitDepth { get; }
    /// <summary>Reads the region into <paramref name="dest"/>, row-major, channels interleaved.</summary>
    void ReadRegion(int x, int y, int w, int h, Span<ushort> dest);
}

/// <summary>Limits that protect against headers claiming absurd sizes.</summary>
public static class ImageLimits
{
    public const int MaxSide = 1 << 21;            // 2,097,152 px per side
    public const long MaxPixels = 1L << 38;        // 275 gigapixels
    public const int MaxChannels = 8;
}

/// <summary>
/// Each distinct libvips warning, once, to whoever listens (the host logs them). Apart from <see cref="VipsImageSource"/>
/// so that subscribing loads no libvips: a process that never reads an image (a trainer) runs without it.
/// </summary>
public static class VipsWarnings
{
    private static readonly HashSet<string> Seen = new();

    public static event Action<string>? Warning;

    internal static void Raise(string message)
    {
        lock (Seen) { if (Seen.Count > 1000 || !Seen.Add(message)) return; }
        Warning?.Invoke(message);
    }

    /// <summary>What ActorSeg itself says about an input it reads otherwise than the user may expect (an OME-TIFF read at
    /// page 0 alone, palette entries that share a colour): logged as warnings, where libvips' own chatter is debug.</summary>
    public static event Action<string>? InputWarning;

    internal static void RaiseInput(string message)
    {
        lock (Seen) { if (Seen.Count > 1000 || !Seen.Add(message)) return; }
        InputWarning?.Invoke(message);
    }
}

/// <summary>
/// Region reader over libvips: tiled/stripped TIFF and BigTIFF, OME-TIFF and multi-page TIFF (one page),
/// pyramidal TIFF (page 0 = full resolution), PNG and JPEG. Reads only the regions asked for.
/// Each instance is meant for one thread at a time; open one per worker.
/// </summary>
public sealed class VipsImageSource : IRegionSource
{
    static VipsImageSource()
    {
        // Operation cache off, before anything else in the process uses libvips. Every region is read once, so caching
        // would only grow memory; and with it on, opening a file that this process rewrote returns the image cached
        // from before (libvips caches the load by file name): `generate --glass` then wrote its slide from the image
        // without glass (SlideSegmentTests: all tissue on a 60 % glass slide). So this runs when the assembly loads
        // (VipsModuleSetUp below), before any code of it can touch libvips.
        Vips.Cache.Max = 0;
        Vips.Cache.MaxMem = 0;
        // libvips prints its warnings (e.g. a malformed TIFF DateTime tag) on stderr for every region read; route each
        // distinct one once to whoever listens instead.
        Vips.Log.SetLogHandler("VIPS", Vips.Enums.LogLevelFlags.Warning | Vips.Enums.LogLevelFlags.Message | Vips.Enums.LogLevelFlags.Info | Vips.Enums.LogLevelFlags.Debug,
            (domain, level, message) =>
            {
                if (message is null) return;
                VipsWarnings.Raise(message);
            });
    }

    private readonly Vips.Image _image;
    private readonly bool _wide;
    /// <summary>The page's tiles when this process decodes them itself (see <see cref="TiffTiles"/>); null: libvips reads.</summary>
    private readonly TiffTiles? _tiles;
    /// <summary>Whether region reads go through <see cref="TiffTiles"/> where it can (ACTORSEG_TIFF_READER=libvips: never).</summary>
    public bool OwnTiffReader => _tiles is not null;
    public string Path { get; }
    public int Width { get; }
    public int Height { get; }
    public int Channels { get; }
    public int BitDepth => _wide ? 16 : 8;
    public string Loader { get; }
    public int Pages { get; }
    /// <summary>The page's ImageDescription (an OME-TIFF's OME-XML, an Aperio header), when it has one.</summary>
    public string? Description { get; }
    /// <summary>What was added to signed samples to read them as unsigned ones (128 or 32768), or 0.</summary>
    public int SignedShift { get; private init; }
    /// <summary>The SubIFD read instead of the page itself (a reduced level of an OME-TIFF pyramid), or −1.</summary>
    public int SubIfd { get; private init; } = -1;
    /// <summary>For 32-bit integer and floating-point images: each band's finite range in the file, which is read spread
    /// linearly over 0..65535 (<see cref="Open"/>); null for 8- and 16-bit images, read as they are.</summary>
    public (double Min, double Max)[]? ScaledRange { get; private init; }

    /// <summary>A palette mask (an indexed PNG or TIFF): libvips gives its colours, which are mapped back to the palette's
    /// indices, the class ids; null for every other image.</summary>
    private readonly PaletteIndex? _palette;
    /// <summary>Whether this mask's class ids are read back from its palette's colours (see <see cref="PaletteIndex"/>).</summary>
    public bool IndexedColours => _palette is not null;

    /// <summary>For a mask saved in colour: how many colour bands each pixel has, reduced to one value as it is read (see
    /// <see cref="Open"/>); 1 for every other image.</summary>
    private readonly int _colourBands;

    private VipsImageSource(string path, Vips.Image image, bool wide, string loader, int pages, TiffTiles? tiles, string? description,
        PaletteIndex? palette = null, int colourBands = 1)
    {
        Path = path; _image = image; _wide = wide; Loader = loader; Pages = pages; _tiles = tiles; Description = description; _palette = palette;
        _colourBands = colourBands;
        Width = image.Width; Height = image.Height; Channels = palette is null && colourBands == 1 ? image.Bands : 1;
    }

    /// <summary>
    /// A TIFF read at page 0 whose second page is as large as the first is a stack (ImageJ's z-slices or time points, a
    /// multi-page scan), not a pyramid: the user may not know only page 0 is read, so a warning says so.
    /// </summary>
    /// <summary>The format a file's first bytes announce (TIFF, BigTIFF, PNG, JPEG, Zeiss CZI), or null.</summary>
    internal static string? SniffFormat(string path)
    {
        Span<byte> h = stackalloc byte[10];
        int n;
        try { using var f = File.OpenRead(path); n = f.ReadAtLeast(h, h.Length, throwOnEndOfStream: false); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        h = h[..n];
        if (h.Length >= 4 && ((h[0] == 'I' && h[1] == 'I' && h[2] == 42 && h[3] == 0) || (h[0] == 'M' && h[1] == 'M' && h[2] == 0 && h[3] == 42))) return "TIFF";
        if (h.Length >= 4 && ((h[0] == 'I' && h[1] == 'I' && h[2] == 43 && h[3] == 0) || (h[0] == 'M' && h[1] == 'M' && h[2] == 0 && h[3] == 43))) return "BigTIFF";
        if (h.Length >= 8 && h[..8].SequenceEqual((ReadOnlySpan<byte>)[137, 80, 78, 71, 13, 10, 26, 10])) return "PNG";
        if (h.Length >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return "JPEG";
        if (h.Length >= 10 && h.SequenceEqual("ZISRAWFILE"u8)) return "Zeiss CZI";
        return null;
    }

    internal static void WarnIfStack(string path, int pages, int width, int height, bool mask)
    {
        if (TiffPageLayout.TryRead(path, 1) is { } next && next.Width == width && next.Height == height)
            VipsWarnings.RaiseInput($"{path}: {pages} pages, the second as large as the first (a stack of z-slices, time points or channels?): " +
                                    (mask ? "the mask's page 0 alone is read" : "page 0 alone is read (--page N reads another)"));
    }

    /// <param name="path">image file</param>
    /// <param name="page">page of a multi-page TIFF (0 = first / full resolution of a pyramid)</param>
    /// <param name="firstBandOnly">keep band 0 only (masks)</param>
    /// <param name="ownTiffReader">decode tiled deflate or uncompressed TIFF pages here rather than through libvips (the same
    /// samples, faster); null: yes, unless the environment says ACTORSEG_TIFF_READER=libvips</param>
    /// <param name="subIfd">≥ 0: that SubIFD of the page (a reduced-resolution level of an OME-TIFF pyramid) instead of the
    /// page itself</param>
    /// <param name="contiguousPlane">≥ 1: that plane of a stack stored raw from page 0's first byte (ImageJ's layout over
    /// 4 GB, <see cref="TiffPageLayout.ContiguousPlanes"/>), read with page 0's size and sample format</param>
    public static VipsImageSource Open(string path, int page = 0, bool firstBandOnly = false, bool? ownTiffReader = null, int subIfd = -1, int contiguousPlane = 0)
    {
        InputFiles.Check(path);
        string? loader;
        try { loader = Vips.Image.FindLoad(path); }
        catch (Exception e) { throw new InputFileException(path, "cannot determine the image format", e); }
        if (loader is null)
        {
            // a file that begins as one of the formats read, but that libvips cannot open (it is cut short, or what its
            // header points to is damaged), is named as such rather than as a format not read
            if (SniffFormat(path) is { } format)
                throw new InputFileException(path, $"a {format} file that cannot be read: truncated or corrupt (it begins as one, but what follows is not readable)");
            throw new InputFileException(path, "not a supported image format (supported: TIFF/BigTIFF/OME-TIFF, PNG, JPEG, Zeiss CZI, Leica LIF, and the whole-slide formats OpenSlide reads: SVS, NDPI, MRXS, SCN, …)");
        }
        bool isTiff = loader.Contains("tiff", StringComparison.OrdinalIgnoreCase);
        if (!isTiff && !loader.Contains("png", StringComparison.OrdinalIgnoreCase)
                    && !loader.Contains("jpeg", StringComparison.OrdinalIgnoreCase))
            throw new InputFileException(path, $"unsupported image format ({loader}); use TIFF, PNG or JPEG");
        if (page < 0) throw new InputFileException(path, $"page {page} is negative");
        if (page > 0 && !isTiff) throw new InputFileException(path, $"page {page} requested but only TIFF files have pages");
        if (subIfd >= 0 && !isTiff) throw new InputFileException(path, "reduced-resolution levels (SubIFDs) requested but only TIFF files have them");

        // the page's own directory, read here: libtiff under libvips turns some damage into pixels of 0 without an error,
        // and explains a sample format it refuses only as "unable to call …"
        var directory = isTiff ? TiffPageLayout.TryRead(path, page, subIfd) : null;
        if (subIfd >= 0 && directory is null)
            throw new InputFileException(path, $"page {page} has no readable reduced-resolution level {subIfd + 1} (SubIFD {subIfd})");
        Vips.Image img;
        try
        {
            if (contiguousPlane > 0) img = ContiguousPlane(path, page, subIfd, directory, contiguousPlane);
            else
            {
                var opts = new Vips.VOption();
                if (isTiff) opts.Add("page", page);
                if (subIfd >= 0) opts.Add("subifd", subIfd);
                img = Vips.Image.NewFromFile(path, access: Vips.Enums.Access.Random, failOn: Vips.Enums.FailOn.Error, kwargs: opts);
            }
        }
        catch (Vips.VipsException e)
        {
            if (isTiff && directory is null && page > 0 && TiffPageLayout.CountPages(path) is var n && n > 0 && page >= n)
                throw new InputFileException(path, $"has {n} page(s) (0..{n - 1}); page or level {page} does not exist", e);
            if (directory?.SampleProblem() is { } samples)
                throw new InputFileException(path, samples, e);
            throw new InputFileException(path, $"cannot read image header: {Reason(e.Message)}", e);
        }

        int pages = 1;
        try { if (img.Contains("n-pages")) pages = (int)img.Get("n-pages"); } catch { /* optional */ }
        // (an image's stack is judged by ImageSources.Open, which first reads an OME-TIFF's channel pages as one image)
        if (firstBandOnly && page == 0 && pages > 1) WarnIfStack(path, pages, img.Width, img.Height, mask: true);
        // an Aperio slide that OpenSlide does not recognise is broken (truncated, a damaged directory chain): libvips reads
        // its first header and would fail only at the pixels, or never notice with JPEG 2000 tiles it cannot decode
        if (isTiff && img.Contains("image-description") && img.Get("image-description") is string desc && desc.StartsWith("Aperio", StringComparison.Ordinal)
            && OpenSlideSource.DetectVendor(path) is null)
            Fail(img, path, OpenSlideSource.Available ? "an Aperio slide that OpenSlide cannot open (truncated or damaged)" : "is a whole-slide image, which needs OpenSlide: install Debian's libopenslide0 (./run.sh does)");
        if (img.Width <= 0 || img.Height <= 0)
            Fail(img, path, $"image has no pixels ({img.Width}x{img.Height})");
        if (img.Width > ImageLimits.MaxSide || img.Height > ImageLimits.MaxSide || (long)img.Width * img.Height > ImageLimits.MaxPixels)
            Fail(img, path, $"header claims absurd dimensions {img.Width}x{img.Height}");
        // a mask whose samples are indices into a palette (class ids, as QuPath's labelled-image export, CVAT and Pascal VOC
        // write them): libvips expands them to the palette's colours, whose first band is no class id (a class painted
        // green read as background); the colours are mapped back to the indices
        if (firstBandOnly && PaletteIndex.TryRead(path, img, isTiff, directory) is { } palette)
        {
            if (img.Format is not (Vips.Enums.BandFormat.Uchar or Vips.Enums.BandFormat.Ushort))
                Fail(img, path, $"a palette image decoded as {img.Format} samples");
            if (directory?.LayoutProblem() is { } broken) Fail(img, path, broken);
            return new VipsImageSource(path, img, img.Format == Vips.Enums.BandFormat.Ushort, loader, pages, null, null, palette);
        }
        bool wide;
        int shift = 0;
        (double Min, double Max)[]? range = null;
        bool converted = false; // samples libvips converts on the way (signed, wide labels): never ActorSeg's own reader
        switch (img.Format)
        {
            case Vips.Enums.BandFormat.Uchar: wide = false; break;
            case Vips.Enums.BandFormat.Ushort: wide = true; break;
            case Vips.Enums.BandFormat.Char or Vips.Enums.BandFormat.Short when !firstBandOnly:
            {
                // signed 8- or 16-bit samples (some cameras' and converters' output): read shifted into the unsigned range,
                // v + 128 or v + 32768, which keeps their order and differences, so every z-scored feature is the same;
                // masks are never shifted (their values are classes)
                wide = img.Format == Vips.Enums.BandFormat.Short;
                shift = wide ? 32768 : 128;
                converted = true;
                using var shifted = img + shift;
                var unsigned = shifted.Cast(wide ? Vips.Enums.BandFormat.Ushort : Vips.Enums.BandFormat.Uchar);
                img.Dispose();
                img = unsigned;
                break;
            }
            case Vips.Enums.BandFormat.Char or Vips.Enums.BandFormat.Short or Vips.Enums.BandFormat.Int or Vips.Enums.BandFormat.Uint when firstBandOnly:
            {
                // a label mask in signed or 32-bit integers (skimage's label(), StarDist, Cellpose with many cells): its
                // values 0..65535 as they are, anything outside as 65535, which binary mode counts as foreground like any
                // non-zero label and classes mode refuses as no class id; never an object's label turned into background
                wide = true;
                converted = true;
                using var first = img.Bands > 1 ? img.ExtractBand(0) : img.Copy();
                // compared and replaced as 32-bit integers (a uint stays one), so that 65535 is a value of the format
                using var band0 = first.Format == Vips.Enums.BandFormat.Uint ? first.Copy() : first.Cast(Vips.Enums.BandFormat.Int);
                var unsigned = LabelsAs16Bits(band0);
                img.Dispose();
                img = unsigned;
                break;
            }
            case Vips.Enums.BandFormat.Float or Vips.Enums.BandFormat.Double or Vips.Enums.BandFormat.Int or Vips.Enums.BandFormat.Uint when !firstBandOnly:
            {
                // 32-bit integer or floating-point samples (deconvolved stacks, ImageJ's 32-bit, normalised exports): each
                // band's finite range, taken from the file itself so that every process that opens it maps it alike, spread
                // linearly over 0..65535 (a linear map keeps every z-scored feature but for the rounding to 65,536 levels);
                // NaN and infinite samples read as the band's minimum
                wide = true;
                converted = true;
                range = RangeOf(img, path, contiguousPlane > 0 ? contiguousPlane : page, contiguousPlane > 0 ? -2 : subIfd);
                var scaled = SpreadOver16Bits(img, range);
                img.Dispose();
                img = scaled;
                break;
            }
            case Vips.Enums.BandFormat.Float or Vips.Enums.BandFormat.Double when firstBandOnly:
            {
                // a mask stored as floats (0.0 and 1.0, or label ids): whole numbers are read as the labels they are, like
                // a 32-bit integer mask (0..65535 as they are, anything beyond as 65535); a fraction (a probability map) or a
                // NaN is no label, and refused
                using var first = img.Bands > 1 ? img.ExtractBand(0) : img.Copy();
                // NaN and infinity are no labels (the check below would pass over them, and they would read as 65535: foreground)
                using (var nan = first.Relational(first, Vips.Enums.OperationRelational.Noteq))
                using (var magnitude = first.Abs())
                using (var inf = magnitude >= double.PositiveInfinity)
                    if (nan.Max() > 0 || inf.Max() > 0)
                        Fail(img, path, "a mask of floating-point samples with NaN or infinite ones among them: those are no labels; give those " +
                                        "pixels a class id, or a value you then name with --ignore-value, first");
                using var rounded = first.Round(Vips.Enums.OperationRound.Rint);
                using var diff = first - rounded;
                using var frac = diff.Abs();
                double worst = frac.Max();
                if (!(worst == 0))
                    Fail(img, path, $"a mask of floating-point samples that are not whole numbers (one differs from its nearest integer by {worst}): " +
                                    "a probability map, not labels; threshold it into class ids first");
                wide = true;
                converted = true;
                using var asInt = rounded.Cast(Vips.Enums.BandFormat.Int);
                var unsigned = LabelsAs16Bits(asInt);
                img.Dispose();
                img = unsigned;
                break;
            }
            default:
                Fail(img, path, directory?.SampleProblem() ?? $"unsupported sample format '{img.Format}' (8-, 16- and 32-bit integer and floating-point images are supported)");
                return null!;
        }
        if (directory?.LayoutProblem() is { } layout) Fail(img, path, layout);
        int bands = img.Bands;
        // a mask saved in colour (RGB, or several bands): its colour bands are all read. A pixel whose bands are equal is that
        // grey value (a grey mask saved as RGB), one whose other bands are 0 its first band's value (labels kept in the red
        // band, as BBBC039's masks are): both read as before. Any other is a coloured mark, read as 65535: foreground in
        // binary mode (before, the first band alone counted, so a mark drawn in green or blue was background, silently) and
        // no class id in classes mode (colours are no class ids; a palette mask's are, see PaletteIndex)
        int colourBands = firstBandOnly ? DataBands(bands, isTiff, directory) : 1;
        if (firstBandOnly && (loader.Contains("jpeg", StringComparison.OrdinalIgnoreCase) || directory?.Compression is 6 or 7))
            VipsWarnings.RaiseInput($"{path}: a mask saved with lossy JPEG compression: its values near every edge are not the labels drawn " +
                                    "(in binary mode any value above 0 is foreground, so compression noise around objects counts as foreground); save masks as PNG or TIFF");
        int keep = firstBandOnly ? colourBands : DataBands(bands, isTiff, directory);
        if (keep > ImageLimits.MaxChannels) Fail(img, path, $"too many channels ({bands})");
        // tiles or strips with no data (offset or byte count 0) are read by libvips as zeros (or, with an offset of 0 and a
        // length, as the file's first bytes): an unfinished file looks like an image with odd regions, and nothing else says so
        if (directory?.All(directory.Tiled ? 324 : 273) is { } chunkOffsets && directory.All(directory.Tiled ? 325 : 279) is { } chunkCounts)
        {
            int empty = 0;
            for (int i = 0; i < Math.Min(chunkOffsets.Length, chunkCounts.Length); i++) if (chunkOffsets[i] <= 0 || chunkCounts[i] <= 0) empty++;
            if (empty > 0)
                VipsWarnings.RaiseInput($"{path}: {empty:N0} of {chunkOffsets.Length:N0} {(directory.Tiled ? "tiles" : "strips")} of page {page} hold no data " +
                                        "(offset or byte count 0: a sparse or unfinished file); what is read there is not image data");
        }
        var own = isTiff && !converted && (ownTiffReader ?? Environment.GetEnvironmentVariable("ACTORSEG_TIFF_READER") != "libvips");
        var tiles = contiguousPlane > 0 ? (own ? TiffTiles.ContiguousPlane(path, directory!, contiguousPlane) : null)
            : own && (subIfd < 0 || directory is not null) // (a SubIFD's tiles only from its own directory)
            ? TiffTiles.TryOpen(path, page, img.Width, img.Height, bands, wide, directory) : null;
        if (keep != bands)
        {
            var ex = img.ExtractBand(0, n: keep);
            img.Dispose();
            img = ex;
        }
        string? description = null;
        try { if (img.Contains("image-description")) description = img.Get("image-description") as string; } catch (Vips.VipsException) { /* optional */ }
        return new VipsImageSource(path, img, wide, loader, pages, tiles, description, colourBands: colourBands) { SignedShift = shift, ScaledRange = range, SubIfd = subIfd };
    }

    /// <summary>Plane <paramref name="plane"/> of a stack stored raw from page 0's first byte, in page 0's size, sample format
    /// and byte order. libvips maps the file (its raw loader takes no offset past 10^9 bytes, so the planes up to this one
    /// are mapped as one tall image and this plane cut from it); nothing is read until a region is, and 8- and 16-bit planes
    /// are read by <see cref="TiffTiles.ContiguousPlane"/> instead.</summary>
    private static Vips.Image ContiguousPlane(string path, int page, int subIfd, TiffPageLayout? directory, int plane)
    {
        if (page != 0 || subIfd >= 0 || directory?.ContiguousPlaneBytes() is null || directory.All(273) is not { } offsets)
            throw new InputFileException(path, $"plane {plane} was asked for as stored after page 0, but page 0 is no uncompressed plane in contiguous strips");
        if (plane >= directory.ContiguousPlanes())
            throw new InputFileException(path, $"plane {plane} lies past the end of the {directory.FileLength}-byte file (truncated?)");
        long bits = directory.One(258, 8), kind = directory.One(339, 1);
        var format = (bits, kind) switch
        {
            (8, 2) => Vips.Enums.BandFormat.Char, (8, _) => Vips.Enums.BandFormat.Uchar,
            (16, 2) => Vips.Enums.BandFormat.Short, (16, _) => Vips.Enums.BandFormat.Ushort,
            (32, 3) => Vips.Enums.BandFormat.Float, (32, 2) => Vips.Enums.BandFormat.Int, (32, _) => Vips.Enums.BandFormat.Uint,
            (64, 3) => Vips.Enums.BandFormat.Double,
            _ => throw new InputFileException(path, $"planes stored after page 0 in {bits}-bit samples of format {kind} are not read"),
        };
        int w = (int)directory.Width, h = (int)directory.Height;
        if ((long)h * (plane + 1) > 10_000_000)
            throw new InputFileException(path, $"plane {plane} of {w}x{h} pixels stored after page 0 lies too far into the file to be mapped");
        using var tall = Vips.Image.Rawload(path, w, h * (plane + 1), 1, offset: (ulong)offsets[0], format: format, interpretation: Vips.Enums.Interpretation.Multiband);
        var raw = tall.Crop(0, h * plane, w, h);
        if (bits == 8 || directory.LittleEndian == BitConverter.IsLittleEndian) return raw;
        using (raw) return raw.Byteswap(); // ImageJ writes big-endian files by default
    }

    /// <summary>Labels in 32-bit integers as 16-bit samples: 0..65535 as they are, anything outside as 65535 (never 0, so
    /// never an object's label turned into background).</summary>
    private static Vips.Image LabelsAs16Bits(Vips.Image labels)
    {
        using var below = labels < 0;
        using var above = labels > 65535;
        using var outside = below | above;
        using var kept = outside.Ifthenelse(65535, labels);
        return kept.Cast(Vips.Enums.BandFormat.Ushort);
    }

    /// <summary>The ranges this process has measured, by file (path, page, length and time of last change): a job opens its
    /// image several times (prepare, every worker, the painter), and each measure reads the whole image.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, int, int, long, DateTime), (double Min, double Max)[]> Ranges = new();

    private static (double Min, double Max)[] RangeOf(Vips.Image img, string path, int page, int subIfd)
    {
        var info = new FileInfo(path);
        var key = (info.FullName, page, subIfd, info.Length, info.LastWriteTimeUtc);
        if (Ranges.TryGetValue(key, out var known) && known.Length == img.Bands) return known;
        var range = FiniteRange(img, path);
        if (Ranges.Count < 1000) Ranges[key] = range;
        return range;
    }

    /// <summary>Each band's smallest and largest finite sample (one streaming pass over the image); NaN and infinite
    /// samples, which are read as the band's minimum, are counted and said (a warning naming the file).</summary>
    private static (double Min, double Max)[] FiniteRange(Vips.Image img, string path)
    {
        try
        {
            // finite: |v| ≤ the largest double (NaN compares false, infinities are larger); elsewhere +∞ for the minimum and
            // -∞ for the maximum, so that only finite samples count. The three, side by side as bands, in one statistics
            // pass: band b's minimum, band B + b's maximum, and band 2B + b's sum, 255 for each finite sample
            using var abs = img.Abs();
            using var finite = abs <= double.MaxValue;
            using var forMin = finite.Ifthenelse(img, double.PositiveInfinity);
            using var forMax = finite.Ifthenelse(img, double.NegativeInfinity);
            using var joined = forMin.Bandjoin(forMax, finite);
            using var st = joined.Stats();
            int bands = img.Bands;
            var range = new (double, double)[bands];
            long samples = (long)img.Width * img.Height;
            for (int b = 0; b < bands; b++)
            {
                double min = st.Getpoint(0, b + 1)[0], max = st.Getpoint(1, bands + b + 1)[0];
                if (!double.IsFinite(min) || !double.IsFinite(max))
                    throw new InputFileException(path, bands > 1 ? $"channel {b} has no finite sample (every one is NaN or infinite)" : "no finite sample (every one is NaN or infinite)");
                range[b] = (min, max);
                long nonFinite = samples - (long)Math.Round(st.Getpoint(2, 2 * bands + b + 1)[0] / 255);
                if (nonFinite > 0)
                    VipsWarnings.RaiseInput($"{path}: {nonFinite:N0} of {samples:N0} samples{(bands > 1 ? $" of channel {b}" : "")} are NaN or infinite: " +
                                            $"they are read as the {(bands > 1 ? "channel's" : "image's")} smallest finite value ({min:G6})");
            }
            return range;
        }
        catch (Vips.VipsException e)
        {
            img.Dispose();
            throw new InputFileException(path, $"cannot read pixels (truncated or corrupt file?): {Reason(e.Message)}", e);
        }
        catch (InputFileException)
        {
            img.Dispose();
            throw;
        }
    }

    /// <summary>The image with each band's range spread over 0..65535 (rounded to the nearest level), non-finite samples
    /// as the band's minimum, as 16-bit samples. A constant band reads as 0 (and is refused later as constant).</summary>
    private static Vips.Image SpreadOver16Bits(Vips.Image img, (double Min, double Max)[] range)
    {
        var a = range.Select(r => r.Max > r.Min ? 65535.0 / (r.Max - r.Min) : 0).ToArray();
        var b = range.Select((r, i) => -r.Min * a[i] + 0.5).ToArray(); // + 0.5: the cast truncates
        using var asDouble = img.Cast(Vips.Enums.BandFormat.Double); // 32-bit integers keep every digit
        using var abs = asDouble.Abs();
        using var finite = abs <= double.MaxValue;
        using var clean = finite.Ifthenelse(asDouble, range.Select(r => r.Min).ToArray());
        using var spread = clean.Linear(a, b);
        return spread.Cast(Vips.Enums.BandFormat.Ushort); // clipped to 0..65535
    }

    /// <summary>The bands that hold image data: all but a trailing alpha band. A TIFF says which of its extra samples is
    /// alpha (ExtraSamples 1, associated, or 2, unassociated); an extra sample it leaves unspecified (0) is data, as in a
    /// two- or four-channel fluorescence image, and is kept. PNG's two and four bands are grey and RGB with alpha.</summary>
    internal static int DataBands(int bands, bool isTiff, TiffPageLayout? directory)
    {
        // (an image has one alpha band at most: where several extra samples are all called alpha, as libvips writes every
        // extra band of a multi-channel grey image, none of them is; before, such a three-channel image read as two)
        if (isTiff && directory is not null)
            return bands > 1 && directory.All(338) is { Length: > 0 } extra && extra[^1] is 1 or 2 && extra.Count(e => e is 1 or 2) == 1 ? bands - 1 : bands;
        return bands switch { 2 => 1, 4 => 3, _ => bands };
    }

    private static void Fail(Vips.Image img, string path, string problem)
    {
        img.Dispose();
        throw new InputFileException(path, problem);
    }

    /// <summary>The informative lines of a libvips error (its buffer holds one line per layer: "unable to write to image",
    /// then the loader's own words, such as "VipsJpeg: premature end of JPEG image"), without the generic ones; the first
    /// line when there is nothing else.</summary>
    internal static string Reason(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var specific = lines.Where(l => !l.StartsWith("unable to write to", StringComparison.Ordinal) && !l.StartsWith("unable to call", StringComparison.Ordinal)
                                        && !l.EndsWith("load error", StringComparison.Ordinal)).Distinct().ToArray();
        return specific.Length > 0 ? string.Join("; ", specific) : FirstLine(message);
    }

    internal static string FirstLine(string s)
    {
        var t = s.Trim();
        int i = t.IndexOf('\n');
        return i < 0 ? t : t[..i].Trim();
    }

    public void ReadRegion(int x, int y, int w, int h, Span<ushort> dest)
    {
        if (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > Width || y + h > Height)
            throw new ArgumentOutOfRangeException(nameof(x), $"region {x},{y} {w}x{h} outside {Width}x{Height}");
        int n = w * h * Channels;
        if (dest.Length < n) throw new ArgumentException("destination too small", nameof(dest));
        if (_palette is { } palette)
        {
            int bands = _image.Bands;
            var colours = System.Buffers.ArrayPool<ushort>.Shared.Rent(w * h * bands);
            try
            {
                ReadThroughVips(x, y, w, h, colours.AsSpan(0, w * h * bands), bands);
                palette.Map(colours.AsSpan(0, w * h * bands), bands, dest[..(w * h)], Path, x, y, w);
            }
            finally { System.Buffers.ArrayPool<ushort>.Shared.Return(colours); }
            return;
        }
        if (_colourBands > 1)
        {
            int cb = _colourBands;
            var colours = System.Buffers.ArrayPool<ushort>.Shared.Rent(w * h * cb);
            try
            {
                ReadSamples(x, y, w, h, colours.AsSpan(0, w * h * cb), cb);
                for (int i = 0; i < w * h; i++)
                {
                    int p = i * cb;
                    ushort v = colours[p];
                    bool grey = true, firstOnly = true;
                    for (int b = 1; b < cb; b++) { grey &= colours[p + b] == v; firstOnly &= colours[p + b] == 0; }
                    dest[i] = grey || firstOnly ? v : (ushort)65535;
                }
            }
            finally { System.Buffers.ArrayPool<ushort>.Shared.Return(colours); }
            return;
        }
        ReadSamples(x, y, w, h, dest, Channels);
    }

    /// <summary>The first <paramref name="bands"/> samples of each pixel of the region: through ActorSeg's own TIFF reader
    /// where it covers the region, else through libvips.</summary>
    private void ReadSamples(int x, int y, int w, int h, Span<ushort> dest, int bands)
    {
        if (_tiles is not null && _tiles.Covers(x, y, w, h))
        {
            try { _tiles.ReadRegion(x, y, w, h, bands, dest); return; }
            catch (Exception e) when (e is InvalidDataException or IOException)
            {
                throw new InputFileException(Path, $"cannot read pixels of region x={x} y={y} {w}x{h} (truncated or corrupt file?): {e.Message}", e);
            }
        }
        ReadThroughVips(x, y, w, h, dest, bands);
    }

    /// <summary>Region x,y w×h of all <paramref name="bands"/> bands of the decoded image, as 16-bit samples.</summary>
    private void ReadThroughVips(int x, int y, int w, int h, Span<ushort> dest, int bands)
    {
        int n = w * h * bands;
        try
        {
            // libvips writes the region straight into the caller's buffer (8-bit samples widened on the way), through an
            // image wrapped around it: no native copy of the region, no fresh pages for one on every read
            using var crop = _image.Crop(x, y, w, h);
            using var samples = _wide ? null : crop.Cast(Vips.Enums.BandFormat.Ushort);
            var region = samples ?? crop;
            // libvips writes what the region holds into the borrowed buffer: it must be exactly w×h×Channels 16-bit samples
            if (region.Width != w || region.Height != h || region.Bands != bands || region.Format != Vips.Enums.BandFormat.Ushort)
                throw new InputFileException(Path, $"region x={x} y={y} {w}x{h} reads as {region.Width}x{region.Height}, {region.Bands} band(s) of {region.Format}; expected {bands} band(s) of 16-bit samples");
            unsafe
            {
                fixed (ushort* p = dest)
                {
                    using var target = Vips.Image.NewFromMemory((IntPtr)p, (ulong)n * 2, w, h, bands, Vips.Enums.BandFormat.Ushort);
                    region.Write(target);
                }
            }
        }
        catch (Vips.VipsException e)
        {
            throw new InputFileException(Path, $"cannot read pixels of region x={x} y={y} {w}x{h} (truncated or corrupt file?): {Reason(e.Message)}", e);
        }
    }

    /// <summary>Exact per-channel histogram of the whole image, computed by libvips in one streaming pass.</summary>
    public long[][] Histograms()
    {
        if (_palette is not null || _colourBands > 1) throw new NotSupportedException($"{Path}: a mask read from its palette or colours has no intensity histogram");
        var result = new long[Channels][];
        try
        {
            for (int c = 0; c < Channels; c++)
            {
                using var band = Channels == 1 ? _image.Copy() : _image.ExtractBand(c);
                using var hist = band.HistFind();
                // hist is 1 x bins, uint32 (may be double for large counts): read as double to be safe.
                using var asDouble = hist.Cast(Vips.Enums.BandFormat.Double);
                var counts = asDouble.WriteToMemory<double>();
                // libvips sizes a 16-bit histogram to the largest value present: pad to the full range
                var h = new long[Math.Max(counts.Length, _wide ? 65536 : 256)];
                for (int i = 0; i < counts.Length; i++) h[i] = (long)counts[i];
                result[c] = h;
            }
        }
        catch (Vips.VipsException e)
        {
            throw new InputFileException(Path, $"cannot read pixels (truncated or corrupt file?): {FirstLine(e.Message)}", e);
        }
        return result;
    }

    public void Dispose() { _image.Dispose(); _tiles?.Dispose(); }
}

/// <summary>An in-memory image, for tests and small inputs.</summary>
public sealed class ArrayImageSource : IRegionSource
{
    private readonly ushort[] _data;
    public int Width { get; }
    public int Height { get; }
    public int Channels { get; }
    public int BitDepth { get; }
    public ushort[] Data => _data;

    public ArrayImageSource(int width, int height, int channels, ushort[] data, int bitDepth = 16)
    {
        if (data.Length != (long)width * height * channels) throw new ArgumentException("data length does not match size");
        Width = width; Height = height; Channels = channels; _data = data; BitDepth = bitDepth;
    }

    public void ReadRegion(int x, int y, int w, int h, Span<ushort> dest)
    {
        if (x < 0 || y < 0 || x + w > Width || y + h > Height) throw new ArgumentOutOfRangeException(nameof(x));
        int rowLen = w * Channels;
        for (int r = 0; r < h; r++)
            _data.AsSpan(((y + r) * Width + x) * Channels, rowLen).CopyTo(dest.Slice(r * rowLen, rowLen));
    }

    public void Dispose() { }
}

/// <summary>
/// libvips' process-wide settings (<see cref="VipsImageSource"/>'s: operation cache off, warnings routed) applied as soon as
/// this assembly loads, before any code here can use libvips, whatever the entry point (a host, a test, a bench). A
/// process without libvips (a trainer that only reads graphs) goes on; only an image read would then fail, saying why.
/// </summary>
internal static class VipsModuleSetUp
{
#pragma warning disable CA2255 // a library's module initializer, on purpose: the setting must precede every use
    [System.Runtime.CompilerServices.ModuleInitializer]
    internal static void Run()
    {
        try { System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(VipsImageSource).TypeHandle); }
        catch (TypeInitializationException) { }
    }
#pragma warning restore CA2255
}
