using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Engine;

public class QuickSeamTests(ITestOutputHelper output)
{
    [Fact]
    public void TiledEqualsWhole_Smoke()
    {
        var (img, mask) = EngineHarness.Blobs(300, 220, 7);
        var slic = new SlicParameters { Spacing = 12 };
        using var whole = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = 4096, Halo = 0 });
        using var tiled = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = 64, Halo = 200 });
        int diff = 0;
        var keyA = whole.NodeMap.Select(n => whole.Graph.MinLinear[n]).ToArray();
        var keyB = tiled.NodeMap.Select(n => tiled.Graph.MinLinear[n]).ToArray();
        for (int i = 0; i < keyA.Length; i++) if (keyA[i] != keyB[i]) diff++;
        output.WriteLine($"nodes {whole.Graph.NodeCount} vs {tiled.Graph.NodeCount}, differing pixels {diff}");
        Assert.Equal(0, diff);
        Assert.Equal(whole.Graph.Features, tiled.Graph.Features);
    }
}
