using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>The physical size of an image's pixels, as the file states it.</summary>
public static class PixelSize
{
    /// <summary>Microns per pixel of <paramref name="path"/> at <paramref name="page"/> (a Zeiss CZI's Scaling; a whole slide's level, a TIFF's
    /// page or its SubIFD pyramid's level): OpenSlide's mpp times the level's downsample for slides and level 0's size times
    /// the level's for an OME-TIFF pyramid; for page 0 of an OME-TIFF (or an OME companion
    /// file) the PhysicalSizeX/Y of its OME-XML, in their units; the resolution tags otherwise (a TIFF's in inches or
    /// centimetres, or in the unit ImageJ's description names; a PNG's pHYs in metres); null when the file does not say (libvips
    /// reports 1 pixel per millimetre for "no resolution"), and for a JPEG, whose density is a print setting.</summary>
    /// <param name="series">a LIF's image or a CZI's scene (<see cref="ImageSources.Open"/>)</param>
    public static (double X, double Y)? MicronsPerPixel(string path, int page = 0, int series = -1)
    {
        if (ImageSources.IsSlide(path))
        {
            using var s = OpenSlideSource.Open(path, page, direct: false); // metadata only: no probe reads
            return s.MppX is { } x && s.MppY is { } y ? (x, y) : null;
        }
        // a reduced level of an OME-TIFF pyramid (a SubIFD): level 0's size scaled by how much smaller the level is (OME's
        // PhysicalSize describes the full resolution, and converters seldom write resolution tags into the SubIFDs)
        if (page > 0 && ImageSources.PyramidLevels(path, series) is { Length: > 1 } levels)
        {
            if (page >= levels.Length || MicronsPerPixel(path, 0, series) is not { } full) return null;
            var (dx, dy) = ImageSources.Downsample(levels, page);
            return (full.X * dx, full.Y * dy);
        }
        // a Zeiss CZI: its metadata's Scaling (its reduced levels above, scaled as any pyramid's)
        if (CziSource.IsCzi(path)) return page == 0 ? CziSource.PixelSizeOf(path) : null;
        // a Leica LIF: its image's X and Y lengths
        if (LifSource.IsLif(path)) return page == 0 ? LifSource.PixelSizeOf(path, series) : null;
        if (OmeChannels.IsCompanion(path))
        {
            if (page != 0) return null;
            if (OmeChannels.PhysicalSize(ImageSources.OmeXmlOf(path, null)) is { } stated) return stated;
            // none stated: the resolution tags of the file its first channel is in
            using var set = ImageSources.Open(path);
            var (file, filePage) = set switch
            {
                MultiPageSource m when m.Channel(0) is VipsImageSource c0 => (c0.Path, m.Planes[0].Page), // (resolved as it was read)
                VipsImageSource one => (one.Path, 0),
                _ => (null, 0),
            };
            return file is null ? null : MicronsPerPixel(file, filePage);
        }
        var opts = new Vips.VOption();
        if (page > 0) opts.Add("page", page);
        using var v = Vips.Image.NewFromFile(path, kwargs: opts);
        string? description = null;
        try { if (v.Contains("image-description")) description = v.Get("image-description") as string; } catch (Vips.VipsException) { /* optional */ }
        if (page == 0 && OmeChannels.PhysicalSize(ImageSources.OmeXmlOf(path, description)) is { } ome) return ome;
        if (!(v.Xres > 0 && v.Yres > 0 && double.IsFinite(v.Xres) && double.IsFinite(v.Yres)) || (v.Xres == 1 && v.Yres == 1)) return null;
        var loader = Vips.Image.FindLoad(path) ?? "";
        // a PNG states its pixel size only in a pHYs chunk in metres; without one libvips reports its own 72 dpi
        if (loader.Contains("png", StringComparison.OrdinalIgnoreCase)) return PngPhysicalSize(path);
        // a JPEG's density (JFIF or EXIF) is a print setting, 72 or 96 dpi by nearly every writer, not a calibration:
        // taken as one, a photo's pixels would be 353 µm wide and its objects' areas absurd
        if (loader.Contains("jpeg", StringComparison.OrdinalIgnoreCase)) return null;
        bool tiff = loader.Contains("tiff", StringComparison.OrdinalIgnoreCase);
        if (tiff && !v.Contains("resolution-unit"))
        {
            // a TIFF whose ResolutionUnit is "none" (libvips then passes the values on unconverted, and names no unit):
            // pixels per unit of ImageJ's "unit=" in its description (Fiji saves every calibrated TIFF so), else no
            // physical size. Taken as pixels per millimetre, a Fiji TIFF of 0.65 µm pixels read as 650 µm.
            return ImageJUnit(description) is { } micronsPerUnit ? (micronsPerUnit / v.Xres, micronsPerUnit / v.Yres) : null;
        }
        if (tiff && IsWritersDefault(v)) return null;
        return (1000.0 / v.Xres, 1000.0 / v.Yres); // libvips gives pixels per millimetre for inches and centimetres
    }

