using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Graph;

/// <summary>What the stitcher needs to know about the job.</summary>
public sealed record StitchSettings(int Width, int Height, int Channels, ImageStatistics Stats, long MinSize,
    double SeedSpacing, int K = 10, bool HasMask = false)
{
    /// <summary>Value planes (raw channels, then derived planes) and their normalisation; null = the raw channels.</summary>
    public PlaneNorms? Norms { get; init; }
    public string[]? PlaneFeatureNames { get; init; }
    /// <summary>Append each node's boundary contrast to its neighbours (length-weighted mean of its adjacency contrasts).</summary>
    public bool ContrastFeature { get; init; }
    /// <summary>The contrast feature's name ("contrast"; "abs_contrast" in absolute units).</summary>
    public string ContrastName { get; init; } = Pipeline.GraphRequest.Contrast;
}

/// <summary>
/// Joins the partial graphs of all tiles into one global graph without seams. Open fragments that continue across a
/// tile side join into components; small components the tiles could not settle merge by the same rule the tiles use
/// (see <see cref="FragmentBuilder"/>); groups that end in one node are united; features of nodes that changed are
/// recomputed from their exact merged values, streaming tile by tile; edges are built over the final nodes.
/// </summary>
public sealed class Stitcher
{
    private readonly TilePlan _plan;
    private readonly StitchSettings _s;
    private readonly Func<int, bool, TileResult> _load;

    /// <param name="load">loads tile <c>id</c>'s partial graph, with or without its shipped values</param>
    public Stitcher(TilePlan plan, StitchSettings settings, Func<int, bool, TileResult> load)
    {
        _plan = plan; _s = settings; _load = load;
    }

    /// <summary>Group → node id, per tile, for painting the node-label map.</summary>
    public int[][] NodeOfGroup { get; private set; } = [];

