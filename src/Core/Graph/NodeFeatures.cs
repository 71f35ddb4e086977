using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ActorSeg.Core.Graph;

/// <summary>
/// The published 11 node features per channel: mean, standard deviation and the 9 deciles of the z-scored
/// intensity. Computed from the node's sorted raw values, with integer sums, so the result depends only on
/// the multiset of values: the same node gives identical features whether built from one tile or many.
/// </summary>
public static class NodeFeatures
{
    public const int PerChannel = 11;

    /// <summary>Names of the features of <paramref name="channels"/> raw channels followed by named extra planes.</summary>
    public static string[] Names(int channels, IEnumerable<string> extraPlanes)
    {
        var basic = new[] { "mean", "std", "q10", "q20", "q30", "q40", "q50", "q60", "q70", "q80", "q90" };
        return Names(channels).Concat(extraPlanes.SelectMany(pfx => basic.Select(b => $"{pfx}_{b}"))).ToArray();
    }

    public static string[] Names(int channels)
    {
        var basic = new[] { "mean", "std", "q10", "q20", "q30", "q40", "q50", "q60", "q70", "q80", "q90" };
        if (channels == 1) return basic;
        var names = new List<string>();
        for (int c = 0; c < channels; c++) names.AddRange(basic.Select(b => $"c{c}_{b}"));
        return names.ToArray();
    }

    /// <summary>Writes the 11 features of one channel from its sorted raw values.</summary>
    public static void Compute(ReadOnlySpan<ushort> sorted, double mu, double invSigma, Span<float> dst)
    {
        int n = sorted.Length;
        if (n == 0) { dst[..PerChannel].Clear(); return; }
        // a 16-bit value squared is below 2^32 and a node has fewer than 2^31 pixels: the sum of squares fits 64 bits
        long sum = 0; ulong sumSq = 0;
        foreach (var v in sorted) { sum += v; sumSq += (ulong)v * v; }
        Span<int> at = stackalloc int[Quantiles];
        QuantileRanks(n, at);
        Span<ushort> q = stackalloc ushort[Quantiles];
        for (int i = 0; i < Quantiles; i++) q[i] = sorted[at[i]];
        Write(n, sum, sumSq, q, mu, invSigma, dst);
    }

    /// <summary>Entries <see cref="ComputeUnsorted"/> needs in its counts buffer: one per 16-bit value.</summary>
    public const int CountsLength = 1 << 16;

    /// <summary>
    /// The same features as <see cref="Compute"/> from the values in any order, mostly without sorting them: the range
    /// of the values in one (vector) pass, a histogram over that range in a second, then the sums and the order
    /// statistics the deciles read from the histogram. The result is identical to <see cref="Compute"/>'s on the sorted
    /// values (the sums are the same integers). Short nodes, and nodes whose range is wide for their size, are sorted
    /// in place instead.
    /// </summary>
    /// <param name="counts">scratch of at least <see cref="CountsLength"/> entries, all zero; left all zero</param>
    /// <param name="sortTmp">scratch of at least <paramref name="values"/>.Length entries for sorting</param>
    public static void ComputeUnsorted(Span<ushort> values, double mu, double invSigma, Span<float> dst, Span<int> counts, Span<ushort> sortTmp)
    {
        int n = values.Length;
        int min = 0, range = int.MaxValue;
        if (n > ShortNode)
        {
            (min, int max) = Range(values);
            range = max - min + 1;
        }
        if (range > Math.Max(1024, 2 * n))
        {
            ValueSort.Sort(values, sortTmp);
            Compute(values, mu, invSigma, dst);
            return;
        }
        counts = counts[..range];
        foreach (var v in values) counts[v - min]++;
        Span<int> at = stackalloc int[Quantiles];
        QuantileRanks(n, at);
        Span<ushort> q = stackalloc ushort[Quantiles];
        long sum = 0; ulong sumSq = 0;
        for (int b = 0, i = 0, below = 0; b < range; b++)
        {
            int k = counts[b];
            if (k == 0) continue;
            counts[b] = 0;
            ulong v = (ulong)(min + b);
            sum += (long)v * k; sumSq += v * v * (ulong)k;
            below += k;
            while (i < Quantiles && at[i] < below) q[i++] = (ushort)v; // ranks ascend
        }
        Write(n, sum, sumSq, q, mu, invSigma, dst);
    }

    /// <summary>The smallest and largest value.</summary>
    private static (int Min, int Max) Range(ReadOnlySpan<ushort> values)
    {
        int i = 0, min = ushort.MaxValue, max = 0;
        if (Vector256.IsHardwareAccelerated && values.Length >= Vector256<ushort>.Count)
        {
            var vmin = Vector256.Create(ushort.MaxValue); var vmax = Vector256<ushort>.Zero;
            ref ushort first = ref MemoryMarshal.GetReference(values);
            for (; i + Vector256<ushort>.Count <= values.Length; i += Vector256<ushort>.Count)
            {
                var x = Vector256.LoadUnsafe(ref first, (nuint)i);
                vmin = Vector256.Min(vmin, x); vmax = Vector256.Max(vmax, x);
            }
            for (int j = 0; j < Vector256<ushort>.Count; j++) { min = Math.Min(min, vmin[j]); max = Math.Max(max, vmax[j]); }
        }
        for (; i < values.Length; i++) { min = Math.Min(min, values[i]); max = Math.Max(max, values[i]); }
        return (min, max);
    }

    /// <summary>Nodes this short are sorted: cheaper than a histogram.</summary>
    private const int ShortNode = 48;
    /// <summary>The order statistics the 9 deciles read: the two around each.</summary>
    private const int Quantiles = 18;

    /// <summary>The ranks of the order statistics below and above each decile of <paramref name="n"/> values (ascending).</summary>
    private static void QuantileRanks(int n, Span<int> at)
    {
        for (int d = 1; d <= 9; d++)
        {
            double pos = d / 10.0 * (n - 1);
            int lo = (int)Math.Floor(pos);
            at[2 * d - 2] = lo;
            at[2 * d - 1] = Math.Min(lo + 1, n - 1);
        }
    }

    /// <summary>The features from the count, exact sums and the order statistics at <see cref="QuantileRanks"/>.</summary>
    private static void Write(int n, long sum, ulong sumSq, ReadOnlySpan<ushort> q, double mu, double invSigma, Span<float> dst)
    {
        double mean = (double)sum / n;
        // exact numerator n*Σv² − (Σv)², non-negative
        var num = (UInt128)(ulong)n * (UInt128)sumSq - (UInt128)(ulong)sum * (ulong)sum;
        double std = Math.Sqrt((double)num) / n;
        dst[0] = (float)((mean - mu) * invSigma);
        dst[1] = (float)(std * invSigma);
        for (int d = 1; d <= 9; d++)
        {
            double pos = d / 10.0 * (n - 1);
            int lo = (int)Math.Floor(pos);
            double frac = pos - lo;
            double v = q[2 * d - 2] + (q[2 * d - 1] - q[2 * d - 2]) * frac;
            dst[1 + d] = (float)((v - mu) * invSigma);
        }
    }
}
