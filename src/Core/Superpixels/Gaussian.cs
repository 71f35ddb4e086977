using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ActorSeg.Core.Superpixels;

/// <summary>
/// Separable Gaussian smoothing (scipy's gaussian_filter: truncate 4 sigma, 'reflect' borders).
/// Every output pixel is computed by the same sequence of float operations whatever the region size or
/// SIMD path, so a tile and the whole image give bit-identical values for pixels the halo covers.
/// </summary>
public static class Gaussian
{
    public static float[] Kernel(double sigma)
    {
        int r = (int)(4.0 * sigma + 0.5);
        var k = new double[2 * r + 1];
        double sum = 0;
        for (int i = -r; i <= r; i++) { k[i + r] = Math.Exp(-0.5 * i * i / (sigma * sigma)); sum += k[i + r]; }
        var f = new float[k.Length];
        for (int i = 0; i < k.Length; i++) f[i] = (float)(k[i] / sum);
        return f;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Reflect(int i, int n)
    {
        // scipy 'reflect': (d c b a | a b c d | d c b a)
        if (n == 1) return 0;
        int period = 2 * n;
        i %= period; if (i < 0) i += period;
        return i < n ? i : period - 1 - i;
    }

    /// <summary>Smooths <paramref name="src"/> (w×h) into <paramref name="dst"/> (which must not overlap it), one row at a
    /// time: the vertical pass of a row into the middle of a padded row buffer, then its horizontal pass.</summary>
    /// <remarks>Every output value is k[0]·s[0] + k[1]·s[1] + … added in that order, in float, without fused multiply-adds,
    /// whichever path computes it (vertical pass first, then horizontal); four vectors are worked at once only so that
    /// their additions overlap.</remarks>
    public static void Blur(ReadOnlySpan<float> src, Span<float> dst, int w, int h, float[] k)
    {
        int r = k.Length / 2, L = k.Length;
        if (src.Length < w * h || dst.Length < w * h) throw new ArgumentException("blur buffers smaller than the image");
        if (r == 0) { src[..(w * h)].CopyTo(dst); return; }
        var pool = System.Buffers.ArrayPool<float>.Shared;
        float[] pad = pool.Rent(w + 2 * r + 4 * Vector<float>.Count);
        Span<int> rowAt = L <= 256 ? stackalloc int[L] : new int[L];
        try
        {
            for (int y = 0; y < h; y++)
            {
                for (int j = 0; j < L; j++) rowAt[j] = Reflect(y + j - r, h) * w;
                VerticalRow(src, rowAt, k, pad.AsSpan(r, w));
                HorizontalRow(pad, w, k, dst.Slice(y * w, w));
            }
        }
        finally { pool.Return(pad); }
    }

    /// <summary>
    /// Smooths channel <paramref name="c"/> of <paramref name="raw"/> (w×h, <paramref name="channels"/> interleaved) in
    /// z units, (v − <paramref name="mu"/>) · <paramref name="scale"/> in float, into <paramref name="dst"/>: the same
    /// values as z-scoring the whole plane and calling <see cref="Blur"/>, without that plane. The rows the vertical pass
    /// reads are z-scored once into a ring of k.Length rows: with one reflection at most (radius ≤ h), every row an
    /// output row reads lies within its radius, so the ring always holds them.
    /// </summary>
    public static void BlurZScored(ReadOnlySpan<ushort> raw, int channels, int c, float mu, float scale, Span<float> dst, int w, int h, float[] k)
    {
        int r = k.Length / 2, L = k.Length, n = w * h;
        if (raw.Length < n * channels || dst.Length < n) throw new ArgumentException("blur buffers smaller than the image");
        var pool = System.Buffers.ArrayPool<float>.Shared;
        if (r == 0 || r > h)
        {
            // no smoothing, or a region shorter than the kernel's radius (reflected more than once): the whole plane
            float[] z = pool.Rent(n);
            try
            {
                ZScoreRow(raw, channels, c, 0, n, mu, scale, z);
                if (r == 0) z.AsSpan(0, n).CopyTo(dst); else Blur(z.AsSpan(0, n), dst, w, h, k);
            }
            finally { pool.Return(z); }
            return;
        }
        float[] ring = pool.Rent(L * w), pad = pool.Rent(w + 2 * r + 4 * Vector<float>.Count);
        Span<int> rowAt = L <= 256 ? stackalloc int[L] : new int[L];
        try
        {
            int ready = 0; // rows [0, ready) have been z-scored (the last L of them are in the ring)
            for (int y = 0; y < h; y++)
            {
                for (int last = Math.Min(h - 1, y + r); ready <= last; ready++)
                    ZScoreRow(raw, channels, c, ready * w, w, mu, scale, ring.AsSpan(ready % L * w, w));
                for (int j = 0; j < L; j++) rowAt[j] = Reflect(y + j - r, h) % L * w;
                VerticalRow(ring, rowAt, k, pad.AsSpan(r, w));
                HorizontalRow(pad, w, k, dst.Slice(y * w, w));
            }
        }
        finally { pool.Return(ring); pool.Return(pad); }
    }

    private static void ZScoreRow(ReadOnlySpan<ushort> raw, int channels, int c, int start, int count, float mu, float scale, Span<float> dst)
    {
        if (channels == 1)
        {
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                // 16 samples at a time, widened to int and converted exactly to float: the same (v − mu) · scale per sample
                var vmu = Vector256.Create(mu); var vs = Vector256.Create(scale);
                ref ushort r0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(raw), start);
                ref float d0 = ref MemoryMarshal.GetReference(dst);
                for (; i + 16 <= count; i += 16)
                {
                    var v = Vector256.LoadUnsafe(ref r0, (nuint)i);
                    var lo = Vector256.ConvertToSingle(Vector256.WidenLower(v).AsInt32());
                    var hi = Vector256.ConvertToSingle(Vector256.WidenUpper(v).AsInt32());
                    ((lo - vmu) * vs).StoreUnsafe(ref d0, (nuint)i);
                    ((hi - vmu) * vs).StoreUnsafe(ref d0, (nuint)(i + 8));
                }
            }
            for (; i < count; i++) dst[i] = (raw[start + i] - mu) * scale;
            return;
        }
        for (int i = 0; i < count; i++) dst[i] = (raw[(start + i) * channels + c] - mu) * scale;
    }

    /// <summary>One output row of the vertical pass: out[x] = Σ_j k[j] · src[rowAt[j] + x], in j order.</summary>
    private static void VerticalRow(ReadOnlySpan<float> src, ReadOnlySpan<int> rowAt, float[] k, Span<float> outRow)
    {
        int w = outRow.Length, vw = Vector<float>.Count, L = k.Length;
        ref float s0 = ref MemoryMarshal.GetReference(src);
        ref float o = ref MemoryMarshal.GetReference(outRow);
        ref float k0 = ref MemoryMarshal.GetArrayDataReference(k);
        int x = 0;
        for (; x + 4 * vw <= w; x += 4 * vw)
        {
            ref float a = ref Unsafe.Add(ref s0, rowAt[0] + x);
            var kk = new Vector<float>(k0);
            var acc0 = kk * V(ref a, 0); var acc1 = kk * V(ref a, vw); var acc2 = kk * V(ref a, 2 * vw); var acc3 = kk * V(ref a, 3 * vw);
            for (int j = 1; j < L; j++)
            {
                ref float b = ref Unsafe.Add(ref s0, rowAt[j] + x);
                kk = new Vector<float>(Unsafe.Add(ref k0, j));
                acc0 += kk * V(ref b, 0); acc1 += kk * V(ref b, vw); acc2 += kk * V(ref b, 2 * vw); acc3 += kk * V(ref b, 3 * vw);
            }
            Store(acc0, ref o, x); Store(acc1, ref o, x + vw); Store(acc2, ref o, x + 2 * vw); Store(acc3, ref o, x + 3 * vw);
        }
        for (; x + vw <= w; x += vw)
        {
            var acc = new Vector<float>(k0) * V(ref Unsafe.Add(ref s0, rowAt[0] + x), 0);
            for (int j = 1; j < L; j++)
                acc += new Vector<float>(Unsafe.Add(ref k0, j)) * V(ref Unsafe.Add(ref s0, rowAt[j] + x), 0);
            Store(acc, ref o, x);
        }
        for (; x < w; x++)
        {
            float acc = k[0] * src[rowAt[0] + x];
            for (int j = 1; j < L; j++) acc += k[j] * src[rowAt[j] + x];
            outRow[x] = acc;
        }
    }

    /// <summary>One row of the horizontal pass. The vertical pass wrote the row into <paramref name="pad"/> from index r;
    /// its reflected borders are filled around it (pad[i] = row[reflect(i − r)]), so that every pixel, at the borders
    /// too, takes the vector path: out[x] = Σ_j k[j] · pad[x + j], in j order.</summary>
    private static void HorizontalRow(float[] pad, int w, float[] k, Span<float> outRow)
    {
        int r = k.Length / 2, vw = Vector<float>.Count, L = k.Length;
        for (int i = 0; i < r; i++) { pad[i] = pad[r + Reflect(i - r, w)]; pad[w + r + i] = pad[r + Reflect(w + i, w)]; }
        ref float p0 = ref MemoryMarshal.GetArrayDataReference(pad);
        ref float k0 = ref MemoryMarshal.GetArrayDataReference(k);
        ref float orow = ref MemoryMarshal.GetReference(outRow);
        int x = 0;
        for (; x + 4 * vw <= w; x += 4 * vw)
        {
            ref float a = ref Unsafe.Add(ref p0, x);
            var kk = new Vector<float>(k0);
            var acc0 = kk * V(ref a, 0); var acc1 = kk * V(ref a, vw); var acc2 = kk * V(ref a, 2 * vw); var acc3 = kk * V(ref a, 3 * vw);
            for (int j = 1; j < L; j++)
            {
                ref float b = ref Unsafe.Add(ref a, j);
                kk = new Vector<float>(Unsafe.Add(ref k0, j));
                acc0 += kk * V(ref b, 0); acc1 += kk * V(ref b, vw); acc2 += kk * V(ref b, 2 * vw); acc3 += kk * V(ref b, 3 * vw);
            }
            Store(acc0, ref orow, x); Store(acc1, ref orow, x + vw); Store(acc2, ref orow, x + 2 * vw); Store(acc3, ref orow, x + 3 * vw);
        }
        for (; x + vw <= w; x += vw)
        {
            ref float a = ref Unsafe.Add(ref p0, x);
            var acc = new Vector<float>(k0) * V(ref a, 0);
            for (int j = 1; j < L; j++)
                acc += new Vector<float>(Unsafe.Add(ref k0, j)) * V(ref a, j);
            Store(acc, ref orow, x);
        }
        for (; x < w; x++)
        {
            float acc = k[0] * pad[x];
            for (int j = 1; j < L; j++) acc += k[j] * pad[x + j];
            outRow[x] = acc;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> V(ref float at, int offset) => Vector.LoadUnsafe(ref at, (nuint)offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector<float> v, ref float row, int x) => v.StoreUnsafe(ref row, (nuint)x);

}
