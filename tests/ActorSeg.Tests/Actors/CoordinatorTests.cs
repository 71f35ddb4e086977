using ActorSeg.Cli;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using ActorSeg.Coordinator;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Messages;
using Xunit;

namespace ActorSeg.Tests.Actors;

/// <summary>The coordinator's distribution protocol, with test probes standing in for tile workers.</summary>
public class CoordinatorTests : TestKit, IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("coord");
    private readonly string _img, _mask;

    // journal and snapshots in memory: each test's actor system starts from nothing
    public CoordinatorTests() : base(ActorSeg.Cli.ActorSegSerializer.Hocon + """

        akka.persistence.journal.plugin = "akka.persistence.journal.inmem"
        akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
        akka.actor.serialize-messages = on
        """)
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
        var store = DirectoryResultStore.Instance;
        return new TileCompleted(a.JobId, a.TileId, a.Attempt, store.Describe(job.ResultPath(a.TileId)), store.Describe(job.LabelsPath(a.TileId)), o.Fragments, o.Shipped, o.Pixels, o.Seconds);
    }

    [Fact]
    public void TilesOfAWorkerThatDies_AreHandedToAnother_AndDuplicatesAreIgnored()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { ProgressInterval = TimeSpan.FromSeconds(30), PersistenceId = "t1" }));
        var client = CreateTestProbe();
        var outDir = Path.Combine(_dir, "out");
        client.Send(coord, new SubmitGraphJob("j1", Spec(outDir)));
        client.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20)); // checked and journaled before anything runs
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
        AwaitAssert(() => Assert.False(Directory.Exists(Path.Combine(outDir, ".work-j1"))), TimeSpan.FromSeconds(10)); // deleted in the background
    }

    /// <summary>A result store with a bug: checking a result throws (a stand-in for any fault of the coordinator's own).</summary>
    private sealed class ThrowingStore : IResultStore
    {
        public ResultRef Describe(string path) => DirectoryResultStore.Instance.Describe(path);
        public string? Check(ResultRef r) => throw new NullReferenceException("a bug in the result store");
        public string? CheckPresent(ResultRef r) => throw new NullReferenceException("a bug in the result store");
    }

    [Fact]
    public void AFaultOfTheCoordinatorsOwnAboutOneJob_FailsThatJob_AndTheCoordinatorGoesOn()
    {
        // before: the exception restarted the actor, which recovered the job, met the same fault, and so on
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "barrier", ProgressInterval = TimeSpan.FromSeconds(30) }, new ThrowingStore()));
        var client = CreateTestProbe();
        client.Send(coord, new SubmitGraphJob("jb", Spec(Path.Combine(_dir, "out-b"))));
        client.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20));
        client.ExpectMsg<GraphJobAccepted>(TimeSpan.FromSeconds(20));
        var worker = CreateTestProbe();
        worker.Send(coord, new RequestWork(1));
        var a = worker.ExpectMsg<TileAssignment>(TimeSpan.FromSeconds(20));
        var job = GraphJobManifest.Load(a.ManifestPath);
        var r = new ResultRef(Path.GetFullPath(job.ResultPath(a.TileId)), 1, "0");
        var l = new ResultRef(Path.GetFullPath(job.LabelsPath(a.TileId)), 1, "0");
        worker.Send(coord, new TileCompleted(a.JobId, a.TileId, a.Attempt, r, l, 1, 0, 1, 0.1));
        var failed = Assert.IsType<GraphJobFailed>(client.FishForMessage(m => m is GraphJobCompleted or GraphJobFailed, TimeSpan.FromSeconds(30)));
        Assert.Contains("internal error of the coordinator (NullReferenceException: a bug in the result store)", failed.Error);
        // the same actor takes the next job (not restarted into the same fault)
        var other = CreateTestProbe();
        other.Send(coord, new SubmitGraphJob("jc", Spec(Path.Combine(_dir, "out-c"))));
        other.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20));
        other.ExpectMsg<GraphJobAccepted>(TimeSpan.FromSeconds(20));
        client.ExpectNoMsg(TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void APermanentTileFailure_FailsTheJob_AndLeavesNoOutput()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "t2" }));
        var client = CreateTestProbe();
        var outDir = Path.Combine(_dir, "out2");
        client.Send(coord, new SubmitGraphJob("j2", Spec(outDir)));
        client.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20));
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
        AwaitAssert(() => Assert.False(Directory.Exists(Path.Combine(outDir, ".work-j2"))), TimeSpan.FromSeconds(10)); // deleted in the background
    }

    [Fact]
    public void ABadImage_FailsAtSubmission_NamingTheFile()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "t3" }));
        var missing = Path.Combine(_dir, "nope.tif");
        coord.Tell(new SubmitGraphJob("j3", new GraphJobSpec(missing, null, Path.Combine(_dir, "o3"))), TestActor);
        ExpectMsg<JobReceived>(TimeSpan.FromSeconds(10));
        var failed = ExpectMsg<GraphJobFailed>(TimeSpan.FromSeconds(10));
        Assert.Contains(missing, failed.Error);
        Assert.Contains("file not found", failed.Error);
        // the output folder the job made for itself goes with its lock and its empty work folder, not left holding the lock
        AwaitAssert(() => Assert.False(Directory.Exists(Path.Combine(_dir, "o3")), string.Join(", ", Directory.Exists(Path.Combine(_dir, "o3")) ? Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "o3")) : [])),
            TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void AJobIntoAFolderAnotherProcessWrites_FailsAtOnce_NamingThatRun()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "t-busy" }));
        var outDir = Path.Combine(_dir, "busy");
        using var held = new LockHeldElsewhere(outDir, "graph"); // a one-process run of another machine
        coord.Tell(new SubmitGraphJob("j-busy", Spec(outDir)), TestActor);
        ExpectMsg<JobReceived>(TimeSpan.FromSeconds(10));
        var failed = ExpectMsg<GraphJobFailed>(TimeSpan.FromSeconds(10));
        Assert.Contains($"output folder {outDir} is in use by another ActorSeg run ('graph', process 4242 on login-1", failed.Error);
        Assert.Empty(Directory.GetDirectories(outDir, ".work-*")); // failed before its work folder was made, once, without retries
    }

    /// <summary>A (untrained) model of <paramref name="features"/> features of <paramref name="channels"/>-channel images, trained at 30 px.</summary>
    private string Model(string name, string features, int channels = 1)
    {
        var names = GraphJobManifest.FeatureNamesFor(channels, features);
        var spec = new GpuTrainer.ModelSpec
        {
            Architecture = new GpuTrainer.GnnArchitecture { Layers = 2, Hidden = 4 }, FeatureNames = names, FeatureMean = new float[names.Length],
            FeatureStd = Enumerable.Repeat(1f, names.Length).ToArray(), Classes = 2, Edges = "rag", ClassWeights = [1, 1], SeedSpacing = 30,
        };
        var path = Path.Combine(_dir, name);
        using (var gnn = new GpuTrainer.GnnModel(spec.Architecture, names.Length, 2)) GpuTrainer.ModelFile.Save(path, spec, gnn);
        return path;
    }

    [Theory]
    [InlineData("features")]
    [InlineData("channels")]
    public void ASegmentationJobWhoseGraphIsNotItsModels_FailsAtPrepare_BeforeAnyTile(string what)
    {
        // before: the whole graph was built with the job's features, and only the trainer refused it
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "t-model-" + what, ProgressInterval = TimeSpan.FromSeconds(30) }));
        var model = what == "features" ? Model("texture.model", "texture") : Model("rgb.model", "absolute", channels: 3);
        var outDir = Path.Combine(_dir, "out-model-" + what);
        var client = CreateTestProbe();
        client.Send(coord, new SubmitGraphJob("jm", Spec(outDir) with { Features = "absolute", ModelPath = model }));
        client.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20));
        var failed = Assert.IsType<GraphJobFailed>(client.FishForMessage(m => m is GraphJobFailed or GraphJobAccepted, TimeSpan.FromSeconds(30)));
        if (what == "features")
        {
            Assert.Contains($"{model}: the model was trained on graphs of texture features (seed spacing 30 px), but job jm builds its graph with absolute features (seed spacing 12 px)", failed.Error);
            Assert.False(Directory.Exists(outDir) && Directory.GetDirectories(outDir, ".work-*").Length > 0, "failed before its work folder was made");
        }
        else Assert.Contains($"{_img}: the image has 1 channel(s), but the model {model} was trained on 3-channel images", failed.Error);
        // the folder the job made (with graph/ and its work folder, and its set-aside marker) goes with its lock
        AwaitAssert(() => Assert.False(Directory.Exists(outDir), string.Join(", ", Directory.Exists(outDir) ? Directory.EnumerateFileSystemEntries(outDir, "*", SearchOption.AllDirectories) : [])),
            TimeSpan.FromSeconds(10));
        // no tile was planned or handed out
        var worker = CreateTestProbe();
        worker.Send(coord, new RequestWork(1));
        worker.ExpectNoMsg(TimeSpan.FromSeconds(1));
        client.Send(coord, new GetStatus("jm"));
        var st = Assert.Single(client.FishForMessage<StatusReport>(_ => true, TimeSpan.FromSeconds(10)).Jobs);
        Assert.Equal(("failed", 0), (st.Phase, st.TilesTotal));
    }

    [Fact]
    public void AJobThatAsksForItsModelsSettings_IsBuiltWithTheFeaturesAndSpacingInTheModelFile()
    {
        // a client that cannot read the model (it lives on the cluster's storage) leaves them to the coordinator
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "t-model-settings", ProgressInterval = TimeSpan.FromSeconds(30) }));
        var model = Model("texture.model", "texture");
        var client = CreateTestProbe();
        client.Send(coord, new SubmitGraphJob("js", Spec(Path.Combine(_dir, "out-settings")) with { ModelPath = model, ModelFeatures = true, ModelSpacing = true }));
        client.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20));
        client.ExpectMsg<GraphJobAccepted>(TimeSpan.FromSeconds(20));
        var worker = CreateTestProbe();
        worker.Send(coord, new RequestWork(1));
        var job = GraphJobManifest.Load(worker.ExpectMsg<TileAssignment>(TimeSpan.FromSeconds(20)).ManifestPath);
        Assert.Equal(("texture", 30.0), (job.Request.Features, job.Request.Slic.Spacing));
        // the same job re-sent (the client's heartbeat) is the same job
        client.Send(coord, new SubmitGraphJob("js", Spec(Path.Combine(_dir, "out-settings")) with { ModelPath = model, ModelFeatures = true, ModelSpacing = true }));
        client.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
        // asking for a model's settings without a model is refused at once
        client.Send(coord, new SubmitGraphJob("jn", Spec(Path.Combine(_dir, "out-none")) with { ModelFeatures = true }));
        var refused = client.FishForMessage<JobRefused>(_ => true, TimeSpan.FromSeconds(10));
        Assert.Equal(RefusalCodes.Invalid, refused.Code);
        Assert.Contains("names no model", refused.Reason);
    }

    [Fact]
    public void ARestartedCoordinator_RecoversFromItsJournal_AndRedoesOnlyUnfinishedOrDamagedTiles()
    {
        var settings = new CoordinatorSettings { ProgressInterval = TimeSpan.FromSeconds(30), PersistenceId = "t4", SnapshotEvery = 3 };
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(settings));
        var client = CreateTestProbe();
        var outDir = Path.Combine(_dir, "out4");
        client.Send(coord, new SubmitGraphJob("j4", Spec(outDir)));
        client.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20));
        Assert.Equal(4, client.ExpectMsg<GraphJobAccepted>(TimeSpan.FromSeconds(20)).Tiles);
        // the running job holds its folder: a one-process run started there is refused, naming the job
        Assert.False(LockHeldElsewhere.FreeForAnotherProcess(outDir));
        var refused = Assert.Throws<OutputFolderInUseException>(() => OutputFolderLock.Acquire(outDir, "graph"));
        Assert.Contains($"is in use by another ActorSeg run ('cluster job j4', process {Environment.ProcessId} on {Environment.MachineName}", refused.Message);
        var worker = CreateTestProbe();
        var finished = new List<TileCompleted>();
        for (int i = 0; i < 3; i++)
        {
            worker.Send(coord, new RequestWork(1));
            var done = Work(worker.ExpectMsg<TileAssignment>(TimeSpan.FromSeconds(20)));
            worker.Send(coord, done);
            finished.Add(done);
        }
        // let the journal take the three results, then kill the coordinator
        client.Send(coord, new GetStatus("j4"));
        var st = client.FishForMessage<StatusReport>(_ => true, TimeSpan.FromSeconds(10));
        Assert.Equal(3, st.Jobs.Single().TilesDone);
        Watch(coord);
        Sys.Stop(coord);
        ExpectTerminated(coord, TimeSpan.FromSeconds(10));
        Assert.True(LockHeldElsewhere.FreeForAnotherProcess(outDir)); // its lock went with it
        // while it is down, one finished result is damaged and another tile's labels are left empty (as a power cut
        // may leave a file written without waiting for the disk): both must be computed again, the third not
        var damaged = finished[1];
        File.WriteAllText(damaged.Result.Path, "garbage");
        var emptied = finished[2];
        File.WriteAllBytes(emptied.Labels.Path, []);

        var coord2 = Sys.ActorOf(GraphCoordinatorActor.Props(settings));
        var client2 = CreateTestProbe();
        client2.Send(coord2, new SubmitGraphJob("j4", Spec(outDir))); // the client's heartbeat finds the new coordinator
        var accepted = client2.FishForMessage<GraphJobAccepted>(_ => true, TimeSpan.FromSeconds(20));
        Assert.Equal(3, accepted.TilesAlreadyDone);
        // the job resumed by the new coordinator holds its folder again
        var until = DateTime.UtcNow.AddSeconds(10);
        while (LockHeldElsewhere.FreeForAnotherProcess(outDir)) { Assert.True(DateTime.UtcNow < until, "the resumed job did not hold its folder again"); Thread.Sleep(50); }
        var worker2 = CreateTestProbe();
        var redone = new List<int>();
        object? end = null;
        while (end is null)
        {
            worker2.Send(coord2, new RequestWork(1));
            var m = worker2.ReceiveOne(TimeSpan.FromSeconds(3));
            if (m is TileAssignment a) { redone.Add(a.TileId); worker2.Send(coord2, Work(a)); }
            end = client2.ReceiveWhile<object>(TimeSpan.FromMilliseconds(200), o => o).FirstOrDefault(o => o is GraphJobCompleted or GraphJobFailed);
        }
        var c = Assert.IsType<GraphJobCompleted>(end);
        var unfinished = Enumerable.Range(0, 4).Except(finished.Select(f => f.TileId)).Single();
        Assert.Equal(new[] { unfinished, damaged.TileId, emptied.TileId }.Order(), redone.Order());
        Assert.True(c.Nodes > 100);
        Assert.True(File.Exists(Path.Combine(outDir, "graph.npz")));
        Assert.True(LockHeldElsewhere.FreeForAnotherProcess(outDir)); // let go of at its end
    }

    [Fact]
    public void GarbageResults_AreRejected_AndTheTileRunsAgain()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "t5", ProgressInterval = TimeSpan.FromSeconds(30) }));
        var client = CreateTestProbe();
        client.Send(coord, new SubmitGraphJob("j5", Spec(Path.Combine(_dir, "out5"))));
        client.ExpectMsg<JobReceived>(TimeSpan.FromSeconds(20));
        client.ExpectMsg<GraphJobAccepted>(TimeSpan.FromSeconds(20));
        var worker = CreateTestProbe();
        int victim = -1, seenVictim = 0;
        object? end = null;
        while (end is null)
        {
            worker.Send(coord, new RequestWork(1));
            if (worker.ReceiveOne(TimeSpan.FromSeconds(2)) is TileAssignment a)
            {
                var done = Work(a);
                if (victim < 0) victim = a.TileId;
                if (a.TileId == victim && ++seenVictim == 1)
                    worker.Send(coord, done with { Result = done.Result with { Length = done.Result.Length + 1 } }); // caught on receipt
                else if (a.TileId == victim && seenVictim == 2)
                    worker.Send(coord, done with { Labels = done.Labels with { Checksum = "0000000000000000" } }); // caught before the stitch
                else worker.Send(coord, done);
            }
            end = client.ReceiveWhile<object>(TimeSpan.FromMilliseconds(100), o => o).FirstOrDefault(o => o is GraphJobCompleted or GraphJobFailed);
        }
        Assert.IsType<GraphJobCompleted>(end);
        Assert.Equal(3, seenVictim);
    }

    [Fact]
    public void AWorkerOfAnIncompatibleProtocol_IsRefused()
    {
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(new CoordinatorSettings { PersistenceId = "t6" }));
        coord.Tell(new RequestWork(1, ProtocolVersion.Major + 1), TestActor);
        Assert.Contains("not compatible", ExpectMsg<WorkRefused>(TimeSpan.FromSeconds(10)).Reason);
    }

    [Fact]
    public void ATrainingJob_GoesToATrainer_SurvivesACoordinatorRestart_AndIsJournaled()
    {
        var settings = new CoordinatorSettings { PersistenceId = "t7", ProgressInterval = TimeSpan.FromSeconds(30) };
        var coord = Sys.ActorOf(GraphCoordinatorActor.Props(settings));
        var client = CreateTestProbe();
        // bad input is refused before anything is recorded
        client.Send(coord, new SubmitTrainJob("bad", new TrainJobSpec([Path.Combine(_dir, "missing.npz")], Path.Combine(_dir, "m"))));
        Assert.Contains("graph file not found", client.ExpectMsg<JobRefused>(TimeSpan.FromSeconds(10)).Reason);

        var graph = Path.Combine(_dir, "g.npz");
        File.WriteAllText(graph, "stand-in");
        var spec = new TrainJobSpec([graph], Path.Combine(_dir, "model"));
        client.Send(coord, new SubmitTrainJob("tj", spec));
        var trainer = CreateTestProbe();
        trainer.Send(coord, new TrainerReady(ProtocolVersion.Major, "cpu"));
        var order = trainer.ExpectMsg<TrainModel>(TimeSpan.FromSeconds(10));
        Assert.Equal(1, order.Attempt);
        // the coordinator dies while the model trains; its successor hands the job to a trainer again
        Watch(coord); Sys.Stop(coord); ExpectTerminated(coord, TimeSpan.FromSeconds(10));
        var coord2 = Sys.ActorOf(GraphCoordinatorActor.Props(settings));
        client.Send(coord2, new SubmitTrainJob("tj", spec));
        trainer.Send(coord2, new TrainerReady(ProtocolVersion.Major, "cpu"));
        var again = trainer.FishForMessage<TrainModel>(_ => true, TimeSpan.FromSeconds(10));
        Directory.CreateDirectory(spec.OutDir);
        var best = Path.Combine(spec.OutDir, "best.model");
        File.WriteAllText(best, "weights");
        trainer.Send(coord2, new ModelReady("tj", again.Attempt, DirectoryResultStore.Instance.Describe(best), 10, 7, 0.3, 1.0, "cpu", 100));
        var done = client.FishForMessage<TrainJobCompleted>(_ => true, TimeSpan.FromSeconds(10));
        Assert.Equal(best, done.BestModel);
        client.Send(coord2, new GetStatus("tj"));
        Assert.Equal("done", client.FishForMessage<StatusReport>(_ => true, TimeSpan.FromSeconds(10)).Jobs.Single().Phase);
    }
}
