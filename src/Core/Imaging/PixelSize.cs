using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>The physical size of an image's pixels, as the file states it.</summary>
public static class PixelSize
{
    /// <summary>Microns per pixel of <paramref name="path"/> at <paramref name="page"/> (a whole slide's level, a TIFF's
    /// page): OpenSlide's mpp times the level's downsample for slides; for page 0 of an OME-TIFF (or an OME companion
    /// file) the PhysicalSizeX/Y of its OME-XML, in their units; the resolution tags otherwise; null when the file does
    /// not say (libvips reports 1 pixel per millimetre for "no resolution").</summary>
    public static (double X, double Y)? MicronsPerPixel(string path, int page = 0)
    {
        if (ImageSources.IsSlide(path))
        {
            using var s = OpenSlideSource.Open(path, page, direct: false); // metadata only: no probe reads
            return s.MppX is { } x && s.MppY is { } y ? (x, y) : null;
        }
        if (OmeChannels.IsCompanion(path))
        {
            if (page != 0) return null;
            if (OmeChannels.PhysicalSize(ImageSources.OmeXmlOf(path, null)) is { } stated) return stated;
            // none stated: the resolution tags of the file its first channel is in
            using var set = ImageSources.Open(path);
            var first = set is MultiPageSource m ? System.IO.Path.Combine(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, m.Planes[0].File!)
                : set is VipsImageSource one ? one.Path : null;
            return first is null ? null : MicronsPerPixel(first, set is MultiPageSource mp ? mp.Planes[0].Page : 0);
        }
        var opts = new Vips.VOption();
        if (page > 0) opts.Add("page", page);
        using var v = Vips.Image.NewFromFile(path, kwargs: opts);
        if (page == 0)
        {
            string? description = null;
            try { if (v.Contains("image-description")) description = v.Get("image-description") as string; } catch (Vips.VipsException) { /* optional */ }
            if (OmeChannels.PhysicalSize(ImageSources.OmeXmlOf(path, description)) is { } stated) return stated;
        }
        return v.Xres > 0 && v.Yres > 0 && !(v.Xres == 1 && v.Yres == 1) ? (1000.0 / v.Xres, 1000.0 / v.Yres) : null;
    }
}
