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
    /// <summary>
    /// Turns a generated image and its mask into a brightfield-looking slide with bare glass: smooth tissue islands
    /// (a blurred random field thresholded so that <paramref name="glassFraction"/> of the area is glass) keep the
    /// image, stained pink-purple; the rest is bright, grey, slightly noisy glass, class 0 in the mask. Streams through
    /// libvips; the same seed gives the same islands.
    /// </summary>
    public static void AddGlass(string imageRgb, string mask, string outImage, string outMask, double glassFraction, int seed)
    {
        if (glassFraction is < 0 or > 0.95) throw new ArgumentException($"glass fraction must be in [0, 0.95] (got {glassFraction})");
        using var img = Vips.Image.NewFromFile(imageRgb, access: Vips.Enums.Access.Sequential);
        using var msk = Vips.Image.NewFromFile(mask, access: Vips.Enums.Access.Sequential);
        if (img.Bands != 3 || img.Format != Vips.Enums.BandFormat.Uchar) throw new InputFileException(imageRgb, "glass is added to 8-bit RGB images");
        int W = img.Width, H = img.Height, f = Math.Max(8, Math.Max(W, H) / 256);
        int sw = Math.Max(2, (W + f - 1) / f), sh = Math.Max(2, (H + f - 1) / f);
        using var noise = Vips.Image.Gaussnoise(sw, sh, sigma: 1, mean: 0, seed: seed);
        using var field = noise.Gaussblur(Math.Max(sw, sh) / 8.0).CopyMemory(); // a few large tissue sections, as on a real slide
        // the threshold below which the wanted fraction of the field lies (vips' percent works on integer histograms)
        var values = field.WriteToMemory<float>();
        Array.Sort(values);
        double t = glassFraction <= 0 ? double.NegativeInfinity : values[Math.Min(values.Length - 1, (int)(glassFraction * values.Length))];
        using var up = field.Resize((double)W / sw, vscale: (double)H / sh, kernel: Vips.Enums.Kernel.Linear);
        using var upc = up.Crop(0, 0, W, H);
        using var tissue = upc > t;
        // stain: darker pixels absorb more, more so in green (eosin/haematoxylin-like pink-purple)
        using var grey = img.ExtractBand(1).Cast(Vips.Enums.BandFormat.Float);
        using var absorb = (255.0 - grey) / 255.0;
        using var r = 255.0 - absorb * 120.0; using var g = 255.0 - absorb * 230.0; using var b = 255.0 - absorb * 140.0;
        using var stained = r.Bandjoin(g, b).Cast(Vips.Enums.BandFormat.Uchar).Copy(interpretation: Vips.Enums.Interpretation.Srgb);
        using var gn = Vips.Image.Gaussnoise(W, H, sigma: 2, mean: 0, seed: seed + 1);
        using var glass = (gn + 238).Bandjoin(gn + 238, gn + 242).Cast(Vips.Enums.BandFormat.Uchar).Copy(interpretation: Vips.Enums.Interpretation.Srgb);
        using var outImg = tissue.Ifthenelse(stained, glass);
        using var zero = msk.Linear(new[] { 0.0 }, new[] { 0.0 }).Cast(msk.Format);
        using var outMsk = tissue.Ifthenelse(msk, zero);
        outImg.Tiffsave(outImage, compression: Vips.Enums.ForeignTiffCompression.Deflate, tile: true, tileWidth: 256, tileHeight: 256, bigtiff: true);
        outMsk.Tiffsave(outMask, compression: Vips.Enums.ForeignTiffCompression.Deflate, tile: true, tileWidth: 256, tileHeight: 256, bigtiff: true);
    }

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
