using System.Diagnostics;
using System.Text.Json;
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
    /// <summary>A tile that takes longer than this is handed to another worker.</summary>
    public TimeSpan TileDeadline { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Classifying a graph or painting a mask that takes longer than this is handed to another node.</summary>
    public TimeSpan StepDeadline { get; init; } = TimeSpan.FromMinutes(30);
    /// <summary>Training a model that takes longer than this is handed to another trainer.</summary>
    public TimeSpan TrainDeadline { get; init; } = TimeSpan.FromHours(12);
    /// <summary>A work item that fails this many times (or crashes its worker this many times) is quarantined: the job fails with the reason.</summary>
    public int MaxAttempts { get; init; } = 3;
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A snapshot of all jobs every this many journal events (bounds recovery time for long jobs).</summary>
    public int SnapshotEvery { get; init; } = 1000;
    public string PersistenceId { get; init; } = "actorseg-coordinator";
    /// <summary>Finished jobs remembered (so re-submitting one answers at once instead of redoing it).</summary>
    public int FinishedJobsKept { get; init; } = 10_000;
    /// <summary>What jobs are accepted: data roots, and whether a coordinator without roots refuses everything.</summary>
    public JobPolicy Policy { get; init; } = JobPolicy.Open;
}

/// <summary>
/// The coordinator: an event-sourced actor (a cluster singleton in a cluster). It plans a job's tiles, hands them to
/// workers that ask for work, re-queues the tiles of workers that die, become unreachable or miss their deadline,
/// ignores duplicate results, verifies every result's checksum, stitches the graph, and, for a segmentation job, has a
/// gpu-trainer classify the nodes and a worker paint the mask. Every step that finished is an event in the journal, so
/// a restarted coordinator continues where the old one stopped. The algorithms live in <see cref="GraphJob"/>,
/// <see cref="GraphOutputs"/> and the roles' actors; this actor keeps state and moves messages.
/// </summary>
public sealed class GraphCoordinatorActor : ReceivePersistentActor, IWithTimers
{
    private sealed class JobState
    {
        public required JobSubmitted Submitted;
        public JobPlanned? Planned;
        public GraphJobManifest? Manifest;
        public readonly Dictionary<int, TileDone> Done = new();
        public readonly Queue<(int Tile, int Attempt)> Pending = new();
        public readonly Dictionary<int, (IActorRef Worker, int Attempt, DateTime Deadline)> InFlight = new();
        public readonly Dictionary<int, int> Failures = new();
        public GraphStitched? Stitched;
        public ImageClassified? Classified;
        public ImageSegmented? Segmented;
        public JobEnded? Ended;
        public readonly HashSet<IActorRef> Watchers = new();
        public int Retries, RecoveredTiles, StepAttempt, StepFailures;
        public (IActorRef Node, DateTime Deadline)? Step; // the trainer classifying, or the worker painting
        public bool Busy; // a background step (prepare, stitch) is running
        public bool FreshSubmit; // submitted in this incarnation: its work folder must not exist yet
        public int PrepareAttempts;
        public long PixelsThisRun;
        public readonly Stopwatch Clock = new();
        public ILogger Log = Serilog.Log.Logger;

        public string JobId => Submitted.JobId;
        public GraphJobSpec Spec => Submitted.Spec;
        public bool Segments => Spec.ModelPath is not null;
        public string GraphDir => Segments ? Path.Combine(Spec.OutDir, "graph") : Spec.OutDir;
        public string Phase => Ended is { } e ? (e.Succeeded ? "done" : "failed")
            : Segmented is not null ? "finishing"
            : Classified is not null ? "painting"
            : Stitched is not null ? (Segments ? "classifying" : "finishing")
            : Planned is null ? "preparing"
            : Done.Count == Planned.Tiles ? "stitching" : "tiles";
    }

    private sealed class TrainState
    {
        public required TrainJobSubmitted Submitted;
        public ModelTrained? Trained;
        public JobEnded? Ended;
        public readonly HashSet<IActorRef> Watchers = new();
        public (IActorRef Node, DateTime Deadline, DateTime Started)? Step;
        public int Attempt, Failures;
        public ILogger Log = Serilog.Log.Logger;
        public string JobId => Submitted.JobId;
        public string Phase => Ended is { } e ? (e.Succeeded ? "done" : "failed") : Step is null ? "waiting for a trainer" : "training";
    }

    private readonly Dictionary<string, TrainState> _trainings = new();

    private sealed record Prepared(string JobId, GraphJobManifest Manifest, double Seconds) : INoSerializationVerificationNeeded;
    private sealed record StepFailed(string JobId, string Step, Exception Error) : INoSerializationVerificationNeeded;
    private sealed record Stitched(string JobId, GraphStitched Event, string[] Invalid) : INoSerializationVerificationNeeded;
    private sealed record TilesInvalid(string JobId, (int Tile, string Reason)[] Invalid) : INoSerializationVerificationNeeded;
    private sealed record Tick : INoSerializationVerificationNeeded;

    private readonly CoordinatorSettings _settings;
    private readonly IResultStore _store;
    private readonly Dictionary<string, JobState> _jobs = new();
    private readonly Queue<string> _finishedOrder = new();
    private readonly Dictionary<IActorRef, int> _idle = new();   // worker → free slots
    private readonly HashSet<IActorRef> _workers = new();
    private readonly HashSet<IActorRef> _trainers = new();
    private readonly HashSet<IActorRef> _idleTrainers = new();
    private readonly ILogger _log = Serilog.Log.ForContext("Role", "coordinator");
    private readonly Stopwatch _recovery = Stopwatch.StartNew();
    private int _eventsSinceSnapshot;
    public ITimerScheduler Timers { get; set; } = null!;

    public override string PersistenceId { get; }

