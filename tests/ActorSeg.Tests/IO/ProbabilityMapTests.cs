using ActorSeg.Core.IO;
using Xunit;
using Vips = NetVips;

namespace ActorSeg.Tests.IO;

/// <summary>prob.tif: painted beside the mask from the node map, the winning class's probability × 255 per pixel, pyramidal.</summary>
public class ProbabilityMapTests() : TempDirTest("probmap")
{
    [Fact]
    public void WinningProbabilities_ScaleTheNodesPaintedClass()
    {
        byte[] classes = [0, 2, 1, 2];
        float[] probs = [0.8f, 0.1f, 0.1f, /**/ 0.1f, 0.3f, 0.6f, /**/ 0.3f, 0.4f, 0.3f, /**/ 0f, 0f, 1f];
        Assert.Equal(new byte[] { 204, 153, 102, 255 }, MaskPainter.WinningProbabilities(classes, probs, 3));
        Assert.Throws<ArgumentException>(() => MaskPainter.WinningProbabilities(classes, probs, 2));
        Assert.Throws<ArgumentException>(() => MaskPainter.WinningProbabilities([0, 3], [0.5f, 0.5f, 0.5f, 0.5f], 2));
    }

    [Fact]
    public void Paint_WritesTheProbabilityMapBesideTheMask_MatchingTheNodes()
    {
        const int W = 1000, H = 700, N = 50;
        // a node map of vertical stripes with some glass (no node) in the top-left corner
        var ids = new uint[W * H];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                ids[y * W + x] = x < 40 && y < 30 ? GraphOutputs.NoNode : (uint)((x / 20 + y / 100) % N);
        var nodeMap = Path.Combine(_dir, "nodes.tif");
        using (var img = Vips.Image.NewFromMemory(ids, W, H, 1, Vips.Enums.BandFormat.Uint))
            img.Tiffsave(nodeMap, tile: true, tileWidth: 256, tileHeight: 256, bigtiff: true);
        var rnd = new Random(3);
        var probs = new float[N * 2];
        var classes = new byte[N];
        for (int v = 0; v < N; v++)
        {
            float p1 = (float)rnd.NextDouble();
            probs[v * 2] = 1 - p1; probs[v * 2 + 1] = p1;
            classes[v] = (byte)(p1 > 0.5f ? 1 : 0);
        }
        var mask = Path.Combine(_dir, "mask.tif");
        var prob = Path.Combine(_dir, AssignmentPaths.ProbabilityMapFile);
        MaskPainter.Paint(nodeMap, classes, mask, probabilityOfNode: MaskPainter.WinningProbabilities(classes, probs, 2), probabilityPath: prob);

        using var pm = Vips.Image.NewFromFile(prob);
        Assert.Equal((W, H, 1, Vips.Enums.BandFormat.Uchar), (pm.Width, pm.Height, pm.Bands, pm.Format));
        Assert.True((int)pm.Get("n-pages") >= 3, "prob.tif should be pyramidal");
        var px = pm.WriteToMemory<byte>();
        using var mm = Vips.Image.NewFromFile(mask);
        var mpx = mm.WriteToMemory<byte>();
        for (int i = 0; i < W * H; i++)
        {
            uint id = ids[i];
            if (id == GraphOutputs.NoNode) { Assert.Equal(0, px[i]); continue; }
            float p = probs[id * 2 + classes[id]];
            Assert.True(Math.Abs(px[i] - p * 255) <= 0.5001, $"pixel {i}: {px[i]} for node {id} with probability {p}");
            Assert.True(px[i] >= 127, "the winning class of two has probability ≥ 0.5");
            Assert.Equal(classes[id], mpx[i]);
        }
        // the next level is half the size (libvips' tiff loader: page 1 of the pyramid)
        using var level1 = Vips.Image.Tiffload(prob, page: 1);
        Assert.Equal((W / 2, H / 2), (level1.Width, level1.Height));
        // nothing temporary is left beside it
        Assert.Equal(new[] { "mask.ome.tif", "mask.tif", "nodes.tif", "prob.tif" }, Directory.GetFiles(_dir).Select(Path.GetFileName).Order().ToArray());

        // without probabilities, no map
        var dir2 = Path.Combine(_dir, "b"); Directory.CreateDirectory(dir2);
        MaskPainter.Paint(nodeMap, classes, Path.Combine(dir2, "mask.tif"));
        Assert.False(File.Exists(Path.Combine(dir2, AssignmentPaths.ProbabilityMapFile)));
    }
}
