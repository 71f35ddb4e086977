using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using Xunit;

namespace ActorSeg.Tests.Engine;

public class LabelTests
{
    [Fact]
    public void IgnoreValue_LeavesUnlabelledNodesAtMinusOne_AndOutOfTheHistograms()
    {
        var (img, _) = EngineHarness.Blobs(120, 90, 4);
        // classes mode: left third class 2, middle class 0, right third "unlabelled" (value 9)
        var m = new ushort[120 * 90];
        for (int y = 0; y < 90; y++) for (int x = 0; x < 120; x++) m[y * 120 + x] = (ushort)(x < 40 ? 2 : x < 80 ? 0 : 9);
        var mask = new ArrayImageSource(120, 90, 1, m, 8);
        using var run = EngineHarness.Run(img, mask, new GraphRequest
        {
            ImagePath = "mem", MaskPath = "mem", MaskMode = MaskMode.Classes, IgnoreValue = 9,
            Slic = new SlicParameters { Spacing = 8 }, TileSize = 50, Halo = 200,
        });
        var g = run.Graph;
        Assert.Equal(3, g.NumClasses);
        for (int v = 0; v < g.NodeCount; v++)
        {
            int x0 = g.BBox[4 * v], x1 = g.BBox[4 * v + 2];
            var hist = g.ClassHist.AsSpan(v * 3, 3).ToArray();
            Assert.Equal(0, hist[1]);
            if (x0 >= 80) { Assert.Equal(-1, g.Label[v]); Assert.Equal(0, hist.Sum()); }
            if (x1 < 40) Assert.Equal(2, g.Label[v]);
            if (x0 >= 40 && x1 < 80) Assert.Equal(0, g.Label[v]);
            Assert.True(hist.Sum() <= g.Area[v]);
        }
        Assert.Contains(-1, g.Label);
    }

    [Fact]
    public void ClassesMode_RejectsValuesThatAreNotClassIds()
    {
        var raw = new ushort[] { 0, 1, 300 };
        var ex = Assert.Throws<InputFileException>(() => GraphJob.MapMask(raw, new byte[3], MaskMode.Classes, null, "m.tif"));
        Assert.Contains("m.tif", ex.Message);
        Assert.Contains("300", ex.Message);
        var bin = new byte[3];
        GraphJob.MapMask(raw, bin, MaskMode.Binary, null, "m.tif");
        Assert.Equal(new byte[] { 0, 1, 1 }, bin);
    }
}
