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

        Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, () => (new double[kk], new int[kk]),
            (i, _, buf) =>
            {
                var (bd, bi) = buf;
                int found = 0;
                double px = xs[i], py = ys[i];
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
                                double dx = xs[j] - px, dy = ys[j] - py;
                                double d = Math.Sqrt(dx * dx + dy * dy);
                                if (found == kk && (d > bd[kk - 1] || (d == bd[kk - 1] && j > bi[kk - 1]))) continue;
                                int pos = found < kk ? found++ : kk - 1;
                                while (pos > 0 && (bd[pos - 1] > d || (bd[pos - 1] == d && bi[pos - 1] > j))) { bd[pos] = bd[pos - 1]; bi[pos] = bi[pos - 1]; pos--; }
                                bd[pos] = d; bi[pos] = j;
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
        // per source node: itself, its k nearest and its reverse neighbours, sorted and unique
        var outStart = new long[n + 1];
        var tmp = new List<(int Dst, float D)>(2 * kk + 8);
        for (int pass = 0; pass < 2; pass++)
        {
            int[] src = pass == 1 ? new int[outStart[n]] : [], dst = pass == 1 ? new int[outStart[n]] : [];
            float[] dist = pass == 1 ? new float[outStart[n]] : [];
            for (int i = 0; i < n; i++)
            {
                tmp.Clear();
                tmp.Add((i, 0f));
                for (int t = 0; t < counts[i]; t++) tmp.Add((nb[i * kk + t], (float)dd[i * kk + t]));
                for (int q = revStart[i]; q < revStart[i + 1]; q++) tmp.Add((rev[q], revD[q]));
                tmp.Sort((a, b) => a.Dst.CompareTo(b.Dst));
                long o = outStart[i]; int last = -1, m = 0;
                foreach (var (d, dist1) in tmp)
                {
                    if (d == last) continue;
                    last = d;
                    if (pass == 1) { src[o + m] = i; dst[o + m] = d; dist[o + m] = dist1; }
                    m++;
                }
                if (pass == 0) outStart[i + 1] = outStart[i] + m;
            }
            if (pass == 1) return (src, dst, dist);
        }
        throw new InvalidOperationException("unreachable");
    }
}
