using ActorSeg.Core.Graph;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Engine;

/// <summary>The seam invariant: the stitched graph equals the graph of the whole image run as one tile.</summary>
public class SeamTests(ITestOutputHelper output)
{
    public static GraphComparison Compare(EngineRun a, EngineRun b) => GraphComparison.Compare(a.Graph, a.NodeMap, b.Graph, b.NodeMap);

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
        AssertIdentical(whole, tiled, c);
    }

    /// <summary>Identical partitions give identical graphs, array for array.</summary>
    public static void AssertIdentical(EngineRun whole, EngineRun tiled, GraphComparison c)
    {
        Assert.Equal(0.0, c.DifferingPixelFraction);
        Assert.Equal(whole.Graph.NodeCount, tiled.Graph.NodeCount);
        Assert.Equal(0, c.FeatureMismatches);
        Assert.Equal(0, c.EdgeMismatches);
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
        foreach (double f in new[] { 2.0, 5.0, GraphRequest.DefaultHaloSpacings })
        {
            using var tiled = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = 200, Halo = (int)Math.Ceiling(f * 10) });
            var c = Compare(whole, tiled);
            output.WriteLine($"halo {f} spacings: differing pixels {c.DifferingPixelFraction:P4}, identical nodes {c.IdenticalNodes}/{c.NodesA}, feature mismatches {c.FeatureMismatches}, edge mismatches {c.EdgeMismatches}");
            Assert.Equal(0, c.FeatureMismatches);
            Assert.Equal(0, c.EdgeMismatches);
            if (f >= GraphRequest.DefaultHaloSpacings) atDefault = Math.Max(atDefault, c.DifferingPixelFraction);
        }
    }
}
