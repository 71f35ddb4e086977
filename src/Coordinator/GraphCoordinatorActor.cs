using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Persistence;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Coordinator;

/// <summary>Coordinator settings (from configuration).</summary>
public sealed record CoordinatorSettings
{
    /// <summary>A tile that takes longer than this counts as a failed attempt and is handed to another worker.</summary>
    public TimeSpan TileDeadline { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Classifying a graph or painting a mask that takes longer than this counts as a failed attempt.</summary>
    public TimeSpan StepDeadline { get; init; } = TimeSpan.FromMinutes(30);
    /// <summary>The coordinator's own step for a job (prepare: the statistics pass over the image; stitch: the graph and its
    /// files) that runs longer than this fails the job with the reason and frees its step slot, so a read that hangs (a
    /// stalled network volume) cannot hold one of the <see cref="MaxConcurrentSteps"/> slots until the job deadline
    /// (zero: no deadline).</summary>
    public TimeSpan PrepareStitchDeadline { get; init; } = TimeSpan.FromHours(2);
    /// <summary>Training a model that takes longer than this counts as a failed attempt.</summary>
    public TimeSpan TrainDeadline { get; init; } = TimeSpan.FromHours(12);
    /// <summary>A job not finished this long after it was submitted fails with the reason (zero: no deadline).</summary>
    public TimeSpan JobDeadline { get; init; } = TimeSpan.FromHours(72);
    /// <summary>A work item that fails this many times (or crashes its worker this many times) is quarantined: the job fails with the reason.</summary>
    public int MaxAttempts { get; init; } = 3;
    /// <summary>A job whose coordinator-side step (prepare, stitch) was started this many times without an outcome — it took
    /// the coordinator down each time — is quarantined on recovery.</summary>
    public int MaxCrashes { get; init; } = 3;
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A snapshot of all jobs every this many journal events (bounds recovery time for long jobs); the last three are kept.</summary>
    public int SnapshotEvery { get; init; } = 1000;
    public string PersistenceId { get; init; } = "actorseg-coordinator";
    /// <summary>Finished jobs remembered (so re-submitting one answers at once instead of redoing it).</summary>
    public int FinishedJobsKept { get; init; } = 10_000;
    /// <summary>What jobs are accepted: data roots, and whether a coordinator without roots refuses everything.</summary>
    public JobPolicy Policy { get; init; } = JobPolicy.Open;

    // limits: one job may not take the coordinator down (refusals name the limit)
    public int MinTileSize { get; init; } = 64;
    public int MaxTileSize { get; init; } = 16_384;
    public int MaxTilesPerJob { get; init; } = 250_000;
    public long MaxPixelsPerImage { get; init; } = 1L << 37; // 137 gigapixels
    /// <summary>Jobs preparing or stitching at once (these run in the coordinator's process).</summary>
    public int MaxConcurrentSteps { get; init; } = 2;
    /// <summary>Jobs open at once (graph, segmentation and training); more are refused until some finish.</summary>
    public int MaxOpenJobs { get; init; } = 1_000;
}

/// <summary>
/// The coordinator: an event-sourced actor (a cluster singleton in a cluster, under a backoff supervisor) and a thin
/// shell over the <see cref="JobBook"/>, which makes every decision. This actor turns messages into the book's commands,
/// persists the events it decides, carries out its effects (sends, deathwatch, background prepare and stitch, timers)
/// and takes snapshots. A journal that fails stops it; its supervisor starts it again with backoff, and it recovers
/// from the journal.
/// </summary>
public sealed class GraphCoordinatorActor : ReceivePersistentActor, IWithTimers
{
    /// <summary>A command for the book that comes from inside this process (background steps, timers).</summary>
    /// <summary>A command from the actor itself; a background step's outcome carries the step's cancellation source, which
    /// is let go of once the outcome is in.</summary>
    private sealed record Internal(object Command, string? StepJob = null, CancellationTokenSource? Step = null) : INoSerializationVerificationNeeded;
    private sealed record TickNow : INoSerializationVerificationNeeded;

    private readonly CoordinatorSettings _settings;
    private readonly IResultStore _store;
    private readonly JobBook _book;
    private readonly Dictionary<string, IActorRef> _refs = new();
    private readonly ILogger _log = Serilog.Log.ForContext("Role", "coordinator");
    private readonly Stopwatch _recovery = Stopwatch.StartNew();
    private readonly SortedSet<long> _snapshots = new();
    private int _eventsSinceSnapshot;
    private const int SnapshotsKept = 3;
    public ITimerScheduler Timers { get; set; } = null!;

