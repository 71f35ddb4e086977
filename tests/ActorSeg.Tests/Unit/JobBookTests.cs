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
        public Exception? SummaryThrows;
        public string? CheckPresent(ResultRef r) => null;
        public string? Check(ResultRef r) => null;
        public GraphJobManifest LoadManifest(string path) => Manifests.TryGetValue(path, out var m) ? m : throw new IOException($"{path}: missing");
        public void WriteSegmentSummary(string outDir, string json)
        {
            if (SummaryFails) throw new IOException("No space left on device");
            if (SummaryThrows is { } e) throw e;
        }
        public readonly List<string> Committed = new(), Restored = new();
        public Action? OnCommit, OnRestore;
        public bool CommitFails;
        public void CommitResults(string outDir, string jobId)
        {
            OnCommit?.Invoke();
            if (CommitFails) throw new IOException("Input/output error");
            Committed.Add(jobId);
        }
        public EarlierResults.Restored? RestoreResults(string outDir, string jobId, bool keepFailed) { OnRestore?.Invoke(); Restored.Add(jobId); return null; }
    }

    /// <summary>Runs a book as the actor does, recording the journal and what was sent to whom.</summary>
    private sealed class Harness
    {
        public readonly JobBook Book;
        public readonly Files Files;
        public readonly List<ICoordinatorEvent> Journal = new();
        public readonly List<(string To, object Message)> Sent = new();
        public readonly List<Effect> Background = new();
        /// <summary>Messages sent and background steps started, in the order the actor carries them out.</summary>
        public readonly List<object> Order = new();
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
                    case Send s: Sent.Add((s.To, s.Message)); Order.Add(s.Message); break;
                    case Continue c: Run(c.Command); break;
                    case RunPrepare or RunStitch or DeleteWork or AbandonStep: Background.Add(e); Order.Add(e); break;
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
    public void AJournalEventThatCannotBeRead_IsRedone_OneOfUnknownMeaningFailsItsJob_AndTheOthersResume()
    {
        var h = new Harness(new CoordinatorSettings());
        SubmitAndPlan(h, "a");
        SubmitAndPlan(h, "b");
        var ma = h.Files.Manifests.Values.Single(m => m.JobId == "a");
        h.Run(new RequestWork(1), "w1");
        var first = h.To<TileAssignment>("w1").Single();
        Assert.Equal("a", first.JobId);
        h.Run(Completed(first, ma), "w1");
        int damaged = h.Journal.FindIndex(e => e is TileDone { JobId: "a" });
        Assert.True(damaged > 0);

        // the same journal replayed as a coordinator restarting reads it: a's tile event damaged (its id still legible),
        // an event so damaged that no id can be read, an event of a type only a newer version knows, naming b, and a job
        // whose submission the book throws on
        List<object> Damaged(IEnumerable<ICoordinatorEvent> journal) => journal.Select((e, i) => i == damaged
            ? new UnreadableEvent(nameof(TileDone), 40, "Unexpected msgpack code 193 ((never used)) encountered.", "a") : (object)e)
            .Append(new UnreadableEvent(nameof(StepStarted), 12, "Unexpected msgpack code 193 ((never used)) encountered.", null))
            .Append(new UnreadableEvent("StepPaused", 12, "unknown type 'StepPaused'", "b", KnownType: false))
            .Append(new JobSubmitted("c", null!, h.Now)).ToList();
        var replay = Damaged(h.Journal);
        var again = new Harness(new CoordinatorSettings(), h.Files);
        for (int i = 0; i < replay.Count; i++) again.Book.Replay(replay[i], i + 1);
        again.Run(new Recovered(0.1));

        // b's state is unknown: it fails, saying why
        var ended = Assert.Single(again.Journal.OfType<JobEnded>());
        Assert.Equal("b", ended.JobId);
        Assert.False(ended.Succeeded);
        Assert.Contains($"journal event #{replay.Count - 1} (StepPaused) could not be read", ended.Error);
        Assert.Contains("submit it again under a new job id", ended.Error);
        Assert.False(again.Book.Jobs.ContainsKey("c"), "an event the book threw on is not half applied as a job");
        // a lost only the record of one finished tile: it resumes, and that tile is computed again
        Assert.Empty(again.Book.Jobs["a"].Done);
        again.Run(new RequestWork(4), "w2");
        var handed = again.To<TileAssignment>("w2").ToList();
        Assert.Equal(4, handed.Count);
        Assert.All(handed, t => Assert.Equal("a", t.JobId));
        Assert.Contains(handed, t => t.TileId == first.TileId);
        Assert.Null(again.Book.Jobs["a"].Ended);

        // a later start replays the same damage and the failure recorded for it: the outcome stands, nothing is recorded twice
        var third = new Harness(new CoordinatorSettings(), h.Files);
        var replay3 = Damaged(h.Journal).Concat(again.Journal).ToList();
        for (int i = 0; i < replay3.Count; i++) third.Book.Replay(replay3[i], i + 1);
        third.Run(new Recovered(0.1));
        Assert.Empty(third.Journal.OfType<JobEnded>());
        Assert.Equal(ended, third.Book.Jobs["b"].Ended);
        Assert.Null(third.Book.Jobs["a"].Ended);
    }

    [Fact]
    public void AStatusOfEverything_ListsEveryOpenJob_AndOnlyTheNewestEndedOnes_WithLongErrorsCut()
    {
        var h = new Harness(new CoordinatorSettings());
        int ended = JobBook.EndedListed + 30;
        for (int i = 0; i < ended; i++)
        {
            h.Run(new SubmitGraphJob($"old-{i:D3}", Spec($"old-{i:D3}")), "c");
            h.Run(new AbortJob($"old-{i:D3}", i == ended - 1 ? new string('x', 50_000) : "failed for the test"));
        }
        h.Run(new SubmitGraphJob("open-1", Spec("open-1")), "c");
        h.Run(new SubmitGraphJob("open-2", Spec("open-2")), "c");

        h.Run(new GetStatus(), "asker");
        var all = h.To<StatusReport>("asker").Last();
        Assert.Equal(30, all.EndedNotListed);
        Assert.Equal(JobBook.EndedListed + 2, all.Jobs.Length);
        Assert.Contains(all.Jobs, j => j.JobId == "open-1");
        Assert.Contains(all.Jobs, j => j.JobId == "open-2");
        // the newest ended ones: old-030 .. old-129
        Assert.DoesNotContain(all.Jobs, j => j.JobId == "old-029");
        Assert.Contains(all.Jobs, j => j.JobId == "old-030");
        var longest = Assert.Single(all.Jobs, j => j.JobId == $"old-{ended - 1:D3}");
        Assert.InRange(longest.Error!.Length, 100, 2_001);
        // an old one asked for by its id is still answered
        h.Run(new GetStatus("old-000"), "asker");
        var one = h.To<StatusReport>("asker").Last();
        Assert.Equal(("old-000", "failed", 0), (Assert.Single(one.Jobs).JobId, one.Jobs[0].Phase, one.EndedNotListed));
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
    public void APrepareThatHangs_FailsItsJobAtThePrepareStitchDeadline_FreesTheSlot_AndItsLateOutcomeIsDropped()
    {
        var s = new CoordinatorSettings { MaxConcurrentSteps = 1, PrepareStitchDeadline = TimeSpan.FromMinutes(30) };
        var h = new Harness(s);
        h.Run(new SubmitGraphJob("stuck", Spec("stuck")), "c");
        h.Run(new SubmitGraphJob("next", Spec("next")), "c");
        var prep = h.Background.OfType<RunPrepare>().Single(); // one slot: "next" waits behind "stuck"
        // ticks while the read hangs: the first one starts the clock, and nothing fails within the deadline
        h.Run(new Tick(h.Now));
        h.Now += TimeSpan.FromMinutes(29);
        h.Run(new Tick(h.Now));
        Assert.Empty(h.Journal.OfType<JobEnded>());
        Assert.Single(h.Background.OfType<RunPrepare>());
        h.Now += TimeSpan.FromMinutes(2);
        h.Run(new Tick(h.Now));
        var ended = h.Journal.OfType<JobEnded>().Single();
        Assert.Equal("stuck", ended.JobId);
        Assert.False(ended.Succeeded);
        Assert.Contains("statistics pass", ended.Error);
        Assert.Contains(Spec("stuck").ImagePath, ended.Error);
        Assert.Contains("ACTORSEG_PREPARESTITCHDEADLINEMINUTES", ended.Error);
        Assert.Contains(new AbandonStep("stuck"), h.Background);
        Assert.IsType<GraphJobFailed>(h.To<object>("c").Last(m => m is GraphJobFailed or GraphJobCompleted));
        // its slot went to the job that waited
        Assert.Contains(h.Background.OfType<RunPrepare>(), p => p.JobId == "next");
        // the hung read returns at last: its outcome finds the job ended and changes nothing
        int events = h.Journal.Count;
        h.Run(new Prepared("stuck", Manifest("stuck", prep.WorkDir, 4096, 4096, 2048), 1900));
        Assert.Equal(events, h.Journal.Count);
        Assert.DoesNotContain(h.Journal, e => e is JobPlanned { JobId: "stuck" });
    }

    [Fact]
    public void AStitchPastThePrepareStitchDeadline_FailsItsJob_AndItsLateGraphIsNotRecorded()
    {
        var h = new Harness(new CoordinatorSettings { PrepareStitchDeadline = TimeSpan.FromMinutes(10) });
        SubmitAndPlan(h, "big", 2048, 2048, 2048);
        var m = h.Files.Manifests.Values.Single();
        h.Run(new RequestWork(1), "w1");
        h.Run(Completed(h.To<TileAssignment>("w1").Single(), m), "w1");
        Assert.Single(h.Background.OfType<RunStitch>());
        h.Run(new Tick(h.Now));
        h.Now += TimeSpan.FromMinutes(11);
        h.Run(new Tick(h.Now));
        Assert.Contains("stitching the graph", h.Journal.OfType<JobEnded>().Single().Error);
        Assert.Contains(new AbandonStep("big"), h.Background);
        var r = new ResultRef(Path.Combine(_dir, "g.npz"), 1, "0");
        h.Run(new Stitched("big", new GraphStitched("big", r, r, 10, 1, 1, 1, 1, 1)));
        Assert.DoesNotContain(h.Journal, e => e is GraphStitched);
        // with no deadline (zero), a step may take as long as it takes
        var open = new Harness(new CoordinatorSettings { PrepareStitchDeadline = TimeSpan.Zero });
        open.Run(new SubmitGraphJob("slow", Spec("slow")), "c");
        open.Run(new Tick(open.Now));
        open.Now += TimeSpan.FromDays(1);
        open.Run(new Tick(open.Now));
        Assert.DoesNotContain(open.Journal, e => e is JobEnded);
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

    /// <summary>A segmentation job submitted, planned, its one tile done and stitched, and a trainer asked to classify it.</summary>
    private (Harness H, ClassifyNodes Cls) SegmentationAtClassifying(string jobId, Files files)
    {
        var h = new Harness(new CoordinatorSettings(), files);
        h.Run(new SubmitGraphJob(jobId, Spec(jobId) with { ModelPath = Path.Combine(_dir, "m.model") }), "client");
        var prep = h.Background.OfType<RunPrepare>().Single();
        var m = Manifest(jobId, prep.WorkDir, 2048, 2048, 2048);
        files.Manifests[m.ManifestPath] = m;
        h.Run(new Prepared(jobId, m, 0.1));
        h.Run(new RequestWork(1), "w");
        h.Run(Completed(h.To<TileAssignment>("w").Single(), m), "w");
        var r = new ResultRef("/r", 1, "0");
        h.Run(new Stitched(jobId, new GraphStitched(jobId, r, r, 10, 1, 1, 1, 1, 1)));
        h.Run(new TrainerReady(ProtocolVersion.Major, "cpu"), "gpu");
        return (h, h.To<ClassifyNodes>("gpu").Last());
    }

    [Fact]
    public void AJobsEarlierResults_GoOnceItSucceeded_BeforeItsEndIsJournaled_AndComeBackWhenItFails_BeforeItsClientIsTold()
    {
        var r = new ResultRef("/r", 1, "0");
        var files = new Files();
        var (h, cls) = SegmentationAtClassifying("seg", files);
        int endedAtCommit = -1;
        files.OnCommit = () => endedAtCommit = h.Journal.OfType<JobEnded>().Count();
        h.Run(new NodesClassified("seg", cls.Attempt, r, 10, [5, 5], 0.1, "cpu"), "gpu");
        h.Run(new RequestWork(1), "w");
        h.Run(new PaintCompleted("seg", h.To<PaintAssignment>("w").Single().Attempt, r, 0.1), "w");
        Assert.True(h.Journal.OfType<JobEnded>().Single().Succeeded);
        // its trainer and painter were told to write nothing once its earlier results' folder is gone
        Assert.True(cls.Guarded);
        Assert.True(h.To<PaintAssignment>("w").Single().Guarded);
        Assert.Equal(["seg"], files.Committed);
        Assert.Equal(0, endedAtCommit); // a restart before the end is journaled finishes the job again; none after it finds the folder
        Assert.Empty(files.Restored);

        // a job that fails has its earlier results put back before its client hears of it, and again after a restart
        var failing = new Files();
        var (h2, _) = SegmentationAtClassifying("bad", failing);
        int toldAtRestore = -1;
        failing.OnRestore = () => toldAtRestore = h2.To<GraphJobFailed>("client").Count();
        h2.Run(new AbortJob("bad", "stopped by its user"));
        Assert.Equal(["bad"], failing.Restored);
        Assert.Equal(0, toldAtRestore);
        Assert.Empty(failing.Committed);
        Assert.Single(h2.To<GraphJobFailed>("client"));
        new Harness(new CoordinatorSettings(), failing, h2.Journal).Run(new Recovered(0.1));
        Assert.Equal(["bad", "bad"], failing.Restored);

        // a job planned before 2026-12-08 set nothing aside: its orders are not guarded (a guard would find no folder)
        var old = new Files();
        var (h4, _) = SegmentationAtClassifying("old", old);
        var journal = h4.Journal.Select(e => e is JobPlanned p ? p with { SetAside = false } : e).Where(e => e is not StepStarted).ToList();
        var resumed = new Harness(new CoordinatorSettings(), old, journal);
        resumed.Run(new Recovered(0.1));
        resumed.Run(new TrainerReady(ProtocolVersion.Major, "cpu"), "gpu");
        Assert.False(resumed.To<ClassifyNodes>("gpu").Single().Guarded);

        // the earlier results cannot be removed: the job fails (and they are put back) rather than being reported done
        var stuck = new Files { CommitFails = true };
        var (h3, cls3) = SegmentationAtClassifying("stuck", stuck);
        h3.Run(new NodesClassified("stuck", cls3.Attempt, r, 10, [5, 5], 0.1, "cpu"), "gpu");
        h3.Run(new RequestWork(1), "w");
        h3.Run(new PaintCompleted("stuck", h3.To<PaintAssignment>("w").Single().Attempt, r, 0.1), "w");
        var ended = h3.Journal.OfType<JobEnded>().Single();
        Assert.False(ended.Succeeded);
        Assert.Contains("Input/output error", ended.Error);
        Assert.Equal(["stuck"], stuck.Restored);
    }

    [Theory]
    [InlineData("nan")]
    [InlineData("above-one")]
    [InlineData("negative-count")]
    [InlineData("lengths")]
    [InlineData("too-many-warnings")]
    [InlineData("long-warning")]
    public void ATrainersFiguresThatJsonCannotHold_AreRefusedAsTheyArrive_AndTheJobFailsAfterItsTries(string what)
    {
        // a damaged model once made every probability NaN: the summary writer threw at every restart, for ever
        var (h, cls) = SegmentationAtClassifying("nan", new Files());
        var r = new ResultRef("/r", 1, "0");
        NodesClassified Bad(int attempt) => what switch
        {
            "nan" => new NodesClassified("nan", attempt, r, 10, [5, 5], 0.1, "cpu", r, [double.NaN, 0.5]),
            "above-one" => new NodesClassified("nan", attempt, r, 10, [5, 5], 0.1, "cpu", r, [1.5, 0.5]),
            "negative-count" => new NodesClassified("nan", attempt, r, 10, [5, -5], 0.1, "cpu"),
            "too-many-warnings" => new NodesClassified("nan", attempt, r, 10, [5, 5], 0.1, "cpu", Warnings: Enumerable.Repeat("w", JobBook.MaxWarnings + 1).ToArray()),
            "long-warning" => new NodesClassified("nan", attempt, r, 10, [5, 5], 0.1, "cpu", Warnings: [new string('w', JobBook.MaxWarningLength + 1)]),
            _ => new NodesClassified("nan", attempt, r, 10, [5, 5], 0.1, "cpu", r, [0.5]),
        };
        Assert.NotNull(JobBook.ClassificationProblem(Bad(1)));
        Assert.Null(JobBook.ClassificationProblem(new NodesClassified("nan", 1, r, 10, [5, 0], 0.1, "cpu", r, [0.75, 0])));
        Assert.Null(JobBook.ClassificationProblem(new NodesClassified("nan", 1, r, 10, [5, 0], 0.1, "cpu", Warnings: ["its grey levels are unlike the model's training images"])));
        for (int i = 0; i < 10 && h.Journal.OfType<JobEnded>().FirstOrDefault() is null; i++)
        {
            h.Run(Bad(cls.Attempt), "gpu");
            Assert.Empty(h.Journal.OfType<ImageClassified>());
            h.Run(new TrainerReady(ProtocolVersion.Major, "cpu"), "gpu");
            cls = h.To<ClassifyNodes>("gpu").Last();
        }
        var ended = h.Journal.OfType<JobEnded>().Single();
        Assert.False(ended.Succeeded);
        Assert.Contains("classifying: trainer returned", ended.Error);
    }

    [Fact]
    public void ASummaryTheSerializerRefuses_FailsTheJob_AndAnAbortEndsAJobOnce()
    {
        var files = new Files { SummaryThrows = new ArgumentException(".NET number values such as positive and negative infinity cannot be written as valid JSON") };
        var (h, cls) = SegmentationAtClassifying("seg", files);
        var r = new ResultRef("/r", 1, "0");
        h.Run(new NodesClassified("seg", cls.Attempt, r, 10, [5, 5], 0.1, "cpu"), "gpu");
        h.Run(new RequestWork(1), "w");
        h.Run(new PaintCompleted("seg", h.To<PaintAssignment>("w").Single().Attempt, r, 0.1), "w");
        var ended = h.Journal.OfType<JobEnded>().Single();
        Assert.False(ended.Succeeded);
        Assert.Contains("valid JSON", ended.Error);

        // the actor's fault barrier: a job the book threw on is ended as failed, once, and its watchers are told
        var (h2, _) = SegmentationAtClassifying("abort", new Files());
        h2.Run(new AbortJob("abort", "internal error of the coordinator (NullReferenceException: …)"));
        h2.Run(new AbortJob("abort", "again"));
        var e2 = h2.Journal.OfType<JobEnded>().Single();
        Assert.Contains("internal error", e2.Error);
        Assert.IsType<GraphJobFailed>(h2.To<object>("client").Last());
        h2.Run(new AbortJob("unknown", "nothing to end"));
        Assert.Single(h2.Journal.OfType<JobEnded>());
        Assert.Equal("abort", JobBook.JobOf(new AbortJob("abort", "x")));
        Assert.Null(JobBook.JobOf(new Dispatch()));
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

    // ---------------------------------------------------------------- batches

    /// <summary>A batch folder _dir/NAME with one slide per name (images _dir/in/S.tif, folders NAME/slides/S).</summary>
    private BatchSpec Batch(string name, params string[] slides)
    {
        var outDir = Path.Combine(_dir, name);
        return new BatchSpec(outDir, slides.Select(sl => new BatchSlideSpec(sl, new GraphJobSpec(Path.Combine(_dir, "in", sl + ".tif"), null,
            Path.Combine(outDir, "slides", sl), TileSize: 2048))).ToArray(), Parallel: 2);
    }

    /// <summary>Runs a submitted job to its end as the background steps and a worker would: planned (one tile), the tile done, stitched.</summary>
    private static void FinishJob(Harness h, string jobId, int nodes = 10)
    {
        var prep = h.Background.OfType<RunPrepare>().Last(p => p.JobId == jobId);
        var m = Manifest(jobId, prep.WorkDir, 2048, 2048, 2048);
        h.Files.Manifests[m.ManifestPath] = m;
        h.Run(new Prepared(jobId, m, 0.1));
        h.Run(new RequestWork(1), "w-" + jobId);
        h.Run(Completed(h.To<TileAssignment>("w-" + jobId).Single(), m), "w-" + jobId);
        var r = new ResultRef("/r", 1, "0");
        h.Run(new Stitched(jobId, new GraphStitched(jobId, r, null, nodes, 1, 1, 1, 1, 1)));
        Assert.True(h.Book.Jobs[jobId].Ended?.Succeeded, $"{jobId} should have ended done");
    }

    [Fact]
    public void AnEndedJobsWorkFolder_IsDeletedInTheBackground_AfterItsClientIsTold_UnlessKept()
    {
        var h = new Harness(new CoordinatorSettings());
        h.Run(new SubmitGraphJob("done", Spec("done")), "client");
        FinishJob(h, "done");
        var work = GraphOutputs.WorkDir(Spec("done").OutDir, "done");
        var delete = Assert.Single(h.Background.OfType<DeleteWork>());
        Assert.Equal(work, delete.WorkDir);
        int told = h.Order.FindIndex(o => o is GraphJobCompleted { JobId: "done" });
        Assert.True(told >= 0 && told < h.Order.IndexOf(delete), "the client is told before the folder is deleted");

        h.Run(new SubmitGraphJob("kept", Spec("kept") with { KeepWork = true }), "client");
        FinishJob(h, "kept");
        Assert.Single(h.Background.OfType<DeleteWork>()); // --keep-work: nothing more to delete

        h.Run(new SubmitGraphJob("bad", Spec("bad")), "client");
        h.Run(new StepFailed("bad", "prepare", new InvalidDataException("bad.tif: not an image")));
        Assert.Contains(h.Background.OfType<DeleteWork>(), w => w.WorkDir == GraphOutputs.WorkDir(Spec("bad").OutDir, "bad")); // a failed job's too
    }

    [Fact]
    public void ABatch_RunsAtMostParallelSlidesAtATime_UnderIdsFromTheBatchAndTheSlide_AndJournalsEverySlidesEnd()
    {
        var h = new Harness(new CoordinatorSettings());
        h.Run(new SubmitBatch("b1", Batch("b", "s1", "s2", "s3")), "client");
        Assert.False(h.To<BatchReceived>("client").Single().Existing);
        Assert.Single(h.Journal.OfType<BatchSubmitted>());
        var started = h.Journal.OfType<JobSubmitted>().Select(j => j.JobId).ToList();
        Assert.Equal([JobIds.ForSlide("b1", "s1"), JobIds.ForSlide("b1", "s2")], started);
        Assert.Equal(Path.Combine(_dir, "b", "slides", "s1"), h.Journal.OfType<JobSubmitted>().First().Spec.OutDir);
        // the first fails: its end is journaled for the batch, its client told, and the third slide starts
        h.Run(new StepFailed(started[0], "prepare", new InvalidDataException("s1.tif: not an image")));
        var ended = h.Journal.OfType<BatchSlideEnded>().Single();
        Assert.Equal(("s1", "failed"), (ended.Outcome.Name, ended.Outcome.Status));
        Assert.Contains("not an image", ended.Outcome.Error);
        Assert.Equal("failed", h.To<BatchSlideFinished>("client").Single().Outcome.Status);
        Assert.Equal(JobIds.ForSlide("b1", "s3"), h.Journal.OfType<JobSubmitted>().Last().JobId);
        h.Run(new GetStatus("b1"), "st");
        var st = h.To<StatusReport>("st").Single();
        Assert.Equal((3, 0, 1, 2), (st.Batches!.Single().Total, st.Batches![0].Done, st.Batches[0].Failed, st.Batches[0].Running));
        Assert.Equal(["failed", "running", "running"], st.Batches[0].Slides!.Select(x => x.State));
        Assert.Equal(2, st.Jobs.Count(j => j.Phase != "failed")); // its slides' jobs come with it
        Assert.Equal(1, h.Book.Gauges().BatchesOpen);

        FinishJob(h, JobIds.ForSlide("b1", "s2"), nodes: 42);
        Assert.Empty(h.To<BatchCompleted>("client"));
        FinishJob(h, JobIds.ForSlide("b1", "s3"));
        var done = h.To<BatchCompleted>("client").Single();
        Assert.Equal(["failed", "done", "done"], done.Outcomes.Select(o => o.Status));
        Assert.Equal(42, done.Outcomes[1].Nodes);
        Assert.Equal(3, h.Journal.OfType<BatchSlideEnded>().Count());
        Assert.Equal(3, h.Journal.OfType<JobSubmitted>().Count()); // every slide ran once
        Assert.Equal("done", h.Book.Batches["b1"].Phase);
        Assert.Equal(0, h.Book.Gauges().BatchesOpen);
    }

    [Fact]
    public void ABatchWhoseSlidesFailWithLongErrors_EndsWithinOneRemoteFrame_AndEveryClientStillGetsEachWholeError()
    {
        var h = new Harness(new CoordinatorSettings());
        var names = Enumerable.Range(0, JobAuthorization.MaxSlidesPerBatch).Select(i => $"s{i:D4}").ToArray();
        h.Run(new SubmitBatch("big", Batch("big", names) with { Parallel = 100 }), "client");
        string Why(string slide) => $"{slide}.tif: " + new string('x', 5_000); // a long reason (a path, a dump of a header…)
        for (int i = 0; i < names.Length; i++)
        {
            var id = JobIds.ForSlide("big", names[i]);
            h.Run(new StepFailed(id, "prepare", new InvalidDataException(Why(names[i]))));
        }
        var done = h.To<BatchCompleted>("client").Single();
        Assert.Equal(names.Length, done.Outcomes.Length);
        Assert.All(done.Outcomes, o => Assert.StartsWith($"prepare: {o.Name}.tif: xxx", o.Error));
        Assert.True(done.Outcomes.Sum(o => o.Error!.Length) <= JobBook.CompletedErrorBudget + names.Length, "the errors are cut to the budget");
        Assert.True(MessagePack.MessagePackSerializer.Serialize(done).Length < 4 << 20, "the message fits the 4 MiB remote frame");
        // each slide's whole error reached the client as it ended, and reaches a client that attaches after the end
        Assert.All(h.To<BatchSlideFinished>("client"), f => Assert.Contains(Why(f.Outcome.Name), f.Outcome.Error));
        h.Run(new WatchBatch("big"), "late");
        var late = h.To<BatchSlideFinished>("late").ToList();
        Assert.Equal(names.Length, late.Count);
        Assert.All(late, f => Assert.Contains(Why(f.Outcome.Name), f.Outcome.Error));
        Assert.Single(h.To<BatchCompleted>("late"));
    }

    [Fact]
    public void ABatchAfterACoordinatorRestart_GoesOnWhereItWas_AndRunsNoSlideTwice()
    {
        var s = new CoordinatorSettings();
        var h = new Harness(s);
        h.Run(new SubmitBatch("b1", Batch("b", "s1", "s2", "s3") with { Parallel = 1 }), "client");
        FinishJob(h, JobIds.ForSlide("b1", "s1"));
        var s2 = JobIds.ForSlide("b1", "s2");
        Assert.Equal(s2, h.Journal.OfType<JobSubmitted>().Last().JobId); // s2 started as s1 ended

        // down while s2 runs: it resumes (its work folder may exist), nothing is submitted again
        var mid = new Harness(s, h.Files, h.Journal.ToList());
        mid.Run(new Recovered(0.1));
        Assert.Equal(2, mid.Journal.OfType<JobSubmitted>().Count());
        Assert.Contains(mid.Background.OfType<RunPrepare>(), p => p.JobId == s2 && p.WorkDirMayExist);

        // down right after s2's job ended, before the batch recorded it: recorded once on recovery, s3 starts, once
        FinishJob(h, s2);
        int cut = h.Journal.FindIndex(e => e is JobEnded je && je.JobId == s2) + 1;
        var again = new Harness(s, h.Files, h.Journal.Take(cut));
        again.Run(new Recovered(0.1));
        again.Run(new WatchBatch("b1"), "client2"); // the client's heartbeat finds the new coordinator
        Assert.Equal(["s1", "s2"], again.Journal.OfType<BatchSlideEnded>().Select(e => e.Outcome.Name));
        var submitted = again.Journal.OfType<JobSubmitted>().Select(j => j.JobId).ToList();
        Assert.Equal([JobIds.ForSlide("b1", "s1"), s2, JobIds.ForSlide("b1", "s3")], submitted);
        Assert.Equal(2, again.To<BatchSlideFinished>("client2").Count()); // the slides ended so far, for the client to finish
        FinishJob(again, JobIds.ForSlide("b1", "s3"));
        Assert.Equal(["done", "done", "done"], again.To<BatchCompleted>("client2").Single().Outcomes.Select(o => o.Status));
        Assert.Equal(3, again.Journal.OfType<JobSubmitted>().Count());

        // a snapshot holds the batch as well
        var snap = new JobBook(s, h.Files);
        snap.Apply(again.Book.Snapshot());
        Assert.True(snap.Batches["b1"].Finished);
        Assert.Equal(3, snap.Batches["b1"].Ended.Count);
    }

    [Fact]
    public void TheSameBatchAgain_Attaches_AndADifferentOneUnderItsId_IsRefusedAsAConflict()
    {
        var h = new Harness(new CoordinatorSettings());
        var spec = Batch("b", "s1", "s2", "s3");
        h.Run(new SubmitBatch("b1", spec), "c1");
        int events = h.Journal.Count;
        // a second client, or the first started again: attached, nothing recorded or started again
        h.Run(new SubmitBatch("b1", spec), "c2");
        Assert.True(h.To<BatchReceived>("c2").Single().Existing);
        h.Run(new SubmitBatch("b1", spec with { Parallel = 7 }), "c3"); // parallelism is not what the batch is
        Assert.Single(h.To<BatchReceived>("c3"));
        h.Run(new SubmitBatch("b1", spec, Detached: true), "detached");
        Assert.Single(h.To<BatchReceived>("detached"));
        Assert.DoesNotContain("detached", h.Book.Batches["b1"].Watchers);
        Assert.Equal(events, h.Journal.Count);
        // another definition under the id: another tile size, a slide fewer, other inputs (the digest)
        foreach (var other in new[]
                 {
                     spec with { Slides = spec.Slides.Select(x => x with { Spec = x.Spec with { TileSize = 1024 } }).ToArray() },
                     spec with { Slides = spec.Slides[..2] },
                     spec with { Digest = "another" },
                 })
            h.Run(new SubmitBatch("b1", other), "c4");
        Assert.Equal(3, h.To<JobRefused>("c4").Count(r => r.Code == RefusalCodes.Conflict && r.Reason.Contains("different batch")));
        Assert.Equal(events, h.Journal.Count);
        // a job may not take the batch's id, a pending slide's id, or write into the open batch's folder
        h.Run(new SubmitGraphJob("b1", Spec("x")), "c5");
        h.Run(new SubmitGraphJob(JobIds.ForSlide("b1", "s3"), Spec("y")), "c5");
        h.Run(new SubmitGraphJob("intruder", Spec("z") with { OutDir = Path.Combine(spec.OutDir, "slides", "s9") }), "c5");
        Assert.Equal(3, h.To<JobRefused>("c5").Count(r => r.Code == RefusalCodes.Conflict));
        // following by id alone; an unknown id is refused
        h.Run(new WatchBatch("b1"), "c6");
        h.Run(new WatchBatch("unknown"), "c6");
        Assert.Equal(spec.OutDir, h.To<BatchReceived>("c6").Single().Spec.OutDir);
        Assert.Equal(RefusalCodes.Invalid, h.To<JobRefused>("c6").Single().Code);
        Assert.Equal(events, h.Journal.Count);
    }

    [Fact]
    public void ABatch_IsAdmittedAsItsJobsWouldBe_AndSlidesAlreadyDoneAreSkipped()
    {
        var h = new Harness(new CoordinatorSettings());
        var spec = Batch("b", "s1", "s2");
        var s1 = spec.Slides[0];
        h.Run(new SubmitBatch("x1", spec with { Slides = [s1 with { Spec = s1.Spec with { ImagePath = Path.Combine(spec.OutDir, "in.tif") } }] }), "c");
        Assert.Contains("could overwrite its own input", h.To<JobRefused>("c").Last().Reason);
        h.Run(new SubmitBatch("x2", spec with { Slides = [new BatchSlideSpec("..", s1.Spec with { OutDir = Path.Combine(spec.OutDir, "slides", "..") })] }), "c");
        Assert.Contains("slide name", h.To<JobRefused>("c").Last().Reason);
        h.Run(new SubmitBatch("x3", spec with { Slides = [s1 with { Spec = s1.Spec with { OutDir = Path.Combine(_dir, "elsewhere") } }] }), "c");
        Assert.Contains("must write to the batch's folder", h.To<JobRefused>("c").Last().Reason);
        h.Run(new SubmitBatch("x4", spec with { Slides = [s1, s1] }), "c");
        Assert.Contains("two slides are named", h.To<JobRefused>("c").Last().Reason);
        h.Run(new SubmitBatch("x5", spec with { Slides = spec.Slides.Select(x => x with { Spec = x.Spec with { TileSize = 8 } }).ToArray() }), "c");
        Assert.Contains("MinTileSize", h.To<JobRefused>("c").Last().Reason);
        h.Run(new SubmitBatch("x8", spec with { Parallel = 1000 }), "c");
        Assert.Contains("parallel must be between 1 and 256", h.To<JobRefused>("c").Last().Reason);
        h.Run(new SubmitBatch("../x6", spec), "c");
        h.Run(new SubmitBatch(new string('b', 65), spec), "c");
        Assert.Equal(8, h.To<JobRefused>("c").Count());
        // a slide folder that a symbolic link sends elsewhere
        Directory.CreateDirectory(Path.Combine(_dir, "linked"));
        Directory.CreateDirectory(Path.Combine(_dir, "elsewhere"));
        Directory.CreateSymbolicLink(Path.Combine(_dir, "linked", "slides"), Path.Combine(_dir, "elsewhere"));
        h.Run(new SubmitBatch("x7", Batch("linked", "s1")), "c");
        Assert.Equal(RefusalCodes.Forbidden, h.To<JobRefused>("c").Last().Code);
        Assert.Empty(h.Journal);

        // slides the client found done are skipped: nothing runs and the batch ends at once
        h.Run(new SubmitBatch("b1", spec, AlreadyDone: ["s1", "s2", "not-a-slide"]), "c");
        Assert.Empty(h.Journal.OfType<JobSubmitted>());
        Assert.Equal(["skipped", "skipped"], h.To<BatchCompleted>("c").Single().Outcomes.Select(o => o.Status));
        // one skipped of two: only the other runs
        h.Run(new SubmitBatch("b2", Batch("b2", "s1", "s2"), AlreadyDone: ["s1"]), "c");
        Assert.Equal([JobIds.ForSlide("b2", "s2")], h.Journal.OfType<JobSubmitted>().Select(j => j.JobId));
    }

    [Fact]
    public void SlideJobIds_AreStable_UsableAndDistinct_WhateverTheSlidesAreCalled()
    {
        string[] names = ["s11", "s, quoted", "s_ quoted", "=1+1", "a..b", ".hidden", "é", new string('x', 300)[..200], "a b", "a_b"];
        var ids = names.Select(n => JobIds.ForSlide("batch-0123456789abcdef", n)).ToList();
        Assert.Equal(ids.Count, ids.Distinct().Count());
        Assert.All(ids, id => Assert.Null(AssignmentPaths.InvalidJobId(id)));
        Assert.Equal("batch-0123456789abcdef-s11", ids[0]);
        Assert.Equal(ids, names.Select(n => JobIds.ForSlide("batch-0123456789abcdef", n)));
        Assert.All(ids, id => Assert.True(id.Length <= 128));
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
