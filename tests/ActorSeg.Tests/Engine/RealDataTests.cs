using ActorSeg.Core.Graph;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Engine;

/// <summary>The engine on the team's real microscopy data (../shared/data); skipped where it is absent.</summary>
public class RealDataTests(ITestOutputHelper output)
{
    private static (EngineRun Run, byte[] Truth) Build(string image, string mask, double spacing, int tile, int? halo)
    {
        using var img = VipsImageSource.Open(image);
        using var msk = VipsImageSource.Open(mask, 0, firstBandOnly: true);
        var data = new ushort[img.Width * img.Height * img.Channels];
        img.ReadRegion(0, 0, img.Width, img.Height, data);
        var m = new ushort[img.Width * img.Height];
        msk.ReadRegion(0, 0, img.Width, img.Height, m);
        var a = new ArrayImageSource(img.Width, img.Height, img.Channels, data, img.BitDepth);
        var b = new ArrayImageSource(img.Width, img.Height, 1, m, 8);
        var run = EngineHarness.Run(a, b, new GraphRequest { ImagePath = image, MaskPath = mask, Slic = new SlicParameters { Spacing = spacing }, TileSize = tile, Halo = halo });
        return (run, m.Select(v => v > 0 ? (byte)1 : (byte)0).ToArray());
    }

    public static IEnumerable<object[]> Fields()
    {
        var root = TestPaths.SharedData;
        if (root is null) { yield return new object[] { "", "", 0.0 }; yield break; }
        foreach (var f in Directory.GetFiles(Path.Combine(root, "nist-colonies", "images"), "*.tif").Order().Take(3))
            yield return new object[] { f, Path.Combine(root, "nist-colonies", "masks", Path.GetFileName(f)), Math.Sqrt(256.0 * 256 / 1000) };
        foreach (var f in Directory.GetFiles(Path.Combine(root, "bbbc039", "images"), "*.tif").Order().Take(2))
            yield return new object[] { f, Path.Combine(root, "bbbc039", "masks", Path.GetFileNameWithoutExtension(f) + ".png"), Math.Sqrt(520.0 * 696 / 3000) };
    }

    [Theory]
    [MemberData(nameof(Fields))]
    public void RealFields_TiledEqualsWhole_AndMajorityLabelsReachTheMask(string image, string mask, double spacing)
    {
        if (image == "") { output.WriteLine("../shared/data is absent: skipped"); return; }
        var (whole, truth) = Build(image, mask, spacing, 4096, 0);
        using var _ = whole;
        var (tiled, _) = Build(image, mask, spacing, 64, 2000);
        using var __ = tiled;
        var c = GraphComparison.Compare(whole.Graph, whole.NodeMap, tiled.Graph, tiled.NodeMap);
        Assert.Equal(0, c.DifferingPixels);
        Assert.Equal(whole.Graph.Features, tiled.Graph.Features);
        Assert.Equal(whole.Graph.EdgeSrc, tiled.Graph.EdgeSrc);
        // the superpixel ceiling: every pixel takes its node's majority label
        long right = 0;
        for (int i = 0; i < truth.Length; i++) if (whole.Graph.Label[whole.NodeMap[i]] == truth[i]) right++;
        double ceiling = (double)right / truth.Length;
        output.WriteLine($"{Path.GetFileName(image)}: {whole.Graph.NodeCount} nodes, superpixel ceiling {ceiling:P2}");
        Assert.True(ceiling > 0.96, $"ceiling {ceiling:P2}");
    }
}
