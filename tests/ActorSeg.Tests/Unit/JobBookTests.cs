using ActorSeg.Coordinator;
using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Messages;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>
/// The coordinator's decisions without any actor: commands in, journal events and effects out, run the way the actor
/// runs them (events applied, follow-up commands fed back), and journals replayed into a fresh book.
/// </summary>
public class JobBookTests() : TempDirTest("book")
{

    /// <summary>Stands in for the result store and manifests: every result is present and intact unless said otherwise.</summary>
    private sealed class Files : IJobFiles
    {
        public readonly Dictionary<string, GraphJobManifest> Manifests = new();
        public bool SummaryFails;
        public readonly List<string> Cleaned = new();
        public string? CheckPresent(ResultRef r) => null;
        public string? Check(ResultRef r) => null;
        public GraphJobManifest LoadManifest(string path) => Manifests.TryGetValue(path, out var m) ? m : throw new IOException($"{path}: missing");
        public void WriteSegmentSummary(string outDir, string json) { if (SummaryFails) throw new IOException("No space left on device"); }
        public void CleanWork(string workDir) => Cleaned.Add(workDir);
    }

    /// <summary>Runs a book as the actor does, recording the journal and what was sent to whom.</summary>
    private sealed class Harness
    {
        public readonly JobBook Book;
        public readonly Files Files;
        public readonly List<ICoordinatorEvent> Journal = new();
        public readonly List<(string To, object Message)> Sent = new();
        public readonly List<Effect> Background = new();
        public DateTime Now = new(2026, 12, 4, 12, 0, 0, DateTimeKind.Utc);

        public Harness(CoordinatorSettings s, Files? files = null, IEnumerable<ICoordinatorEvent>? replay = null)
        {
            Files = files ?? new Files();
            Book = new JobBook(s, Files);
            foreach (var e in replay ?? []) { Book.Apply(e); Journal.Add(e); }
        }

        public void Run(object command, string sender = "")
        {
            var d = Book.Handle(command, sender, Now);
            foreach (var e in d.Journal) { Book.Apply(e); Journal.Add(e); }
            foreach (var e in d.Effects)
                switch (e)
                {
                    case Send s: Sent.Add((s.To, s.Message)); break;
                    case Continue c: Run(c.Command); break;
                    case RunPrepare or RunStitch: Background.Add(e); break;
                }
        }

        public IEnumerable<T> To<T>(string who) => Sent.Where(s => s.To == who).Select(s => s.Message).OfType<T>();
    }

    private GraphJobSpec Spec(string name, int tile = 2048) => new(Path.Combine(_dir, name + ".tif"), null, Path.Combine(_dir, "out-" + name), TileSize: tile);

    private static GraphJobManifest Manifest(string jobId, string workDir, int w, int h, int tile) => new()
    {
        JobId = jobId, ImageId = jobId, Request = new GraphRequest { ImagePath = "/x.tif", TileSize = tile }, Width = w, Height = h, Channels = 1,
        BitDepth = 8, Mean = [1], Std = [1], Min = [0], Max = [255], SeedNx = 4, SeedNy = 4, Halo = 64, MinSize = 1, WorkDir = workDir,
    };

    /// <summary>Submits a job and plans it (as the background prepare would): returns the number of tiles.</summary>
    private int SubmitAndPlan(Harness h, string jobId, int w = 4096, int hgt = 4096, int tile = 2048)
    {
        h.Run(new SubmitGraphJob(jobId, Spec(jobId, tile)), "client");
        Assert.Single(h.To<JobReceived>("client").Where(r => r.JobId == jobId));
        var prep = h.Background.OfType<RunPrepare>().Last(p => p.JobId == jobId);
        var m = Manifest(jobId, prep.WorkDir, w, hgt, tile);
        h.Files.Manifests[m.ManifestPath] = m;
        h.Run(new Prepared(jobId, m, 0.1));
        return m.Plan.Count;
    }

    private static TileCompleted Completed(TileAssignment a, GraphJobManifest m) =>
        new(a.JobId, a.TileId, a.Attempt, new ResultRef(Path.GetFullPath(m.ResultPath(a.TileId)), 1, "0"), new ResultRef(Path.GetFullPath(m.LabelsPath(a.TileId)), 1, "0"), 1, 1, 100, 0.1);