    public override string PersistenceId { get; }

    public GraphCoordinatorActor(CoordinatorSettings settings, IResultStore? store = null)
    {
        _settings = settings;
        _store = store ?? DirectoryResultStore.Instance;
        _book = new JobBook(settings, new DirectoryJobFiles(_store), _log);
        PersistenceId = settings.PersistenceId;

        Recover<SnapshotOffer>(o =>
        {
            if (o.Snapshot is UnreadableSnapshot u) SkipSnapshot(o.Metadata.SequenceNr, u);
            if (o.Snapshot is not CoordinatorSnapshot s) return;
            // read but not usable (a field this build refuses): the same as unreadable; the half-filled book goes with this actor
            try { _book.Apply(s); }
            catch (Exception e) when (e is not OutOfMemoryException) { SkipSnapshot(o.Metadata.SequenceNr, new UnreadableSnapshot($"{e.GetType().Name}: {e.Message}")); }
            _snapshots.Add(o.Metadata.SequenceNr);
        });
        // an event that cannot be read or applied is set aside by the book rather than failing the recovery
        Recover<UnreadableEvent>(u => { _firstReplayed ??= LastSequenceNr; _book.Replay(u, LastSequenceNr); });
        Recover<ICoordinatorEvent>(e => { _firstReplayed ??= LastSequenceNr; _book.Replay(e, LastSequenceNr); });
        Recover<RecoveryCompleted>(_ =>
        {
            // the floor served this recovery only: snapshots taken from now on are good, and older events may be deleted
            // as they are taken, so a later restart must not look below them
            if (SnapshotsBelow.TryRemove(PersistenceId, out long _) && _snapshots.Count == 0 && _firstReplayed > 1)
                _log.Error("No snapshot of the coordinator could be read, and the journal's events before #{First} were deleted when those snapshots were taken: " +
                           "jobs recorded only there are lost (their outputs on disk are not touched)", _firstReplayed);
            Run(new Recovered(_recovery.Elapsed.TotalSeconds), "");
            HoldOpenJobsFolders();
        });

        Command<Internal>(i =>
        {
            if (i.Step is { } done && i.StepJob is { } id && _steps.TryGetValue(id, out var cur) && ReferenceEquals(cur, done)) { _steps.Remove(id); cur.Dispose(); }
            Run(i.Command, "");
        });
        Command<TickNow>(_ => { Run(new Tick(DateTime.UtcNow), ""); ForgetUnknownRefs(); });
        Command<Terminated>(t => Run(new NodeLost(Id(t.ActorRef), "stopped", Downed: true), ""));
        Command<ClusterEvent.UnreachableMember>(u => LostAt(u.Member.Address, "unreachable", downed: false));
        Command<ClusterEvent.MemberRemoved>(u => LostAt(u.Member.Address, "removed from the cluster", downed: true));
        Command<ClusterEvent.IMemberEvent>(_ => { });
        Command<ClusterEvent.CurrentClusterState>(_ => { });
        Command<SaveSnapshotSuccess>(s => KeepLastSnapshots(s.Metadata.SequenceNr));
        Command<SaveSnapshotFailure>(f => _log.Warning(f.Cause, "Snapshot failed; the journal keeps every event, recovery will just take longer"));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(f => _log.Warning(f.Cause, "Could not delete journal events up to {SeqNr}", f.ToSequenceNr));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(f => _log.Warning(f.Cause, "Could not delete old snapshots"));
        Command<IActorSegMessage>(m => Run(m, Id(Sender)));
    }

    /// <summary>
    /// Per persistence id, the sequence number below which the next recovery looks for a snapshot: lowered past each snapshot
    /// found unreadable (the actor is started again with it), and dropped once a recovery completes.
    /// </summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> SnapshotsBelow = new();
    private long? _firstReplayed;

    public override Recovery Recovery => SnapshotsBelow.TryGetValue(PersistenceId, out var below)
        ? new Recovery(new SnapshotSelectionCriteria(below - 1))
        : Recovery.Default;

