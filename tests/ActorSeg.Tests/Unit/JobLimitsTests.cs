using System.CommandLine;
using ActorSeg.Cli;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using ActorSeg.Tests.Engine;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>Absurd job options are refused with what is wrong before any tile runs.</summary>
public class JobLimitsTests() : TempDirTest("joblimits")
{
    private static readonly ArrayImageSource Img = EngineHarness.Blobs(64, 48, 3).Image;

    private GraphJobManifest Prepare(GraphRequest req) =>
        GraphJob.Prepare("limits", req, Path.Combine(_dir, "work"), Img.Width, Img.Height, Img.Channels, Img.BitDepth, EngineHarness.Stats(Img));

    [Theory]
    [InlineData(-1)]
    [InlineData(-1000)]
    [InlineData(int.MaxValue)] // before: accepted, and a tile's region overflowed ("region 0,0 -2147483137x-2147483137")
    [InlineData(GraphRequest.MaxHalo + 1)]
    public void AHaloOutOfRange_IsRefused_EvenForOneTile(int halo)
    {
        var e = Assert.Throws<ArgumentException>(() => Prepare(new GraphRequest { ImagePath = "x.tif", Halo = halo, TileSize = 2048 }));
        Assert.Contains($"halo must be in [0, 1,048,576] pixels (got {halo})", e.Message);
    }

    [Theory]
    [InlineData(-2)]
    [InlineData(int.MinValue)]
    public void ANegativeSeries_IsRefused_AsNoImagesIndex(int series)
    {
        // a job sent over the cluster port or POST /jobs with any series: -1 (or none) is the default image, below that nothing
        var e = Assert.Throws<ArgumentException>(() => Prepare(new GraphRequest { ImagePath = "x.tif", Series = series }));
        Assert.Contains($"series must be an image's index, 0 or more (got {series})", e.Message);
        Prepare(new GraphRequest { ImagePath = "x.tif", Series = -1 });
        Assert.Equal(-1, ActorSeg.Coordinator.GraphCoordinatorActor.ToRequest(new ActorSeg.Messages.GraphJobSpec("/x.tif", null, "/o")).Series);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(65536)]
    [InlineData(70000)]
    public void AnIgnoreValueNoMaskSampleCanHave_IsRefused(int ignore)
    {
        // masks are read as 0..65535: such a value would never mark a pixel unlabelled, and nothing would say so
        var e = Assert.Throws<ArgumentException>(() => Prepare(new GraphRequest { ImagePath = "x.tif", IgnoreValue = ignore }));
        Assert.Contains($"ignore value must be a mask value in [0, 65535] (got {ignore})", e.Message);
        Prepare(new GraphRequest { ImagePath = "x.tif", IgnoreValue = 65535 });
    }

    [Fact]
    public void SegmentsThatMakeTheSpacingUnderTwoPixels_AreRefused_AsASmallSpacingIs()
    {
        // 64 x 48 = 3072 px: 768 segments give a spacing of exactly 2 px, 769 less
        Assert.Equal(2.0, Prepare(new GraphRequest { ImagePath = "x.tif", Slic = new SlicParameters { Segments = 768 } }).Grid.S, 6);
        var e = Assert.Throws<ArgumentException>(() => Prepare(new GraphRequest { ImagePath = "x.tif", Slic = new SlicParameters { Segments = 100_000 } }));
        Assert.Contains("segments 100000 on a 64x48 image", e.Message);
        Assert.Contains("at most 768 segments", e.Message);
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(-1, false)]
    [InlineData(1, true)]
    [InlineData(100_000, false)]
    public void Workers_AreBoundedByTheCores(int workers, bool ok)
    {
        var option = WorkersOption.Create("Tile workers");
        var cmd = new RootCommand { option };
        var parsed = cmd.Parse(["--workers", workers.ToString()]);
        Assert.Equal(ok, parsed.Errors.Count == 0);
        if (!ok) Assert.Contains($"--workers {workers}: give 1 to {WorkersOption.Max}", parsed.Errors[0].Message);
        Assert.True(cmd.Parse(["--workers", WorkersOption.Max.ToString()]).Errors.Count == 0);
        Assert.Equal(Environment.ProcessorCount, cmd.Parse([]).GetValue(option));
    }
}

/// <summary>A cluster node's worker slots (--workers, ACTORSEG_WORKERS) take the same bound as the in-process commands.</summary>
public class NodeWorkerLimitsTests
{
    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(100_000, false)]
    public void NodeWorkers_AreBoundedByTheCores(int workers, bool ok)
    {
        var options = new NodeOptions { Hostname = "127.0.0.5", Workers = workers };
        if (ok) { options.Validate(); return; }
        var e = Assert.Throws<ArgumentException>(() => options.Validate());
        Assert.Contains($"must be 1 to {WorkersOption.Max}", e.Message);
        Assert.Contains($"got {workers}", e.Message);
    }
}