    [Fact]
    public void AJob_GoesFromSubmissionToStitching_AndEveryStepIsJournaled()
    {
        var h = new Harness(new CoordinatorSettings());
        int tiles = SubmitAndPlan(h, "j1");
        Assert.Equal(4, tiles);
        Assert.Contains(h.Journal, e => e is StepStarted { Step: "prepare" });
        Assert.Contains(h.Journal, e => e is JobPlanned { Tiles: 4 });
        var m = h.Files.Manifests.Values.Single();
        for (int i = 0; i < tiles; i++)
        {
            h.Run(new RequestWork(1), "w1");
            var a = h.To<TileAssignment>("w1").Last();
            h.Run(Completed(a, m), "w1");
        }
        Assert.Equal(4, h.Journal.OfType<TileDone>().Count());
        Assert.Single(h.Background.OfType<RunStitch>());
        Assert.Contains(h.Journal, e => e is StepStarted { Step: "stitch" });
        Assert.Equal("stitching", h.Book.Jobs["j1"].Phase);
    }

    [Fact]
    public void AJournal_ReplaysIntoTheSameState_AndRecoveryResumesOnlyWhatIsLeft()
    {
        var h = new Harness(new CoordinatorSettings());
        SubmitAndPlan(h, "j1");
        var m = h.Files.Manifests.Values.Single();
        h.Run(new RequestWork(2), "w1");
        foreach (var a in h.To<TileAssignment>("w1").ToList()) h.Run(Completed(a, m), "w1");
        // a new coordinator: the journal replayed into a fresh book
        var again = new Harness(new CoordinatorSettings(), h.Files, h.Journal);
        again.Run(new Recovered(0.1));
        var job = again.Book.Jobs["j1"];
        Assert.Equal(2, job.Done.Count);
        Assert.Equal(2, job.RecoveredTiles);
        again.Run(new RequestWork(4), "w2");
        var redo = again.To<TileAssignment>("w2").Select(a => a.TileId).ToHashSet();
        Assert.Equal(2, redo.Count);
        Assert.DoesNotContain(redo, t => job.Done.ContainsKey(t));
        // and a snapshot of it restores the same
        var snap = new JobBook(new CoordinatorSettings(), h.Files);
        snap.Apply(again.Book.Snapshot());
        Assert.Equal(2, snap.Jobs["j1"].Done.Count);
    }

    [Fact]
    public void Limits_AreRefusedBeforeAnythingIsRecorded_AndNameTheLimit()
    {
        var h = new Harness(new CoordinatorSettings { MaxTileSize = 4096, MaxOpenJobs = 2, MaxTilesPerJob = 10, MaxPixelsPerImage = 100_000_000 });
        h.Run(new SubmitGraphJob("tiny-tiles", Spec("a", tile: 8)), "c");
        Assert.Contains("MinTileSize", h.To<JobRefused>("c").Single().Reason);
        h.Run(new SubmitGraphJob("huge-tiles", Spec("b", tile: 65536)), "c");
        Assert.Contains("MaxTileSize", h.To<JobRefused>("c").Last().Reason);
        Assert.Empty(h.Journal);
        // too many tiles for the limit: found at planning, the job fails naming it
        SubmitAndPlan(h, "many", 8192, 8192, 1024);
        Assert.Contains("MaxTilesPerJob", h.Journal.OfType<JobEnded>().Single(e => e.JobId == "many").Error);
        SubmitAndPlan(h, "big", 20000, 20000, 4096);
        Assert.Contains("MaxPixelsPerImage", h.Journal.OfType<JobEnded>().Single(e => e.JobId == "big").Error);
        h.Run(new SubmitGraphJob("o1", Spec("o1")), "c");
        h.Run(new SubmitGraphJob("o2", Spec("o2")), "c");
        h.Run(new SubmitGraphJob("o3", Spec("o3")), "c");
        Assert.Contains("MaxOpenJobs", h.To<JobRefused>("c").Last().Reason);
    }

    [Fact]
    public void OnlySoManyJobsPrepareAtOnce_TheOthersWaitForASlot()
    {
        var h = new Harness(new CoordinatorSettings { MaxConcurrentSteps = 1 });
        h.Run(new SubmitGraphJob("a", Spec("a")), "c");
        h.Run(new SubmitGraphJob("b", Spec("b")), "c");
        Assert.Single(h.Background.OfType<RunPrepare>());
        var prep = h.Background.OfType<RunPrepare>().Single();
        h.Run(new Prepared("a", Manifest("a", prep.WorkDir, 4096, 4096, 2048), 0.1));
        Assert.Equal(2, h.Background.OfType<RunPrepare>().Count()); // b starts once a's slot is free
    }

