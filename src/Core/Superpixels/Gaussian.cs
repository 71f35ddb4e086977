using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

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

    /// <summary>Smooths <paramref name="src"/> (w×h) into <paramref name="dst"/>, using <paramref name="tmp"/> (w×h) as scratch.</summary>
    /// <remarks>Every output value is k[0]·s[0] + k[1]·s[1] + … added in that order, in float, without fused multiply-adds,
    /// whichever path computes it; four vectors are worked at once only so that their additions overlap.</remarks>
    public static void Blur(ReadOnlySpan<float> src, Span<float> dst, Span<float> tmp, int w, int h, float[] k)
    {
        int r = k.Length / 2;
        if (r == 0) { src[..(w * h)].CopyTo(dst); return; }
        if (src.Length < w * h || dst.Length < w * h || tmp.Length < w * h) throw new ArgumentException("blur buffers smaller than the image");
        // vertical pass: tmp[y] = sum_k k[j] * src[reflect(y + j - r)]; the reflected rows are found once per output row
        int vw = Vector<float>.Count, L = k.Length;
        Span<int> rowAt = L <= 256 ? stackalloc int[L] : new int[L];
        ref float s0 = ref MemoryMarshal.GetReference(src);
        ref float t0 = ref MemoryMarshal.GetReference(tmp);
        ref float d0 = ref MemoryMarshal.GetReference(dst);
        ref float k0 = ref MemoryMarshal.GetArrayDataReference(k);
        for (int y = 0; y < h; y++)
        {
            for (int j = 0; j < L; j++) rowAt[j] = Reflect(y + j - r, h) * w;
            ref float outRow = ref Unsafe.Add(ref t0, y * w);
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
                Store(acc0, ref outRow, x); Store(acc1, ref outRow, x + vw); Store(acc2, ref outRow, x + 2 * vw); Store(acc3, ref outRow, x + 3 * vw);
            }
            for (; x + vw <= w; x += vw)
            {
                var acc = new Vector<float>(k0) * V(ref Unsafe.Add(ref s0, rowAt[0] + x), 0);
                for (int j = 1; j < L; j++)
                    acc += new Vector<float>(Unsafe.Add(ref k0, j)) * V(ref Unsafe.Add(ref s0, rowAt[j] + x), 0);
                Store(acc, ref outRow, x);
            }
            for (; x < w; x++)
            {
                float acc = k[0] * src[rowAt[0] + x];
                for (int j = 1; j < L; j++) acc += k[j] * src[rowAt[j] + x];
                Unsafe.Add(ref outRow, x) = acc;
            }
        }
        // horizontal pass, over each row copied with its reflected borders (pad[i] = row[reflect(i - r)]), so that every
        // pixel, at the borders too, takes the vector path: out[x] = sum_j k[j] * pad[x + j]
        float[] pad = System.Buffers.ArrayPool<float>.Shared.Rent(w + 2 * r + 4 * vw);
        try
        {
            ref float p0 = ref MemoryMarshal.GetArrayDataReference(pad);
            for (int y = 0; y < h; y++)
            {
                var inRow = tmp.Slice(y * w, w);
                for (int i = 0; i < r; i++) { pad[i] = inRow[Reflect(i - r, w)]; pad[w + r + i] = inRow[Reflect(w + i, w)]; }
                inRow.CopyTo(pad.AsSpan(r, w));
                ref float orow = ref Unsafe.Add(ref d0, y * w);
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
                    Unsafe.Add(ref orow, x) = acc;
                }
            }
        }
        finally { System.Buffers.ArrayPool<float>.Shared.Return(pad); }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> V(ref float at, int offset) => Vector.LoadUnsafe(ref at, (nuint)offset);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(Vector<float> v, ref float row, int x) => v.StoreUnsafe(ref row, (nuint)x);

}
