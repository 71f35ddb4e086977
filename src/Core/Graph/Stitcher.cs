using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Graph;

/// <summary>What the stitcher needs to know about the job.</summary>
public sealed record StitchSettings(int Width, int Height, int Channels, ImageStatistics Stats, long MinSize,
    double SeedSpacing, int K = 10, bool HasMask = false);

/// <summary>
/// Joins the partial graphs of all tiles into one global graph without seams: fragments that continue across
/// a tile side join, small components merge into the neighbour they share most boundary with, features are
/// recomputed from the merged values, and edges are built over the final nodes.
/// </summary>
public sealed class Stitcher
{
    private readonly TilePlan _plan;
    private readonly StitchSettings _s;
    private readonly Func<int, TileResult> _load;

    /// <param name="load">loads tile <c>id</c>'s partial graph; called with values only in the final pass</param>
    public Stitcher(TilePlan plan, StitchSettings settings, Func<int, bool, TileResult> load)
    {
        _plan = plan; _s = settings; _load = id => load(id, false); _loadWithValues = id => load(id, true);
    }
    private readonly Func<int, TileResult> _loadWithValues;

    /// <summary>Fragment → node id, per tile, for painting the node-label map.</summary>
    public int[][] NodeOfFragment { get; private set; } = [];

    public SuperpixelGraph Run(IProgress<string>? progress = null)
    {
        int tiles = _plan.Count, C = _s.Channels;
        var meta = new TileResult[tiles];
        var baseIdx = new int[tiles + 1];
        for (int t = 0; t < tiles; t++)
        {
            meta[t] = _load(t);
            if (meta[t].TileId != t) throw new InvalidDataException($"partial graph of tile {t} says it is tile {meta[t].TileId}");
            if (meta[t].Channels != C) throw new InvalidDataException($"partial graph of tile {t} has {meta[t].Channels} channels, expected {C}");
            baseIdx[t + 1] = baseIdx[t] + meta[t].Fragments;
        }
        int total = baseIdx[tiles];
        var uf = new int[total];
        for (int i = 0; i < total; i++) uf[i] = i;

        // --- boundaries between fragments: inside tiles and across tile sides ---
        var pairIdx = new Dictionary<long, int>();
        var bA = new List<int>(); var bB = new List<int>(); var bLen = new List<int>(); var bDiff = new List<long>();
        void AddBoundary(int ga, int gb, int len, ReadOnlySpan<long> diff)
        {
            if (ga > gb) (ga, gb) = (gb, ga);
            long key = ((long)ga << 32) | (uint)gb;
            if (!pairIdx.TryGetValue(key, out int idx))
            {
                idx = bA.Count; pairIdx[key] = idx; bA.Add(ga); bB.Add(gb); bLen.Add(0);
                for (int c = 0; c < C; c++) bDiff.Add(0);
            }
            bLen[idx] += len;
            for (int c = 0; c < C; c++) bDiff[idx * C + c] += diff[c];
        }
        var one = new long[C];
        for (int t = 0; t < tiles; t++)
        {
            var m = meta[t]; int b0 = baseIdx[t];
            for (int i = 0; i < m.AdjA.Length; i++)
                AddBoundary(b0 + m.AdjA[i], b0 + m.AdjB[i], m.AdjLength[i], m.AdjAbsDiff.AsSpan(i * C, C));
        }
        for (int t = 0; t < tiles; t++)
        {
            var spec = _plan.Tile(t);
            if (spec.Col + 1 < _plan.Cols) Join(t, t + 1, TileResult.Right, TileResult.Left);
            if (spec.Row + 1 < _plan.Rows) Join(t, t + _plan.Cols, TileResult.Bottom, TileResult.Top);
        }
        void Join(int ta, int tb, int sa, int sb)
        {
            var a = meta[ta]; var b = meta[tb];
            int len = a.SideFragment[sa].Length;
            if (b.SideFragment[sb].Length != len) throw new InvalidDataException($"tiles {ta} and {tb} disagree on their shared side");
            for (int i = 0; i < len; i++)
            {
                int ga = baseIdx[ta] + a.SideFragment[sa][i], gb = baseIdx[tb] + b.SideFragment[sb][i];
                if (a.SideSeed[sa][i] == b.SideSeed[sb][i]) Union(uf, ga, gb);
                else
                {
                    for (int c = 0; c < C; c++) one[c] = Math.Abs(a.SideValues[sa][i * C + c] - b.SideValues[sb][i * C + c]);
                    AddBoundary(ga, gb, 1, one);
                }
            }
        }
        progress?.Report($"joined {total} fragments across {tiles} tiles");

        // --- connected components and their sizes ---
        var compArea = new long[total]; var compMin = new long[total];
        Array.Fill(compMin, long.MaxValue);
        for (int t = 0; t < tiles; t++)
            for (int f = 0; f < meta[t].Fragments; f++)
            {
                int r = Find(uf, baseIdx[t] + f);
                compArea[r] += meta[t].Area[f];
                compMin[r] = Math.Min(compMin[r], meta[t].MinLinear[f]);
            }

        // --- small components merge into the neighbour with the longest shared boundary (decided on the unmerged graph) ---
        var compPair = new Dictionary<long, long>();
        for (int i = 0; i < bA.Count; i++)
        {
            int ra = Find(uf, bA[i]), rb = Find(uf, bB[i]);
            if (ra == rb) continue;
            if (compArea[ra] < _s.MinSize) { long key = ((long)ra << 32) | (uint)rb; compPair[key] = compPair.GetValueOrDefault(key) + bLen[i]; }
            if (compArea[rb] < _s.MinSize) { long key = ((long)rb << 32) | (uint)ra; compPair[key] = compPair.GetValueOrDefault(key) + bLen[i]; }
        }
        var best = new Dictionary<int, (int to, long len)>();
        foreach (var (key, len) in compPair)
        {
            int from = (int)(key >> 32), to = (int)(uint)key;
            if (!best.TryGetValue(from, out var cur) || len > cur.len || (len == cur.len && compMin[to] < compMin[cur.to]))
                best[from] = (to, len);
        }
        foreach (var (from, (to, _)) in best) Union(uf, from, to);

        // --- final nodes, ordered by their first pixel ---
        var rootMin = new Dictionary<int, long>();
        for (int t = 0; t < tiles; t++)
            for (int f = 0; f < meta[t].Fragments; f++)
            {
                int r = Find(uf, baseIdx[t] + f);
                long ml = meta[t].MinLinear[f];
                if (!rootMin.TryGetValue(r, out var cur) || ml < cur) rootMin[r] = ml;
            }
        var roots = rootMin.OrderBy(kv => kv.Value).Select(kv => kv.Key).ToArray();
        var nodeOfRoot = new Dictionary<int, int>(roots.Length);
        for (int i = 0; i < roots.Length; i++) nodeOfRoot[roots[i]] = i;
        int N = roots.Length;
        var nodeOf = new int[total];
        for (int g = 0; g < total; g++) nodeOf[g] = nodeOfRoot[Find(uf, g)];
        NodeOfFragment = new int[tiles][];
        for (int t = 0; t < tiles; t++) NodeOfFragment[t] = nodeOf.AsSpan(baseIdx[t], meta[t].Fragments).ToArray();
        progress?.Report($"{N} nodes");

        // --- node geometry and classes ---
        var g2 = new SuperpixelGraph
        {
            Width = _s.Width, Height = _s.Height, Channels = C, NodeCount = N, SeedSpacing = _s.SeedSpacing,
            MeanSpacing = Math.Sqrt((double)_s.Width * _s.Height / Math.Max(1, N)),
            MinLinear = new long[N], Area = new int[N], CentroidX = new double[N], CentroidY = new double[N],
            BBox = new int[4 * N], FeatureNames = NodeFeatures.Names(C), K = _s.K, HasLabels = _s.HasMask,
        };
        var sumX = new long[N]; var sumY = new long[N];
        for (int i = 0; i < N; i++) { g2.MinLinear[i] = rootMin[roots[i]]; g2.BBox[4 * i] = int.MaxValue; g2.BBox[4 * i + 1] = int.MaxValue; g2.BBox[4 * i + 2] = -1; g2.BBox[4 * i + 3] = -1; }
        int maxClass = -1;
        for (int t = 0; t < tiles; t++) foreach (var c in meta[t].ClassIds) maxClass = Math.Max(maxClass, c);
        int K = Math.Max(maxClass + 1, _s.HasMask ? 1 : 0);
        g2.NumClasses = K;
        g2.ClassHist = new int[N * K];
        var fragsOfNode = new int[N]; var shippedOfNode = new int[N];
        for (int t = 0; t < tiles; t++)
        {
            var m = meta[t];
            for (int f = 0; f < m.Fragments; f++)
            {
                int v = nodeOf[baseIdx[t] + f];
                g2.Area[v] += m.Area[f]; sumX[v] += m.SumX[f]; sumY[v] += m.SumY[f];
                g2.BBox[4 * v] = Math.Min(g2.BBox[4 * v], m.BBox[4 * f]);
                g2.BBox[4 * v + 1] = Math.Min(g2.BBox[4 * v + 1], m.BBox[4 * f + 1]);
                g2.BBox[4 * v + 2] = Math.Max(g2.BBox[4 * v + 2], m.BBox[4 * f + 2]);
                g2.BBox[4 * v + 3] = Math.Max(g2.BBox[4 * v + 3], m.BBox[4 * f + 3]);
                for (int q = m.ClassOffsets[f]; q < m.ClassOffsets[f + 1]; q++) g2.ClassHist[v * K + m.ClassIds[q]] += m.ClassCounts[q];
                fragsOfNode[v]++;
                if (m.FeatureRow[f] < 0) shippedOfNode[v]++;
            }
        }
        for (int i = 0; i < N; i++) { g2.CentroidX[i] = (double)sumX[i] / g2.Area[i]; g2.CentroidY[i] = (double)sumY[i] / g2.Area[i]; }
        g2.Label = new int[N];
        for (int i = 0; i < N; i++)
        {
            int lab = -1, bestCount = 0;
            for (int c = 0; c < K; c++) if (g2.ClassHist[i * K + c] > bestCount) { bestCount = g2.ClassHist[i * K + c]; lab = c; }
            g2.Label[i] = lab;
        }

        // --- features: complete fragments carry them; merged nodes are recomputed from their values, streaming tile by tile ---
        int F = NodeFeatures.PerChannel * C;
        g2.Features = new float[N * F];
        var pending = new Dictionary<int, List<ushort>[]>();
        var remaining = (int[])shippedOfNode.Clone();
        for (int t = 0; t < tiles; t++)
        {
            var m = meta[t];
            bool anyShipped = false;
            for (int f = 0; f < m.Fragments; f++)
            {
                int v = nodeOf[baseIdx[t] + f];
                if (m.FeatureRow[f] >= 0)
                {
                    if (fragsOfNode[v] != 1) throw new InvalidOperationException($"tile {t}: complete fragment {f} belongs to a merged node");
                    m.Features.AsSpan(m.FeatureRow[f] * F, F).CopyTo(g2.Features.AsSpan(v * F, F));
                }
                else anyShipped = true;
            }
            if (!anyShipped) continue;
            var full = _loadWithValues(t);
            for (int f = 0; f < full.Fragments; f++)
            {
                if (full.FeatureRow[f] >= 0) continue;
                int v = nodeOf[baseIdx[t] + f];
                if (!pending.TryGetValue(v, out var lists))
                {
                    lists = new List<ushort>[C];
                    for (int c = 0; c < C; c++) lists[c] = new List<ushort>(g2.Area[v]);
                    pending[v] = lists;
                }
                for (int c = 0; c < C; c++) lists[c].AddRange(full.ValuesOf(f, c));
                if (--remaining[v] == 0)
                {
                    for (int c = 0; c < C; c++)
                    {
                        var arr = lists[c].ToArray();
                        Array.Sort(arr);
                        NodeFeatures.Compute(arr, _s.Stats.Mean[c], _s.Stats.InvStd(c), g2.Features.AsSpan(v * F + c * NodeFeatures.PerChannel, NodeFeatures.PerChannel));
                    }
                    pending.Remove(v);
                }
            }
        }
        if (pending.Count > 0) throw new InvalidOperationException($"{pending.Count} nodes never received all their values");

        // --- region adjacency between final nodes ---
        var rag = new Dictionary<long, int>();
        var rLen = new List<int>(); var rDiff = new List<long>(); var rA = new List<int>(); var rB = new List<int>();
        for (int i = 0; i < bA.Count; i++)
        {
            int va = nodeOf[bA[i]], vb = nodeOf[bB[i]];
            if (va == vb) continue;
            if (va > vb) (va, vb) = (vb, va);
            long key = ((long)va << 32) | (uint)vb;
            if (!rag.TryGetValue(key, out int idx))
            {
                idx = rA.Count; rag[key] = idx; rA.Add(va); rB.Add(vb); rLen.Add(0);
                for (int c = 0; c < C; c++) rDiff.Add(0);
            }
            rLen[idx] += bLen[i];
            for (int c = 0; c < C; c++) rDiff[idx * C + c] += bDiff[i * C + c];
        }
        var order = Enumerable.Range(0, rA.Count).OrderBy(i => rA[i]).ThenBy(i => rB[i]).ToArray();
        g2.RagA = order.Select(i => rA[i]).ToArray();
        g2.RagB = order.Select(i => rB[i]).ToArray();
        g2.RagLength = order.Select(i => rLen[i]).ToArray();
        g2.RagContrast = order.Select(i =>
        {
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)rDiff[i * C + c] / rLen[i] * _s.Stats.InvStd(c);
            return (float)(s / C);
        }).ToArray();

        // --- k nearest centroids, as published ---
        var (src, dst, dist) = Knn.PublishedEdges(g2.CentroidX, g2.CentroidY, _s.K);
        g2.EdgeSrc = src; g2.EdgeDst = dst; g2.EdgeDist = dist;
        progress?.Report($"{g2.RagA.Length} adjacency edges, {src.Length} kNN edges");
        return g2;
    }

    private static int Find(int[] p, int a)
    {
        while (p[a] != a) { p[a] = p[p[a]]; a = p[a]; }
        return a;
    }

    private static void Union(int[] p, int a, int b)
    {
        a = Find(p, a); b = Find(p, b);
        if (a == b) return;
        if (a < b) p[b] = a; else p[a] = b;
    }
}