    [Fact]
    public void AJobThatTookTheCoordinatorDown_IsQuarantinedOnRecovery_AndTheOthersGoOn()
    {
        // one job prepares at a time: "fine" waits while "poison" takes the coordinator down, again and again
        var settings = new CoordinatorSettings { MaxCrashes = 3, MaxConcurrentSteps = 1 };
        var h = new Harness(settings);
        h.Run(new SubmitGraphJob("poison", Spec("poison")), "c");
        h.Run(new SubmitGraphJob("fine", Spec("fine")), "c");
        var journal = h.Journal.ToList();
        for (int crash = 1; crash <= 3; crash++)
        {
            var next = new Harness(settings, h.Files, journal);
            next.Run(new Recovered(0.1));
            journal = next.Journal.ToList();
            if (crash < 3) Assert.DoesNotContain(journal, e => e is JobEnded { JobId: "poison" });
            else
            {
                var ended = journal.OfType<JobEnded>().Single(e => e.JobId == "poison");
                Assert.Contains("quarantined", ended.Error);
                Assert.DoesNotContain(journal, e => e is JobEnded { JobId: "fine" });
                Assert.Contains(next.Background.OfType<RunPrepare>(), p => p.JobId == "fine");
            }
        }
        // a prepare that merely failed (and was retried) is not a crash
        var h2 = new Harness(new CoordinatorSettings { MaxCrashes = 2 });
        h2.Run(new SubmitGraphJob("flaky", Spec("flaky")), "c");
        h2.Run(new StepFailed("flaky", "prepare", new IOException("NFS hiccup")));
        var after = new Harness(new CoordinatorSettings { MaxCrashes = 2 }, h2.Files, h2.Journal);
        after.Run(new Recovered(0.1));
        Assert.DoesNotContain(after.Journal, e => e is JobEnded);
    }

    [Fact]
    public void AMissedDeadline_CountsAsAnAttempt_TellsTheLateWorker_AndEndsAfterMaxAttempts()
    {
        var s = new CoordinatorSettings { TileDeadline = TimeSpan.FromMinutes(1), MaxAttempts = 2 };
        var h = new Harness(s);
        SubmitAndPlan(h, "j", 2048, 2048, 2048);
        h.Run(new RequestWork(1), "slow");
        var first = h.To<TileAssignment>("slow").Single();
        h.Now += TimeSpan.FromMinutes(2);
        h.Run(new Tick(h.Now));
        Assert.Equal(new AbandonWork("j", first.TileId, first.Attempt), h.To<AbandonWork>("slow").Single());
        Assert.Equal(1, h.Book.Jobs["j"].Failures[first.TileId]);
        h.Run(new RequestWork(1), "slow2");
        var second = h.To<TileAssignment>("slow2").Single();
        Assert.Equal(2, second.Attempt);
        h.Now += TimeSpan.FromMinutes(2);
        h.Run(new Tick(h.Now));
        Assert.Contains("missed its deadline", h.Journal.OfType<JobEnded>().Single().Error);
        Assert.IsType<GraphJobFailed>(h.To<object>("client").Last());
    }

    [Fact]
    public void AJobDeadline_FailsTheJobWithTheReason()
    {
        var h = new Harness(new CoordinatorSettings { JobDeadline = TimeSpan.FromHours(1) });
        h.Now = DateTime.UtcNow;
        SubmitAndPlan(h, "j");
        h.Now += TimeSpan.FromHours(2);
        h.Run(new Tick(h.Now));
        Assert.Contains("job deadline", h.Journal.OfType<JobEnded>().Single().Error);
    }

    [Fact]
    public void AnUnreachableNode_KeepsItsWork_AndALostNodeCountsOnlyAgainstASoleJob()
    {
        var h = new Harness(new CoordinatorSettings { MaxAttempts = 2 });
        SubmitAndPlan(h, "a");
        SubmitAndPlan(h, "b");
        h.Run(new RequestWork(8), "shared"); // takes tiles of both jobs
        var held = h.To<TileAssignment>("shared").ToList();
        Assert.Contains(held, x => x.JobId == "a"); Assert.Contains(held, x => x.JobId == "b");
        h.Run(new NodeLost("shared", "unreachable", Downed: false));
        Assert.Equal(held.Count, h.Book.Jobs.Values.Sum(j => j.InFlight.Count)); // nothing taken back yet
        h.Run(new NodeLost("shared", "removed from the cluster", Downed: true));
        Assert.All(h.Book.Jobs.Values, j => Assert.Empty(j.Failures.Where(f => f.Value > 0)));
        // a node holding only one job's work: its loss counts against those tiles
        h.Run(new RequestWork(1), "solo");
        var t = h.To<TileAssignment>("solo").Single();
        h.Run(new NodeLost("solo", "stopped", Downed: true));
        Assert.Equal(1, h.Book.Jobs[t.JobId].Failures[t.TileId]);
        Assert.Empty(h.Journal.OfType<JobEnded>());
    }

