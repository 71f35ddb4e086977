using ActorSeg.Core.Graph;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Engine;

/// <summary>The seam invariant: the stitched graph equals the graph of the whole image run as one tile.</summary>
public class SeamTests(ITestOutputHelper output)
{
    public sealed record Comparison(double DifferingPixelFraction, int SameNodes, int NodesA, int NodesB, int FeatureMismatches, int EdgeMismatches);

    /// <summary>Compares two runs; nodes are identified by their first pixel (raster order).</summary>
    public static Comparison Compare(EngineRun a, EngineRun b)
    {
        var ga = a.Graph; var gb = b.Graph;
        long diff = 0;
        for (int i = 0; i < a.NodeMap.Length; i++)
            if (ga.MinLinear[a.NodeMap[i]] != gb.MinLinear[b.NodeMap[i]]) diff++;
        // nodes with identical pixel sets: same key, same area, and no pixel of either disagrees
        var bad = new HashSet<long>();
        for (int i = 0; i < a.NodeMap.Length; i++)
        {
            long ka = ga.MinLinear[a.NodeMap[i]], kb = gb.MinLinear[b.NodeMap[i]];
            if (ka != kb) { bad.Add(ka); bad.Add(kb); }
        }
        var idxB = new Dictionary<long, int>();
        for (int v = 0; v < gb.NodeCount; v++) idxB[gb.MinLinear[v]] = v;
        var same = new Dictionary<int, int>();
        for (int v = 0; v < ga.NodeCount; v++)
            if (!bad.Contains(ga.MinLinear[v]) && idxB.TryGetValue(ga.MinLinear[v], out int w) && ga.Area[v] == gb.Area[w]) same[v] = w;
        int F = ga.FeatureCount, featBad = 0;
        foreach (var (v, w) in same)
        {
            if (!ga.Features.AsSpan(v * F, F).SequenceEqual(gb.Features.AsSpan(w * F, F))) featBad++;
            if (ga.Label[v] != gb.Label[w]) featBad++;
            if (ga.CentroidX[v] != gb.CentroidX[w] || ga.CentroidY[v] != gb.CentroidY[w]) featBad++;
        }
        // adjacency edges between pairs of identical nodes must agree in length and contrast
        var edgesB = new Dictionary<(int, int), (int, float)>();
        for (int e = 0; e < gb.RagA.Length; e++) edgesB[(gb.RagA[e], gb.RagB[e])] = (gb.RagLength[e], gb.RagContrast[e]);
        int edgeBad = 0;
        for (int e = 0; e < ga.RagA.Length; e++)
        {
            if (!same.TryGetValue(ga.RagA[e], out int x) || !same.TryGetValue(ga.RagB[e], out int y)) continue;
            var key = x < y ? (x, y) : (y, x);
            if (!edgesB.TryGetValue(key, out var eb) || eb.Item1 != ga.RagLength[e] || eb.Item2 != ga.RagContrast[e]) edgeBad++;
        }
        return new Comparison((double)diff / a.NodeMap.Length, same.Count, ga.NodeCount, gb.NodeCount, featBad, edgeBad);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    public void StitchedGraphEqualsWholeImageGraph_WithLargeHalo(int seed)
    {
        // property test: random image size (not multiples of the tile), tile size (down to smaller than a superpixel),
        // channels, bit depth and spacing; a halo large enough that every influence is inside it
        var rnd = new Random(seed * 7919);
        int w = rnd.Next(60, 260), h = rnd.Next(60, 260);
        int channels = rnd.Next(0, 3) == 0 ? 3 : 1;
        int bits = rnd.Next(2) == 0 ? 8 : 16;
        double spacing = 6 + rnd.NextDouble() * 10;
        int tile = new[] { 8, 13, 37, 50, 64, 101 }[rnd.Next(6)];
        var (img, mask) = EngineHarness.Blobs(w, h, seed, channels, bits);
        var slic = new SlicParameters { Spacing = spacing };
        using var whole = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = 4096, Halo = 0 });
        using var tiled = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = tile, Halo = Math.Max(w, h) });
        var c = Compare(whole, tiled);
        output.WriteLine($"{w}x{h}x{channels} {bits}-bit spacing {spacing:F1} tile {tile}: {c}");
        Assert.Equal(0.0, c.DifferingPixelFraction);
        Assert.Equal(whole.Graph.NodeCount, tiled.Graph.NodeCount);
        Assert.Equal(0, c.FeatureMismatches);
        Assert.Equal(0, c.EdgeMismatches);
        // identical partitions give identical graphs, array for array
        Assert.Equal(whole.Graph.Features, tiled.Graph.Features);
        Assert.Equal(whole.Graph.RagA, tiled.Graph.RagA);
        Assert.Equal(whole.Graph.RagB, tiled.Graph.RagB);
        Assert.Equal(whole.Graph.RagLength, tiled.Graph.RagLength);
        Assert.Equal(whole.Graph.RagContrast, tiled.Graph.RagContrast);
        Assert.Equal(whole.Graph.EdgeSrc, tiled.Graph.EdgeSrc);
        Assert.Equal(whole.Graph.EdgeDst, tiled.Graph.EdgeDst);
        Assert.Equal(whole.Graph.EdgeDist, tiled.Graph.EdgeDist);
        Assert.Equal(whole.Graph.ClassHist, tiled.Graph.ClassHist);
        Assert.Equal(whole.Graph.Label, tiled.Graph.Label);
    }

    [Fact]
    public void DefaultHalo_DiffersOnFewPixels()
    {
        var (img, mask) = EngineHarness.Blobs(800, 800, 11);
        var slic = new SlicParameters { Spacing = 10 };
        using var whole = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = 4096, Halo = 0 });
        double atDefault = 0;
        foreach (double f in new[] { 2.0, 5.0, 8.0 })
        {
            using var tiled = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = 200, Halo = (int)Math.Ceiling(f * 10) });
            var c = Compare(whole, tiled);
            output.WriteLine($"halo {f} spacings: differing pixels {c.DifferingPixelFraction:P4}, identical nodes {c.SameNodes}/{c.NodesA}, feature mismatches {c.FeatureMismatches}, edge mismatches {c.EdgeMismatches}");
            Assert.Equal(0, c.FeatureMismatches);
            Assert.Equal(0, c.EdgeMismatches);
            if (f >= GraphRequest.DefaultHaloSpacings) atDefault = Math.Max(atDefault, c.DifferingPixelFraction);
        }
    }
}
