using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Graph;

/// <summary>
/// Extra per-pixel planes that let nodes see texture, not only brightness (colonies in phase contrast differ from
/// background by texture): gradient magnitude (central differences) and local standard deviation (5×5 window), both
/// of the channel-summed raw intensity, in units of the image's global standard deviation, quantised to 1/256 so
/// that per-node statistics stay exact and mergeable across tiles like the raw channels.
/// Every value depends only on the pixel's 5×5 neighbourhood (clamped at the image border, never at a tile border).
/// </summary>
public static class TexturePlanes
{
    public const int Count = 2;
    public const double Scale = 256.0;
    public static readonly string[] Prefixes = ["grad", "lstd"];
    private const int R = 2;

    /// <summary>Fills <paramref name="dest"/> (core pixels × 2, interleaved) from the read region's raw samples.</summary>
    public static void Compute(ReadOnlySpan<ushort> raw, int channels, PixelRect read, PixelRect core, int imageWidth, int imageHeight,
        ImageStatistics stats, Span<ushort> dest)
    {
        if (read.X > core.X - Math.Min(R, core.X) || read.Y > core.Y - Math.Min(R, core.Y)
            || read.Right < Math.Min(imageWidth, core.Right + R) || read.Bottom < Math.Min(imageHeight, core.Bottom + R))
            throw new ArgumentException("the read region must extend at least 2 px beyond the core (or to the image border)");
        // the channel-summed image's standard deviation, approximated by the sum of the channels' (exact for one channel)
        double sigma = 0;
        for (int c = 0; c < channels; c++) sigma += stats.Std[c];
        double inv = Scale / Math.Max(sigma, 1e-9);
        int rw = read.W, pw = core.W + 2 * R, ph = core.H + 2 * R;
        // the channel-summed intensity around the core, clamped at the image border
        var plane = new int[pw * ph];
        var rx = new int[pw]; // read columns, clamped at the image border
        for (int x = 0; x < pw; x++) rx[x] = Math.Clamp(core.X - R + x, 0, imageWidth - 1) - read.X;
        for (int y = 0; y < ph; y++)
        {
            int ry = Math.Clamp(core.Y - R + y, 0, imageHeight - 1) - read.Y;
            var dst = plane.AsSpan(y * pw, pw);
            if (channels == 1)
            {
                var src = raw.Slice(ry * rw, rw);
                for (int x = 0; x < pw; x++) dst[x] = src[rx[x]];
                continue;
            }
            for (int x = 0; x < pw; x++)
            {
                int p = (ry * rw + rx[x]) * channels, v = 0;
                for (int c = 0; c < channels; c++) v += raw[p + c];
                dst[x] = v;
            }
        }
        const int win = 2 * R + 1, n = win * win;
        // running sums, all in integers (so exact whatever the order): horizontal 5-sums of each padded row slide along
        // the row; the vertical sums of those add the newest row and drop the one five rows up (kept in a ring)
        int cw = core.W;
        var hs = new long[win * cw]; var hs2 = new long[win * cw];
        var vs = new long[cw]; var vs2 = new long[cw];
        for (int r = 0; r < ph; r++)
        {
            var h1 = hs.AsSpan((r % win) * cw, cw); var h2 = hs2.AsSpan((r % win) * cw, cw);
            if (r >= win)
                for (int x = 0; x < cw; x++) { vs[x] -= h1[x]; vs2[x] -= h2[x]; } // the row leaving the window
            var pr = plane.AsSpan(r * pw, pw);
            long a = 0, a2 = 0;
            for (int i = 0; i < win; i++) { long v = pr[i]; a += v; a2 += v * v; }
            h1[0] = a; h2[0] = a2;
            for (int x = 1; x < cw; x++)
            {
                long vin = pr[x + win - 1], vout = pr[x - 1];
                a += vin - vout; a2 += vin * vin - vout * vout;
                h1[x] = a; h2[x] = a2;
            }
            for (int x = 0; x < cw; x++) { vs[x] += h1[x]; vs2[x] += h2[x]; }
            int y = r - 2 * R; // output row whose window ends at padded row r
            if (y < 0) continue;
            int c0 = (y + R) * pw + R;
            var outRow = dest.Slice(y * cw * Count, cw * Count);
            for (int x = 0; x < cw; x++)
            {
                long sum = vs[x], sum2 = vs2[x];
                long dx = plane[c0 + x + 1] - plane[c0 + x - 1], dy = plane[c0 + pw + x] - plane[c0 - pw + x];
                double g = Math.Sqrt((double)(dx * dx + dy * dy)) * 0.5;
                double sd = Math.Sqrt(Math.Max(0, (double)(n * sum2 - sum * sum))) / n;
                outRow[x * Count] = (ushort)Math.Min(65535, Math.Round(g * inv));
                outRow[x * Count + 1] = (ushort)Math.Min(65535, Math.Round(sd * inv));
            }
        }
    }
}
