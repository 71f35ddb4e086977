using System.Globalization;
using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Writes an Aperio-flavoured whole-slide image (what `actorseg generate --format svs` makes, for the demo, the benches
/// and the tests): a tiled, JPEG-compressed TIFF pyramid — every level a tiled directory — whose first directory carries
/// an Aperio image description with the magnification and microns per pixel, which is how OpenSlide recognises an SVS.
/// libvips streams it from any RGB image, never holding the whole slide.
/// </summary>
public static class SlideWriter
{
    public static void WriteSvs(string sourceRgb, string path, double mpp = 0.499, int appMag = 20, int tile = 256, int quality = 90)
    {
        using var src = Vips.Image.NewFromFile(sourceRgb, access: Vips.Enums.Access.Sequential);
        if (src.Bands != 3 || src.Format != Vips.Enums.BandFormat.Uchar)
            throw new InputFileException(sourceRgb, $"an SVS slide is written from an 8-bit RGB image (this one has {src.Bands} band(s) of {src.Format})");
        var desc = string.Create(CultureInfo.InvariantCulture,
            $"Aperio Image Library v12.0.15 \r\n{src.Width}x{src.Height} [0,0 {src.Width}x{src.Height}] ({tile}x{tile}) JPEG/RGB Q={quality}|AppMag = {appMag}|MPP = {mpp:0.####}|Filename = {Path.GetFileNameWithoutExtension(path)}");
        using var described = src.Mutate(m => m.Set(Vips.GValue.GStrType, "image-description", desc));
        var tmp = $"{path}.{Guid.NewGuid():N}.partial.tif";
        try
        {
            // pixels per centimetre in the TIFF resolution tags as well, for readers that look there
            double ppcm = 10_000.0 / mpp;
            described.Tiffsave(tmp, compression: Vips.Enums.ForeignTiffCompression.Jpeg, q: quality, tile: true, tileWidth: tile, tileHeight: tile,
                pyramid: true, bigtiff: (long)src.Width * src.Height * 3 > 3_000_000_000L, resunit: Vips.Enums.ForeignTiffResunit.Cm, xres: ppcm / 10, yres: ppcm / 10);
            IO.SafePaths.Publish(tmp, path, "slide");
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }
}