    /// <param name="nodesKnown">called with <see cref="NodeOfGroup"/> as soon as the nodes are numbered, before their
    /// features and edges: whatever needs only the numbering (the node-label maps) can start then</param>
    public SuperpixelGraph Run(IProgress<string>? progress = null, Action<int[][]>? nodesKnown = null)
    {
        int tiles = _plan.Count, C = _s.Channels;
        var norms = _s.Norms ?? new PlaneNorms(_s.Stats.Mean, Enumerable.Range(0, C).Select(_s.Stats.InvStd).ToArray());
        int PL = norms.Count;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        void Step(string what) => progress?.Report($"{what} ({clock.Elapsed.TotalSeconds:F1}s, RSS {ProcessStats.CurrentRssMiB():F0} MiB, peak {ProcessStats.PeakRssMiB():F0} MiB)");

        var meta = new TileResult[tiles];
        var gBase = new int[tiles + 1]; var oBase = new int[tiles + 1]; var fBase = new long[tiles + 1];
        // the partial graphs (without their shipped values) read on every core; a failure is raised for the first tile
        // in order that failed, whichever thread met it first
        var loadFailures = new Exception?[tiles];
        Parallel.For(0, tiles, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, t =>
        {
            try { meta[t] = _load(t, false); }
            catch (Exception e) { loadFailures[t] = e; }
        });
        for (int t = 0; t < tiles; t++)
        {
            if (loadFailures[t] is { } failure) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            if (meta[t].TileId != t) throw new InvalidDataException($"partial graph of tile {t} says it is tile {meta[t].TileId}");
            if (meta[t].Channels != C || meta[t].Planes != PL) throw new InvalidDataException($"partial graph of tile {t} has {meta[t].Channels} channels / {meta[t].Planes} planes, expected {C} / {PL}");
            var spec = _plan.Tile(t);
            if (meta[t].Core != spec.Core) throw new InvalidDataException($"partial graph of tile {t} covers {meta[t].Core}, expected {spec.Core}");
            gBase[t + 1] = checked(gBase[t] + meta[t].Groups);
            oBase[t + 1] = checked(oBase[t] + meta[t].Open);
            fBase[t + 1] = fBase[t] + meta[t].Fragments;
        }
        int G = gBase[tiles], O = oBase[tiles];
        Step($"loaded {tiles} partial graphs: {G} groups, {O} open fragments");

        // --- components of open fragments across tile sides; boundaries across sides ---
        var oParent = new int[O];
        for (int i = 0; i < O; i++) oParent[i] = i;
        var cross = new List<(int From, int To, long First)>();              // directed, between open fragments of two tiles
        // boundaries between groups: each tile's own pairs (summed by the tile), then one record per pixel across tile
        // sides; summed per pair of nodes once the nodes are known
        long tilePairs = 0;
        for (int t = 0; t < tiles; t++) tilePairs += meta[t].GAdjA.Length;
        var groupAdj = new BoundaryRecords(C, (int)Math.Min(Array.MaxLength / Math.Max(1, C), tilePairs + tilePairs / 8 + 1024));
        for (int t = 0; t < tiles; t++)
        {
            var m = meta[t];
            for (int i = 0; i < m.GAdjA.Length; i++)
                groupAdj.Add(gBase[t] + m.GAdjA[i], gBase[t] + m.GAdjB[i], m.GAdjLength[i], m.GAdjAbsDiff.AsSpan(i * C, C));
        }
        var one = new long[C];
        for (int t = 0; t < tiles; t++)
        {
            var spec = _plan.Tile(t);
            if (spec.Col + 1 < _plan.Cols) Join(t, t + 1, TileResult.Right, TileResult.Left, vertical: true);
            if (spec.Row + 1 < _plan.Rows) Join(t, t + _plan.Cols, TileResult.Bottom, TileResult.Top, vertical: false);
        }
        void Join(int ta, int tb, int sa, int sb, bool vertical)
        {
            var a = meta[ta]; var b = meta[tb];
            int len = a.SideOpen[sa].Length;
            if (b.SideOpen[sb].Length != len) throw new InvalidDataException($"tiles {ta} and {tb} disagree on their shared side");
            var core = a.Core;
            for (int i = 0; i < len; i++)
            {
                int la = a.SideOpen[sa][i], lb = b.SideOpen[sb][i];
                if (a.SideSeed[sa][i] == FragmentBuilder.Glass || b.SideSeed[sb][i] == FragmentBuilder.Glass) continue; // nothing borders glass
                if (la < 0 || lb < 0) throw new InvalidDataException($"tiles {ta}/{tb}: a side pixel is not in an open fragment");
                int oa = oBase[ta] + la, ob = oBase[tb] + lb;
                if (a.SideSeed[sa][i] == b.SideSeed[sb][i]) { FragmentBuilder.Union(oParent, oa, ob); continue; }
                // linear indices of the two pixels
                long pa = vertical ? (long)(core.Y + i) * _s.Width + core.Right - 1 : (long)(core.Bottom - 1) * _s.Width + core.X + i;
                long pb = vertical ? pa + 1 : pa + _s.Width;
                cross.Add((oa, ob, pb)); cross.Add((ob, oa, pa));
                for (int c = 0; c < C; c++) one[c] = Math.Abs(a.SideValues[sa][i * C + c] - b.SideValues[sb][i * C + c]);
                groupAdj.Add(gBase[ta] + a.OGroup[la], gBase[tb] + b.OGroup[lb], 1, one);
            }
        }
        Step($"joined tile sides");

        // --- decisions for small open components, on the unmerged component graph ---
        var compArea = new long[O];
        var groupOfOpen = new int[O];
        for (int t = 0; t < tiles; t++)
            for (int o = 0; o < meta[t].Open; o++)
            {
                int go = oBase[t] + o;
                compArea[FragmentBuilder.Find(oParent, go)] += meta[t].OArea[o];
                groupOfOpen[go] = gBase[t] + meta[t].OGroup[o];
            }
        // candidate (component, neighbour) → (length, first pixel, target group); closed neighbours are keyed past the open range
        var cand = new Dictionary<(int Comp, long Nbr), (long Len, long First, int Group)>();
        void Candidate(int comp, long nbr, long len, long first, int group)
        {
            if (cand.TryGetValue((comp, nbr), out var cur)) cand[(comp, nbr)] = (cur.Len + len, Math.Min(cur.First, first), cur.Group);
            else cand[(comp, nbr)] = (len, first, group);
        }
        for (int t = 0; t < tiles; t++)
        {
            var m = meta[t];
            for (int i = 0; i < m.RFrom.Length; i++)
            {
                int comp = FragmentBuilder.Find(oParent, oBase[t] + m.RFrom[i]);
                if (compArea[comp] >= _s.MinSize) continue;
                long nbr;
                int group = gBase[t] + m.RToGroup[i];
                if (m.RToOpen[i] >= 0)
                {
                    int nc = FragmentBuilder.Find(oParent, oBase[t] + m.RToOpen[i]);
                    if (nc == comp) continue;
                    nbr = nc;
                }
                else nbr = O + fBase[t] + m.RToFragment[i];
                Candidate(comp, nbr, m.RLength[i], m.RFirst[i], group);
            }
        }
        foreach (var (from, to, first) in cross)
        {
            int comp = FragmentBuilder.Find(oParent, from);
            if (compArea[comp] >= _s.MinSize) continue;
            int nc = FragmentBuilder.Find(oParent, to);
            if (nc == comp) continue;
            Candidate(comp, nc, 1, first, groupOfOpen[to]);
        }
        var best = new Dictionary<int, (long Len, long First, int Group)>();
        foreach (var ((comp, _), v) in cand)
            if (!best.TryGetValue(comp, out var b) || v.Len > b.Len || (v.Len == b.Len && v.First < b.First)) best[comp] = v;

        // --- groups united into nodes: by component membership, then by the decisions ---
        var gParent = new int[G];
        for (int i = 0; i < G; i++) gParent[i] = i;
        for (int o = 0; o < O; o++) FragmentBuilder.Union(gParent, groupOfOpen[o], groupOfOpen[FragmentBuilder.Find(oParent, o)]);
        foreach (var (comp, v) in best) FragmentBuilder.Union(gParent, groupOfOpen[comp], v.Group);
        cand.Clear(); cand.TrimExcess(); cross.Clear(); cross.TrimExcess();
        Step($"settled {best.Count} small components across tiles");

        // --- final nodes, ordered by their first pixel ---
        var rootMin = new long[G];
        Array.Fill(rootMin, long.MaxValue);
        for (int t = 0; t < tiles; t++)
            for (int g = 0; g < meta[t].Groups; g++)
            {
                int r = FragmentBuilder.Find(gParent, gBase[t] + g);
                rootMin[r] = Math.Min(rootMin[r], meta[t].GMinLinear[g]);
            }
        var roots = Enumerable.Range(0, G).Where(i => gParent[i] == i).OrderBy(i => rootMin[i]).ToArray();
        int N = roots.Length;
        var nodeOfRoot = new int[G];
        for (int i = 0; i < N; i++) nodeOfRoot[roots[i]] = i;
        var nodeOf = new int[G];
        for (int g = 0; g < G; g++) nodeOf[g] = nodeOfRoot[FragmentBuilder.Find(gParent, g)];
        NodeOfGroup = new int[tiles][];
        for (int t = 0; t < tiles; t++) NodeOfGroup[t] = nodeOf.AsSpan(gBase[t], meta[t].Groups).ToArray();
        Step($"{N} nodes");
        nodesKnown?.Invoke(NodeOfGroup);

        // --- node geometry and classes ---
        var graph = new SuperpixelGraph
        {
            Width = _s.Width, Height = _s.Height, Channels = C, NodeCount = N, SeedSpacing = _s.SeedSpacing,
            MeanSpacing = Math.Sqrt((double)_s.Width * _s.Height / Math.Max(1, N)),
            MinLinear = new long[N], Area = new int[N], CentroidX = new double[N], CentroidY = new double[N],
            BBox = new int[4 * N], FeatureNames = _s.PlaneFeatureNames ?? NodeFeatures.Names(C), K = _s.K, HasLabels = _s.HasMask,
        };
        var sumX = new long[N]; var sumY = new long[N];
        for (int i = 0; i < N; i++) { graph.MinLinear[i] = rootMin[roots[i]]; graph.BBox[4 * i] = int.MaxValue; graph.BBox[4 * i + 1] = int.MaxValue; graph.BBox[4 * i + 2] = -1; graph.BBox[4 * i + 3] = -1; }
        int maxClass = -1;
        for (int t = 0; t < tiles; t++) foreach (var c in meta[t].GClassIds) maxClass = Math.Max(maxClass, c);
        int K = Math.Max(maxClass + 1, _s.HasMask ? 1 : 0);
        graph.NumClasses = K;
        graph.ClassHist = new int[N * K];
        var groupsOfNode = new int[N]; var shippedOfNode = new int[N];
        for (int t = 0; t < tiles; t++)
        {
            var m = meta[t];
            for (int g = 0; g < m.Groups; g++)
            {
                int v = nodeOf[gBase[t] + g];
                graph.Area[v] += m.GArea[g]; sumX[v] += m.GSumX[g]; sumY[v] += m.GSumY[g];
                graph.BBox[4 * v] = Math.Min(graph.BBox[4 * v], m.GBBox[4 * g]);
                graph.BBox[4 * v + 1] = Math.Min(graph.BBox[4 * v + 1], m.GBBox[4 * g + 1]);
                graph.BBox[4 * v + 2] = Math.Max(graph.BBox[4 * v + 2], m.GBBox[4 * g + 2]);
                graph.BBox[4 * v + 3] = Math.Max(graph.BBox[4 * v + 3], m.GBBox[4 * g + 3]);
                for (int q = m.GClassOffsets[g]; q < m.GClassOffsets[g + 1]; q++) graph.ClassHist[v * K + m.GClassIds[q]] += m.GClassCounts[q];
                groupsOfNode[v]++;
                if (m.GFeatureRow[g] < 0) shippedOfNode[v]++;
            }
        }
        for (int i = 0; i < N; i++) { graph.CentroidX[i] = (double)sumX[i] / graph.Area[i]; graph.CentroidY[i] = (double)sumY[i] / graph.Area[i]; }
        graph.Label = new int[N];
        for (int i = 0; i < N; i++)
        {
            int lab = -1, bestCount = 0;
            for (int c = 0; c < K; c++) if (graph.ClassHist[i * K + c] > bestCount) { bestCount = graph.ClassHist[i * K + c]; lab = c; }
            graph.Label[i] = lab;
        }

        // --- features: final groups carry them; the others are recomputed from merged values, tile by tile ---
        int F = NodeFeatures.PerChannel * PL;
        if (graph.FeatureNames.Length != F) throw new ArgumentException($"{graph.FeatureNames.Length} feature names for {F} features");
        graph.Features = new float[N * F];
        var pending = new Dictionary<int, List<ushort>[]>();
        var remaining = (int[])shippedOfNode.Clone();
        var shippedTiles = new List<int>();
        for (int t = 0; t < tiles; t++)
        {
            var m = meta[t];
            bool anyShipped = false;
            for (int g = 0; g < m.Groups; g++)
            {
                int v = nodeOf[gBase[t] + g];
                if (m.GFeatureRow[g] >= 0)
                {
                    if (groupsOfNode[v] != 1) throw new InvalidOperationException($"tile {t}: final group {g} belongs to a merged node");
                    m.Features.AsSpan(m.GFeatureRow[g] * F, F).CopyTo(graph.Features.AsSpan(v * F, F));
                }
                else anyShipped = true;
            }
            if (anyShipped) shippedTiles.Add(t);
        }
        // the tiles with shipped values, each read (with its values) while the one before is merged; a node whose
        // values are all in is sorted and described on every core (each node's features depend on its values alone)
        int firstShipped = shippedTiles.Count > 0 ? shippedTiles[0] : -1;
        Task<TileResult>? next = firstShipped >= 0 ? Task.Run(() => _load(firstShipped, true)) : null;
        var complete = new List<(int Node, List<ushort>[] Lists)>();
        try
        {
            for (int k = 0; k < shippedTiles.Count; k++)
            {
                int t = shippedTiles[k];
                var full = next!.GetAwaiter().GetResult();
                int following = k + 1 < shippedTiles.Count ? shippedTiles[k + 1] : -1; // a copy: the task must not see k move on
                next = following >= 0 ? Task.Run(() => _load(following, true)) : null;
                complete.Clear();
                for (int g = 0; g < full.Groups; g++)
                {
                    if (full.GFeatureRow[g] >= 0) continue;
                    int v = nodeOf[gBase[t] + g];
                    if (!pending.TryGetValue(v, out var lists))
                    {
                        lists = new List<ushort>[PL];
                        for (int c = 0; c < PL; c++) lists[c] = new List<ushort>(graph.Area[v]);
                        pending[v] = lists;
                    }
                    for (int c = 0; c < PL; c++) lists[c].AddRange(full.ValuesOf(g, c));
                    if (--remaining[v] == 0) { complete.Add((v, lists)); pending.Remove(v); }
                }
                // the features from a histogram of the values where their range allows, as the tiles do (the same
                // features as from the sorted values, to the bit), sorting only where it does not
                Parallel.For(0, complete.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                    () => (Counts: new int[NodeFeatures.CountsLength], Tmp: new ushort[256]), (i, _, scratch) =>
                {
                    var (v, lists) = complete[i];
                    for (int c = 0; c < PL; c++)
                    {
                        var arr = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(lists[c]);
                        if (scratch.Tmp.Length < arr.Length) scratch.Tmp = new ushort[Math.Max(arr.Length, 2 * scratch.Tmp.Length)];
                        NodeFeatures.ComputeUnsorted(arr, norms.Mean[c], norms.InvStd[c], graph.Features.AsSpan(v * F + c * NodeFeatures.PerChannel, NodeFeatures.PerChannel),
                            scratch.Counts, scratch.Tmp.AsSpan(0, arr.Length));
                    }
                    return scratch;
                }, _ => { });
                if (k % 16 == 15) GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false); // drop the values of earlier tiles
            }
        }
        finally
        {
            // a stitch that fails half way (a damaged tile file, say) leaves no read of the next tile running behind it
            // into the job's clean-up or retry, and its own failure is not left unobserved
            if (next is not null) try { next.Wait(); } catch (AggregateException) { }
        }
        if (pending.Count > 0) throw new InvalidOperationException($"{pending.Count} nodes never received all their values");
        Array.Clear(meta); // the partial graphs are no longer needed (captured by a local function, so clear explicitly)
        Step("features");