    /// <summary>A PNG's pixel size from its pHYs chunk (pixels per metre), read from the file itself: null when the file has
    /// none, states only an aspect ratio (unit 0), or states the 72 or 96 dpi writers put in uncalibrated images.</summary>
    internal static (double X, double Y)? PngPhysicalSize(string path)
    {
        using var f = File.OpenRead(path);
        Span<byte> head = stackalloc byte[8];
        if (f.Read(head) != 8 || !head.SequenceEqual((ReadOnlySpan<byte>)[137, 80, 78, 71, 13, 10, 26, 10])) return null;
        Span<byte> chunk = stackalloc byte[8];
        Span<byte> phys = stackalloc byte[9];
        // pHYs comes before the image data: the chunks are walked up to the first IDAT
        for (int guard = 0; guard < 10_000 && f.Read(chunk) == 8; guard++)
        {
            uint len = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(chunk);
            var type = System.Text.Encoding.ASCII.GetString(chunk[4..]);
            if (type is "IDAT" or "IEND" || len > int.MaxValue) return null;
            if (type == "pHYs")
            {
                if (len != 9 || f.Read(phys) != 9 || phys[8] != 1) return null; // unit 1: the metre
                double px = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(phys), py = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(phys[4..]);
                if (!(px > 0 && py > 0)) return null;
                // 2835 and 3780 per metre are 72 and 96 dpi rounded
                if ((px == 2835 && py == 2835) || (px == 3780 && py == 3780)) return null;
                return (1e6 / px, 1e6 / py);
            }
            f.Seek(len + 4L, SeekOrigin.Current); // the data and the CRC
        }
        return null;
    }

    /// <summary>72 or 96 pixels per inch: what image writers put in a TIFF that has no calibration (both shared real datasets,
    /// NIST's colonies and BBBC039's nuclei, say 72 dpi), not a microscope's 353 or 265 µm pixels.</summary>
    private static bool IsWritersDefault(Vips.Image v)
    {
        string? unit = null;
        try { unit = v.Get("resolution-unit") as string; } catch (Vips.VipsException) { return false; }
        if (unit != "in") return false;
        double dx = v.Xres * 25.4, dy = v.Yres * 25.4; // back to pixels per inch
        static bool Near(double a, double b) => Math.Abs(a - b) < 1e-6 * b;
        return (Near(dx, 72) && Near(dy, 72)) || (Near(dx, 96) && Near(dy, 96));
    }

    /// <summary>The length in µm of the unit an ImageJ TIFF's description names (<c>unit=micron</c>, <c>unit=\u00B5m</c>,
    /// <c>unit=nm</c>, …, <see cref="OmeChannels.MicronsPer"/>); null when it is not an ImageJ description, or names no
    /// length (<c>pixel</c>, none).</summary>
    internal static double? ImageJUnit(string? description)
    {
        if (description is null || description.Length > 1 << 20 || !description.StartsWith("ImageJ=", StringComparison.Ordinal)) return null;
        foreach (var line in description.Split('\n'))
            if (line.StartsWith("unit=", StringComparison.Ordinal)) return OmeChannels.MicronsPer(line[5..]);
        return null;
    }
}