    public GraphCoordinatorActor(CoordinatorSettings settings, IResultStore? store = null)
    {
        _settings = settings;
        _store = store ?? DirectoryResultStore.Instance;
        PersistenceId = settings.PersistenceId;

        Recover<SnapshotOffer>(o => { if (o.Snapshot is CoordinatorSnapshot s) Apply(s); });
        Recover<ICoordinatorEvent>(Apply);
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<SubmitGraphJob>(OnSubmit);
        Command<GetStatus>(OnStatus);
        Command<SubmitTrainJob>(OnSubmitTrain);
        Command<ModelReady>(OnModelReady);
        Command<TrainFailed>(OnTrainFailed);
        Command<Prepared>(OnPrepared);
        Command<StepFailed>(OnStepFailed);
        Command<RequestWork>(OnRequestWork);
        Command<TrainerReady>(OnTrainerReady);
        Command<TileCompleted>(OnTileCompleted);
        Command<TileFailed>(OnTileFailed);
        Command<TileHandedBack>(h =>
        {
            if (!_jobs.TryGetValue(h.JobId, out var j) || j.Done.ContainsKey(h.TileId)) return;
            if (!j.InFlight.TryGetValue(h.TileId, out var fl) || fl.Attempt != h.Attempt) return;
            j.InFlight.Remove(h.TileId);
            j.Pending.Enqueue((h.TileId, h.Attempt + 1));
            _idle.Remove(Sender);
            j.Log.Information("Tile {TileId} handed back by leaving worker {Worker}; re-queued", h.TileId, Sender.Path.ToString());
            Dispatch();
        });
        Command<TilesInvalid>(OnTilesInvalid);
        Command<Stitched>(OnStitched);
        Command<NodesClassified>(OnClassified);
        Command<ClassifyFailed>(f => OnStepItemFailed(f.JobId, f.Attempt, "classifying", f.Error, f.Permanent));
        Command<PaintCompleted>(OnPainted);
        Command<PaintFailed>(f => OnStepItemFailed(f.JobId, f.Attempt, "painting", f.Error, f.Permanent));
        Command<Terminated>(t => OnNodeGone(t.ActorRef, "stopped"));
        Command<ClusterEvent.UnreachableMember>(u => OnAddressLost(u.Member.Address, "unreachable"));
        Command<ClusterEvent.MemberRemoved>(u => OnAddressLost(u.Member.Address, "removed from the cluster"));
        Command<ClusterEvent.IMemberEvent>(_ => { });
        Command<ClusterEvent.CurrentClusterState>(_ => { });
        Command<Tick>(_ => OnTick());
        Command<RetryJob>(r => { if (_jobs.TryGetValue(r.JobId, out var j) && j.Ended is null) Resume(j); });
        Command<SaveSnapshotSuccess>(s =>
        {
            // the snapshot holds everything: older events and snapshots are no longer needed
            DeleteMessages(s.Metadata.SequenceNr);
            DeleteSnapshots(new SnapshotSelectionCriteria(s.Metadata.SequenceNr - 1));
        });
        Command<SaveSnapshotFailure>(f => _log.Warning(f.Cause, "Snapshot failed; the journal keeps every event, recovery will just take longer"));
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteMessagesFailure>(f => _log.Warning(f.Cause, "Could not delete journal events up to {SeqNr}", f.ToSequenceNr));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(f => _log.Warning(f.Cause, "Could not delete old snapshots"));
    }

    public static Props Props(CoordinatorSettings settings, IResultStore? store = null) =>
        Akka.Actor.Props.Create(() => new GraphCoordinatorActor(settings, store));

