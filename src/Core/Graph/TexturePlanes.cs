using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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

    /// <summary>Fills <paramref name="dest"/> (core pixels × 2, interleaved) from the read region's raw samples, in units of
    /// <paramref name="sigma"/> grey levels of the channel-summed intensity (the channels' summed standard deviations for
    /// the texture features, exact for one channel; a fixed unit per channel for the absolute ones).</summary>
    public static void Compute(ReadOnlySpan<ushort> raw, int channels, PixelRect read, PixelRect core, int imageWidth, int imageHeight,
        double sigma, Span<ushort> dest)
    {
        if (read.X > core.X - Math.Min(R, core.X) || read.Y > core.Y - Math.Min(R, core.Y)
            || read.Right < Math.Min(imageWidth, core.Right + R) || read.Bottom < Math.Min(imageHeight, core.Bottom + R))
            throw new ArgumentException("the read region must extend at least 2 px beyond the core (or to the image border)");
        double inv = Scale / Math.Max(sigma, 1e-9);
        int rw = read.W, pw = core.W + 2 * R, ph = core.H + 2 * R, cw = core.W;
        const int win = 2 * R + 1, n = win * win;
        var ipool = ArrayPool<int>.Shared; var lpool = ArrayPool<long>.Shared;
        // the channel-summed intensity around the core, clamped at the image border, one padded row at a time in a ring
        // of the last five; horizontal 5-sums (and of squares) of those rows in a second ring; their vertical sums. All
        // integers: exact whatever the order. An output row reads the five padded rows of its window (the sums) and the
        // three around its centre (the gradient).
        int[] ring = ipool.Rent(win * pw), rx = ipool.Rent(pw), hs = ipool.Rent(win * cw), vs = ipool.Rent(cw);
        long[] sq = lpool.Rent(pw), hs2 = lpool.Rent(win * cw), vs2 = lpool.Rent(cw);
        try
        {
            for (int x = 0; x < pw; x++) rx[x] = Math.Clamp(core.X - R + x, 0, imageWidth - 1) - read.X;
            Array.Clear(vs, 0, cw); Array.Clear(vs2, 0, cw);
            for (int r = 0; r < ph; r++)
            {
                var pr = ring.AsSpan((r % win) * pw, pw);
                int ry = Math.Clamp(core.Y - R + r, 0, imageHeight - 1) - read.Y;
                if (channels == 1)
                {
                    var src = raw.Slice(ry * rw, rw);
                    for (int x = 0; x < pw; x++) pr[x] = src[rx[x]];
                }
                else
                    for (int x = 0; x < pw; x++)
                    {
                        int p = (ry * rw + rx[x]) * channels, v = 0;
                        for (int c = 0; c < channels; c++) v += raw[p + c];
                        pr[x] = v;
                    }
                var h1 = hs.AsSpan((r % win) * cw, cw); var h2 = hs2.AsSpan((r % win) * cw, cw);
                if (r >= win) { Subtract(vs.AsSpan(0, cw), h1); Subtract(vs2.AsSpan(0, cw), h2); } // the row leaving the window
                for (int x = 0; x < pw; x++) sq[x] = (long)pr[x] * pr[x];
                WindowSums((ReadOnlySpan<int>)pr, h1); WindowSums(sq.AsSpan(0, pw), h2);
                Add(vs.AsSpan(0, cw), h1); Add(vs2.AsSpan(0, cw), h2);
                int y = r - 2 * R; // output row whose window ends at padded row r; its centre is padded row r - R
                if (y < 0) continue;
                OutputRow(ring.AsSpan(((r - R - 1) % win) * pw, pw), ring.AsSpan(((r - R) % win) * pw, pw), ring.AsSpan(((r - R + 1) % win) * pw, pw),
                    vs.AsSpan(0, cw), vs2.AsSpan(0, cw), inv, dest.Slice(y * cw * Count, cw * Count));
            }
        }
        finally
        {
            ipool.Return(ring); ipool.Return(rx); ipool.Return(hs); ipool.Return(vs);
            lpool.Return(sq); lpool.Return(hs2); lpool.Return(vs2);
        }

        static void WindowSums<T>(ReadOnlySpan<T> row, Span<T> sums) where T : unmanaged, INumber<T>
        {
            // sums[x] = row[x] + row[x + 1] + … + row[x + 4] (integers: any order gives the same value)
            int i = 0, len = sums.Length, L = Vector<T>.Count;
            if (Vector.IsHardwareAccelerated)
                for (; i + L <= len; i += L)
                    (new Vector<T>(row[i..]) + new Vector<T>(row[(i + 1)..]) + new Vector<T>(row[(i + 2)..])
                        + new Vector<T>(row[(i + 3)..]) + new Vector<T>(row[(i + 4)..])).CopyTo(sums[i..]);
            for (; i < len; i++) sums[i] = row[i] + row[i + 1] + row[i + 2] + row[i + 3] + row[i + 4];
        }
        static void Add<T>(Span<T> acc, ReadOnlySpan<T> v) where T : unmanaged, INumber<T>
        {
            int i = 0, L = Vector<T>.Count;
            if (Vector.IsHardwareAccelerated) for (; i + L <= acc.Length; i += L) (new Vector<T>(acc[i..]) + new Vector<T>(v[i..])).CopyTo(acc[i..]);
            for (; i < acc.Length; i++) acc[i] += v[i];
        }
        static void Subtract<T>(Span<T> acc, ReadOnlySpan<T> v) where T : unmanaged, INumber<T>
        {
            int i = 0, L = Vector<T>.Count;
            if (Vector.IsHardwareAccelerated) for (; i + L <= acc.Length; i += L) (new Vector<T>(acc[i..]) - new Vector<T>(v[i..])).CopyTo(acc[i..]);
            for (; i < acc.Length; i++) acc[i] -= v[i];
        }
    }

    /// <summary>
    /// One output row: per pixel g = √(dx² + dy²) · ½ (central differences) and sd = √max(0, n·Σv² − (Σv)²) / n, each
    /// times <paramref name="inv"/>, rounded half to even and capped at 65535. The vector path performs the same IEEE
    /// operations (exact integer-to-double conversions, correctly rounded square roots) as the scalar one: the same bits.
    /// </summary>
    /// <param name="up">the padded row above the output row's centre row</param>
    /// <param name="mid">the centre row, padded: output pixel x is mid[x + 2]</param>
    /// <param name="down">the padded row below</param>
    private static void OutputRow(ReadOnlySpan<int> up, ReadOnlySpan<int> mid, ReadOnlySpan<int> down, ReadOnlySpan<int> vs, ReadOnlySpan<long> vs2, double inv, Span<ushort> outRow)
    {
        const int n = (2 * R + 1) * (2 * R + 1);
        int cw = vs.Length, x = 0;
        if (Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported && BitConverter.IsLittleEndian)
        {
            // eight pixels at a time; the two rounded values of a pixel packed into one 32-bit lane (gradient low, local
            // deviation high) are its two interleaved output samples on a little-endian machine
            ref int pu = ref MemoryMarshal.GetReference(up), pm = ref MemoryMarshal.GetReference(mid), pd = ref MemoryMarshal.GetReference(down);
            ref int ps = ref MemoryMarshal.GetReference(vs); ref long ps2 = ref MemoryMarshal.GetReference(vs2);
            ref uint po = ref Unsafe.As<ushort, uint>(ref MemoryMarshal.GetReference(outRow));
            var vinv = Vector512.Create(inv); var half = Vector512.Create(0.5); var vn = Vector512.Create((double)n);
            var cap = Vector512.Create(65535.0); var zero = Vector512<double>.Zero; var nl = Vector512.Create((long)n);
            for (; x + 8 <= cw; x += 8)
            {
                static Vector512<long> L8(ref int r, int at) => Vector512.WidenLower(Vector512.Create(Vector256.LoadUnsafe(ref r, (nuint)at), Vector256<int>.Zero));
                var dx = L8(ref pm, R + x + 1) - L8(ref pm, R + x - 1);
                var dy = L8(ref pd, R + x) - L8(ref pu, R + x);
                var sum = L8(ref ps, x);
                var sum2 = Vector512.LoadUnsafe(ref ps2, (nuint)x);
                var gv = Vector512.Sqrt(Vector512.ConvertToDouble(dx * dx + dy * dy)) * half;
                var sdv = Vector512.Sqrt(Vector512.Max(zero, Vector512.ConvertToDouble(nl * sum2 - sum * sum))) / vn;
                var gi = System.Runtime.Intrinsics.X86.Avx512F.ConvertToVector256Int32(Vector512.Min(cap, Vector512.Round(gv * vinv)));
                var si = System.Runtime.Intrinsics.X86.Avx512F.ConvertToVector256Int32(Vector512.Min(cap, Vector512.Round(sdv * vinv)));
                (gi.AsUInt32() | (si.AsUInt32() << 16)).StoreUnsafe(ref po, (nuint)x);
            }
        }
        if (Vector256.IsHardwareAccelerated)
        {
            ref int pu = ref MemoryMarshal.GetReference(up), pm = ref MemoryMarshal.GetReference(mid), pd = ref MemoryMarshal.GetReference(down);
            var vinv = Vector256.Create(inv); var half = Vector256.Create(0.5); var vn = Vector256.Create((double)n);
            var cap = Vector256.Create(65535.0); var zero = Vector256<double>.Zero; var nl = Vector256.Create((long)n);
            Span<double> g = stackalloc double[4], sd = stackalloc double[4];
            for (; x + 4 <= cw; x += 4)
            {
                static Vector256<long> L4(ref int r, int at) => Vector256.WidenLower(Vector256.Create(Vector128.LoadUnsafe(ref r, (nuint)at), Vector128<int>.Zero));
                var dx = L4(ref pm, R + x + 1) - L4(ref pm, R + x - 1);
                var dy = L4(ref pd, R + x) - L4(ref pu, R + x);
                var sum = Vector256.WidenLower(Vector256.Create(Vector128.Create(vs.Slice(x, 4)), Vector128<int>.Zero));
                var sum2 = Vector256.Create(vs2.Slice(x, 4));
                var gv = Vector256.Sqrt(Vector256.ConvertToDouble(dx * dx + dy * dy)) * half;
                var sdv = Vector256.Sqrt(Vector256.Max(zero, Vector256.ConvertToDouble(nl * sum2 - sum * sum))) / vn;
                Vector256.Min(cap, Vector256.Round(gv * vinv)).CopyTo(g);
                Vector256.Min(cap, Vector256.Round(sdv * vinv)).CopyTo(sd);
                for (int k = 0; k < 4; k++) { outRow[(x + k) * Count] = (ushort)g[k]; outRow[(x + k) * Count + 1] = (ushort)sd[k]; }
            }
        }
        for (; x < cw; x++)
        {
            long sum = vs[x], sum2 = vs2[x];
            long dx = mid[R + x + 1] - mid[R + x - 1], dy = down[R + x] - up[R + x];
            double g = Math.Sqrt((double)(dx * dx + dy * dy)) * 0.5;
            double sd = Math.Sqrt(Math.Max(0, (double)(n * sum2 - sum * sum))) / n;
            outRow[x * Count] = (ushort)Math.Min(65535, Math.Round(g * inv));
            outRow[x * Count + 1] = (ushort)Math.Min(65535, Math.Round(sd * inv));
        }
    }
}
