using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using Vips = NetVips;

namespace ActorSeg.Core.IO;

/// <summary>
/// A painted mask against its ground truth, streamed band by band (never a whole mask in memory): the pixel confusion
/// matrix and, optionally, a downscaled error map PNG (the image in grey, false positives in one colour, false
/// negatives in another, "right foreground, wrong class" in a third).
/// </summary>
public static class MaskComparison
{
    /// <summary>What the comparison counted. <see cref="Confusion"/> is row = true class, column = predicted class.</summary>
    public sealed record Result(long[] Confusion, int Classes, long Unlabelled, long FalsePositives, long FalseNegatives, long WrongClass,
        int MapWidth, int MapHeight);

    /// <summary>Error map colours (#rrggbb), also shown in the report's legend.</summary>
    public const string FalsePositiveColor = "#ff00ff", FalseNegativeColor = "#00c8ff", WrongClassColor = "#ffd000";

    private const byte Unlabelled = 255;

    /// <param name="predictedMask">the painted mask (mask.tif, class ids)</param>
    /// <param name="truthMask">the ground truth, read and mapped exactly as the graph job reads it (first band, <paramref name="mode"/>, <paramref name="ignoreValue"/>)</param>
    /// <param name="classes">the model's class count: a class id at or above it in either mask is an error naming the file</param>
    /// <param name="errorMapPng">where to write the error map (null: none); needs <paramref name="image"/></param>
    /// <param name="image">the segmented image, drawn in grey under the errors</param>
    /// <param name="maxSide">the error map's longer side (as the overlay's)</param>
    public static Result Compare(string predictedMask, string truthMask, int classes, MaskMode mode = MaskMode.Binary, int? ignoreValue = null,
        string? errorMapPng = null, string? image = null, int maxSide = 1536, int series = -1)
    {
        if (classes < 1 || classes > 255) throw new ArgumentOutOfRangeException(nameof(classes), $"{classes} classes");
        using var pred = VipsImageSource.Open(predictedMask, 0, firstBandOnly: true);
        using var truth = VipsImageSource.Open(truthMask, 0, firstBandOnly: true);
        int W = pred.Width, H = pred.Height;
        if (truth.Width != W || truth.Height != H)
            throw new InputFileException(truthMask, $"the mask is {truth.Width}x{truth.Height} but the segmentation {predictedMask} is {W}x{H}");
        double scale = Math.Min(1.0, (double)maxSide / Math.Max(W, H));
        int tw = Math.Max(1, (int)Math.Round(W * scale)), th = Math.Max(1, (int)Math.Round(H * scale));
        bool map = errorMapPng is not null;
        // per error-map pixel: labelled pixels of its block, false positives, false negatives, wrong class
        var counts = map ? new int[(long)tw * th * 4] : [];
        var ox = new int[W];
        for (int x = 0; x < W; x++) ox[x] = Math.Min(tw - 1, (int)(x * scale));

        var cm = new long[classes * classes];
        long unlabelled = 0, fp = 0, fn = 0, wrong = 0;
        int band = Math.Clamp((1 << 22) / Math.Max(1, W), 1, 1024); // about 4 megapixels a band
        var praw = new ushort[(long)band * W];
        var traw = new ushort[(long)band * W];
        var tcls = new byte[(long)band * W];
        for (int y0 = 0; y0 < H; y0 += band)
        {
            int bh = Math.Min(band, H - y0), n = bh * W;
            pred.ReadRegion(0, y0, W, bh, praw.AsSpan(0, n));
            truth.ReadRegion(0, y0, W, bh, traw.AsSpan(0, n));
            GraphJob.MapMask(traw.AsSpan(0, n), tcls.AsSpan(0, n), mode, ignoreValue, truthMask);
            for (int y = 0; y < bh; y++)
            {
                int oy = Math.Min(th - 1, (int)((y0 + y) * scale));
                for (int x = 0, i = y * W; x < W; x++, i++)
                {
                    int t = tcls[i], p = praw[i];
                    if (t == Unlabelled) { unlabelled++; continue; }
                    if (t >= classes) throw new InputFileException(truthMask, $"class {t} at ({x}, {y0 + y}) is not known to the model ({classes} classes)");
                    if (p >= classes) throw new InputFileException(predictedMask, $"class {p} at ({x}, {y0 + y}) is not known to the model ({classes} classes)");
                    cm[t * classes + p]++;
                    int kind = t == p ? 0 : t == 0 ? 1 : p == 0 ? 2 : 3;
                    if (kind == 1) fp++; else if (kind == 2) fn++; else if (kind == 3) wrong++;
                    if (map)
                    {
                        long o = ((long)oy * tw + ox[x]) * 4;
                        counts[o]++;
                        if (kind > 0) counts[o + kind]++;
                    }
                }
            }
        }
        if (map) WriteMap(errorMapPng!, image ?? throw new ArgumentNullException(nameof(image)), W, H, scale, tw, th, counts, series);
        return new Result(cm, classes, unlabelled, fp, fn, wrong, map ? tw : 0, map ? th : 0);
    }

    private static void WriteMap(string png, string image, int W, int H, double scale, int tw, int th, int[] counts, int series)
    {
        byte[] grey;
        int gw, gh;
        using (var small = MaskPainter.Preview(image, W, H, scale, series)) // one streaming pass over the image (a whole slide: a coarse level)
        {
            double lo = small.Percent(1), hi = small.Percent(99);
            if (hi <= lo) hi = lo + 1;
            using var g8 = small.Linear(new[] { 255.0 / (hi - lo) }, new[] { -lo * 255.0 / (hi - lo) }).Cast(Vips.Enums.BandFormat.Uchar);
            grey = g8.WriteToMemory<byte>();
            (gw, gh) = (g8.Width, g8.Height);
        }
        var colours = new[] { FalsePositiveColor, FalseNegativeColor, WrongClassColor }.Select(ClassTable.Rgb).ToArray();
        var rgb = new byte[(long)tw * th * 3];
        for (int y = 0; y < th; y++)
            for (int x = 0; x < tw; x++)
            {
                long o = (long)y * tw + x;
                byte g = grey[Math.Min(y, gh - 1) * gw + Math.Min(x, gw - 1)];
                double r = g, gg = g, b = g;
                int total = counts[o * 4], best = 0, bestKind = 0;
                for (int k = 1; k <= 3; k++) if (counts[o * 4 + k] > best) { best = counts[o * 4 + k]; bestKind = k; }
                if (bestKind > 0)
                {
                    // the block's commonest error, stronger the more of the block is wrong (every wrong pixel at full size)
                    int errors = counts[o * 4 + 1] + counts[o * 4 + 2] + counts[o * 4 + 3];
                    double a = 0.35 + 0.55 * Math.Min(1.0, 2.0 * errors / Math.Max(1, total));
                    var c = colours[bestKind - 1];
                    r = g * (1 - a) + c[0] * a; gg = g * (1 - a) + c[1] * a; b = g * (1 - a) + c[2] * a;
                }
                rgb[o * 3] = (byte)Math.Round(r); rgb[o * 3 + 1] = (byte)Math.Round(gg); rgb[o * 3 + 2] = (byte)Math.Round(b);
            }
        SafePaths.WriteByName(png, ".png", tmp =>
        {
            using var img = Vips.Image.NewFromMemory(rgb, tw, th, 3, Vips.Enums.BandFormat.Uchar);
            using var srgb = img.Copy(interpretation: Vips.Enums.Interpretation.Srgb);
            srgb.Pngsave(tmp);
        }, "error map");
    }
}
