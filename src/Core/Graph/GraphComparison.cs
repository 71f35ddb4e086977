namespace ActorSeg.Core.Graph;

/// <summary>How two graphs of the same image differ (e.g. tiled vs. whole image). Nodes are identified by their first pixel.</summary>
public sealed record GraphComparison(double DifferingPixelFraction, long DifferingPixels, int IdenticalNodes, int NodesA, int NodesB,
    int FeatureMismatches, int EdgeMismatches)
{
    /// <param name="mapA">node id of every pixel in graph A (row-major), -1 where there is no node (glass)</param>
    public static GraphComparison Compare(SuperpixelGraph a, ReadOnlySpan<int> mapA, SuperpixelGraph b, ReadOnlySpan<int> mapB)
    {
        if (mapA.Length != mapB.Length) throw new ArgumentException("node maps differ in size");
        long diff = 0;
        var bad = new HashSet<long>();
        for (int i = 0; i < mapA.Length; i++)
        {
            long ka = mapA[i] < 0 ? -1 : a.MinLinear[mapA[i]], kb = mapB[i] < 0 ? -1 : b.MinLinear[mapB[i]];
            if (ka != kb) { diff++; bad.Add(ka); bad.Add(kb); }
        }
        // nodes with identical pixel sets: same first pixel, same area, no pixel of either disagreeing
        var idxB = new Dictionary<long, int>(b.NodeCount);
        for (int v = 0; v < b.NodeCount; v++) idxB[b.MinLinear[v]] = v;
        var same = new Dictionary<int, int>();
        for (int v = 0; v < a.NodeCount; v++)
            if (!bad.Contains(a.MinLinear[v]) && idxB.TryGetValue(a.MinLinear[v], out int w) && a.Area[v] == b.Area[w]) same[v] = w;
        // a node's own features (context features such as "contrast" depend on its neighbours as well)
        int F = a.FeatureCount, own = a.FeatureNames.Count(n => n is not (Pipeline.GraphRequest.Contrast or Pipeline.GraphRequest.AbsoluteContrast)), featBad = 0;
        foreach (var (v, w) in same)
        {
            if (!a.Features.AsSpan(v * F, own).SequenceEqual(b.Features.AsSpan(w * F, own))) featBad++;
            else if (a.Label[v] != b.Label[w] || a.CentroidX[v] != b.CentroidX[w] || a.CentroidY[v] != b.CentroidY[w]) featBad++;
        }
        // adjacency edges between two identical nodes must agree in length and contrast
        var edgesB = new Dictionary<(int, int), (int, float)>();
        for (int e = 0; e < b.RagA.Length; e++) edgesB[(b.RagA[e], b.RagB[e])] = (b.RagLength[e], b.RagContrast[e]);
        int edgeBad = 0;
        for (int e = 0; e < a.RagA.Length; e++)
        {
            if (!same.TryGetValue(a.RagA[e], out int x) || !same.TryGetValue(a.RagB[e], out int y)) continue;
            var key = x < y ? (x, y) : (y, x);
            if (!edgesB.TryGetValue(key, out var eb) || eb.Item1 != a.RagLength[e] || eb.Item2 != a.RagContrast[e]) edgeBad++;
        }
        return new GraphComparison((double)diff / mapA.Length, diff, same.Count, a.NodeCount, b.NodeCount, featBad, edgeBad);
    }
}
