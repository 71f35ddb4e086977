using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Whole-slide images through OpenSlide (Debian's <c>libopenslide0</c>): Aperio SVS, Hamamatsu NDPI/VMS, 3DHistech MRXS,
/// Leica SCN, Philips TIFF, Sakura, Ventana and the rest OpenSlide reads, by region, never whole, at a chosen pyramid
/// level. OpenSlide returns premultiplied ARGB; pixels are composited over the slide's background colour (white unless
/// the slide says otherwise) to RGB, which is exact for opaque pixels and what a viewer shows for the rest. Plain and
/// generic tiled TIFFs keep their libvips path (<see cref="ImageSources"/>). One instance per thread.
/// <para>An Aperio level whose TIFF page libvips decodes (JPEG, deflate, LZW or uncompressed tiles, three 8-bit samples,
/// no missing tile) is read through libvips instead, about twice as fast as OpenSlide's decode and compositing (see
/// <see cref="DirectReader"/>): only after the two readers gave the same samples on probe regions of that file, so the
/// pixels are OpenSlide's either way. <c>ACTORSEG_SLIDE_READER=openslide</c> turns it off.</para>
/// </summary>
public sealed class OpenSlideSource : IRegionSource
{
    private const string Lib = "libopenslide.so.0";
    [DllImport(Lib)] private static extern IntPtr openslide_detect_vendor(string filename);
    [DllImport(Lib)] private static extern IntPtr openslide_open(string filename);
    [DllImport(Lib)] private static extern void openslide_close(IntPtr osr);
    [DllImport(Lib)] private static extern IntPtr openslide_get_error(IntPtr osr);
    [DllImport(Lib)] private static extern int openslide_get_level_count(IntPtr osr);
    [DllImport(Lib)] private static extern void openslide_get_level_dimensions(IntPtr osr, int level, out long w, out long h);
    [DllImport(Lib)] private static extern double openslide_get_level_downsample(IntPtr osr, int level);
    [DllImport(Lib)] private static extern unsafe void openslide_read_region(IntPtr osr, uint* dest, long x, long y, int level, long w, long h);
    [DllImport(Lib)] private static extern IntPtr openslide_get_property_names(IntPtr osr);
    [DllImport(Lib)] private static extern IntPtr openslide_get_property_value(IntPtr osr, string name);

    private IntPtr _osr;
    /// <summary>The level's TIFF page read through libvips, when it gives OpenSlide's samples (see the class summary).</summary>
    private VipsImageSource? _direct;
    private readonly double _downsample;
    private readonly byte _bgR, _bgG, _bgB;

    public string Path { get; }
    public string Vendor { get; }
    public int Level { get; }
    public int Width { get; }
    public int Height { get; }
    public int Channels => 3;
    public int BitDepth => 8;
    public IReadOnlyList<(long Width, long Height, double Downsample)> Levels { get; }
    public IReadOnlyDictionary<string, string> Properties { get; }
    /// <summary>Microns per pixel at the chosen level (the slide's openslide.mpp-x/y times the level's downsample), when the slide says.</summary>
    public double? MppX { get; }
    public double? MppY { get; }

    /// <summary>OpenSlide's name for the file's vendor format, or null when it is not a slide OpenSlide reads (or the library is absent).</summary>
    public static string? DetectVendor(string path)
    {
        // OpenSlide opens the file to look: a named pipe or a device (no length) would block it for ever
        if (!InputFiles.HasData(path)) return null;
        try { return Marshal.PtrToStringUTF8(openslide_detect_vendor(path)); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
    }

    /// <summary>Whether libopenslide can be loaded on this machine.</summary>
    public static bool Available
    {
        get
        {
            try { openslide_detect_vendor("/nonexistent"); return true; }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
        }
    }

    private OpenSlideSource(string path, string vendor, IntPtr osr, int level)
    {
        Path = path; Vendor = vendor; _osr = osr; Level = level;
        int n = openslide_get_level_count(osr);
        var levels = new List<(long, long, double)>();
        for (int l = 0; l < n; l++)
        {
            openslide_get_level_dimensions(osr, l, out long w, out long h);
            levels.Add((w, h, openslide_get_level_downsample(osr, l)));
        }
        Levels = levels;
        var props = new Dictionary<string, string>(StringComparer.Ordinal);
        var names = openslide_get_property_names(osr);
        for (int i = 0; names != IntPtr.Zero; i++)
        {
            var p = Marshal.ReadIntPtr(names, i * IntPtr.Size);
            if (p == IntPtr.Zero) break;
            var name = Marshal.PtrToStringUTF8(p)!;
            props[name] = Marshal.PtrToStringUTF8(openslide_get_property_value(osr, name)) ?? "";
        }
        Properties = props;
        (long lw, long lh, _downsample) = levels[level];
        Width = (int)lw; Height = (int)lh;
        double? Mpp(string key) => props.TryGetValue(key, out var v) && double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d > 0 ? d * _downsample : null;
        MppX = Mpp("openslide.mpp-x"); MppY = Mpp("openslide.mpp-y");
        var bg = props.GetValueOrDefault("openslide.background-color", "FFFFFF");
        _bgR = _bgG = _bgB = 255;
        if (bg.Length == 6 && int.TryParse(bg, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int rgb))
        {
            _bgR = (byte)(rgb >> 16); _bgG = (byte)(rgb >> 8); _bgB = (byte)rgb;
        }
    }

    /// <summary>Opens a slide at <paramref name="level"/> (0 = full resolution); every failure names the file and the problem.</summary>
    /// <param name="direct">read an Aperio level's TIFF page through libvips where it gives OpenSlide's samples (see the
    /// class summary); null: yes, unless the environment says ACTORSEG_SLIDE_READER=openslide</param>
    public static OpenSlideSource Open(string path, int level = 0, bool? direct = null)
    {
        if (!File.Exists(path)) throw new InputFileException(path, "file not found");
        if (!Available) throw new InputFileException(path, "is a whole-slide image, which needs OpenSlide: install Debian's libopenslide0 (./run.sh does)");
        var vendor = DetectVendor(path) ?? throw new InputFileException(path, "not a whole-slide format OpenSlide recognises");
        var osr = openslide_open(path);
        if (osr == IntPtr.Zero) throw new InputFileException(path, $"OpenSlide cannot open this {vendor} slide");
        if (Marshal.PtrToStringUTF8(openslide_get_error(osr)) is { } err)
        {
            openslide_close(osr);
            throw new InputFileException(path, $"OpenSlide cannot read this {vendor} slide: {err}");
        }
        int n = openslide_get_level_count(osr);
        if (level < 0 || level >= n)
        {
            openslide_close(osr);
            throw new InputFileException(path, $"level {level} requested, but the slide has {n} level(s) (0..{n - 1})");
        }
        var s = new OpenSlideSource(path, vendor, osr, level);
        if (s.Width <= 0 || s.Height <= 0 || s.Width > ImageLimits.MaxSide || s.Height > ImageLimits.MaxSide || (long)s.Width * s.Height > ImageLimits.MaxPixels)
        {
            s.Dispose();
            throw new InputFileException(path, $"level {level} claims absurd dimensions {s.Width}x{s.Height}");
        }
        if (vendor == "aperio" && (direct ?? Environment.GetEnvironmentVariable("ACTORSEG_SLIDE_READER") != "openslide"))
            s._direct = s.TryDirect();
        return s;
    }

    /// <summary>How the pixels are read: "libvips" (the level's TIFF page, checked against OpenSlide) or "openslide".</summary>
    public string DirectReader => _direct is null ? "openslide" : "libvips";

    /// <summary>The TIFF page of this Aperio level (OpenSlide's levels are the file's tiled pages, in order), opened through
    /// libvips when everything says it decodes to OpenSlide's samples; null otherwise (then OpenSlide reads).</summary>
    private VipsImageSource? TryDirect()
    {
        int page = -1;
        for (int p = 0, tiled = -1; p < 64; p++)
        {
            var dir = TiffPageLayout.TryRead(Path, p);
            if (dir is null) return null;
            if (dir.Tiled && ++tiled == Level)
            {
                if (dir.Width != Width || dir.Height != Height || dir.SamplesPerPixel != 3 || dir.One(284, 1) != 1
                    || dir.SampleProblem() is not null || (dir.All(258) ?? [1]).Any(b => b != 8)
                    || dir.LayoutProblem() is not null || !DirectCompressions.Contains(dir.Compression))
                    return null;
                // a missing tile (offset or byte count 0) is transparent to OpenSlide, but not to libtiff
                var offsets = dir.All(324); var counts = dir.All(325);
                if (offsets is null || counts is null || offsets.Any(o => o <= 0) || counts.Any(c => c <= 0)) return null;
                page = p;
                break;
            }
        }
        if (page < 0) return null;
        VipsImageSource? v = null;
        try
        {
            v = VipsImageSource.Open(Path, page);
            if (v.Width != Width || v.Height != Height || v.Channels != 3 || v.BitDepth != 8 || !SameSamples(v)) { v.Dispose(); return null; }
            return v;
        }
        catch (Exception e) when (e is InputFileException or Vips.VipsException or IOException or InvalidDataException)
        {
            v?.Dispose();
            return null;
        }
    }

    /// <summary>Compressions whose tiles libvips decodes here exactly as OpenSlide does (JP2K, which OpenSlide decodes
    /// itself, is not among them).</summary>
    private static readonly HashSet<long> DirectCompressions = [1, 5, 7, 8, 32946];

    /// <summary>Whether <paramref name="v"/> reads the same samples as OpenSlide in up to nine 256² regions on a 3×3 grid
    /// over the level (corners, edge middles, centre; some fall on tissue, whose colour edges show a difference in
    /// chroma upsampling or the inverse DCT, and every pixel shows one in colour space): the decoding of JPEG tiles is the
    /// decoder's, and a file that two decoders read differently is left to OpenSlide.</summary>
    private bool SameSamples(VipsImageSource v)
    {
        int pw = Math.Min(256, Width), ph = Math.Min(256, Height);
        var at = new HashSet<(int, int)>();
        for (int gy = 0; gy < 3; gy++)
            for (int gx = 0; gx < 3; gx++)
                at.Add(((Width - pw) * gx / 2, (Height - ph) * gy / 2));
        var a = new ushort[pw * ph * 3];
        var b = new ushort[pw * ph * 3];
        foreach (var (x, y) in at)
        {
            ReadThroughOpenSlide(x, y, pw, ph, a);
            v.ReadRegion(x, y, pw, ph, b);
            if (!a.AsSpan().SequenceEqual(b)) return false;
        }
        return true;
    }

    /// <summary>The level whose microns per pixel is closest to <paramref name="mpp"/> without being coarser (the finest level if none is that fine).</summary>
    public int LevelFor(double mpp)
    {
        if (!Properties.TryGetValue("openslide.mpp-x", out var v) || !double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var base0) || base0 <= 0)
            throw new InputFileException(Path, "the slide does not state its microns per pixel (openslide.mpp-x): choose a level with --level");
        return ImageSources.LevelNear(base0, Levels.Select(l => l.Downsample), mpp);
    }

    public void ReadRegion(int x, int y, int w, int h, Span<ushort> dest)
    {
        if (x < 0 || y < 0 || w <= 0 || h <= 0 || x + w > Width || y + h > Height)
            throw new ArgumentOutOfRangeException(nameof(x), $"region ({x},{y}) {w}x{h} outside the {Width}x{Height} level");
        if (_direct is not null) _direct.ReadRegion(x, y, w, h, dest);
        else ReadThroughOpenSlide(x, y, w, h, dest);
    }

    private unsafe void ReadThroughOpenSlide(int x, int y, int w, int h, Span<ushort> dest)
    {
        int n = w * h;
        var buf = ArrayPool<uint>.Shared.Rent(n);
        try
        {
            // OpenSlide takes the region's corner in level-0 coordinates
            long x0 = (long)Math.Round(x * _downsample), y0 = (long)Math.Round(y * _downsample);
            fixed (uint* p = buf) openslide_read_region(_osr, p, x0, y0, Level, w, h);
            if (Marshal.PtrToStringUTF8(openslide_get_error(_osr)) is { } err)
                throw new InputFileException(Path, $"cannot read region ({x},{y}) {w}x{h} at level {Level}: {err}");
            for (int i = 0; i < n; i++)
            {
                uint px = buf[i];
                int a = (int)(px >> 24), r = (int)(px >> 16) & 255, g = (int)(px >> 8) & 255, b = (int)px & 255;
                if (a != 255)
                {
                    // premultiplied colour over the background: c + bg·(1 − α)
                    int k = 255 - a;
                    r += (_bgR * k + 127) / 255; g += (_bgG * k + 127) / 255; b += (_bgB * k + 127) / 255;
                }
                dest[3 * i] = (ushort)Math.Min(255, r); dest[3 * i + 1] = (ushort)Math.Min(255, g); dest[3 * i + 2] = (ushort)Math.Min(255, b);
            }
        }
        finally { ArrayPool<uint>.Shared.Return(buf); }
    }

    public void Dispose()
    {
        if (_osr != IntPtr.Zero) { openslide_close(_osr); _osr = IntPtr.Zero; }
        _direct?.Dispose(); _direct = null;
        GC.SuppressFinalize(this);
    }

    /// <summary>A worker that abandons a hung read drops its sources without disposing them (the read may still use
    /// them): the handle is closed when the collector finds the source unreachable.</summary>
    ~OpenSlideSource()
    {
        if (_osr != IntPtr.Zero) openslide_close(_osr);
    }
}

/// <summary>Opens any supported image: whole-slide formats through OpenSlide, Zeiss CZI and Leica LIF through <see cref="CziSource"/> and <see cref="LifSource"/>, everything else (TIFF, OME-TIFF, PNG, JPEG) through libvips.</summary>
public static class ImageSources
{
    /// <summary>Refuses a series other than the default (−1) or 0 for a file of one image (any but a CZI or a LIF).</summary>
    public static void CheckOneImage(string path, int series)
    {
        if (series > 0 || series < -1)
            throw new InputFileException(path, $"series {series}: only Zeiss CZI files (their scenes) and Leica LIF files (their images) hold several images to choose from; this file holds one (--series 0, or leave it out)");
    }

    /// <summary>True when the file is a vendor slide format (not a plain or generic tiled TIFF) that OpenSlide reads.</summary>
    public static bool IsSlide(string path) => OpenSlideSource.DetectVendor(path) is { } v && v != "generic-tiff";

    /// <summary>Opens an image; <paramref name="page"/> is the pyramid level for whole slides and for TIFFs that keep their
    /// reduced levels as SubIFDs of the first page (an OME-TIFF pyramid, <see cref="TiffPageLayout.Levels"/>), and the page
    /// for other multi-page TIFFs. Page (or level) 0 of an OME-TIFF whose channels are separate grey pages opens as all its
    /// channels (of the first focal plane and time point, <see cref="OmeChannels"/>), and so does each reduced level of
    /// such a pyramid (every channel page's SubIFD of that level); any other page opens alone.</summary>
    /// <param name="series">which image of a file that holds several (0 the first): a Zeiss CZI's scene alone, a Leica
    /// LIF's image; −1 the default (a CZI's scenes of one slide together or its first, a LIF's first image). Other files
    /// hold one image: 0 is it, any other is refused.</param>
    public static IRegionSource Open(string path, int page = 0, int series = -1)
    {
        InputFiles.Check(path); // before OpenSlide's vendor detection opens it
        if (CziSource.IsCzi(path)) return CziSource.Open(path, page, series); // Zeiss CZI: read here, whatever its name
        if (LifSource.IsLif(path)) return LifSource.Open(path, page, series); // Leica LIF: read here, whatever its name
        CheckOneImage(path, series);
        if (OmeChannels.IsCompanion(path)) return OpenCompanion(path, page);
        if (IsSlide(path)) return OpenSlideSource.Open(path, page);
        int subIfd = -1;
        if (page > 0 && TiffPageLayout.Levels(path) is { Length: > 1 } levels)
        {
            subIfd = SubIfdOf(path, levels, page, "its first page");
            page = 0;
        }
        else if (page > 0 && TiffPageLayout.TryRead(path, 0)?.SubIfds is { Length: > 0 } named)
            // a pyramid whose reduced levels cannot be read: say so, rather than that the page does not exist
            throw new InputFileException(path, $"its first page names {named.Length} reduced-resolution level(s) (SubIFDs), but level 1 cannot be read " +
                                               "(outside the file, truncated, no smaller than level 0, or not of its shape): the pyramid is damaged (--level 0 reads the full resolution without it)");
        var first = VipsImageSource.Open(path, page, subIfd: subIfd);
        // a reduced level's SubIFD has no description of its own: the OME-XML (and the page count) are the first page's
        string? description = first.Description;
        int pageCount = first.Pages;
        if (subIfd >= 0)
        {
            try { using var top = VipsImageSource.Open(path); description = top.Description; pageCount = top.Pages; }
            catch { first.Dispose(); throw; }
        }
        // (one page can be one file of a multi-file OME-TIFF set, whose other channels are in the files beside it)
        // (one page can also hold an ImageJ stack over 4 GB, whose other planes follow it with no directory of their own)
        if (page != 0 || (pageCount < 2 && description?.Contains("<OME", StringComparison.Ordinal) != true
                          && description?.StartsWith("ImageJ=", StringComparison.Ordinal) != true)) return first;
        string? problem = null, companion = null;
        if (first.Channels == 1 && OmeChannels.BinaryOnlyMetadataFile(description, out problem) is { } meta)
        {
            // a TIFF of a set whose OME-XML is kept apart, in a companion file beside it: its map of the planes is used
            try { description = ReadCompanion(Beside(path, meta, "its metadata")); companion = meta; }
            catch (InputFileException e) { problem = Why(path, e); }
        }
        if (problem is null) WarnIfSeries(path, description);
        var pages = first.Channels == 1 && problem is null ? OmeChannels.ChannelPlanes(description, System.IO.Path.GetFileName(path), pageCount, out problem) : null;
        // an ImageJ or Fiji hyperstack: its channels are its first pages
        bool imageJ = false;
        if (pages is null && problem is null && first.Channels == 1 && (pages = OmeChannels.ImageJChannelPlanes(description, pageCount, out problem,
                contiguousPlanes: pageCount == 1 && subIfd < 0 && description?.StartsWith("ImageJ=", StringComparison.Ordinal) == true
                    ? TiffPageLayout.TryRead(path, 0)?.ContiguousPlanes() ?? 0 : 0)) is not null) imageJ = true;
        if (pages is null)
        {
            // an OME-XML that claims channels it does not map: the page alone, as before, and a warning that says why
            if (problem is not null) VipsWarnings.RaiseInput($"{path}: page 0 is read alone: {problem}");
            // a stack (ImageJ's z-slices or time points, a multi-page scan): pages as large as the first are no pyramid
            // levels, and the user may not know that only the first is read
            else VipsImageSource.WarnIfStack(path, pageCount, first.Width, first.Height, mask: false);
            return first;
        }
        var sources = new IRegionSource[pages.Length];
        try
        {
            for (int c = 0; c < pages.Length; c++)
                sources[c] = pages[c] is { File: null, Page: 0 } ? first
                    : pages[c].Contiguous ? VipsImageSource.Open(path, 0, contiguousPlane: pages[c].Page)
                    : pages[c].File is { } other ? VipsImageSource.Open(Beside(path, other, $"channel {c}"), pages[c].Page, subIfd: subIfd)
                    : VipsImageSource.Open(path, pages[c].Page, subIfd: subIfd);
            var multi = new MultiPageSource(path, pages, sources, imageJ ? "ImageJ description" : "OME-XML") { MetadataFile = companion };
            if (!pages.Contains(new OmeChannels.Plane(null, 0))) first.Dispose();
            return multi;
        }
        catch (InputFileException e)
        {
            // a channel page that is not like the first (another size or depth, colour, unreadable): page 0 alone, as
            // before, so the image stays usable, and the reason in the log
            foreach (var s in sources) if (s is not null && !ReferenceEquals(s, first)) s.Dispose();
            VipsWarnings.RaiseInput($"{path}: page 0 is read alone: {Why(path, e)}");
            return first;
        }
        catch
        {
            foreach (var s in sources) if (s is not null && !ReferenceEquals(s, first)) s.Dispose();
            first.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The resolution levels of an OME-TIFF pyramid whose reduced levels are SubIFDs (<see cref="TiffPageLayout.Levels"/>):
    /// of the file itself, or for an OME companion file of the TIFF its first plane is in (level 0 first); else of a TIFF
    /// pyramid kept as pages (<see cref="TiffPageLayout.PageLevels"/>); one level, or none for a file that is no readable
    /// TIFF, otherwise. Whole slides' levels are OpenSlide's (<see cref="OpenSlideSource"/>).
    /// </summary>
    public static (long Width, long Height)[] PyramidLevels(string path, int series = -1) => Pyramid(path, series).Levels;

    /// <summary>Level-0 pixels per pixel of level <paramref name="k"/> of a pyramid's levels (level 0 first), per axis.</summary>
    public static (double X, double Y) Downsample(IReadOnlyList<(long Width, long Height)> levels, int k) =>
        ((double)levels[0].Width / levels[k].Width, (double)levels[0].Height / levels[k].Height);

    /// <summary>The coarsest level from <paramref name="from"/> on that is still at least <paramref name="width"/> x
    /// <paramref name="height"/> (<paramref name="from"/> itself when none after it is): where a preview or a tissue map
    /// reads a pyramid, a whole slide's or a TIFF's.</summary>
    public static int CoarsestAtLeast(IReadOnlyList<(long Width, long Height)> levels, int from, long width, long height)
    {
        int pick = from;
        for (int l = from; l < levels.Count; l++) if (levels[l].Width >= width && levels[l].Height >= height) pick = l;
        return pick;
    }

    /// <summary>The level whose microns per pixel (<paramref name="level0"/> times its downsample) is closest to
    /// <paramref name="mpp"/> without being coarser; the finest when none is that fine (--mpp, for slides and TIFF pyramids).</summary>
    public static int LevelNear(double level0, IEnumerable<double> downsamples, double mpp)
    {
        int best = 0, l = 0;
        foreach (var d in downsamples) { if (level0 * d <= mpp * 1.0001) best = l; l++; }
        return best;
    }

    /// <summary>The SubIFD that level <paramref name="level"/> (≥ 1) of a SubIFD pyramid is, or an error naming how many
    /// levels it has (<paramref name="top"/> says what level 0 is).</summary>
    private static int SubIfdOf(string path, (long Width, long Height)[] levels, int level, string top) =>
        level < levels.Length ? level - 1
            : throw new InputFileException(path, $"has {levels.Length} resolution levels (0..{levels.Length - 1}: {top} and {levels.Length - 1} reduced SubIFD level(s)); level {level} does not exist");

    /// <summary><see cref="PyramidLevels"/>, and whether the reduced levels are SubIFDs (else pages: a TIFF pyramid kept as
    /// pages, <see cref="TiffPageLayout.PageLevels"/>, whose level N is page N).</summary>
    /// <param name="series">a CZI's scene (<see cref="Open"/>): its levels are the scene's</param>
    public static ((long Width, long Height)[] Levels, bool SubIfds) Pyramid(string path, int series = -1)
    {
        // a named pipe or a device has no levels (and reading one would wait for a writer for ever)
        if (!InputFiles.HasData(path)) return ([], true);
        if (CziSource.IsCzi(path)) // a Zeiss CZI's pyramid: its subsampled subblocks (level N opens through CziSource)
            try { return (CziSource.LevelsOf(path, series), false); }
            catch (InputFileException) { return ([], false); }
        if (OmeChannels.IsCompanion(path))
            try
            {
                var planes = OmeChannels.ChannelPlanes(ReadCompanion(path), "\0", 0, out _, evenOne: true);
                return (planes is { Length: > 0 } && planes[0].File is { } first ? TiffPageLayout.Levels(Beside(path, first, "channel 0")) : [], true);
            }
            catch (InputFileException) { return ([], true); }
        var sub = TiffPageLayout.Levels(path);
        if (sub.Length > 1) return (sub, true);
        var pages = TiffPageLayout.PageLevels(path);
        return pages.Length > 1 ? (pages, false) : (sub, true);
    }

    /// <summary>A file of several images (a plate's wells, a slide's scenes, a converted slide's label and macro): the
    /// first is read, and the user told.</summary>
    private static void WarnIfSeries(string path, string? xml)
    {
        if (OmeChannels.ImageCount(xml) is > 1 and var images)
            VipsWarnings.RaiseInput($"{path}: its OME-XML describes {images} images (series); the first is read");
    }

    /// <summary>An input error's reason without the file name it starts with.</summary>
    private static string Why(string path, InputFileException e) =>
        e.Message.StartsWith(path + ": ", StringComparison.Ordinal) ? e.Message[(path.Length + 2)..] : e.Message;

    /// <summary>
    /// An OME companion file (<c>NAME.companion.ome</c>): the OME-XML of a multi-file set, whose planes are in the TIFFs
    /// it names beside it (each of which holds pixels only). Its first image's channels, of the first focal plane and time
    /// point, are read from those files; one channel is read as its file is (grey or colour).
    /// </summary>
    private static IRegionSource OpenCompanion(string path, int page)
    {
        var xml = ReadCompanion(path);
        var planes = OmeChannels.ChannelPlanes(xml, "\0", 0, out var problem, evenOne: true)
                     ?? throw new InputFileException(path, problem ?? "its OME-XML describes no image whose planes are in TIFF files beside it");
        // a level of a pyramid whose TIFFs keep their reduced levels as SubIFDs (bfconvert -pyramid-resolutions): every
        // plane's SubIFD of it
        int subIfd = -1;
        if (page != 0)
        {
            var levels = TiffPageLayout.Levels(Beside(path, planes[0].File!, "channel 0"));
            if (levels.Length < 2)
                throw new InputFileException(path, $"an OME companion file has no pages of its own, and its TIFFs no reduced levels: page or level {page} cannot be read (its image is read from the TIFF files it names)");
            subIfd = SubIfdOf(path, levels, page, "its TIFFs' first pages");
        }
        WarnIfSeries(path, xml);
        if (planes.Length == 1) return VipsImageSource.Open(Beside(path, planes[0].File!, "channel 0"), planes[0].Page, subIfd: subIfd);
        var sources = new IRegionSource[planes.Length];
        try
        {
            for (int c = 0; c < planes.Length; c++) sources[c] = VipsImageSource.Open(Beside(path, planes[c].File!, $"channel {c}"), planes[c].Page, subIfd: subIfd);
            return new MultiPageSource(path, planes, sources) { MetadataFile = System.IO.Path.GetFileName(path) };
        }
        catch
        {
            foreach (var s in sources) s?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The OME-XML that describes the image at <paramref name="path"/>, whose page 0 has the ImageDescription
    /// <paramref name="description"/>: a companion file's own, the companion's of a TIFF that defers to one beside it
    /// (BinaryOnly), or the TIFF's; null when there is none (or the companion cannot be read).
    /// </summary>
    public static string? OmeXmlOf(string path, string? description)
    {
        try
        {
            if (OmeChannels.IsCompanion(path)) return ReadCompanion(path);
            if (OmeChannels.BinaryOnlyMetadataFile(description, out _) is { } meta) return ReadCompanion(Beside(path, meta, "its metadata"));
        }
        catch (InputFileException) { return null; }
        return description?.Contains("<OME", StringComparison.Ordinal) == true ? description : null;
    }

    /// <summary>A companion file's OME-XML (at most <see cref="OmeChannels.MaxXmlChars"/> characters).</summary>
    private static string ReadCompanion(string path)
    {
        InputFiles.Check(path);
        if (new FileInfo(path).Length > OmeChannels.MaxXmlChars)
            throw new InputFileException(path, $"an OME companion file of {new FileInfo(path).Length:N0} bytes: more than the {OmeChannels.MaxXmlChars:N0} read");
        string xml;
        try { xml = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InputFileException(path, $"cannot be read: {e.Message}"); }
        if (!xml.Contains("<OME", StringComparison.Ordinal)) throw new InputFileException(path, "is no OME-XML (an OME companion file holds the <OME> metadata of a multi-file set)");
        return xml;
    }

    /// <summary>
    /// Every file the image at <paramref name="path"/> is read from, the given one first: for a multi-file OME-TIFF set,
    /// the files beside it that hold its other channels and its companion file, if it has one; for a MIRAX slide (<c>.mrxs</c>), the files of its data folder
    /// (the folder of the same name beside it: <c>Slidedat.ini</c>, <c>Index.dat</c>, <c>Data*.dat</c>); for a Hamamatsu
    /// VMS/VMU slide, the files its key file names. A later run that asks whether its result is still current (a batch
    /// skipping a finished slide) compares them all, not only the file it was given.
    /// </summary>
    public static IReadOnlyList<string> FilesOf(string path, int page = 0)
    {
        if (IsSlide(path)) return SlideFiles(path, OpenSlideSource.DetectVendor(path));
        if (page != 0) return [path];
        using var src = Open(path, page);
        var files = new List<string> { path };
        void Add(string f) { if (!files.Contains(f)) files.Add(f); }
        if (src is MultiPageSource m)
        {
            if (m.MetadataFile is { } meta && !OmeChannels.IsCompanion(path)) Add(Beside(path, meta, "its metadata"));
            for (int c = 0; c < m.Planes.Count; c++)
                if (m.Planes[c].File is { } other) Add(Beside(path, other, $"channel {c}"));
        }
        else if (src is VipsImageSource one && OmeChannels.IsCompanion(path)) Add(one.Path); // a companion's one plane
        return files;
    }

    /// <summary>The files of a slide OpenSlide reads as <paramref name="vendor"/>: the given file, then those of its set
    /// that OpenSlide opens beside it (<see cref="FilesOf"/>), in a fixed order. Files the slide names that are missing are
    /// left out (OpenSlide says what is wrong when it reads them).</summary>
    internal static IReadOnlyList<string> SlideFiles(string path, string? vendor)
    {
        var files = new List<string> { path };
        var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        switch (vendor)
        {
            case "mirax":
                var data = System.IO.Path.Combine(folder, System.IO.Path.GetFileNameWithoutExtension(path));
                if (Directory.Exists(data))
                    files.AddRange(Directory.EnumerateFiles(data).Order(StringComparer.Ordinal));
                break;
            case "hamamatsu" when !string.Equals(System.IO.Path.GetExtension(path), ".ndpi", StringComparison.OrdinalIgnoreCase):
                // a VMS/VMU key file: an ini of which ImageFile, ImageFile(x,y), MapFile and OptimisationFile name the
                // JPEG and map files beside it
                foreach (var line in File.ReadLines(path).Take(10_000))
                {
                    int eq = line.IndexOf('=');
                    if (eq <= 0) continue;
                    var key = line[..eq].Trim();
                    if (!(key.StartsWith("ImageFile", StringComparison.Ordinal) || key is "MapFile" or "OptimisationFile")) continue;
                    var name = line[(eq + 1)..].Trim();
                    if (name.Length == 0 || name.Contains('/') || name.Contains('\\')) continue;
                    var f = System.IO.Path.Combine(folder, name);
                    if (File.Exists(f) && !files.Contains(f)) files.Add(f);
                }
                break;
        }
        return files;
    }

    /// <summary>
    /// The file <paramref name="name"/> of a multi-file OME-TIFF set beside <paramref name="path"/>: in the same folder, links
    /// resolved, so that a link planted among the set never makes a job read a file elsewhere (a cluster's data roots are
    /// checked on the image's own path).
    /// </summary>
    private static string Beside(string path, string name, string what)
    {
        string real = IO.SafePaths.RealPath(System.IO.Path.GetFullPath(path));
        string folder = System.IO.Path.GetDirectoryName(real)!;
        string other = System.IO.Path.Combine(folder, name);
        if (!File.Exists(other))
            throw new InputFileException(path, $"{what} is in {name} by its OME-XML, which is not beside it (a multi-file OME-TIFF set is read from one folder)");
        string otherReal;
        try { otherReal = IO.SafePaths.RealPath(other); }
        catch (IOException e) { throw new InputFileException(path, $"{what} is in {name}: {e.Message}"); }
        if (System.IO.Path.GetDirectoryName(otherReal) != folder)
            throw new InputFileException(path, $"{what} is in {name}, a link to {otherReal} outside the image's folder: refused");
        return otherReal;
    }

    /// <summary>Exact per-channel histograms of the whole image, read in blocks by up to <paramref name="threads"/> threads
    /// (default: one per core), each with its own source (<paramref name="openAnother"/>; the first uses
    /// <paramref name="src"/>) and its own integer histograms, merged by addition: the counts, and so the statistics,
    /// are exactly those of one sequential pass. Without <paramref name="openAnother"/> one thread reads.</summary>
    /// <param name="progress">told, at most every <paramref name="every"/> (5 s), how much of the image has been read (a
    /// gigapixel slide in JPEG takes tens of seconds here)</param>
    /// <param name="ct">stops the pass between blocks (a prepare step given up on)</param>
    public static long[][] Histograms(IRegionSource src, Func<IRegionSource>? openAnother = null, int threads = 0,
        IProgress<string>? progress = null, CancellationToken ct = default, TimeSpan? every = null)
    {
        long everyTicks = (long)((every ?? TimeSpan.FromSeconds(5)).TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        var blocks = HistogramBlocks(src.Width, src.Height, src.Channels);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long lastReport = 0, pixelsRead = 0, pixels = (long)src.Width * src.Height;
        int blocksDone = 0;
        int n = openAnother is null ? 1 : Math.Clamp(threads > 0 ? threads : Environment.ProcessorCount, 1, blocks.Count);
        int bins = src.BitDepth > 8 ? 65536 : 256, C = src.Channels;
        var parts = new long[n][][];
        // each thread reads its own contiguous share of the blocks, top to bottom, then helps the others with theirs:
        // threads that took neighbouring blocks in turn read the same compressed tiles at the same time (a CZI's 1024-row
        // subblocks hold two 512-row blocks), so one decoded while the other waited for it (DecodedBlocks)
        var cursor = new int[n];
        var end = new int[n];
        for (int k = 0; k < n; k++) { cursor[k] = (int)((long)blocks.Count * k / n) - 1; end[k] = (int)((long)blocks.Count * (k + 1) / n); }
        int Claim(int k)
        {
            for (int i = 0; i < n; i++)
            {
                int j = (k + i) % n, b = Interlocked.Increment(ref cursor[j]);
                if (b < end[j]) return b;
            }
            return -1;
        }
        void Work(int k)
        {
            var h = new long[C][];
            for (int c = 0; c < C; c++) h[c] = new long[bins];
            parts[k] = h;
            var own = k == 0 ? null : openAnother!();
            try
            {
                var s = own ?? src;
                ushort[]? buf = null;
                for (int b; (b = Claim(k)) >= 0;)
                {
                    ct.ThrowIfCancellationRequested();
                    var (x, y, w, hh) = blocks[b];
                    int len = w * hh * C;
                    if (buf is null || buf.Length < len) buf = new ushort[len];
                    var span = buf.AsSpan(0, len);
                    s.ReadRegion(x, y, w, hh, span);
                    if (C == 1) { var h0 = h[0]; foreach (var v in span) h0[v]++; }
                    else for (int c = 0; c < C; c++) { var hc = h[c]; for (int i = c; i < span.Length; i += C) hc[span[i]]++; }
                    long read = Interlocked.Add(ref pixelsRead, (long)w * hh);
                    int done = Interlocked.Increment(ref blocksDone);
                    long now = clock.ElapsedTicks, last = Interlocked.Read(ref lastReport);
                    if (progress is not null && done < blocks.Count && now - last >= everyTicks
                        && Interlocked.CompareExchange(ref lastReport, now, last) == last)
                        progress.Report(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                            $"statistics pass: {100.0 * read / pixels:F0}% of {pixels / 1e6:N0} megapixels read ({clock.Elapsed.TotalSeconds:F0} s)"));
                }
            }
            finally { own?.Dispose(); }
        }
        if (n == 1) Work(0);
        else
        {
            var tasks = Enumerable.Range(0, n).Select(k => Task.Factory.StartNew(() => Work(k), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
            try { Task.WaitAll(tasks); }
            catch (AggregateException e) when (e.InnerExceptions.Count > 0)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.Flatten().InnerExceptions[0]).Throw();
            }
        }
        var total = parts[0];
        for (int k = 1; k < n; k++)
            for (int c = 0; c < C; c++)
            {
                var t = total[c]; var p = parts[k][c];
                for (int v = 0; v < bins; v++) t[v] += p[v];
            }
        return total;
    }

    /// <summary>The blocks the statistics pass reads: bands of 512 rows (a multiple of the usual TIFF tile heights, so
    /// no tile is decoded twice), the whole width when a band holds at most 4M pixels, else split into columns of a
    /// multiple of 512 pixels.</summary>
    internal static List<(int X, int Y, int W, int H)> HistogramBlocks(int width, int height, int channels)
    {
        const int rows = 512;
        const long maxPixels = 1 << 22;
        int cols = (long)width * rows <= maxPixels ? width : (int)Math.Max(512, maxPixels / rows / 512 * 512);
        var list = new List<(int, int, int, int)>();
        for (int y = 0; y < height; y += rows)
            for (int x = 0; x < width; x += cols)
                list.Add((x, y, Math.Min(cols, width - x), Math.Min(rows, height - y)));
        return list;
    }

    /// <summary>Exact per-channel histograms of the image at <paramref name="path"/> (already open as
    /// <paramref name="src"/>), read in parallel with one source per thread.</summary>
    public static long[][] Histograms(IRegionSource src, string path, int page, int threads = 0, IProgress<string>? progress = null, CancellationToken ct = default,
        int series = -1) =>
        Histograms(src, () => Open(path, page, series), threads, progress, ct);
}
