using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using ActorSeg.Tests.Engine;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>The node maps are written beside the stitch: when their writer fails (here its file cannot be created, as on
/// a full or read-only disk), the job fails with that error once the stitch is done, and nothing is published: the output
/// folder keeps what it held.</summary>
public class GraphOutputsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorseg-outputs-" + Guid.NewGuid().ToString("N")[..12]);

    [Fact]
    public void AFailingNodeMapWriter_FailsTheJob_AndPublishesNothing()
    {
        var (img, mask) = EngineHarness.Blobs(300, 260, seed: 3);
        var req = new GraphRequest { ImagePath = "blobs", TileSize = 128, Slic = new SlicParameters { Spacing = 12 } };
        var job = GraphJob.Prepare("outputs", req, Path.Combine(_dir, "work"), img.Width, img.Height, img.Channels, img.BitDepth, EngineHarness.Stats(img));
        job.Save();
        foreach (var t in job.Plan.Tiles()) GraphJob.ProcessTile(job, t, img, mask);
        // the node map's staging file cannot be created: a folder stands in its place
        Directory.CreateDirectory(Path.Combine(job.WorkDir, "out", GraphOutputs.NodeMapFile));
        var outDir = Path.Combine(_dir, "out");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, GraphOutputs.SummaryFile), "the previous run's summary");

        var e = Record.Exception(() => GraphOutputs.StitchAndWrite(job, outDir, writeNodeMap: true));
        Assert.True(e is IOException or UnauthorizedAccessException, $"expected the writer's file error, got {e}");
        Assert.Equal([Path.Combine(outDir, GraphOutputs.SummaryFile)], Directory.GetFiles(outDir));
        Assert.Equal("the previous run's summary", File.ReadAllText(Path.Combine(outDir, GraphOutputs.SummaryFile)));
    }

    [Theory]
    [InlineData(5_000, 2)]     // the usual tile: two bytes a pixel
    [InlineData(65_534, 2)]    // the most groups two bytes hold, 0xFFFF being glass
    [InlineData(65_535, 4)]    // one more: four bytes a pixel
    [InlineData(200_000, 4)]
    public void TileLabelRasters_TakeTwoBytesAPixelWhenTheGroupsFit_AndReadBackExactly(int groupCount, int bytesPerPixel)
    {
        Directory.CreateDirectory(_dir);
        const int w = 301, h = 97;
        var rnd = new Random(groupCount);
        var groups = new int[w * h];
        for (int i = 0; i < groups.Length; i++) groups[i] = rnd.Next(10) == 0 ? -1 : rnd.Next(groupCount);
        groups[5] = groupCount - 1;
        var path = Path.Combine(_dir, $"tile-{groupCount}.labels");
        GraphJob.WriteLabels(path, groups, groupCount);
        Assert.Equal((long)w * h * bytesPerPixel, new FileInfo(path).Length);
        var all = new int[w * h];
        GraphJob.ReadLabelRows(path, w, h, 0, h, all);
        Assert.Equal(groups, all);
        // a band of rows from the middle, into a larger buffer whose tail stays untouched
        var band = new int[w * 40 + 3];
        band.AsSpan(w * 31).Fill(12345);
        GraphJob.ReadLabelRows(path, w, h, 50, 31, band);
        Assert.Equal(groups.AsSpan(50 * w, 31 * w).ToArray(), band.AsSpan(0, 31 * w).ToArray());
        Assert.All(band.AsSpan(w * 31).ToArray(), v => Assert.Equal(12345, v));
    }

    [Fact]
    public void ATileLabelRasterOfTheWrongLength_IsRefused_WithItsPath()
    {
        Directory.CreateDirectory(_dir);
        var path = Path.Combine(_dir, "tile-000007.labels");
        File.WriteAllBytes(path, new byte[100 * 10 * 3]);
        var e = Assert.Throws<InvalidDataException>(() => GraphJob.ReadLabelRows(path, 100, 10, 0, 10, new int[1000]));
        Assert.Contains(path, e.Message);
        Assert.Contains("3000 bytes", e.Message);
        var glass = Path.Combine(_dir, "glass.labels");
        File.WriteAllBytes(glass, new byte[8]);
        Assert.Throws<InvalidDataException>(() => GraphJob.ReadLabelRows(glass, 2, 2, 0, 2, new int[4], glass: true));
    }

    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }
}