    [Fact]
    public void ASegmentationWhoseSummaryCannotBeWritten_Fails_InsteadOfBeingReportedDone()
    {
        var files = new Files { SummaryFails = true };
        var h = new Harness(new CoordinatorSettings(), files);
        h.Run(new SubmitGraphJob("seg", Spec("seg") with { ModelPath = Path.Combine(_dir, "m.model") }), "client");
        var prep = h.Background.OfType<RunPrepare>().Single();
        var m = Manifest("seg", prep.WorkDir, 2048, 2048, 2048);
        files.Manifests[m.ManifestPath] = m;
        h.Run(new Prepared("seg", m, 0.1));
        h.Run(new RequestWork(1), "w");
        h.Run(Completed(h.To<TileAssignment>("w").Single(), m), "w");
        var r = new ResultRef("/r", 1, "0");
        h.Run(new Stitched("seg", new GraphStitched("seg", r, r, 10, 1, 1, 1, 1, 1)));
        h.Run(new TrainerReady(ProtocolVersion.Major, "cpu"), "gpu");
        var cls = h.To<ClassifyNodes>("gpu").Single();
        h.Run(new NodesClassified("seg", cls.Attempt, r, 10, [5, 5], 0.1, "cpu"), "gpu");
        h.Run(new RequestWork(1), "w");
        var paint = h.To<PaintAssignment>("w").Single();
        h.Run(new PaintCompleted("seg", paint.Attempt, r, 0.1), "w");
        var ended = h.Journal.OfType<JobEnded>().Single();
        Assert.False(ended.Succeeded);
        Assert.Contains("No space left", ended.Error);
        Assert.IsType<GraphJobFailed>(h.To<object>("client").Last());
    }

    [Fact]
    public void TheNodeProbabilitiesAndObjectOptions_ReachThePaintOrder_AndTheJournal()
    {
        var files = new Files();
        var h = new Harness(new CoordinatorSettings(), files);
        h.Run(new SubmitGraphJob("obj", Spec("obj") with { ModelPath = Path.Combine(_dir, "m.model"), Objects = "geojson.gz", Simplify = 2 }), "client");
        var prep = h.Background.OfType<RunPrepare>().Single();
        var m = Manifest("obj", prep.WorkDir, 2048, 2048, 2048);
        files.Manifests[m.ManifestPath] = m;
        h.Run(new Prepared("obj", m, 0.1));
        h.Run(new RequestWork(1), "w");
        h.Run(Completed(h.To<TileAssignment>("w").Single(), m), "w");
        var r = new ResultRef("/r", 1, "0");
        var probs = new ResultRef("/p", 80, "1");
        h.Run(new Stitched("obj", new GraphStitched("obj", r, r, 10, 1, 1, 1, 1, 1)));
        h.Run(new TrainerReady(ProtocolVersion.Major, "cpu"), "gpu");
        var cls = h.To<ClassifyNodes>("gpu").Single();
        h.Run(new NodesClassified("obj", cls.Attempt, r, 10, [5, 5], 0.1, "cpu", probs, [0.9, 0.8]), "gpu");
        Assert.Equal(probs, h.Journal.OfType<ImageClassified>().Single().Probs);
        Assert.Equal(new[] { 0.9, 0.8 }, h.Journal.OfType<ImageClassified>().Single().MeanProbabilityPerClass); // for segment.json
        h.Run(new RequestWork(1), "w");
        var paint = h.To<PaintAssignment>("w").Single();
        Assert.Equal((probs, "geojson.gz", 2.0), (paint.Probs, paint.Objects, paint.Simplify));
        // and a bad format is refused before anything is recorded
        h.Run(new SubmitGraphJob("bad", Spec("bad") with { Objects = "kml" }), "client");
        Assert.Contains("kml", h.To<JobRefused>("client").Single().Reason);
    }
}

public class SnapshotRetentionTests
{
    [Fact]
    public void TheNewestThreeSnapshots_AndTheEventsAfterTheOldest_AreKept()
    {
        var kept = new SortedSet<long>();
        Assert.Null(ActorSeg.Coordinator.SnapshotRetention.After(kept, 1000, 3));
        Assert.Null(ActorSeg.Coordinator.SnapshotRetention.After(kept, 2000, 3));
        Assert.Equal(1000, ActorSeg.Coordinator.SnapshotRetention.After(kept, 3000, 3));
        Assert.Equal(2000, ActorSeg.Coordinator.SnapshotRetention.After(kept, 4000, 3));
        Assert.Equal(new long[] { 2000, 3000, 4000 }, kept.ToArray());
    }
}
