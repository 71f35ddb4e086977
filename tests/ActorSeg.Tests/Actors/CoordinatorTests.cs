using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorSeg.Coordinator;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Messages;
using Xunit;

namespace ActorSeg.Tests.Actors;

/// <summary>The coordinator's distribution protocol, with test probes standing in for tile workers.</summary>
public class CoordinatorTests : TestKit, IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("coord");
    private readonly string _img, _mask;

    public CoordinatorTests()
    {
        _img = Path.Combine(_dir, "img.tif"); _mask = Path.Combine(_dir, "mask.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(300, 260, SyntheticKind.Nuclei, 8, 1, 2), _img, _mask);
    }

    void IDisposable.Dispose()
    {
        Shutdown();
        try { Directory.Delete(_dir, true); } catch { }
    }

    private GraphJobSpec Spec(string outDir) => new(_img, _mask, outDir, Spacing: 12, TileSize: 150, Halo: 130);

    /// <summary>Does what a tile worker does with an assignment, and answers.</summary>
    private static TileCompleted Work(TileAssignment a)
    {
        var job = GraphJobManifest.Load(a.ManifestPath);
        using var img = VipsImageSource.Open(job.Request.ImagePath);
        using var mask = VipsImageSource.Open(job.Request.MaskPath!, 0, true);
        var o = GraphJob.ProcessTile(job, job.Plan.Tile(a.TileId), img, mask);
        return new TileCompleted(a.JobId, a.TileId, a.Attempt, job.ResultPath(a.TileId), job.LabelsPath(a.TileId), o.Fragments, o.Shipped, o.Pixels, o.Seconds);
    }

    [Fact]
    public void TilesOfAWorkerThatDies_AreHandedToAnother_AndDuplicatesAreIgnored()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { ProgressInterval = TimeSpan.FromSeconds(30) }));
        var client = CreateTestProbe();
        var outDir = Path.Combine(_dir, "out");
        client.Send(coord, new SubmitGraphJob("j1", Spec(outDir)));
        var accepted = client.ExpectMsg<GraphJobAccepted>(TimeSpan.FromSeconds(20));
        Assert.Equal(4, accepted.Tiles);

        // a worker takes a tile and dies with it
        var doomed = CreateTestProbe();
        doomed.Send(coord, new RequestWork(1));
        var lost = doomed.ExpectMsg<TileAssignment>(TimeSpan.FromSeconds(20));
        Assert.Equal(1, lost.Attempt);
        Sys.Stop(doomed.Ref);

        // a healthy worker pulls everything, including the lost tile on its second attempt
        var worker = CreateTestProbe();
        var seen = new List<TileAssignment>();
        TileCompleted? first = null;
        while (seen.Count < 4)
        {
            worker.Send(coord, new RequestWork(1));
            var a = worker.ExpectMsg<TileAssignment>(TimeSpan.FromSeconds(20));
            seen.Add(a);
            var done = Work(a);
            first ??= done;
            worker.Send(coord, done);
            if (seen.Count == 2) worker.Send(coord, first); // a duplicate result must change nothing
        }
        Assert.Equal(new[] { 0, 1, 2, 3 }, seen.Select(s => s.TileId).Order());
        Assert.Contains(seen, s => s.TileId == lost.TileId && s.Attempt == 2);

        var completed = client.FishForMessage(m => m is GraphJobCompleted or GraphJobFailed, TimeSpan.FromSeconds(30));
        var c = Assert.IsType<GraphJobCompleted>(completed);
        Assert.True(c.Nodes > 100);
        Assert.Equal(1, c.Retries);
        Assert.True(File.Exists(Path.Combine(outDir, "graph.npz")));
        Assert.False(Directory.Exists(Path.Combine(outDir, ".work-j1")));
    }

    [Fact]
    public void APermanentTileFailure_FailsTheJob_AndLeavesNoOutput()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings()));
        var client = CreateTestProbe();
        var outDir = Path.Combine(_dir, "out2");
        client.Send(coord, new SubmitGraphJob("j2", Spec(outDir)));
        client.ExpectMsg<GraphJobAccepted>(TimeSpan.FromSeconds(20));
        var worker = CreateTestProbe();
        worker.Send(coord, new RequestWork(1));
        var a = worker.ExpectMsg<TileAssignment>(TimeSpan.FromSeconds(20));
        // a transient failure is retried ...
        worker.Send(coord, new TileFailed(a.JobId, a.TileId, a.Attempt, "disk hiccup", Permanent: false));
        TileAssignment retry;
        do { worker.Send(coord, new RequestWork(1)); retry = worker.ExpectMsg<TileAssignment>(TimeSpan.FromSeconds(10)); }
        while (retry.TileId != a.TileId); // it went to the back of the queue
        Assert.Equal(2, retry.Attempt);
        // ... a permanent one ends the job with the reason
        worker.Send(coord, new TileFailed(a.JobId, a.TileId, retry.Attempt, "img.tif: cannot read pixels", Permanent: true));
        var failed = client.FishForMessage<GraphJobFailed>(_ => true, TimeSpan.FromSeconds(10));
        Assert.Contains("cannot read pixels", failed.Error);
        Assert.False(File.Exists(Path.Combine(outDir, "graph.json")));
        Assert.False(Directory.Exists(Path.Combine(outDir, ".work-j2")));
    }

    [Fact]
    public void ABadImage_FailsAtSubmission_NamingTheFile()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings()));
        var missing = Path.Combine(_dir, "nope.tif");
        coord.Tell(new SubmitGraphJob("j3", new GraphJobSpec(missing, null, Path.Combine(_dir, "o3"))), TestActor);
        var failed = ExpectMsg<GraphJobFailed>(TimeSpan.FromSeconds(10));
        Assert.Contains(missing, failed.Error);
        Assert.Contains("file not found", failed.Error);
    }
}
