using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>The physical size of an image's pixels, as the file states it.</summary>
public static class PixelSize
{
    /// <summary>Microns per pixel of <paramref name="path"/> at <paramref name="page"/> (a whole slide's level, a TIFF's
    /// page): OpenSlide's mpp times the level's downsample for slides, the resolution tags otherwise; null when the file
    /// does not say (libvips reports 1 pixel per millimetre for "no resolution").</summary>
    public static (double X, double Y)? MicronsPerPixel(string path, int page = 0)
    {
        if (ImageSources.IsSlide(path))
        {
            using var s = OpenSlideSource.Open(path, page, direct: false); // metadata only: no probe reads
            return s.MppX is { } x && s.MppY is { } y ? (x, y) : null;
        }
        var opts = new Vips.VOption();
        if (page > 0) opts.Add("page", page);
        using var v = Vips.Image.NewFromFile(path, kwargs: opts);
        return v.Xres > 0 && v.Yres > 0 && !(v.Xres == 1 && v.Yres == 1) ? (1000.0 / v.Xres, 1000.0 / v.Yres) : null;
    }
}