        // --- region adjacency between final nodes ---
        // by (a, b), summed per pair of nodes
        var rag = groupAdj.SumByPair(nodeOf);
        groupAdj.Release();
        int R = rag.A.Length;
        graph.RagA = rag.A; graph.RagB = rag.B;
        graph.RagLength = new int[R]; graph.RagContrast = new float[R];
        // the boundary contrast in the units of the channels' features (z units, or absolute)
        var contrastInv = _s.Norms is { } pn ? pn.InvStd.AsSpan(0, C).ToArray() : Enumerable.Range(0, C).Select(_s.Stats.InvStd).ToArray();
        for (int r = 0; r < R; r++)
        {
            graph.RagLength[r] = (int)rag.Length[r];
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)rag.Diff[r * C + c] / rag.Length[r] * contrastInv[c];
            graph.RagContrast[r] = (float)(s / C);
        }
        rag = null!;
        if (_s.ContrastFeature) AppendContrast(graph, _s.ContrastName);

        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);

        // --- k nearest centroids, as published ---
        var (src, dst, dist) = Knn.PublishedEdges(graph.CentroidX, graph.CentroidY, _s.K);
        graph.EdgeSrc = src; graph.EdgeDst = dst; graph.EdgeDist = dist;
        Step($"{graph.RagA.Length} adjacency edges, {src.Length} kNN edges");
        return graph;
    }

    /// <summary>Adds the feature "contrast": the node's boundary contrast to its neighbours, weighted by shared length.</summary>
    private static void AppendContrast(SuperpixelGraph g, string name)
    {
        int N = g.NodeCount, F = g.FeatureCount;
        var num = new double[N]; var den = new double[N];
        for (int e = 0; e < g.RagA.Length; e++)
        {
            double w = g.RagLength[e], c = g.RagContrast[e];
            num[g.RagA[e]] += w * c; den[g.RagA[e]] += w;
            num[g.RagB[e]] += w * c; den[g.RagB[e]] += w;
        }
        var x = new float[N * (F + 1)];
        for (int v = 0; v < N; v++)
        {
            g.Features.AsSpan(v * F, F).CopyTo(x.AsSpan(v * (F + 1), F));
            x[v * (F + 1) + F] = den[v] > 0 ? (float)(num[v] / den[v]) : 0f;
        }
        g.Features = x;
        g.FeatureNames = g.FeatureNames.Append(name).ToArray();
    }
}
