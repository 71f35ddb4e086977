using System.Buffers;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Graph;

/// <summary>Turns the SLIC labels of a tile's core into fragments (4-connected pieces) and their partial graph.</summary>
public static class FragmentBuilder
{
    public const byte Unlabelled = 255;

    /// <param name="raw">the read region's raw samples, channels interleaved</param>
    /// <param name="seeds">global SLIC seed id of each core pixel</param>
    /// <param name="mask">class of each core pixel (255 = unlabelled), or empty when there is no mask</param>
    /// <param name="fragmentOfPixel">receives the fragment id of each core pixel</param>
    public static TileResult Build(TileSpec tile, int imageWidth, int imageHeight, ReadOnlySpan<ushort> raw, int channels,
        ReadOnlySpan<int> seeds, ReadOnlySpan<byte> mask, ImageStatistics stats, long minSize, Span<int> fragmentOfPixel)
    {
        var core = tile.Core; var read = tile.Read;
        int w = core.W, h = core.H, n = w * h;
        int[] prov = ArrayPool<int>.Shared.Rent(n);
        int[] parent = ArrayPool<int>.Shared.Rent(n);
        try
        {
            // --- connected components of equal seed id (4-connectivity), two-pass union-find ---
            int next = 0;
            for (int y = 0; y < h; y++)
            {
                int row = y * w;
                for (int x = 0; x < w; x++)
                {
                    int p = row + x, l = seeds[p];
                    bool left = x > 0 && seeds[p - 1] == l, up = y > 0 && seeds[p - w] == l;
                    if (left)
                    {
                        int a = prov[p - 1];
                        prov[p] = a;
                        if (up) { int b = prov[p - w]; if (b != a) Union(parent, a, b); }
                    }
                    else if (up) prov[p] = prov[p - w];
                    else { parent[next] = next; prov[p] = next++; }
                }
            }
            var idOfRoot = ArrayPool<int>.Shared.Rent(next);
            idOfRoot.AsSpan(0, next).Fill(-1);
            int frags = 0;
            for (int p = 0; p < n; p++)
            {
                int r = Find(parent, prov[p]);
                int id = idOfRoot[r];
                if (id < 0) idOfRoot[r] = id = frags++;
                fragmentOfPixel[p] = id;
            }
            ArrayPool<int>.Shared.Return(idOfRoot);

            var t = new TileResult { TileId = tile.Id, Core = core, Channels = channels, Fragments = frags };
            t.MinLinear = new long[frags]; t.Area = new int[frags]; t.SumX = new long[frags]; t.SumY = new long[frags];
            t.BBox = new int[4 * frags]; t.Seed = new int[frags]; t.Flags = new FragmentFlags[frags];
            for (int f = 0; f < frags; f++) { t.MinLinear[f] = -1; t.BBox[4 * f] = int.MaxValue; t.BBox[4 * f + 1] = int.MaxValue; t.BBox[4 * f + 2] = -1; t.BBox[4 * f + 3] = -1; }

            bool openTop = core.Y > 0, openBottom = core.Bottom < imageHeight, openLeft = core.X > 0, openRight = core.Right < imageWidth;
            int maxClass = -1;
            if (!mask.IsEmpty) for (int p = 0; p < n; p++) if (mask[p] != Unlabelled && mask[p] > maxClass) maxClass = mask[p];
            int nc = maxClass + 1;
            var classCounts = nc > 0 ? new int[frags * nc] : [];

            // --- per-fragment geometry, classes ---
            for (int y = 0; y < h; y++)
            {
                int gy = core.Y + y, row = y * w;
                bool edgeY = (y == 0 && openTop) || (y == h - 1 && openBottom);
                for (int x = 0; x < w; x++)
                {
                    int p = row + x, f = fragmentOfPixel[p], gx = core.X + x;
                    if (t.MinLinear[f] < 0) { t.MinLinear[f] = (long)gy * imageWidth + gx; t.Seed[f] = seeds[p]; }
                    t.Area[f]++; t.SumX[f] += gx; t.SumY[f] += gy;
                    int b = 4 * f;
                    if (gx < t.BBox[b]) t.BBox[b] = gx;
                    if (gy < t.BBox[b + 1]) t.BBox[b + 1] = gy;
                    if (gx > t.BBox[b + 2]) t.BBox[b + 2] = gx;
                    if (gy > t.BBox[b + 3]) t.BBox[b + 3] = gy;
                    if (edgeY || (x == 0 && openLeft) || (x == w - 1 && openRight)) t.Flags[f] |= FragmentFlags.Border;
                    if (nc > 0) { byte m = mask[p]; if (m != Unlabelled) classCounts[f * nc + m]++; }
                }
            }
            for (int f = 0; f < frags; f++)
                if ((t.Flags[f] & FragmentFlags.Border) == 0 && t.Area[f] < minSize) t.Flags[f] |= FragmentFlags.Small;

            // class histogram as CSR
            t.ClassOffsets = new int[frags + 1];
            var ids = new List<byte>(); var counts = new List<int>();
            for (int f = 0; f < frags; f++)
            {
                for (int c = 0; c < nc; c++) { int k = classCounts[f * nc + c]; if (k > 0) { ids.Add((byte)c); counts.Add(k); } }
                t.ClassOffsets[f + 1] = ids.Count;
            }
            t.ClassIds = ids.ToArray(); t.ClassCounts = counts.ToArray();

            // --- adjacency inside the core, with boundary contrast ---
            var pairIndex = new Dictionary<long, int>();
            var adjA = new List<int>(); var adjB = new List<int>(); var adjLen = new List<int>(); var adjDiff = new List<long>();
            int ox = core.X - read.X, oy = core.Y - read.Y, rw = read.W;
            void AddPair(int fa, int fb, int pa, int pb, ReadOnlySpan<ushort> rawv)
            {
                if (fa > fb) (fa, fb) = (fb, fa);
                long key = ((long)fa << 32) | (uint)fb;
                if (!pairIndex.TryGetValue(key, out int idx))
                {
                    idx = adjA.Count; pairIndex[key] = idx;
                    adjA.Add(fa); adjB.Add(fb); adjLen.Add(0);
                    for (int c = 0; c < channels; c++) adjDiff.Add(0);
                }
                adjLen[idx]++;
                for (int c = 0; c < channels; c++) adjDiff[idx * channels + c] += Math.Abs(rawv[pa * channels + c] - rawv[pb * channels + c]);
            }
            for (int y = 0; y < h; y++)
            {
                int row = y * w, rrow = (oy + y) * rw + ox;
                for (int x = 0; x < w; x++)
                {
                    int p = row + x, f = fragmentOfPixel[p];
                    if (x + 1 < w && fragmentOfPixel[p + 1] != f) AddPair(f, fragmentOfPixel[p + 1], rrow + x, rrow + x + 1, raw);
                    if (y + 1 < h && fragmentOfPixel[p + w] != f) AddPair(f, fragmentOfPixel[p + w], rrow + x, rrow + rw + x, raw);
                }
            }
            t.AdjA = adjA.ToArray(); t.AdjB = adjB.ToArray(); t.AdjLength = adjLen.ToArray(); t.AdjAbsDiff = adjDiff.ToArray();

            // --- which fragments ship their values: any that may merge with another ---
            var risky = new bool[frags];
            for (int f = 0; f < frags; f++) risky[f] = (t.Flags[f] & (FragmentFlags.Border | FragmentFlags.Small)) != 0;
            for (int f = 0; f < frags; f++) if (risky[f]) t.Flags[f] |= FragmentFlags.Shipped;
            for (int i = 0; i < t.AdjA.Length; i++)
            {
                if (risky[t.AdjA[i]]) t.Flags[t.AdjB[i]] |= FragmentFlags.Shipped;
                if (risky[t.AdjB[i]]) t.Flags[t.AdjA[i]] |= FragmentFlags.Shipped;
            }

            // --- values grouped by fragment (counting sort), sorted per fragment and channel ---
            var start = new long[frags + 1];
            for (int f = 0; f < frags; f++) start[f + 1] = start[f] + t.Area[f];
            var grouped = ArrayPool<ushort>.Shared.Rent(n * channels);
            var cursor = ArrayPool<long>.Shared.Rent(frags);
            try
            {
                Array.Copy(start, cursor, frags);
                for (int y = 0; y < h; y++)
                {
                    int row = y * w, rrow = (oy + y) * rw + ox;
                    for (int x = 0; x < w; x++)
                    {
                        int f = fragmentOfPixel[row + x];
                        long pos = cursor[f]++;
                        int area = t.Area[f];
                        long baseOff = start[f] * channels;
                        int src = (rrow + x) * channels;
                        for (int c = 0; c < channels; c++)
                            grouped[baseOff + (long)c * area + (pos - start[f])] = raw[src + c];
                    }
                }
                int featLen = NodeFeatures.PerChannel * channels;
                t.FeatureRow = new int[frags];
                t.ValueOffsets = new long[frags];
                int finalCount = 0; long shippedPixels = 0;
                for (int f = 0; f < frags; f++)
                {
                    if ((t.Flags[f] & FragmentFlags.Shipped) != 0) { t.FeatureRow[f] = -1; t.ValueOffsets[f] = shippedPixels; shippedPixels += t.Area[f]; }
                    else { t.FeatureRow[f] = finalCount++; t.ValueOffsets[f] = -1; }
                }
                t.Features = new float[finalCount * featLen];
                t.Values = new ushort[shippedPixels * channels];
                for (int f = 0; f < frags; f++)
                {
                    int area = t.Area[f];
                    for (int c = 0; c < channels; c++)
                    {
                        var seg = grouped.AsSpan((int)(start[f] * channels + (long)c * area), area);
                        seg.Sort();
                        if (t.FeatureRow[f] >= 0)
                            NodeFeatures.Compute(seg, stats.Mean[c], stats.InvStd(c), t.Features.AsSpan(t.FeatureRow[f] * featLen + c * NodeFeatures.PerChannel, NodeFeatures.PerChannel));
                        else
                            seg.CopyTo(t.Values.AsSpan((int)(t.ValueOffsets[f] * channels + (long)c * area), area));
                    }
                }
            }
            finally
            {
                ArrayPool<ushort>.Shared.Return(grouped);
                ArrayPool<long>.Shared.Return(cursor);
            }

            // --- the four sides of the core ---
            var sideCtx = (w, rw, ox, oy, channels);
            Side(t, TileResult.Top, 0, 0, 1, 0, w, sideCtx, fragmentOfPixel, seeds, raw);
            Side(t, TileResult.Bottom, 0, h - 1, 1, 0, w, sideCtx, fragmentOfPixel, seeds, raw);
            Side(t, TileResult.Left, 0, 0, 0, 1, h, sideCtx, fragmentOfPixel, seeds, raw);
            Side(t, TileResult.Right, w - 1, 0, 0, 1, h, sideCtx, fragmentOfPixel, seeds, raw);
            return t;
        }
        finally
        {
            ArrayPool<int>.Shared.Return(prov);
            ArrayPool<int>.Shared.Return(parent);
        }
    }

    private static void Side(TileResult t, int s, int x0, int y0, int dx, int dy, int len,
        (int w, int rw, int ox, int oy, int channels) k, ReadOnlySpan<int> frag, ReadOnlySpan<int> seeds, ReadOnlySpan<ushort> raw)
    {
        t.SideFragment[s] = new int[len]; t.SideSeed[s] = new int[len]; t.SideValues[s] = new ushort[len * k.channels];
        for (int i = 0; i < len; i++)
        {
            int x = x0 + dx * i, y = y0 + dy * i, p = y * k.w + x;
            t.SideFragment[s][i] = frag[p]; t.SideSeed[s][i] = seeds[p];
            int src = ((k.oy + y) * k.rw + k.ox + x) * k.channels;
            for (int c = 0; c < k.channels; c++) t.SideValues[s][i * k.channels + c] = raw[src + c];
        }
    }

    private static int Find(int[] parent, int a)
    {
        while (parent[a] != a) { parent[a] = parent[parent[a]]; a = parent[a]; }
        return a;
    }

    private static void Union(int[] parent, int a, int b)
    {
        a = Find(parent, a); b = Find(parent, b);
        if (a == b) return;
        if (a < b) parent[b] = a; else parent[a] = b;
    }
}
