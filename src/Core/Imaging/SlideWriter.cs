using System.Diagnostics;
using System.Globalization;
using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Writes an Aperio-flavoured whole-slide image (what `actorseg generate --format svs` makes, for the demo, the benches
/// and the tests): a tiled, JPEG-compressed TIFF pyramid — every level a tiled directory — whose first directory carries
/// an Aperio image description with the magnification and microns per pixel, which is how OpenSlide recognises an SVS.
/// libvips streams it from any RGB image, never holding the whole slide. With <see cref="SvsCompression.Jp2kRgb"/> or
/// <see cref="SvsCompression.Jp2kYcbcr"/> the tiles are JPEG 2000 codestreams instead, as Aperio's JPEG 2000 slides keep
/// them (see <see cref="WriteJp2kSvs"/>).
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

    public static void WriteSvs(string sourceRgb, string path, double mpp = 0.499, int appMag = 20, int tile = 256, int quality = 90,
        SvsCompression compression = SvsCompression.Jpeg)
    {
        if (compression != SvsCompression.Jpeg) { WriteJp2kSvs(sourceRgb, path, compression == SvsCompression.Jp2kYcbcr, mpp, appMag, tile); return; }
        using var src = Vips.Image.NewFromFile(sourceRgb, access: Vips.Enums.Access.Sequential);
        if (src.Bands != 3 || src.Format != Vips.Enums.BandFormat.Uchar)
            throw new InputFileException(sourceRgb, $"an SVS slide is written from an 8-bit RGB image (this one has {src.Bands} band(s) of {src.Format})");
        var desc = string.Create(CultureInfo.InvariantCulture,
            $"Aperio Image Library v12.0.15 \r\n{src.Width}x{src.Height} [0,0 {src.Width}x{src.Height}] ({tile}x{tile}) JPEG/RGB Q={quality}|AppMag = {appMag}|MPP = {mpp:0.####}|Filename = {Path.GetFileNameWithoutExtension(path)}");
        using var described = src.Mutate(m => m.Set(Vips.GValue.GStrType, "image-description", desc));
        // pixels per centimetre in the TIFF resolution tags as well, for readers that look there
        double ppcm = 10_000.0 / mpp;
        IO.SafePaths.WriteByName(path, ".tif", tmp => described.Tiffsave(tmp, compression: Vips.Enums.ForeignTiffCompression.Jpeg, q: quality, tile: true,
            tileWidth: tile, tileHeight: tile, pyramid: true, bigtiff: (long)src.Width * src.Height * 3 > 3_000_000_000L,
            resunit: Vips.Enums.ForeignTiffResunit.Cm, xres: ppcm / 10, yres: ppcm / 10), "slide");
    }

    /// <summary>The program that encodes JPEG 2000 tiles (Debian's <c>libopenjp2-tools</c>).</summary>
    public const string Jp2kEncoder = "opj_compress";

    /// <summary>Whether <see cref="Jp2kEncoder"/> is on the PATH.</summary>
    public static bool Jp2kAvailable =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Any(d => File.Exists(Path.Combine(d, Jp2kEncoder)));

    /// <summary>
    /// An Aperio SVS whose tiles are JPEG 2000 codestreams, as OpenSlide reads them (openslide-vendor-aperio.c): TIFF
    /// Compression 33005 holds RGB codestreams (the colour transform, if any, inside JPEG 2000: here the reversible one),
    /// 33003 holds YCbCr ones — the components are Y, Cb and Cr themselves (JPEG's full-range BT.601), Cb and Cr at half
    /// the horizontal resolution (4:2:2, Aperio's layout), which OpenSlide turns into RGB. Every tile is coded
    /// losslessly (the 5/3 wavelet), so a 33005 slide gives back its source pixels exactly and a 33003 one within the
    /// rounding of the colour conversion and the chroma halving. Levels halve until one tile holds the level; each is
    /// one streaming pass of libvips over the source, encoded a row of tiles at a time by <c>opj_compress</c>.
    /// </summary>
    public static void WriteJp2kSvs(string sourceRgb, string path, bool ycbcr, double mpp = 0.499, int appMag = 20, int tile = 256)
    {
        if (!Jp2kAvailable) throw new InvalidOperationException($"JPEG 2000 tiles are encoded by {Jp2kEncoder}: install Debian's libopenjp2-tools");
        int W, H;
        using (var probe = Vips.Image.NewFromFile(sourceRgb))
        {
            if (probe.Bands != 3 || probe.Format != Vips.Enums.BandFormat.Uchar)
                throw new InputFileException(sourceRgb, $"an SVS slide is written from an 8-bit RGB image (this one has {probe.Bands} band(s) of {probe.Format})");
            (W, H) = (probe.Width, probe.Height);
        }
        var I = CultureInfo.InvariantCulture;
        ushort compressionTag = ycbcr ? (ushort)33003 : (ushort)33005;
        string head = string.Create(I, $"Aperio Image Library v12.0.15 \r\n{W}x{H} [0,0 {W}x{H}] ({tile}x{tile}) J2K/KDU Q=100");
        string props = string.Create(I, $"|AppMag = {appMag}|MPP = {mpp:0.####}|Filename = {Path.GetFileNameWithoutExtension(path)}");
        var scratch = Directory.CreateTempSubdirectory("actorseg-j2k-");
        try
        {
            IO.SafePaths.WriteAtomic(path, stream =>
            {
                var tiff = new PrecompressedTiffWriter(stream, bigTiff: (long)W * H * 3 > 3_000_000_000L);
                for (int level = 0, factor = 1; ; level++, factor *= 2)
                {
                    using var src = Vips.Image.NewFromFile(sourceRgb, access: Vips.Enums.Access.Sequential);
                    using var img = factor == 1 ? src.Copy() : src.Shrink(factor, factor);
                    int w = img.Width, h = img.Height;
                    string desc = level == 0 ? head + props : string.Create(I, $"Aperio Image Library v12.0.15 \r\n{W}x{H} -> {w}x{h} - ") + props;
                    tiff.BeginDirectory(new TiffDirectory(w, h, tile, compressionTag, ycbcr ? (ushort)6 : (ushort)2, Description: desc,
                        PixelSizeMicrons: mpp * W / w, YCbCrSubsampling: ycbcr ? ((ushort)2, (ushort)1) : null));
                    for (int y0 = 0; y0 < h; y0 += tile)
                    {
                        int bh = Math.Min(tile, h - y0);
                        byte[] band;
                        using (var crop = img.Crop(0, y0, w, bh)) band = crop.WriteToMemory<byte>();
                        int cols = (w + tile - 1) / tile;
                        foreach (var f in scratch.GetFiles()) f.Delete();
                        for (int c = 0; c < cols; c++)
                            File.WriteAllBytes(Path.Combine(scratch.FullName, $"t{c:D6}.raw"), PlanarTile(band, w, bh, c * tile, tile, ycbcr));
                        EncodeJp2k(scratch.FullName, tile, ycbcr);
                        for (int c = 0; c < cols; c++)
                            tiff.WriteTile(c, y0 / tile, File.ReadAllBytes(Path.Combine(scratch.FullName, $"t{c:D6}.J2K")));
                    }
                    tiff.EndDirectory();
                    if (Math.Max(w, h) <= tile) break;
                }
            }, "slide");
        }
        finally { scratch.Delete(recursive: true); }
    }

    /// <summary>One tile of a band as opj_compress reads raw input: the component planes one after another, the tile
    /// padded with white. RGB: three full planes; YCbCr: Y full, Cb and Cr each half as wide (a pixel pair's mean).</summary>
    private static byte[] PlanarTile(byte[] band, int w, int bh, int x0, int tile, bool ycbcr)
    {
        int bw = Math.Min(tile, w - x0), n = tile * tile;
        if (!ycbcr)
        {
            var p = new byte[3 * n];
            p.AsSpan().Fill(255);
            for (int y = 0; y < bh; y++)
                for (int x = 0; x < bw; x++)
                {
                    int s = 3 * (y * w + x0 + x);
                    for (int c = 0; c < 3; c++) p[c * n + y * tile + x] = band[s + c];
                }
            return p;
        }
        int hw = tile / 2;
        var q = new byte[n + 2 * hw * tile];
        q.AsSpan(0, n).Fill(255);
        q.AsSpan(n).Fill(128);
        double R(int x, int y, int c) => x < bw && y < bh ? band[3 * (y * w + x0 + x) + c] : 255;
        static byte Clamp(double v) => (byte)Math.Clamp(Math.Round(v), 0, 255);
        for (int y = 0; y < bh; y++)
            for (int x = 0; x < bw; x++)
                q[y * tile + x] = Clamp(0.299 * R(x, y, 0) + 0.587 * R(x, y, 1) + 0.114 * R(x, y, 2));
        for (int y = 0; y < bh; y++)
            for (int x = 0; 2 * x < bw; x++)
            {
                double r = (R(2 * x, y, 0) + R(2 * x + 1, y, 0)) / 2, g = (R(2 * x, y, 1) + R(2 * x + 1, y, 1)) / 2, b = (R(2 * x, y, 2) + R(2 * x + 1, y, 2)) / 2;
                q[n + y * hw + x] = Clamp(128 - 0.168736 * r - 0.331264 * g + 0.5 * b);
                q[n + hw * tile + y * hw + x] = Clamp(128 + 0.5 * r - 0.418688 * g - 0.081312 * b);
            }
        return q;
    }

    /// <summary>Every <c>*.raw</c> tile in <paramref name="dir"/> → a lossless JPEG 2000 codestream <c>*.J2K</c> beside it, in one opj_compress run.</summary>
    private static void EncodeJp2k(string dir, int tile, bool ycbcr)
    {
        var psi = new ProcessStartInfo(Jp2kEncoder) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-ImgDir", dir, "-OutFor", "J2K", "-F", string.Create(CultureInfo.InvariantCulture, $"{tile},{tile},3,8,u{(ycbcr ? "@1x1:2x1:2x1" : "")}") })
            psi.ArgumentList.Add(a);
        // 33005: the reversible colour transform inside the codestream; 33003: the components are already Y, Cb, Cr
        psi.ArgumentList.Add("-mct"); psi.ArgumentList.Add(ycbcr ? "0" : "1");
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {Jp2kEncoder}");
        var err = p.StandardError.ReadToEndAsync();
        var outText = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        var missing = Directory.GetFiles(dir, "*.raw").FirstOrDefault(r => !File.Exists(Path.ChangeExtension(r, ".J2K")));
        if (p.ExitCode != 0 || missing is not null)
        {
            var said = (err.Result + outText).Trim();
            throw new InvalidOperationException($"{Jp2kEncoder} failed (exit {p.ExitCode}{(missing is null ? "" : ", no codestream for " + Path.GetFileName(missing))}): {said[Math.Max(0, said.Length - 400)..]}");
        }
    }
}

/// <summary>How the tiles of an SVS written by <see cref="SlideWriter"/> are compressed.</summary>
public enum SvsCompression
{
    /// <summary>JPEG (TIFF compression 7), lossy, by libvips.</summary>
    Jpeg,
    /// <summary>JPEG 2000 codestreams of RGB (Aperio's compression 33005), lossless.</summary>
    Jp2kRgb,
    /// <summary>JPEG 2000 codestreams of YCbCr 4:2:2 (Aperio's compression 33003), lossless codestreams.</summary>
    Jp2kYcbcr,
}
