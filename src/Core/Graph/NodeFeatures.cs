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
            int hi = Math.Min(lo + 1, n - 1);
            double frac = pos - lo;
            double v = sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
            dst[1 + d] = (float)((v - mu) * invSigma);
        }
    }
}