    protected override void PreStart()
    {
        Timers.StartPeriodicTimer("tick", new Tick(), _settings.ProgressInterval);
        if (Context.System.Settings.ProviderClass.Contains("Cluster", StringComparison.Ordinal))
            Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
                typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.MemberRemoved));
        base.PreStart();
    }

    protected override void PostStop()
    {
        if (Context.System.Settings.ProviderClass.Contains("Cluster", StringComparison.Ordinal)) Cluster.Get(Context.System).Unsubscribe(Self);
        base.PostStop();
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        _log.Error(reason, "Coordinator could not recover its journal ({Reason}); it will be restarted with backoff and no job state is dropped", reason.Message);
        base.OnRecoveryFailure(reason, message);
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        _log.Error(cause, "Could not write {Event} to the journal: {Reason}; the coordinator stops and recovers from the journal", @event.GetType().Name, cause.Message);
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    private static string Describe(Exception e) => e switch
    {
        AggregateException a when a.InnerException is not null => Describe(a.InnerException),
        InputFileException or InvalidDataException or ArgumentException or ResultStoreException or UnsafePathException => e.Message,
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    // ---------------------------------------------------------------- events: the only place state changes

    private void Apply(ICoordinatorEvent e)
    {
        switch (e)
        {
            case JobSubmitted s:
                var st = new JobState { Submitted = s };
                st.Log = _log.ForContext("JobId", s.JobId).ForContext("ImageId", Path.GetFileNameWithoutExtension(s.Spec.ImagePath));
                _jobs[s.JobId] = st;
                break;
            case JobPlanned p when _jobs.TryGetValue(p.JobId, out var j): j.Planned = p; break;
            case TileDone d when _jobs.TryGetValue(d.JobId, out var j): j.Done[d.TileId] = d; break;
            case TileInvalidated i when _jobs.TryGetValue(i.JobId, out var j): j.Done.Remove(i.TileId); j.Stitched = null; break;
            case GraphStitched g when _jobs.TryGetValue(g.JobId, out var j): j.Stitched = g; break;
            case ImageClassified c when _jobs.TryGetValue(c.JobId, out var j): j.Classified = c; break;
            case ImageSegmented m when _jobs.TryGetValue(m.JobId, out var j): j.Segmented = m; break;
            case JobRetried r when _jobs.TryGetValue(r.JobId, out var j): j.Retries = r.Retries; break;
            case TrainJobSubmitted t:
                _trainings[t.JobId] = new TrainState { Submitted = t, Log = _log.ForContext("JobId", t.JobId) };
                break;
            case ModelTrained m when _trainings.TryGetValue(m.JobId, out var tj): tj.Trained = m; break;
            case JobEnded x when _trainings.TryGetValue(x.JobId, out var tj):
                tj.Ended = x;
                _finishedOrder.Enqueue(x.JobId);
                while (_finishedOrder.Count > _settings.FinishedJobsKept) { var old = _finishedOrder.Dequeue(); _jobs.Remove(old); _trainings.Remove(old); }
                break;
            case JobEnded x when _jobs.TryGetValue(x.JobId, out var j):
                j.Ended = x;
                j.Done.Clear(); // a finished job needs only its outcome
                j.Manifest = null;
                _finishedOrder.Enqueue(x.JobId);
                while (_finishedOrder.Count > _settings.FinishedJobsKept) _jobs.Remove(_finishedOrder.Dequeue());
                break;
            case CoordinatorSnapshot s:
                foreach (var r in s.Jobs) Restore(r);
                foreach (var t in s.Trainings ?? []) RestoreTraining(t);
                break;
        }
    }

    private void Restore(JobRecord r)
    {
        Apply(r.Submitted);
        var j = _jobs[r.Submitted.JobId];
        j.Planned = r.Planned; j.Stitched = r.Stitched; j.Classified = r.Classified; j.Segmented = r.Segmented; j.Retries = r.Retries;
        foreach (var d in r.Done) j.Done[d.TileId] = d;
        if (r.Ended is not null) Apply(r.Ended);
    }

    private void RestoreTraining(TrainRecord r)
    {
        Apply(r.Submitted);
        if (r.Trained is not null) Apply(r.Trained);
        if (r.Ended is not null) Apply(r.Ended);
    }

    private CoordinatorSnapshot Snapshot() => new(_jobs.Values.Select(j => new JobRecord(j.Submitted, j.Planned,
        j.Done.Values.ToArray(), j.Stitched, j.Classified, j.Segmented, j.Ended, j.Retries)).ToArray(),
        _trainings.Values.Select(t => new TrainRecord(t.Submitted, t.Trained, t.Ended)).ToArray());

    /// <summary>Persists an event, applies it, then runs <paramref name="then"/>; snapshots every N events.</summary>
    private void Record<T>(T e, Action<T>? then = null) where T : ICoordinatorEvent
    {
        Persist(e, ev =>
        {
            Apply(ev);
            if (++_eventsSinceSnapshot >= _settings.SnapshotEvery)
            {
                _eventsSinceSnapshot = 0;
                SaveSnapshot(Snapshot());
            }
            then?.Invoke(ev);
        });
    }

    // ---------------------------------------------------------------- recovery

    private void OnRecovered()
    {
        var open = _jobs.Values.Where(j => j.Ended is null).ToList();
        if (_jobs.Count > 0)
            _log.Information("Coordinator recovered {Jobs} jobs ({Open} unfinished, {TilesDone} finished tiles kept) from the journal in {Seconds:F2}s",
                _jobs.Count, open.Count, open.Sum(j => j.Done.Count), _recovery.Elapsed.TotalSeconds);
        else
            _log.Information("Coordinator started (empty journal, recovery {Seconds:F2}s)", _recovery.Elapsed.TotalSeconds);
        foreach (var t in _trainings.Values.Where(t => t.Ended is null))
        {
            t.Log.Information("Training job {JobId} resumes: it will be trained again from the start on the next free trainer", t.JobId);
            if (t.Trained is not null) FinishTraining(t);
        }
        foreach (var j in open)
        {
            j.RecoveredTiles = j.Done.Count;
            j.Log.Information("Job {JobId} resumes in phase {Phase}: {Done}/{Total} tiles already done", j.JobId, j.Phase, j.Done.Count, j.Planned?.Tiles ?? 0);
            Resume(j);
        }
    }

    /// <summary>Takes a job on from whatever its recorded state is.</summary>
    private void Resume(JobState j)
    {
        if (j.Planned is null) { StartPrepare(j); return; }
        if (j.Manifest is null)
        {
            try { j.Manifest = GraphJobManifest.Load(j.Planned.ManifestPath); }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                j.Log.Warning("Job {JobId}: manifest {Manifest} unreadable ({Error}); planning again", j.JobId, j.Planned.ManifestPath, e.Message);
                StartPrepare(j);
                return;
            }
        }
        j.Clock.Start();
        if (j.Done.Count < j.Planned.Tiles)
        {
            var queued = j.Pending.Select(p => p.Tile).Concat(j.InFlight.Keys).ToHashSet();
            for (int t = 0; t < j.Planned.Tiles; t++) if (!j.Done.ContainsKey(t) && !queued.Contains(t)) j.Pending.Enqueue((t, 1));
            Dispatch();
        }
        else if (j.Stitched is null) StartStitch(j);
        else if (j.Segments && j.Classified is null) Dispatch();
        else if (j.Segments && j.Segmented is null) Dispatch();
        else FinishJob(j);
    }

    // ---------------------------------------------------------------- clients

    private IEnumerable<OutputFootprint> OpenOutputs() =>
        _jobs.Values.Where(j => j.Ended is null).Select(j => new OutputFootprint(j.JobId, j.Spec.OutDir, true))
            .Concat(_trainings.Values.Where(t => t.Ended is null).Select(t => new OutputFootprint(t.JobId, t.Submitted.Spec.OutDir, false)));

    private void Refuse(JobRefused r)
    {
        _log.ForContext("JobId", r.JobId).Warning("Refused job {JobId} from {Client} ({Code}): {Reason}", r.JobId, Sender.Path.ToString(), r.Code, r.Reason);
        Sender.Tell(r);
    }

    private void OnSubmit(SubmitGraphJob s)
    {
        if (_jobs.TryGetValue(s.JobId, out var known) || _trainings.ContainsKey(s.JobId))
        {
            if (s.MustBeNew || known is null) { Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used")); return; }
            // idempotent: the client re-sends its job as a heartbeat and to find a restarted coordinator
            if (!known.Spec.Equals(s.Spec) && !known.Spec.Equals(JobAuthorization.Check(s.JobId, s.Spec, _settings.Policy, []).Spec))
            {
                Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used by a different job"));
                return;
            }
            bool isNew = known.Watchers.Add(Sender);
            if (known.Ended is not null) { Sender.Tell(Outcome(known)); return; }
            if (isNew) Sender.Tell(new JobReceived(s.JobId));
            if (isNew && known.Planned is { } p && known.Manifest is { } m)
                Sender.Tell(new GraphJobAccepted(s.JobId, p.ImageId, m.Width, m.Height, m.Channels, p.Tiles, m.Halo, m.Grid.Count, known.RecoveredTiles));
            return;
        }
        // every job is checked here, whatever door it came in by, before anything is recorded
        var c = JobAuthorization.Check(s.JobId, s.Spec, _settings.Policy, OpenOutputs());
        if (c.Refused is { } refused) { Refuse(refused); return; }
        var client = Sender;
        Record(new JobSubmitted(s.JobId, c.Spec!, DateTime.UtcNow), e =>
        {
            var j = _jobs[e.JobId];
            j.Watchers.Add(client);
            j.FreshSubmit = true;
            client.Tell(new JobReceived(e.JobId));
            j.Log.Information("Job {JobId} submitted: {Image} → {OutDir}{Model}", e.JobId, e.Spec.ImagePath, e.Spec.OutDir,
                e.Spec.ModelPath is { } mp ? $" (segment with {mp})" : "");
            StartPrepare(j);
        });
    }

    private void OnStatus(GetStatus g)
    {
        var jobs = _jobs.Values.Where(j => g.JobId is null || j.JobId == g.JobId)
            .Select(j => new JobStatus(j.JobId, j.Phase, j.Done.Count + (j.Ended is not null && j.Planned is not null ? j.Planned.Tiles : 0),
                j.Planned?.Tiles ?? 0, j.InFlight.Count, j.Retries, j.Ended?.Error, j.Spec.OutDir))
            .Concat(_trainings.Values.Where(t => g.JobId is null || t.JobId == g.JobId)
                .Select(t => new JobStatus(t.JobId, t.Phase, 0, 0, t.Step is null ? 0 : 1, t.Failures, t.Ended?.Error, t.Submitted.Spec.OutDir)))
            .ToArray();
        Sender.Tell(new StatusReport(jobs, _workers.Count, _trainers.Count));
    }

    private static void Tell(IEnumerable<IActorRef> watchers, object m)
    {
        foreach (var w in watchers) w.Tell(m);
    }

    private static void Tell(JobState j, object m) => Tell(j.Watchers, m);

    private object Outcome(JobState j)
    {
        if (j.Ended is { Succeeded: false } e) return new GraphJobFailed(j.JobId, e.Error ?? "failed");
        var s = j.Stitched!;
        return new GraphJobCompleted(j.JobId, j.Spec.OutDir, s.Nodes, s.AdjacencyEdges, s.KnnEdges, j.Planned?.PrepareSeconds ?? 0, s.TilesSeconds,
            s.StitchSeconds, s.WriteSeconds, j.Retries, j.Segmented?.Mask.Path, j.Classified?.PixelsPerClass, j.RecoveredTiles,
            j.Classified?.Seconds ?? 0, j.Segmented?.Seconds ?? 0);
    }

    // ---------------------------------------------------------------- preparing

    private void StartPrepare(JobState j)
    {
        if (j.Busy) return;
        j.Busy = true;
        var self = Self;
        var s = j.Submitted;
        var sw = Stopwatch.StartNew();
        bool mayExist = !j.FreshSubmit || j.PrepareAttempts++ > 0;
        Task.Run(() =>
        {
            var req = ToRequest(s.Spec);
            if (s.Spec.ModelPath is { } mp && !File.Exists(mp)) throw new InputFileException(mp, "model file does not exist");
            var work = GraphOutputs.WorkDir(j.GraphDir, s.JobId);
            // the work folder is this job's alone: made now (mkdir fails if anything is there), or, for a job resuming
            // after a restart, accepted only as a real folder of this user, never a link planted in its place
            SafePaths.CreatePrivateDirectory(work, mayExist, "work folder");
            var m = GraphJob.Prepare(s.JobId, req, work);
            m.Save();
            return m;
        }).ContinueWith<object>(t => t.IsCompletedSuccessfully ? new Prepared(s.JobId, t.Result, sw.Elapsed.TotalSeconds) : new StepFailed(s.JobId, "prepare", t.Exception!.GetBaseException()))
          .PipeTo(self);
    }

    public static GraphRequest ToRequest(GraphJobSpec s) => new()
    {
        ImagePath = s.ImagePath, MaskPath = s.MaskPath, Page = s.Page,
        MaskMode = s.MaskMode.Equals("classes", StringComparison.OrdinalIgnoreCase) ? MaskMode.Classes
                 : s.MaskMode.Equals("binary", StringComparison.OrdinalIgnoreCase) ? MaskMode.Binary
                 : throw new ArgumentException($"mask mode must be 'binary' or 'classes' (got '{s.MaskMode}')"),
        IgnoreValue = s.IgnoreValue,
        Slic = new SlicParameters
        {
            Segments = s.Segments, Spacing = s.Spacing, Compactness = s.Compactness, Sigma = s.Sigma,
            Iterations = s.Iterations, WindowFactor = s.WindowFactor, MinSizeFactor = s.MinSizeFactor,
        },
        TileSize = s.TileSize, Halo = s.Halo, K = s.K, Features = s.Features,
    };

    private void OnPrepared(Prepared p)
    {
        if (!_jobs.TryGetValue(p.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        var m = p.Manifest;
        j.Manifest = m;
        if (j.Planned is not null) { Resume(j); return; } // re-planned after its manifest was lost: same plan, keep the tiles
        var plan = m.Plan;
        Record(new JobPlanned(m.JobId, m.ImageId, m.ManifestPath, plan.Count, (long)m.Width * m.Height, p.Seconds), e =>
        {
            j.Log.Information("Job {JobId} planned: {Width}x{Height}x{Channels} {BitDepth}-bit, {Tiles} tiles of {TileSize} px with halo {Halo}, {Seeds} seeds (spacing {Spacing:F1} px), stats pass {Seconds:F1}s",
                m.JobId, m.Width, m.Height, m.Channels, m.BitDepth, plan.Count, plan.TileSize, m.Halo, m.Grid.Count, m.Grid.S, p.Seconds);
            Tell(j, new GraphJobAccepted(m.JobId, m.ImageId, m.Width, m.Height, m.Channels, plan.Count, m.Halo, m.Grid.Count));
            Resume(j);
        });
    }

    private void OnStepFailed(StepFailed f)
    {
        if (!_jobs.TryGetValue(f.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        bool bad = f.Error is InputFileException or InvalidDataException or ArgumentException or ResultStoreException or UnsafePathException;
        if (bad || ++j.StepFailures >= _settings.MaxAttempts) { Fail(j, $"{f.Step}: {Describe(f.Error)}"); return; }
        j.Log.Warning(f.Error, "Job {JobId}: {Step} failed ({Error}); trying again", j.JobId, f.Step, Describe(f.Error));
        Timers.StartSingleTimer($"retry-{j.JobId}", new RetryJob(j.JobId), TimeSpan.FromSeconds(2));
    }

    private sealed record RetryJob(string JobId) : INoSerializationVerificationNeeded;

    // ---------------------------------------------------------------- workers and trainers

    private bool Compatible(int major, string who)
    {
        if (major == ProtocolVersion.Major) return true;
        _log.Error("Refusing {Who} {Sender}: it speaks protocol {Theirs}.x, this coordinator {Ours}", who, Sender.Path.ToString(), major, ProtocolVersion.Text);
        Sender.Tell(new WorkRefused($"protocol {major}.x is not compatible with coordinator protocol {ProtocolVersion.Text}"));
        return false;
    }

    private void OnRequestWork(RequestWork r)
    {
        if (!Compatible(r.ProtocolMajor, "worker")) return;
        if (_workers.Add(Sender)) { Context.Watch(Sender); _log.Information("Worker {Worker} joined ({Workers} workers)", Sender.Path.ToString(), _workers.Count); }
        _idle[Sender] = Math.Max(_idle.GetValueOrDefault(Sender), r.FreeSlots);
        Dispatch();
    }

    private void OnTrainerReady(TrainerReady r)
    {
        if (!Compatible(r.ProtocolMajor, "trainer")) return;
        if (_trainers.Add(Sender)) { Context.Watch(Sender); _log.Information("Trainer {Trainer} joined on {Device}", Sender.Path.ToString(), r.Device); }
        if (!_jobs.Values.Any(j => j.Step is { } s && s.Node.Equals(Sender)) && !_trainings.Values.Any(t => t.Ended is null && t.Step is { } s && s.Node.Equals(Sender)))
            _idleTrainers.Add(Sender);
        Dispatch();
    }

    private IActorRef? TakeWorker()
    {
        var w = _idle.FirstOrDefault(kv => kv.Value > 0).Key;
        if (w is null) return null;
        if (--_idle[w] == 0) _idle.Remove(w);
        return w;
    }

    private void Dispatch()
    {
        foreach (var t in _trainings.Values)
        {
            if (t.Ended is not null || t.Trained is not null || t.Step is not null || _idleTrainers.Count == 0) continue;
            var tr = _idleTrainers.First(); _idleTrainers.Remove(tr);
            t.Attempt++;
            t.Step = (tr, DateTime.UtcNow + _settings.TrainDeadline, DateTime.UtcNow);
            t.Log.Information("Training job {JobId}: {Graphs} graph(s) → {OutDir} on trainer {Trainer} (attempt {Attempt})", t.JobId, t.Submitted.Spec.Graphs.Length, t.Submitted.Spec.OutDir, tr.Path.ToString(), t.Attempt);
            Tell(t.Watchers, new GraphJobProgress(t.JobId, "training", 0, 0, 0));
            tr.Tell(new TrainModel(t.JobId, t.Submitted.Spec, t.Attempt));
        }
        foreach (var j in _jobs.Values)
        {
            if (j.Ended is not null || j.Manifest is null || j.Planned is null || j.Busy) continue;
            var m = j.Manifest;
            while (j.Pending.Count > 0 && _idle.Count > 0)
            {
                var (tile, attempt) = j.Pending.Dequeue();
                if (j.Done.ContainsKey(tile) || j.InFlight.ContainsKey(tile)) continue;
                var worker = TakeWorker()!;
                j.InFlight[tile] = (worker, attempt, DateTime.UtcNow + _settings.TileDeadline);
                worker.Tell(new TileAssignment(m.JobId, m.ImageId, m.ManifestPath, tile, attempt, j.GraphDir));
            }
            if (j.Stitched is { } g && j.Segments && j.Step is null)
            {
                if (j.Classified is null && _idleTrainers.Count > 0)
                {
                    var t = _idleTrainers.First(); _idleTrainers.Remove(t);
                    j.StepAttempt++;
                    j.Step = (t, DateTime.UtcNow + _settings.StepDeadline);
                    j.Log.Information("Job {JobId}: classifying {Nodes} nodes on trainer {Trainer}", j.JobId, g.Nodes, t.Path.ToString());
                    Tell(j, new GraphJobProgress(j.JobId, "classifying", j.Planned.Tiles, j.Planned.Tiles, 0));
                    t.Tell(new ClassifyNodes(j.JobId, m.ImageId, g.Graph, j.Spec.ModelPath!, Path.Combine(j.GraphDir, "classes.u8"), j.Spec.Device, j.StepAttempt, j.GraphDir));
                }
                else if (j.Classified is { } c && j.Segmented is null && g.NodeMap is { } nm && TakeWorker() is { } w)
                {
                    j.StepAttempt++;
                    j.Step = (w, DateTime.UtcNow + _settings.StepDeadline);
                    j.Log.Information("Job {JobId}: painting the mask on {Worker}", j.JobId, w.Path.ToString());
                    Tell(j, new GraphJobProgress(j.JobId, "painting", j.Planned.Tiles, j.Planned.Tiles, 0));
                    w.Tell(new PaintAssignment(j.JobId, m.ImageId, j.Spec.ImagePath, nm, c.Classes,
                        Path.Combine(j.Spec.OutDir, "mask.tif"), Path.Combine(j.Spec.OutDir, "overlay.png"), j.StepAttempt, j.Spec.OutDir));
                }
            }
        }
    }

    private void OnTileCompleted(TileCompleted c)
    {
        if (!_jobs.TryGetValue(c.JobId, out var j) || j.Ended is not null || j.Manifest is null || j.Planned is null) return;
        if (j.Done.ContainsKey(c.TileId)) { j.Log.Debug("Duplicate result for tile {TileId} ignored", c.TileId); return; }
        if (c.TileId < 0 || c.TileId >= j.Planned.Tiles) { j.Log.Error("Worker {Worker} returned tile {TileId}, which job {JobId} does not have; ignored", Sender.Path.ToString(), c.TileId, c.JobId); return; }
        // a result is accepted only where it belongs and when it is there; anything else is re-computed. Checksums are
        // verified once, in parallel, before the stitch (re-hashing every result here would cost the workers' CPU)
        string? bad = c.Result.Path != Path.GetFullPath(j.Manifest.ResultPath(c.TileId)) || c.Labels.Path != Path.GetFullPath(j.Manifest.LabelsPath(c.TileId))
            ? $"result references {c.Result.Path} and {c.Labels.Path} are not this tile's"
            : _store.CheckPresent(c.Result) ?? _store.CheckPresent(c.Labels);
        if (bad is not null)
        {
            j.Log.Error("Tile {TileId} from {Worker} rejected: {Error}; re-queued", c.TileId, Sender.Path.ToString(), bad);
            RequeueFailed(j, c.TileId, c.Attempt, bad);
            return;
        }
        j.InFlight.Remove(c.TileId);
        j.PixelsThisRun += c.Pixels;
        Record(new TileDone(c.JobId, c.TileId, c.Result, c.Labels, c.Pixels), _ =>
        {
            if (j.Ended is null && j.Done.Count == j.Planned!.Tiles) StartStitch(j);
        });
        Dispatch();
    }

    private void OnTileFailed(TileFailed f)
    {
        if (!_jobs.TryGetValue(f.JobId, out var j) || j.Ended is not null || j.Done.ContainsKey(f.TileId)) return;
        if (!j.InFlight.TryGetValue(f.TileId, out var fl) || fl.Attempt != f.Attempt) return; // stale
        if (f.Permanent) { Fail(j, $"tile {f.TileId} failed: {f.Error}"); return; }
        j.Log.Warning("Tile {TileId} failed (attempt {Attempt}): {Error}", f.TileId, f.Attempt, f.Error);
        RequeueFailed(j, f.TileId, f.Attempt, f.Error);
    }

    /// <summary>Counts a failure against a tile; quarantines it (failing the job with the reason) after MaxAttempts.</summary>
    private void RequeueFailed(JobState j, int tile, int attempt, string error)
    {
        j.InFlight.Remove(tile);
        int n = j.Failures[tile] = j.Failures.GetValueOrDefault(tile) + 1;
        if (n >= _settings.MaxAttempts) { Fail(j, $"tile {tile} failed {n} times; last error: {error}"); return; }
        j.Retries++;
        j.Pending.Enqueue((tile, attempt + 1));
        Dispatch();
    }

    private void OnNodeGone(IActorRef node, string why)
    {
        bool wasWorker = _workers.Remove(node), wasTrainer = _trainers.Remove(node);
        _idle.Remove(node); _idleTrainers.Remove(node);
        if (!wasWorker && !wasTrainer) return;
        int requeued = 0;
        foreach (var j in _jobs.Values.Where(j => j.Ended is null))
        {
            foreach (var (tile, fl) in j.InFlight.Where(kv => kv.Value.Worker.Equals(node)).ToList())
            {
                j.InFlight.Remove(tile); j.Retries++; requeued++;
                // a tile whose worker died counts towards quarantine: a slide that crashes workers is not retried forever
                int n = j.Failures[tile] = j.Failures.GetValueOrDefault(tile) + 1;
                if (n >= _settings.MaxAttempts) { Fail(j, $"tile {tile} was lost with its worker {n} times (it may crash workers)"); break; }
                j.Pending.Enqueue((tile, fl.Attempt + 1));
            }
            if (j.Step is { } s && s.Node.Equals(node)) { j.Step = null; requeued++; }
        }
        foreach (var t in _trainings.Values.Where(t => t.Ended is null && t.Step is { } s && s.Node.Equals(node)))
        {
            t.Step = null; requeued++;
        }
        _log.Warning("{Kind} {Node} is {Why}; {Requeued} work items re-queued ({Workers} workers, {Trainers} trainers left)",
            wasWorker ? "Worker" : "Trainer", node.Path.ToString(), why, requeued, _workers.Count, _trainers.Count);
        Dispatch();
    }

    private void OnAddressLost(Address address, string why)
    {
        foreach (var n in _workers.Concat(_trainers).Where(n => n.Path.Address.Equals(address)).ToList()) OnNodeGone(n, why);
    }

    // ---------------------------------------------------------------- stitching, classifying, painting

    private void StartStitch(JobState j)
    {
        if (j.Busy || j.Stitched is not null) return;
        j.Busy = true;
        var m = j.Manifest!;
        double tilesSeconds = j.Clock.Elapsed.TotalSeconds;
        j.Log.Information("Job {JobId}: all {Total} tiles done in {Seconds:F1}s ({MPps:F1} MP/s this run, {Recovered} recovered from the journal); verifying and stitching",
            j.JobId, j.Planned!.Tiles, tilesSeconds, j.PixelsThisRun / 1e6 / Math.Max(1e-9, tilesSeconds), j.RecoveredTiles);
        Tell(j, new GraphJobProgress(j.JobId, "stitching", j.Planned.Tiles, j.Planned.Tiles, 0));
        var self = Self;
        var done = j.Done.Values.ToArray();
        var outDir = j.GraphDir;
        bool nodeMap = j.Spec.WriteNodeMap || j.Segments;
        var log = j.Log;
        var store = _store;
        Task.Run<object>(() =>
        {
            // every tile result is checked before it is trusted: a file lost or damaged since (or while the coordinator was down) is re-computed
            var invalid = done.AsParallel().Select(d => (d.TileId, Why: store.Check(d.Result) ?? store.Check(d.Labels)))
                .Where(x => x.Why is not null).Select(x => (x.TileId, x.Why!)).ToArray();
            if (invalid.Length > 0) return new TilesInvalid(m.JobId, invalid);
            var s = GraphOutputs.StitchAndWrite(m, outDir, nodeMap, new Progress<string>(p => log.Information("Job {JobId}: {Step}", m.JobId, p)));
            var graph = store.Describe(Path.Combine(outDir, GraphOutputs.GraphFile));
            var map = nodeMap ? store.Describe(Path.Combine(outDir, GraphOutputs.NodeMapFile)) : null;
            return new Stitched(m.JobId, new GraphStitched(m.JobId, graph, map, s.Nodes, s.AdjacencyEdges, s.KnnEdges, tilesSeconds, s.StitchSeconds, s.WriteSeconds), []);
        }).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : new StepFailed(m.JobId, "stitch", t.Exception!.GetBaseException()))
          .PipeTo(self);
    }

    private void OnTilesInvalid(TilesInvalid t)
    {
        if (!_jobs.TryGetValue(t.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        foreach (var (tile, why) in t.Invalid)
        {
            j.Log.Warning("Job {JobId}: tile {TileId} must be computed again: {Error}", j.JobId, tile, why);
            Record(new TileInvalidated(j.JobId, tile, why));
        }
        DeferAsync(t, _ => Resume(j));
    }

    private void OnStitched(Stitched s)
    {
        if (!_jobs.TryGetValue(s.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        var g = s.Event;
        Record(g, _ =>
        {
            j.Log.Information("Job {JobId}: graph of {Nodes} nodes, {Rag} adjacency and {Knn} kNN edges written to {OutDir} (stitch {Stitch:F1}s, write {Write:F1}s)",
                j.JobId, g.Nodes, g.AdjacencyEdges, g.KnnEdges, j.GraphDir, g.StitchSeconds, g.WriteSeconds);
            if (j.Segments) Dispatch(); else FinishJob(j);
        });
    }

    private void OnClassified(NodesClassified c)
    {
        if (!_jobs.TryGetValue(c.JobId, out var j) || j.Ended is not null || j.Classified is not null || c.Attempt != j.StepAttempt) return;
        if (_store.Check(c.Classes) is { } bad) { OnStepItemFailed(c.JobId, c.Attempt, "classifying", bad, false); return; }
        if (c.Nodes != j.Stitched!.Nodes) { OnStepItemFailed(c.JobId, c.Attempt, "classifying", $"trainer returned {c.Nodes} classes for a graph of {j.Stitched.Nodes} nodes", false); return; }
        j.Step = null;
        if (!Sender.Equals(Self)) _idleTrainers.Add(Sender);
        Record(new ImageClassified(c.JobId, c.Classes, c.PixelsPerClass, c.Seconds, c.Device), _ =>
        {
            j.Log.Information("Job {JobId}: {Nodes} nodes classified on {Device} in {Seconds:F1}s; pixels per class [{Pixels}]", j.JobId, c.Nodes, c.Device, c.Seconds, string.Join(", ", c.PixelsPerClass));
            Dispatch();
        });
    }

    private void OnPainted(PaintCompleted p)
    {
        if (!_jobs.TryGetValue(p.JobId, out var j) || j.Ended is not null || j.Segmented is not null || p.Attempt != j.StepAttempt) return;
        if (_store.Check(p.Mask) is { } bad) { OnStepItemFailed(p.JobId, p.Attempt, "painting", bad, false); return; }
        j.Step = null;
        Record(new ImageSegmented(p.JobId, p.Mask, p.Seconds), _ =>
        {
            j.Log.Information("Job {JobId}: mask painted in {Seconds:F1}s: {Mask}", j.JobId, p.Seconds, p.Mask.Path);
            FinishJob(j);
        });
    }

    private void OnStepItemFailed(string jobId, int attempt, string step, string error, bool permanent)
    {
        if (!_jobs.TryGetValue(jobId, out var j) || j.Ended is not null || attempt != j.StepAttempt) return;
        if (j.Step is { } s && step == "classifying" && !s.Node.Equals(Self)) _idleTrainers.Add(s.Node);
        j.Step = null;
        if (permanent || ++j.StepFailures >= _settings.MaxAttempts) { Fail(j, $"{step}: {error}"); return; }
        j.Retries++;
        j.Log.Warning("Job {JobId}: {Step} failed ({Error}); trying again", jobId, step, error);
        Dispatch();
    }

    private void FinishJob(JobState j)
    {
        if (j.Ended is not null) return;
        if (j.Segments)
        {
            try
            {
                var c = j.Classified!;
                SafePaths.WriteAllText(Path.Combine(j.Spec.OutDir, "segment.json"), JsonSerializer.Serialize(new
                {
                    image = j.Spec.ImagePath, model = j.Spec.ModelPath, mask = j.Segmented!.Mask.Path, maskChecksum = j.Segmented.Mask.Checksum,
                    overlay = Path.Combine(j.Spec.OutDir, "overlay.png"), nodes = j.Stitched!.Nodes, pixelsPerClass = c.PixelsPerClass, device = c.Device,
                }, new JsonSerializerOptions { WriteIndented = true }), "segmentation summary");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // nothing half-written is reported done
                Fail(j, $"segment.json cannot be written in {j.Spec.OutDir}: {e.Message}");
                return;
            }
        }
        Record(new JobEnded(j.JobId, true, null), _ =>
        {
            var g = j.Stitched!;
            j.Log.Information("Job {JobId} finished: {Nodes} nodes, {Rag} adjacency edges, {Knn} kNN edges; prepare {Prepare:F1}s, tiles {Tiles:F1}s, stitch {Stitch:F1}s, write {Write:F1}s, classify {Classify:F1}s, paint {Paint:F1}s, {Retries} retries, {Recovered} tiles recovered",
                j.JobId, g.Nodes, g.AdjacencyEdges, g.KnnEdges, j.Planned!.PrepareSeconds, g.TilesSeconds, g.StitchSeconds, g.WriteSeconds,
                j.Classified?.Seconds ?? 0, j.Segmented?.Seconds ?? 0, j.Retries, j.RecoveredTiles);
            if (!j.Spec.KeepWork) GraphOutputs.CleanWork(GraphOutputs.WorkDir(j.GraphDir, j.JobId));
            Tell(j, Outcome(j));
        });
    }

    private void Fail(JobState j, string error)
    {
        if (j.Ended is not null) return;
        var workDir = GraphOutputs.WorkDir(j.GraphDir, j.JobId);
        Record(new JobEnded(j.JobId, false, error), _ =>
        {
            j.Log.Error("Job {JobId} failed: {Error}", j.JobId, error);
            if (!j.Spec.KeepWork) GraphOutputs.CleanWork(workDir);
            Tell(j, new GraphJobFailed(j.JobId, error));
        });
    }

    // ---------------------------------------------------------------- training

    private static bool Same(TrainJobSpec a, TrainJobSpec b) => a with { Graphs = [] } == b with { Graphs = [] } && a.Graphs.SequenceEqual(b.Graphs);

    private void OnSubmitTrain(SubmitTrainJob s)
    {
        if (_trainings.TryGetValue(s.JobId, out var known) || _jobs.ContainsKey(s.JobId))
        {
            if (s.MustBeNew || known is null) { Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used")); return; }
            if (!Same(known.Submitted.Spec, s.Spec) && JobAuthorization.Check(s.JobId, s.Spec, _settings.Policy, []).Spec is var canon
                && (canon is null || !Same(known.Submitted.Spec, canon)))
            {
                Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used by a different job"));
                return;
            }
            if (known.Watchers.Add(Sender) && known.Ended is null) Sender.Tell(new JobReceived(s.JobId));
            if (known.Ended is not null) Sender.Tell(TrainOutcome(known));
            return;
        }
        // bad input is refused before anything is recorded
        var c = JobAuthorization.Check(s.JobId, s.Spec, _settings.Policy, OpenOutputs());
        if (c.Refused is { } refused) { Refuse(refused); return; }
        var spec = c.Spec!;
        if (spec.Graphs.FirstOrDefault(g => !File.Exists(g)) is { } missing)
        {
            Refuse(new JobRefused(s.JobId, RefusalCodes.Invalid, $"{missing}: graph file not found (paths must be on storage every node sees)"));
            return;
        }
        var client = Sender;
        Record(new TrainJobSubmitted(s.JobId, spec, DateTime.UtcNow), e =>
        {
            var t = _trainings[e.JobId];
            t.Watchers.Add(client);
            client.Tell(new JobReceived(e.JobId));
            t.Log.Information("Training job {JobId} submitted: {Graphs} graph(s) → {OutDir} ({Conv}, {Layers} layers × {Hidden}, {Edges} edges)",
                e.JobId, e.Spec.Graphs.Length, e.Spec.OutDir, e.Spec.Conv, e.Spec.Layers, e.Spec.Hidden, e.Spec.Edges);
            Dispatch();
        });
    }

    private object TrainOutcome(TrainState t) => t.Ended is { Succeeded: false } e
        ? new GraphJobFailed(t.JobId, e.Error ?? "failed")
        : new TrainJobCompleted(t.JobId, t.Trained!.Result.BestModel.Path, t.Trained.Result.Epochs, t.Trained.Result.BestEpoch,
            t.Trained.Result.BestValidationLoss, t.Trained.Result.Seconds, t.Trained.Result.Device);

    private void OnModelReady(ModelReady m)
    {
        if (!_trainings.TryGetValue(m.JobId, out var t) || t.Ended is not null || t.Trained is not null || m.Attempt != t.Attempt) return;
        if (_store.Check(m.BestModel) is { } bad) { OnTrainFailed(new TrainFailed(m.JobId, m.Attempt, bad, false)); return; }
        t.Step = null;
        if (!Sender.Equals(Self)) _idleTrainers.Add(Sender);
        Record(new ModelTrained(m.JobId, m), _ =>
        {
            t.Log.Information("Training job {JobId}: model trained on {Device} in {Seconds:F1}s ({Epochs} epochs, best {BestEpoch}, validation loss {Loss:F4}, peak RSS {Rss:F0} MiB): {Model}",
                t.JobId, m.Device, m.Seconds, m.Epochs, m.BestEpoch, m.BestValidationLoss, m.PeakRssMiB, m.BestModel.Path);
            FinishTraining(t);
        });
    }

    private void FinishTraining(TrainState t) =>
        Record(new JobEnded(t.JobId, true, null), _ => { Tell(t.Watchers, TrainOutcome(t)); });

    private void OnTrainFailed(TrainFailed f)
    {
        if (!_trainings.TryGetValue(f.JobId, out var t) || t.Ended is not null || f.Attempt != t.Attempt) return;
        if (t.Step is { } s && !s.Node.Equals(Self)) _idleTrainers.Add(s.Node);
        t.Step = null;
        if (f.Permanent || ++t.Failures >= _settings.MaxAttempts)
        {
            Record(new JobEnded(t.JobId, false, $"training: {f.Error}"), _ =>
            {
                t.Log.Error("Training job {JobId} failed: {Error}", t.JobId, f.Error);
                Tell(t.Watchers, new GraphJobFailed(t.JobId, $"training: {f.Error}"));
            });
            return;
        }
        t.Log.Warning("Training job {JobId} failed ({Error}); trying again", t.JobId, f.Error);
        Dispatch();
    }

    // ---------------------------------------------------------------- the clock

    private void OnTick()
    {
        var now = DateTime.UtcNow;
        foreach (var t in _trainings.Values.Where(t => t.Ended is null && t.Step is not null))
        {
            var st = t.Step!.Value;
            if (st.Deadline < now)
            {
                t.Log.Warning("Training job {JobId} missed its deadline on {Trainer}; handing it to another trainer", t.JobId, st.Node.Path.ToString());
                t.Step = null;
            }
            else t.Log.Information("Training job {JobId}: training on {Trainer} for {Seconds:F0}s", t.JobId, st.Node.Path.ToString(), (now - st.Started).TotalSeconds);
        }
        foreach (var j in _jobs.Values.Where(j => j.Ended is null).ToList())
        {
            foreach (var (tile, fl) in j.InFlight.Where(kv => kv.Value.Deadline < now).ToList())
            {
                j.Log.Warning("Tile {TileId} missed its deadline on {Worker}; re-queued", tile, fl.Worker.Path.ToString());
                j.InFlight.Remove(tile); j.Retries++;
                j.Pending.Enqueue((tile, fl.Attempt + 1));
            }
            if (j.Step is { } s && s.Deadline < now)
            {
                j.Log.Warning("Job {JobId}: {Phase} missed its deadline on {Node}; handing it to another node", j.JobId, j.Phase, s.Node.Path.ToString());
                j.Step = null; j.Retries++;
            }
            if (j.Planned is { } p && j.Phase == "tiles")
            {
                double secs = Math.Max(1e-9, j.Clock.Elapsed.TotalSeconds);
                double mps = j.PixelsThisRun / 1e6 / secs;
                j.Log.Information("Job {JobId}: {Done}/{Total} tiles, {InFlight} in flight, {Queued} queued, {Retries} retries, {Workers} workers, {TilesPerSecond:F2} tiles/s, {MPps:F1} MP/s",
                    j.JobId, j.Done.Count, p.Tiles, j.InFlight.Count, j.Pending.Count, j.Retries, _workers.Count, (j.Done.Count - j.RecoveredTiles) / secs, mps);
                Tell(j, new GraphJobProgress(j.JobId, "tiles", j.Done.Count, p.Tiles, mps, j.InFlight.Count, j.Pending.Count, j.Retries));
            }
        }
        Dispatch();
    }
}
