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

    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }
}