    /// <summary>
    /// A snapshot that cannot be read: recovery starts again from the snapshot before it and the events after that (the last
    /// three snapshots and the events after the oldest are kept for this). Applying events on top of nothing instead would
    /// lose every job the snapshot held, without a word.
    /// </summary>
    private void SkipSnapshot(long seqNr, UnreadableSnapshot u)
    {
        SnapshotsBelow.AddOrUpdate(PersistenceId, seqNr, (_, old) => Math.Min(old, seqNr));
        Core.Telemetry.Quarantines.Add(1, Core.Telemetry.Tag("kind", "snapshot"));
        _log.Error("Coordinator snapshot at event #{SequenceNr} could not be read ({Reason}); recovering again from the snapshot before it and the events after that",
            seqNr, u.Reason);
        throw new SnapshotSkipped($"coordinator snapshot at event #{seqNr} could not be read ({u.Reason}); recovery starts again from the one before it");
    }

    /// <summary>Ends a recovery on purpose, so the next one starts below an unreadable snapshot (logged once, by <see cref="SkipSnapshot"/>).</summary>
    private sealed class SnapshotSkipped(string message) : Exception(message);

    public static Props Props(CoordinatorSettings settings, IResultStore? store = null) =>
        Akka.Actor.Props.Create(() => new GraphCoordinatorActor(settings, store));

