using System.Numerics;
using System.Runtime.CompilerServices;

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
    public static void Blur(ReadOnlySpan<float> src, Span<float> dst, Span<float> tmp, int w, int h, float[] k)
    {
        int r = k.Length / 2;
        if (r == 0) { src[..(w * h)].CopyTo(dst); return; }
        // vertical pass: tmp[y] = sum_k k[j] * src[reflect(y + j - r)]
        int vw = Vector<float>.Count;
        for (int y = 0; y < h; y++)
        {
            var outRow = tmp.Slice(y * w, w);
            int x = 0;
            for (; x + vw <= w; x += vw)
            {
                var acc = new Vector<float>(k[0]) * new Vector<float>(src.Slice(Reflect(y - r, h) * w + x, vw));
                for (int j = 1; j < k.Length; j++)
                    acc += new Vector<float>(k[j]) * new Vector<float>(src.Slice(Reflect(y + j - r, h) * w + x, vw));
                acc.CopyTo(outRow.Slice(x));
            }
            for (; x < w; x++)
            {
                float acc = k[0] * src[Reflect(y - r, h) * w + x];
                for (int j = 1; j < k.Length; j++) acc += k[j] * src[Reflect(y + j - r, h) * w + x];
                outRow[x] = acc;
            }
        }
        // horizontal pass
        for (int y = 0; y < h; y++)
        {
            var inRow = tmp.Slice(y * w, w);
            var outRow = dst.Slice(y * w, w);
            int x = 0;
            int left = Math.Min(r, w);
            for (; x < left; x++) outRow[x] = HScalar(inRow, x, w, k, r);
            for (; x + vw + r <= w; x += vw)
            {
                var acc = new Vector<float>(k[0]) * new Vector<float>(inRow.Slice(x - r, vw));
                for (int j = 1; j < k.Length; j++)
                    acc += new Vector<float>(k[j]) * new Vector<float>(inRow.Slice(x + j - r, vw));
                acc.CopyTo(outRow.Slice(x));
            }
            for (; x < w; x++) outRow[x] = HScalar(inRow, x, w, k, r);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HScalar(ReadOnlySpan<float> row, int x, int w, float[] k, int r)
    {
        float acc = k[0] * row[Reflect(x - r, w)];
        for (int j = 1; j < k.Length; j++) acc += k[j] * row[Reflect(x + j - r, w)];
        return acc;
    }
}
