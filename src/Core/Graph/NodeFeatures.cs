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

    /// <summary>
    /// The same features as <see cref="Compute"/> from the values in any order, without sorting them: sums and a
    /// histogram of the high bytes in one pass, then, in a second, histograms of the low bytes of only the values whose
    /// high byte holds one of the order statistics the deciles read. The result is identical to <see cref="Compute"/>'s
    /// on the sorted values. <paramref name="values"/> may be reordered (short ones are sorted in place).
    /// </summary>
    public static void ComputeUnsorted(Span<ushort> values, double mu, double invSigma, Span<float> dst)
    {
        int n = values.Length;
        if (n <= ShortNode)
        {
            ValueSort.Sort(values, stackalloc ushort[n]);
            Compute(values, mu, invSigma, dst);
            return;
        }
        Span<int> high = stackalloc int[256];
        high.Clear();
        long sum = 0; ulong sumSq = 0;
        foreach (var v in values) { high[v >> 8]++; sum += v; sumSq += (ulong)v * v; }
        // each order statistic's high byte (a slot per distinct one) and its rank among the values of that high byte
        Span<int> at = stackalloc int[Quantiles], slotOfRank = stackalloc int[Quantiles], highOfSlot = stackalloc int[Quantiles];
        QuantileRanks(n, at);
        int slots = 0;
        for (int i = 0, b = -1, below = 0, upto = 0; i < Quantiles; i++)
        {
            while (at[i] >= upto) { b++; below = upto; upto += high[b]; } // ranks ascend (strictly, beyond 11 values)
            if (slots == 0 || highOfSlot[slots - 1] != b) highOfSlot[slots++] = b;
            slotOfRank[i] = slots - 1;
            at[i] -= below;
        }
        // low-byte histograms per slot; values of other high bytes count in a spare slot (no branch per value)
        Span<int> slotOf = stackalloc int[256];
        slotOf.Fill(slots);
        for (int s = 0; s < slots; s++) slotOf[highOfSlot[s]] = s;
        Span<int> low = stackalloc int[256 * (slots + 1)];
        low.Clear();
        foreach (var v in values) low[(slotOf[v >> 8] << 8) | (v & 0xFF)]++;
        Span<ushort> q = stackalloc ushort[Quantiles];
        for (int i = 0, s = -1, b = 0, upto = 0; i < Quantiles; i++)
        {
            if (slotOfRank[i] != s) { s = slotOfRank[i]; b = 0; upto = low[s << 8]; }
            while (at[i] >= upto) upto += low[(s << 8) | ++b]; // ranks ascend within a slot too
            q[i] = (ushort)((highOfSlot[s] << 8) | b);
        }
        Write(n, sum, sumSq, q, mu, invSigma, dst);
    }

    /// <summary>Nodes this short are sorted: cheaper than the histograms.</summary>
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