    protected override void PreStart()
    {
        Timers.StartPeriodicTimer("tick", new TickNow(), _settings.ProgressInterval);
        Core.Telemetry.ObserveBook(() => _gauges);
        _book.SelfAddress = ((ExtendedActorSystem)Context.System).Provider.DefaultAddress.ToString();
        if (Context.System.Settings.ProviderClass.Contains("Cluster", StringComparison.Ordinal))
            Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
                typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.MemberRemoved));
        base.PreStart();
    }

    protected override void PostStop()
    {
        if (Context.System.Settings.ProviderClass.Contains("Cluster", StringComparison.Ordinal)) Cluster.Get(Context.System).Unsubscribe(Self);
        // the jobs' folders go with this incarnation (a restarted coordinator holds the open jobs' again once recovered)
        lock (_folders)
        {
            foreach (var h in _folders.Values) h.Dispose();
            _folders.Clear();
        }
        base.PostStop();
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        if (reason is SnapshotSkipped) { base.OnRecoveryFailure(reason, message); return; }
        Core.Telemetry.JournalFailures.Add(1);
        _log.Error(reason, "Coordinator could not recover its journal ({Reason}); it stops and its supervisor starts it again with backoff (no job state is dropped)", reason.Message);
        base.OnRecoveryFailure(reason, message);
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        Core.Telemetry.JournalFailures.Add(1);
        _log.Error(cause, "Could not write {Event} to the journal: {Reason}; the coordinator stops, and its supervisor starts it again with backoff to recover from the journal",
            @event.GetType().Name, cause.Message);
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        Core.Telemetry.JournalFailures.Add(1);
        _log.Error(cause, "The journal rejected {Event}: {Reason}", @event.GetType().Name, cause.Message);
        base.OnPersistRejected(cause, @event, sequenceNr);
    }

    // ---------------------------------------------------------------- the shell

    private string Id(IActorRef r)
    {
        if (r.IsNobody()) return "";
        var id = r.Path.ToString();
        _refs[id] = r;
        return id;
    }

    private void LostAt(Address address, string why, bool downed)
    {
        foreach (var (id, r) in _refs.Where(kv => kv.Value.Path.Address.Equals(address)).ToList())
            Run(new NodeLost(id, why, downed), "");
    }

    /// <summary>Clients that asked once (status, a refused job) are forgotten when the book no longer refers to them.</summary>
    private void ForgetUnknownRefs()
    {
        var known = _book.KnownIds();
        foreach (var id in _refs.Keys.Where(k => !known.Contains(k)).ToList()) _refs.Remove(id);
    }

    private void Run(object command, string sender)
    {
        Decision d;
        try { d = _book.Handle(command, sender, DateTime.UtcNow); }
        catch (Exception e) when (!_aborting && command is not (SubmitGraphJob or SubmitTrainJob or SubmitBatch or WatchBatch or GetStatus)
                                  && JobBook.JobOf(command) is { } jobId)
        {
            // (a client's request names a job id of its choosing: one that throws restarts the actor as before, and is not
            // replayed, rather than ending a job that may be someone else's)
            // a fault of the book's own while it decided about one job: that job fails with the error and the others go on.
            // Left to the supervisor, the restart would recover the job, resume it, meet the same fault, and so on for ever.
            _log.Error(e, "Job {JobId}: internal error while handling {Command}; the job fails, the other jobs go on", jobId, command.GetType().Name);
            Core.Telemetry.Quarantines.Add(1, Core.Telemetry.Tag("kind", "job"));
            _aborting = true;
            try { d = _book.Handle(new AbortJob(jobId, $"internal error of the coordinator ({e.GetType().Name}: {e.Message})"), sender, DateTime.UtcNow); }
            finally { _aborting = false; }
        }
        Execute(d);
    }

    private bool _aborting;

    // refreshed after every decision on the actor's thread; read by the metrics endpoint's thread
    private volatile Core.BookGauges _gauges = Core.BookGauges.Empty;

    /// <summary>Persists the decision's events (applying each to the book as it is written), then carries out its effects.</summary>
    private void Execute(Decision d)
    {
        // the gauges are read again once the decision's events are applied (at once when there are none)
        if (d.Journal.Count == 0) { ReleaseEndedJobsFolders(); Carry(d.Effects); _gauges = _book.Gauges(); return; }
        int left = d.Journal.Count;
        long asked = System.Diagnostics.Stopwatch.GetTimestamp();
        PersistAll(d.Journal, e =>
        {
            if (left == d.Journal.Count) Core.Telemetry.JournalWriteSeconds.Record(System.Diagnostics.Stopwatch.GetElapsedTime(asked).TotalSeconds);
            _book.Apply(e);
            if (++_eventsSinceSnapshot >= _settings.SnapshotEvery)
            {
                _eventsSinceSnapshot = 0;
                SaveSnapshot(_book.Snapshot());
            }
            if (--left == 0) { ReleaseEndedJobsFolders(); Carry(d.Effects); _gauges = _book.Gauges(); }
        });
    }

    private void Carry(IReadOnlyList<Effect> effects)
    {
        foreach (var e in effects)
            switch (e)
            {
                case Send s when _refs.TryGetValue(s.To, out var to): to.Tell(s.Message, Self); break;
                case WatchNode w when _refs.TryGetValue(w.Node, out var n): Context.Watch(n); break;
                case RunPrepare p: StartPrepare(p); break;
                case RunStitch st: StartStitch(st); break;
                case AbandonStep a when _steps.Remove(a.JobId, out var cts): cts.Cancel(); cts.Dispose(); break;
                case DeleteWork w: GraphOutputs.CleanWorkInBackground(w.WorkDir); break;
                case Continue c: Run(c.Command, ""); break;
                case RetryLater r: Timers.StartSingleTimer($"retry-{r.JobId}", new Internal(new RetryJob(r.JobId)), r.After); break;
            }
    }

    /// <summary>Keeps the newest three snapshots (one unreadable snapshot loses nothing) and the events after the oldest of them.</summary>
    private void KeepLastSnapshots(long seqNr)
    {
        if (SnapshotRetention.After(_snapshots, seqNr, SnapshotsKept) is not { } oldest) return;
        DeleteSnapshots(new SnapshotSelectionCriteria(oldest - 1));
        DeleteMessages(oldest);
    }

    // ---------------------------------------------------------------- output folders held while their jobs run

    /// <summary>The output folder locks of open jobs (<see cref="OutputFolderLock.HoldForJob"/>), taken by background
    /// steps and let go of on the actor's thread once the book says the job has ended.</summary>
    private readonly Dictionary<string, OutputFolderLock> _folders = new();

    /// <summary>Takes a job's folder (off the actor's thread: a file system can hang); at once when it holds it already.</summary>
    /// <exception cref="OutputFolderInUseException">another run holds the folder</exception>
    private void HoldFolder(string jobId, string outDir, CancellationToken ct)
    {
        lock (_folders) if (_folders.ContainsKey(jobId)) return;
        var held = OutputFolderLock.HoldForJob(outDir, $"cluster job {jobId}", HoldWait, ct);
        if (held is null) return; // this process's one-process command holds it and runs the job
        if (held.EarlierRun is { } earlier)
            _log.ForContext("JobId", jobId).Information("Job {JobId}: {OutDir} was last held by {EarlierRun}, which ended without letting go (killed, or its node lost)", jobId, held.Folder, earlier);
        lock (_folders)
            if (!_folders.TryAdd(jobId, held)) held.Dispose();
    }

    /// <summary>How long a job waits for its folder while the holder is the same job: an earlier coordinator of a failover
    /// that is still stopping.</summary>
    private static readonly TimeSpan HoldWait = TimeSpan.FromSeconds(30);

    /// <summary>After a recovery, the folders of the jobs that go on are held again (the earlier incarnation's locks went
    /// with it); a folder another run took in between fails its job, naming that run.</summary>
    private void HoldOpenJobsFolders()
    {
        var self = Self;
        foreach (var (jobId, outDir) in _book.OpenJobFolders())
            Task.Run(() => HoldFolder(jobId, outDir, CancellationToken.None)).ContinueWith(t =>
            {
                if (t.IsCompletedSuccessfully) return;
                var e = t.Exception!.GetBaseException();
                self.Tell(new Internal(new AbortJob(jobId, e is OutputFolderInUseException ? e.Message : $"its output folder {outDir} cannot be held: {e.Message}")));
            });
    }

    /// <summary>Lets go of the folders of jobs that have ended (after every decision, before its effects: a client told that
    /// its job ended may start a one-process run in that folder at once; a step that took its folder after its job ended is
    /// caught by the decision on its own outcome).</summary>
    private void ReleaseEndedJobsFolders()
    {
        List<(string JobId, OutputFolderLock Held)>? ended = null;
        lock (_folders)
        {
            if (_folders.Count == 0) return;
            foreach (var (jobId, held) in _folders)
                if (!_book.IsOpen(jobId)) (ended ??= []).Add((jobId, held));
            if (ended is null) return;
            foreach (var (id, _) in ended) _folders.Remove(id);
        }
        foreach (var (id, h) in ended)
        {
            // a job that ended before it was planned (it failed: none succeeds unplanned) wrote nothing but its work folder
            // (a manifest at most) and the folder that marks its earlier results set aside: a folder it made goes with its
            // lock, instead of staying behind with only the lock once those are deleted
            var j = _book.Jobs.GetValueOrDefault(id);
            h.Dispose(j is { Planned: null, Spec.KeepWork: false } ? [GraphOutputs.WorkDir(j.GraphDir, id), j.GraphDir, EarlierResults.Folder(j.Spec.OutDir, id)] : []);
        }
    }

    // ---------------------------------------------------------------- background steps (the book decides, they run off the actor's thread)

    /// <summary>Cancels a job's running prepare or stitch when the book gives up on it (see <see cref="AbandonStep"/>).</summary>
    private readonly Dictionary<string, CancellationTokenSource> _steps = new();

    private CancellationTokenSource NewStep(string jobId)
    {
        if (_steps.Remove(jobId, out var old)) old.Dispose();
        var cts = new CancellationTokenSource();
        _steps[jobId] = cts;
        return cts;
    }

    private void StartPrepare(RunPrepare p)
    {
        var self = Self;
        var log = _log.ForContext("JobId", p.JobId);
        var sw = Stopwatch.StartNew();
        var step = NewStep(p.JobId);
        var ct = step.Token;
        Task.Run(() =>
        {
            // a segmentation job's graph is built with its model's features (and, where asked, at its seed spacing): read from
            // the model's header and checked here, before the folder is taken and any tile is planned
            var (spec, model) = JobModel.Resolve(p.JobId, p.Spec, log);
            var req = ToRequest(spec);
            // the job's folder is held from here to the job's end: a one-process run of another process writing it (a
            // shared file system) refuses the job, naming that run, and one started later is refused in its turn
            HoldFolder(p.JobId, p.Spec.OutDir, ct);
            // the results an earlier run left in the folder stay whole, out of this job's way, until it has succeeded
            // (then they go) or failed (then they come back): never a new graph beside an old mask
            var aside = EarlierResults.SetAside(p.Spec.OutDir, p.JobId, segments: p.Spec.ModelPath is not null);
            foreach (var other in aside.RestoredOthers)
                log.Warning("Job {JobId}: job {OtherJob} stopped in {OutDir} before it ended; the results it had set aside were put back first", p.JobId, other, p.Spec.OutDir);
            if (aside.Moved.Length > 0)
                log.Information("Job {JobId}: the earlier results in {OutDir} ({Names}) are kept in {Folder} until this job ends: deleted when it succeeds, put back if it fails",
                    p.JobId, p.Spec.OutDir, string.Join(", ", aside.Moved), aside.Folder);
            // the work folder is this job's alone: made now (mkdir fails if anything is there), or, for a job resuming
            // after a restart, accepted only as a real folder of this user, never a link planted in its place
            SafePaths.CreatePrivateDirectory(p.WorkDir, p.WorkDirMayExist, "work folder", parentWhat: "output folder");
            var m = GraphJob.Prepare(p.JobId, req, p.WorkDir, new Core.InlineProgress<string>(s => log.Information("Job {JobId}: {Step}", p.JobId, s)), ct);
            ct.ThrowIfCancellationRequested(); // given up on (its deadline passed): its job has ended, its folder may be gone
            if (model is not null) JobModel.CheckChannels(model, spec.ImagePath, m.Channels);
            m.Save();
            return m;
        }).ContinueWith(t => new Internal(t.IsCompletedSuccessfully ? new Prepared(p.JobId, t.Result, sw.Elapsed.TotalSeconds)
                                                                     : new StepFailed(p.JobId, "prepare", t.Exception!.GetBaseException()), p.JobId, step))
          .PipeTo(self);
    }

    private void StartStitch(RunStitch r)
    {
        var self = Self;
        var store = _store;
        var log = _log.ForContext("JobId", r.JobId);
        var m = r.Manifest;
        var step = NewStep(r.JobId);
        var ct = step.Token;
        Task.Run<object>(() =>
        {
            // every tile result is checked before it is trusted: a file lost or damaged since (or while the coordinator was down) is re-computed
            var invalid = r.Done.AsParallel().Select(d => (d.TileId, Why: store.Check(d.Result) ?? store.Check(d.Labels)))
                .Where(x => x.Why is not null).Select(x => (x.TileId, x.Why!)).ToArray();
            if (invalid.Length > 0) return new TilesInvalid(m.JobId, invalid);
            var s = GraphOutputs.StitchAndWrite(m, r.OutDir, r.NodeMap, new Core.InlineProgress<string>(p => log.Information("Job {JobId}: {Step}", m.JobId, p)), ct);
            var graph = store.Describe(Path.Combine(r.OutDir, GraphOutputs.GraphFile));
            var map = r.NodeMap ? store.Describe(Path.Combine(r.OutDir, GraphOutputs.NodeMapFile)) : null;
            return new Stitched(m.JobId, new GraphStitched(m.JobId, graph, map, s.Nodes, s.AdjacencyEdges, s.KnnEdges, r.TilesSeconds, s.StitchSeconds, s.WriteSeconds,
                m.Tissue?.Fraction, m.Tissue?.TilesSkipped ?? 0));
        }).ContinueWith(t => new Internal(t.IsCompletedSuccessfully ? t.Result : new StepFailed(m.JobId, "stitch", t.Exception!.GetBaseException()), m.JobId, step))
          .PipeTo(self);
    }

    public static GraphRequest ToRequest(GraphJobSpec s) => new()
    {
        ImagePath = s.ImagePath, MaskPath = s.MaskPath, Page = s.Page, Series = s.Series ?? -1,
        MaskMode = MaskModes.Parse(s.MaskMode),
        IgnoreValue = s.IgnoreValue,
        Slic = new SlicParameters
        {
            Segments = s.Segments, Spacing = s.Spacing, Compactness = s.Compactness, Sigma = s.Sigma,
            Iterations = s.Iterations, WindowFactor = s.WindowFactor, MinSizeFactor = s.MinSizeFactor,
        },
        TileSize = s.TileSize, Halo = s.Halo, K = s.K, Features = s.Features, Tissue = s.Tissue,
    };
}

/// <summary>Which snapshots and events may go once a new snapshot is saved: the newest <c>keep</c> snapshots stay, with
/// every event after the oldest of them, so that one unreadable snapshot loses nothing.</summary>
public static class SnapshotRetention
{
    /// <summary>Adds <paramref name="saved"/> to the kept set; returns the sequence number below which snapshots (and up to
    /// which events) can be deleted, or null while fewer than <paramref name="keep"/> snapshots exist.</summary>
    public static long? After(SortedSet<long> kept, long saved, int keep)
    {
        kept.Add(saved);
        while (kept.Count > keep) kept.Remove(kept.Min);
        return kept.Count < keep ? null : kept.Min;
    }
}
