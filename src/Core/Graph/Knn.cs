namespace ActorSeg.Core.Graph;

/// <summary>Exact k-nearest-neighbour search over 2-D points with a uniform bucket grid; ties go to the lower index.</summary>
public static class Knn
{
    /// <summary>For each point, its k nearest other points (fewer when there are fewer), by (distance, index).</summary>
    public static (int[] Neighbours, double[] Distances, int[] Counts) Query(double[] xs, double[] ys, int k)
    {
        int n = xs.Length;
        int kk = Math.Min(k, Math.Max(0, n - 1));
        var nb = new int[n * kk]; var dd = new double[n * kk]; var counts = new int[n];
        if (n == 0 || kk == 0) return (nb, dd, counts);
        double minX = xs.Min(), maxX = xs.Max(), minY = ys.Min(), maxY = ys.Max();
        double spanX = Math.Max(maxX - minX, 1e-9), spanY = Math.Max(maxY - minY, 1e-9);
        // about 2 points per bucket
        double cell = Math.Sqrt(spanX * spanY / Math.Max(1, n / 2.0));
        if (!(cell > 0)) cell = 1;
        int gx = Math.Max(1, (int)(spanX / cell) + 1), gy = Math.Max(1, (int)(spanY / cell) + 1);
        while ((long)gx * gy > 4L * n + 16) { cell *= 1.5; gx = Math.Max(1, (int)(spanX / cell) + 1); gy = Math.Max(1, (int)(spanY / cell) + 1); }
        var start = new int[gx * gy + 1];
        var bucketOf = new int[n];
        for (int i = 0; i < n; i++)
        {
            int bx = Math.Min(gx - 1, (int)((xs[i] - minX) / cell)), by = Math.Min(gy - 1, (int)((ys[i] - minY) / cell));
            bucketOf[i] = by * gx + bx; start[bucketOf[i] + 1]++;
        }
        for (int b = 0; b < gx * gy; b++) start[b + 1] += start[b];
        var items = new int[n]; var fill = (int[])start.Clone();
        for (int i = 0; i < n; i++) items[fill[bucketOf[i]]++] = i; // ascending index within a bucket
        // the coordinates in bucket order too: a query reads its buckets' points from contiguous memory
        var bx_ = new double[n]; var by_ = new double[n];
        for (int t = 0; t < n; t++) { bx_[t] = xs[items[t]]; by_[t] = ys[items[t]]; }

        Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, () => (new double[kk], new int[kk]),
            (i, _, buf) =>
            {
                var (bd, bi) = buf;
                int found = 0;
                double px = xs[i], py = ys[i], worst2 = double.PositiveInfinity;
                int cbx = Math.Min(gx - 1, (int)((px - minX) / cell)), cby = Math.Min(gy - 1, (int)((py - minY) / cell));
                for (int ring = 0; ; ring++)
                {
                    // everything within ring*cell of the point's bucket has been seen once the ring is done
                    int x0 = cbx - ring, x1 = cbx + ring, y0 = cby - ring, y1 = cby + ring;
                    for (int by = Math.Max(0, y0); by <= Math.Min(gy - 1, y1); by++)
                        for (int bx = Math.Max(0, x0); bx <= Math.Min(gx - 1, x1); bx++)
                        {
                            if (by != y0 && by != y1 && bx != x0 && bx != x1) continue; // only the ring's outline
                            int b = by * gx + bx;
                            for (int t = start[b]; t < start[b + 1]; t++)
                            {
                                int j = items[t];
                                if (j == i) continue;
                                double dx = bx_[t] - px, dy = by_[t] - py, d2 = dx * dx + dy * dy;
                                // clearly farther than the k-th (its square above the k-th's by more than rounding could
                                // close, so its distance is strictly larger): skipped without its square root
                                if (found == kk && d2 > worst2) continue;
                                double d = Math.Sqrt(d2);
                                if (found == kk && (d > bd[kk - 1] || (d == bd[kk - 1] && j > bi[kk - 1]))) continue;
                                int pos = found < kk ? found++ : kk - 1;
                                while (pos > 0 && (bd[pos - 1] > d || (bd[pos - 1] == d && bi[pos - 1] > j))) { bd[pos] = bd[pos - 1]; bi[pos] = bi[pos - 1]; pos--; }
                                bd[pos] = d; bi[pos] = j;
                                if (found == kk) worst2 = bd[kk - 1] * bd[kk - 1] * (1 + 1e-12);
                            }
                        }
                    bool covered = x0 <= 0 && y0 <= 0 && x1 >= gx - 1 && y1 >= gy - 1;
                    if (covered) break;
                    if (found == kk && bd[kk - 1] < ring * cell) break;
                }
                Array.Copy(bd, 0, dd, i * kk, found); Array.Copy(bi, 0, nb, i * kk, found);
                counts[i] = found;
                return buf;
            }, _ => { });
        return (nb, dd, counts);
    }

    /// <summary>The published edge set: each node to its k nearest and itself, both directions, unique, sorted by (src, dst).</summary>
    public static (int[] Src, int[] Dst, float[] Dist) PublishedEdges(double[] xs, double[] ys, int k)
    {
        int n = xs.Length;
        var (nb, dd, counts) = Query(xs, ys, k);
        int kk = n == 0 ? 0 : Math.Min(k, Math.Max(0, n - 1));
        // reverse lists (who has me among their k nearest), as CSR, so no list of all pairs is ever materialised
        var revStart = new int[n + 1];
        for (int i = 0; i < n; i++) for (int t = 0; t < counts[i]; t++) revStart[nb[i * kk + t] + 1]++;
        for (int i = 0; i < n; i++) revStart[i + 1] += revStart[i];
        var rev = new int[revStart[n]]; var revD = new float[revStart[n]];
        var fill = (int[])revStart.Clone();
        for (int i = 0; i < n; i++)
            for (int t = 0; t < counts[i]; t++) { int j = nb[i * kk + t]; rev[fill[j]] = i; revD[fill[j]++] = (float)dd[i * kk + t]; }
        // per source node: itself, its k nearest and its reverse neighbours, sorted and unique. Each entry is packed as
        // (neighbour << 32 | the distance's float bits), so one sort of longs orders by neighbour, then distance (a
        // non-negative float's bits order as its value); a neighbour listed twice (mutual nearest) carries the same
        // distance both times, computed from the same two centroids, and is kept once. Nodes are independent: counted,
        // then written, in parallel.
        var outStart = new long[n + 1];
        var opts = new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount };
        int Entries(int i, long[] buf)
        {
            int m = 0;
            buf[m++] = (long)i << 32; // itself, at distance 0
            for (int t = 0; t < counts[i]; t++) buf[m++] = ((long)nb[i * kk + t] << 32) | BitConverter.SingleToUInt32Bits((float)dd[i * kk + t]);
            for (int q = revStart[i]; q < revStart[i + 1]; q++) buf[m++] = ((long)rev[q] << 32) | BitConverter.SingleToUInt32Bits(revD[q]);
            var span = buf.AsSpan(0, m);
            span.Sort();
            int u = 0;
            for (int e = 0; e < m; e++)
                if (u == 0 || (int)(span[e] >> 32) != (int)(span[u - 1] >> 32)) span[u++] = span[e];
            return u;
        }
        int Widest(int i) => 1 + counts[i] + revStart[i + 1] - revStart[i];
        Parallel.For(0, n, opts, () => new long[64], (i, _, buf) =>
        {
            if (buf.Length < Widest(i)) buf = new long[Widest(i) * 2];
            outStart[i + 1] = Entries(i, buf);
            return buf;
        }, _ => { });
        for (int i = 0; i < n; i++) outStart[i + 1] += outStart[i];
        var src = new int[outStart[n]]; var dst = new int[outStart[n]]; var dist = new float[outStart[n]];
        Parallel.For(0, n, opts, () => new long[64], (i, _, buf) =>
        {
            if (buf.Length < Widest(i)) buf = new long[Widest(i) * 2];
            int m = Entries(i, buf);
            long o = outStart[i];
            for (int e = 0; e < m; e++)
            {
                src[o + e] = i; dst[o + e] = (int)(buf[e] >> 32); dist[o + e] = BitConverter.UInt32BitsToSingle((uint)buf[e]);
            }
            return buf;
        }, _ => { });
        return (src, dst, dist);
    }
}
