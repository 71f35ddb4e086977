using System.Diagnostics;
using ActorSeg.Core;
using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Coordinator;

// ---- what the book asks its host to do -----------------------------------------------------------------------

/// <summary>Something the coordinator actor does for the book once the decision's journal events are persisted and applied.</summary>
public abstract record Effect;
/// <summary>Send a message to a worker, trainer or client, by the id the host gave it.</summary>
public sealed record Send(string To, object Message) : Effect;
/// <summary>Watch a worker or trainer: its loss comes back as <see cref="NodeLost"/>.</summary>
public sealed record WatchNode(string Node) : Effect;
/// <summary>Give up on a job's running prepare or stitch (its deadline passed and the job has failed): whatever it would
/// still publish is not published.</summary>
public sealed record AbandonStep(string JobId) : Effect;
/// <summary>Run a job's first pass in the background; the outcome comes back as <see cref="Prepared"/> or <see cref="StepFailed"/>.</summary>
public sealed record RunPrepare(string JobId, GraphJobSpec Spec, string WorkDir, bool WorkDirMayExist) : Effect;
/// <summary>Verify the tile results and stitch in the background; the outcome: <see cref="Stitched"/>, <see cref="TilesInvalid"/> or <see cref="StepFailed"/>.</summary>
public sealed record RunStitch(string JobId, GraphJobManifest Manifest, TileDone[] Done, string OutDir, bool NodeMap, double TilesSeconds) : Effect;
/// <summary>Delete an ended job's work folder (its tile results and label rasters: gigabytes on a whole slide), off the
/// actor's thread: the coordinator answers its workers and clients meanwhile.</summary>
public sealed record DeleteWork(string WorkDir) : Effect;
/// <summary>Feed this command back to the book now (after the events it follows are applied).</summary>
public sealed record Continue(object Command) : Effect;
/// <summary>Retry a job's coordinator-side step after a pause.</summary>
public sealed record RetryLater(string JobId, TimeSpan After) : Effect;

/// <summary>A decision: journal these events (in order), then carry out these effects.</summary>
public sealed record Decision(IReadOnlyList<ICoordinatorEvent> Journal, IReadOnlyList<Effect> Effects)
{
    public static readonly Decision None = new([], []);
}

// ---- commands that come from the host rather than the wire ---------------------------------------------------

public sealed record Prepared(string JobId, GraphJobManifest Manifest, double Seconds);
public sealed record StepFailed(string JobId, string Step, Exception Error);
public sealed record Stitched(string JobId, GraphStitched Event);
public sealed record TilesInvalid(string JobId, (int Tile, string Reason)[] Invalid);
/// <summary>A worker or trainer is gone: <paramref name="Downed"/> when the cluster removed its node (or the actor stopped),
/// false while it is merely unreachable (it may come back; nothing is counted against its work).</summary>
public sealed record NodeLost(string Node, string Why, bool Downed);
public sealed record Tick(DateTime Now);
public sealed record RetryJob(string JobId);
public sealed record Resume(string JobId);
public sealed record Dispatch;
public sealed record Recovered(double Seconds);
/// <summary>Ends a job (graph, segmentation or training) as failed with <paramref name="Error"/>: what the actor does when
/// the book itself threw while deciding about that job, so that one job's fault is not replayed at every restart.</summary>
public sealed record AbortJob(string JobId, string Error);

/// <summary>File checks the book needs (the result store and job manifests); a fake in tests.</summary>
public interface IJobFiles
{
    string? CheckPresent(ResultRef r);
    string? Check(ResultRef r);
    GraphJobManifest LoadManifest(string path);
    void WriteSegmentSummary(string outDir, string json);
    /// <summary>The job succeeded: the earlier results it set aside go (<see cref="EarlierResults.Commit"/>).</summary>
    void CommitResults(string outDir, string jobId);
    /// <summary>The job failed: its own files go, the earlier results come back (<see cref="EarlierResults.Restore"/>).</summary>
    EarlierResults.Restored? RestoreResults(string outDir, string jobId, bool keepFailed);
}

public sealed class DirectoryJobFiles(IResultStore store) : IJobFiles
{
    public string? CheckPresent(ResultRef r) => store.CheckPresent(r);
    public string? Check(ResultRef r) => store.Check(r);
    public GraphJobManifest LoadManifest(string path) => GraphJobManifest.Load(path);
    public void WriteSegmentSummary(string outDir, string json) => SafePaths.WriteAllText(Path.Combine(outDir, "segment.json"), json, "segmentation summary");
    public void CommitResults(string outDir, string jobId) => EarlierResults.Commit(outDir, jobId);
    public EarlierResults.Restored? RestoreResults(string outDir, string jobId, bool keepFailed) => EarlierResults.Restore(outDir, jobId, keepFailed);
}

/// <summary>
/// The coordinator's decisions as plain C#: every graph, segmentation and training job, the tiles and steps in flight,
/// the workers and trainers, deadlines, retries, quarantine and limits. A command goes in (a message from the wire or
/// the host), a <see cref="Decision"/> comes out: the journal events that record what happened and the effects to
/// carry out. State changes only in <see cref="Apply(ICoordinatorEvent)"/> (journaled events, replayed on recovery)
/// and in the <c>On…</c> appliers of the transient facts (work in flight, idle workers), which a restart forgets by
/// design. The actor around it only persists, sends and schedules.
/// </summary>
public sealed class JobBook
{
    public sealed class Job
    {
        public required JobSubmitted Submitted;
        public JobPlanned? Planned;
        public GraphJobManifest? Manifest;
        public readonly Dictionary<int, TileDone> Done = new();
        public GraphStitched? Stitched;
        public ImageClassified? Classified;
        public ImageSegmented? Segmented;
        public JobEnded? Ended;
        public int StepStarts;            // coordinator-side steps started since the last one finished (journaled)
        // transient: what this coordinator incarnation is doing with the job
        public readonly HashSet<string> Watchers = new();
        public readonly Queue<(int Tile, int Attempt)> Pending = new();
        public readonly Dictionary<int, (string Worker, int Attempt, DateTime Deadline)> InFlight = new();
        public readonly Dictionary<int, int> Failures = new();
        public int Retries, RecoveredTiles, StepAttempt, StepFailures, PrepareAttempts;
        public (string Node, DateTime Deadline)? Step;
        public bool Busy, FreshSubmit, Ending; // Ending: its JobEnded is decided, not yet applied
        /// <summary>The coordinator's own step while <see cref="Busy"/> ("prepare" or "stitch"), and the first tick that saw it running.</summary>
        public string? OwnStep;
        public DateTime? BusySince;
        public long PixelsThisRun;
        public DateTime Deadline = DateTime.MaxValue;
        public readonly Stopwatch Clock = new();
        public ILogger Log = Serilog.Log.Logger;

        public string JobId => Submitted.JobId;
        public GraphJobSpec Spec => Submitted.Spec;
        public bool Segments => Spec.ModelPath is not null;
        public string GraphDir => GraphOutputs.GraphDir(Spec);
        public string Phase => Ended is { } e ? (e.Succeeded ? "done" : "failed")
            : Segmented is not null ? "finishing"
            : Classified is not null ? "painting"
            : Stitched is not null ? (Segments ? "classifying" : "finishing")
            : Planned is null ? "preparing"
            : Done.Count == Planned.Tiles ? "stitching" : "tiles";
    }

    public sealed class Training
    {
        public required TrainJobSubmitted Submitted;
        public ModelTrained? Trained;
        public JobEnded? Ended;
        public readonly HashSet<string> Watchers = new();
        public (string Node, DateTime Deadline, DateTime Started)? Step;
        public int Attempt, Failures;
        public DateTime Deadline = DateTime.MaxValue;
        public ILogger Log = Serilog.Log.Logger;
        public string JobId => Submitted.JobId;
        public string Phase => Ended is { } e ? (e.Succeeded ? "done" : "failed") : Step is null ? "waiting for a trainer" : "training";
    }

    /// <summary>
    /// A batch: a parent job holding its slides. The book runs at most <c>Parallel</c> of them at a time, each as a graph
    /// job with the id <see cref="JobIds.ForSlide"/>, starting the next as one ends. What is journaled: the batch
    /// (<see cref="BatchSubmitted"/>), each slide's job as it starts (<see cref="JobSubmitted"/>), each slide's end
    /// (<see cref="BatchSlideEnded"/>). Whether a slide is pending or running is not journaled: it is read from the jobs
    /// (a slide whose job exists has started), so a coordinator that restarts neither loses a slide nor runs one twice.
    /// </summary>
    public sealed class Batch
    {
        public required BatchSubmitted Submitted;
        public required string[] SlideJobIds; // JobIds.ForSlide of each slide, in order
        public readonly Dictionary<string, BatchSlideOutcome> Ended = new(StringComparer.Ordinal);
        public readonly HashSet<string> Watchers = new();
        // transient: slides whose JobSubmitted or BatchSlideEnded is decided but not yet applied
        public readonly HashSet<string> Starting = new(StringComparer.Ordinal), Ending = new(StringComparer.Ordinal);
        public ILogger Log = Serilog.Log.Logger;
        public string BatchId => Submitted.BatchId;
        public BatchSpec Spec => Submitted.Spec;
        public bool Finished => Ended.Count >= Spec.Slides.Length;
        public string Phase => Finished ? "done" : "running";
        public int Count(string status) => Ended.Values.Count(o => o.Status == status);
    }

    private readonly CoordinatorSettings _s;
    private readonly IJobFiles _files;
    private readonly ILogger _log;
    private readonly Dictionary<string, Job> _jobs = new();
    private readonly Dictionary<string, Training> _trainings = new();
    private readonly Dictionary<string, Batch> _batches = new();
    private readonly Dictionary<string, (Batch Batch, BatchSlideSpec Slide)> _slideJobs = new(); // a slide's job id → its batch and slide
    private readonly Queue<string> _finishedOrder = new();
    private readonly Dictionary<string, int> _idle = new();       // worker → free slots
    private readonly HashSet<string> _workers = new();
    private readonly HashSet<string> _trainers = new();
    private readonly HashSet<string> _idleTrainers = new();
    /// <summary>This node's address (akka.tcp://system@host:port), to name this process's own workers on the status page.</summary>
    public string? SelfAddress { get; set; }

    // the last failures, newest last, for the status page (not journaled: a restarted coordinator starts afresh)
    private readonly Queue<string> _recentErrors = new();
    private void RecentError(DateTime now, string jobId, string what)
    {
        _recentErrors.Enqueue($"{now:yyyy-MM-dd HH:mm:ss}Z {jobId}: {what}");
        while (_recentErrors.Count > 20) _recentErrors.Dequeue();
    }

    public JobBook(CoordinatorSettings settings, IJobFiles files, ILogger? log = null)
    {
        _s = settings; _files = files; _log = log ?? Serilog.Log.ForContext("Role", "coordinator");
    }

    public IReadOnlyDictionary<string, Job> Jobs => _jobs;
    public IReadOnlyDictionary<string, Training> Trainings => _trainings;
    public IReadOnlyDictionary<string, Batch> Batches => _batches;
    public int WorkerCount => _workers.Count;
    public int TrainerCount => _trainers.Count;
    public int BusySteps => _jobs.Values.Count(j => j.Busy);

    // ================================================================ journaled events: the only place recorded state changes

    public void Apply(ICoordinatorEvent e)
    {
        switch (e)
        {
            case JobSubmitted s:
                _jobs[s.JobId] = new Job
                {
                    Submitted = s, Deadline = _s.JobDeadline > TimeSpan.Zero ? s.SubmittedUtc + _s.JobDeadline : DateTime.MaxValue,
                    Log = _log.ForContext("JobId", s.JobId).ForContext("ImageId", Path.GetFileNameWithoutExtension(s.Spec.ImagePath)),
                };
                if (_slideJobs.TryGetValue(s.JobId, out var sj)) sj.Batch.Starting.Remove(sj.Slide.Name);
                break;
            case BatchSubmitted b:
            {
                var batch = new Batch
                {
                    Submitted = b, Log = _log.ForContext("BatchId", b.BatchId), SlideJobIds = b.Spec.Slides.Select(x => JobIds.ForSlide(b.BatchId, x.Name)).ToArray(),
                };
                _batches[b.BatchId] = batch;
                for (int i = 0; i < b.Spec.Slides.Length; i++) _slideJobs[batch.SlideJobIds[i]] = (batch, b.Spec.Slides[i]);
                var names = b.Spec.Slides.Select(x => x.Name).ToHashSet(StringComparer.Ordinal);
                foreach (var n in (b.Skipped ?? []).Where(names.Contains))
                    batch.Ended[n] = new BatchSlideOutcome(n, JobIds.ForSlide(b.BatchId, n), "skipped", "already done");
                if (batch.Finished) Finished(b.BatchId);
                break;
            }
            case BatchSlideEnded be when _batches.TryGetValue(be.BatchId, out var bt):
                bool wasFinished = bt.Finished;
                bt.Ended[be.Outcome.Name] = be.Outcome;
                bt.Ending.Remove(be.Outcome.Name);
                if (!wasFinished && bt.Finished) Finished(bt.BatchId);
                break;
            case StepStarted st when _jobs.TryGetValue(st.JobId, out var j): j.StepStarts++; break;
            case StepEnded se when _jobs.TryGetValue(se.JobId, out var j): j.StepStarts = 0; break;
            case JobPlanned p when _jobs.TryGetValue(p.JobId, out var j): j.Planned = p; j.StepStarts = 0; break;
            case TileDone d when _jobs.TryGetValue(d.JobId, out var j): j.Done[d.TileId] = d; break;
            case TileInvalidated i when _jobs.TryGetValue(i.JobId, out var j): j.Done.Remove(i.TileId); j.Stitched = null; j.StepStarts = 0; break;
            case GraphStitched g when _jobs.TryGetValue(g.JobId, out var j): j.Stitched = g; j.StepStarts = 0; break;
            case ImageClassified c when _jobs.TryGetValue(c.JobId, out var j): j.Classified = c; break;
            case ImageSegmented m when _jobs.TryGetValue(m.JobId, out var j): j.Segmented = m; break;
            case JobRetried r when _jobs.TryGetValue(r.JobId, out var j): j.Retries = r.Retries; break; // journals before 2026-12
            case TrainJobSubmitted t:
                _trainings[t.JobId] = new Training
                {
                    Submitted = t, Log = _log.ForContext("JobId", t.JobId),
                    Deadline = _s.JobDeadline > TimeSpan.Zero ? t.SubmittedUtc + _s.JobDeadline : DateTime.MaxValue,
                };
                break;
            case ModelTrained m when _trainings.TryGetValue(m.JobId, out var tj): tj.Trained = m; break;
            case JobEnded x when _trainings.TryGetValue(x.JobId, out var tj):
                tj.Ended = x;
                tj.Step = null;
                Finished(x.JobId);
                break;
            case JobEnded x when _jobs.TryGetValue(x.JobId, out var j):
                j.Ended = x;
                j.Done.Clear(); // a finished job needs only its outcome
                j.Manifest = null;
                j.Pending.Clear(); j.InFlight.Clear(); j.Step = null;
                Finished(x.JobId);
                break;
            case CoordinatorSnapshot s:
                foreach (var r in s.Jobs) Restore(r);
                foreach (var t in s.Trainings ?? []) { Apply(t.Submitted); if (t.Trained is not null) Apply(t.Trained); if (t.Ended is not null) Apply(t.Ended); }
                foreach (var b in s.Batches ?? []) { Apply(b.Submitted); foreach (var o in b.Ended) Apply(new BatchSlideEnded(b.Submitted.BatchId, o)); }
                break;
        }
    }

    // ================================================================ journal events recovery could not use

    /// <summary>A journal event recovery skipped: its sequence number, its type, why, the id it named (when known), and
    /// whether its job can go on without it (<see cref="SettleDamage"/>).</summary>
    public sealed record JournalDamage(long SequenceNr, string Event, string Why, string? Id, bool Redo);

    private readonly List<JournalDamage> _damage = new();

    /// <summary>
    /// One event of a recovery (the journal replayed, <paramref name="sequenceNr"/> its number): applied, or, when it
    /// could not be read (<see cref="UnreadableEvent"/>) or <see cref="Apply"/> throws on it, set aside and settled once
    /// recovery completes (<see cref="Recovered"/>). A recovery that failed instead would restart into the same event
    /// for ever, and every job would wait.
    /// </summary>
    public void Replay(object e, long sequenceNr)
    {
        switch (e)
        {
            case UnreadableEvent u:
                _damage.Add(new JournalDamage(sequenceNr, u.Manifest, $"could not be read ({u.Reason})", u.Id, Redo: u.KnownType));
                break;
            case ICoordinatorEvent ev:
                try { Apply(ev); }
                catch (Exception x) when (x is not OutOfMemoryException)
                {
                    _damage.Add(new JournalDamage(sequenceNr, ev.GetType().Name, $"could not be applied ({x.GetType().Name}: {x.Message})", IdOf(ev), Redo: false));
                }
                break;
        }
    }

    /// <summary>The job a command or event is about (its JobId), or null for those about no one job (ticks, dispatch, nodes).</summary>
    public static string? JobOf(object message) =>
        message.GetType().GetProperty("JobId")?.GetValue(message) as string is { Length: > 0 } id ? id : null;

    /// <summary>The job, training or batch an event is about.</summary>
    private static string? IdOf(ICoordinatorEvent e) => e switch
    {
        BatchSubmitted b => b.BatchId,
        BatchSlideEnded b => b.BatchId,
        _ => JobOf(e),
    };

    /// <summary>
    /// After recovery: every skipped event is logged with what it costs. An event of a type this build knows whose bytes
    /// are lost recorded one step of progress (a tile done, a plan, a stitch, an end): its job resumes from the rest of its
    /// record and that step is done again, checked as every resumed step is (a finished job whose end was lost finishes
    /// again). An event this build does not know (a newer version wrote it) or one the book threw on leaves its job's
    /// state unknown: that job or training fails as quarantined. A batch goes on (its slides' ends are re-read from their
    /// jobs). Returns the jobs that must not resume.
    /// </summary>
    private HashSet<string> SettleDamage(DecisionBuilder d, DateTime now)
    {
        var failed = new HashSet<string>(StringComparer.Ordinal);
        var unknownState = _damage.Where(g => !g.Redo && g.Id is not null).Select(g => g.Id!).ToHashSet(StringComparer.Ordinal);
        foreach (var g in _damage)
        {
            string consequence;
            bool settled = false; // a job failed for it on an earlier start: only a warning, its outcome was settled then
            string reason = $"quarantined: its journal event #{g.SequenceNr} ({g.Event}) {g.Why}; the job's recorded state is incomplete, so it is not resumed (submit it again under a new job id)";
            if (g.Id is { } id && _jobs.TryGetValue(id, out var j))
            {
                if (j.Ended is not null) (consequence, settled) = ($"job {id} had ended already; its outcome stands", true);
                else if (!unknownState.Contains(id)) consequence = $"job {id} resumes from the rest of its record (the step this event recorded is done again)";
                else { if (failed.Add(id)) Fail(j, reason, d); consequence = $"job {id} fails"; }
            }
            else if (g.Id is { } tid && _trainings.TryGetValue(tid, out var t))
            {
                if (t.Ended is null && !unknownState.Contains(tid)) consequence = $"training job {tid} resumes (it is trained again)";
                else if (t.Ended is null)
                {
                    if (failed.Add(tid)) { d.Record(new JobEnded(tid, false, reason)); d.Then(new TrainingEnded(tid)); }
                    consequence = $"training job {tid} fails";
                }
                else (consequence, settled) = ($"training job {tid} had ended already; its outcome stands", true);
            }
            else if (g.Id is { } bid && _batches.ContainsKey(bid))
                consequence = $"batch {bid} goes on (each slide's end is read again from its job)";
            else if (g.Id is { } other)
                consequence = $"'{other}' is no job this coordinator knows (the lost event may be the one that recorded it; a batch's slide is started again)";
            else
                consequence = "the event names no job that could be read; what it recorded is lost (a tile is computed again or a step repeated)";
            if (!settled) Telemetry.Quarantines.Add(1, Telemetry.Tag("kind", "event"));
            _log.Write(settled ? Serilog.Events.LogEventLevel.Warning : Serilog.Events.LogEventLevel.Error,
                "Journal event #{SequenceNr} ({Event}) {Why}: skipped, {Consequence}", g.SequenceNr, g.Event, g.Why, consequence);
            if (!settled) RecentError(now, g.Id ?? "", $"journal event #{g.SequenceNr} ({g.Event}) {g.Why}: {consequence}");
        }
        _damage.Clear();
        return failed;
    }

    private void Finished(string jobId)
    {
        _finishedOrder.Enqueue(jobId);
        while (_finishedOrder.Count > _s.FinishedJobsKept)
        {
            var old = _finishedOrder.Dequeue();
            _jobs.Remove(old); _trainings.Remove(old);
            if (_batches.Remove(old, out var b))
                foreach (var id in b.SlideJobIds) _slideJobs.Remove(id);
        }
    }

    private void Restore(JobRecord r)
    {
        Apply(r.Submitted);
        var j = _jobs[r.Submitted.JobId];
        j.Planned = r.Planned; j.Stitched = r.Stitched; j.Classified = r.Classified; j.Segmented = r.Segmented; j.Retries = r.Retries; j.StepStarts = r.StepStarts;
        foreach (var d in r.Done) j.Done[d.TileId] = d;
        if (r.Ended is not null) Apply(r.Ended);
    }

    public CoordinatorSnapshot Snapshot() => new(_jobs.Values.Select(j => new JobRecord(j.Submitted, j.Planned,
        j.Done.Values.ToArray(), j.Stitched, j.Classified, j.Segmented, j.Ended, j.Retries, j.StepStarts)).ToArray(),
        _trainings.Values.Select(t => new TrainRecord(t.Submitted, t.Trained, t.Ended)).ToArray(),
        _batches.Values.Select(b => new BatchRecord(b.Submitted, b.Ended.Values.ToArray())).ToArray());

    // ================================================================ transient facts (not journaled: a restart forgets them)

    private void OnAssigned(Job j, int tile, string worker, int attempt, DateTime now) => j.InFlight[tile] = (worker, attempt, now + _s.TileDeadline);

    /// <summary>A tile leaves its worker without a result (it stays out of the queue until <see cref="Requeue"/>).</summary>
    private static void Release(Job j, int tile) => j.InFlight.Remove(tile);

    /// <summary>Counts one failed attempt against a tile; returns how many it has now.</summary>
    private static int CountFailure(Job j, int tile) => j.Failures[tile] = j.Failures.GetValueOrDefault(tile) + 1;

    private static void Requeue(Job j, int tile, int attempt) { j.Retries++; j.Pending.Enqueue((tile, attempt + 1)); Telemetry.Retries.Add(1, Telemetry.Tag("kind", "tile")); }

    private void OnStepReleased(Job j, bool failure) { j.Step = null; if (failure) j.StepFailures++; j.Retries++; Telemetry.Retries.Add(1, Telemetry.Tag("kind", "step")); }

    // ================================================================ commands

    public Decision Handle(object command, string sender, DateTime now)
    {
        var d = new DecisionBuilder();
        switch (command)
        {
            case SubmitGraphJob s: Submit(s, sender, d); break;
            case SubmitTrainJob s: SubmitTraining(s, sender, d); break;
            case SubmitBatch s: SubmitBatch(s, sender, d, now); break;
            case WatchBatch w: WatchBatch(w, sender, d); break;
            case BatchAccepted a: OnBatchAccepted(a, d, now); break;
            case AdvanceBatch a: if (_batches.TryGetValue(a.BatchId, out var ab)) Advance(ab, d, now); break;
            case BatchFinished f: if (_batches.TryGetValue(f.BatchId, out var fb)) AfterBatch(fb, d); break;
            case GetStatus g: d.Send(sender, Status(g)); break;
            case RequestWork r: OfferWork(r, sender, d, now); break;
            case TrainerReady r: TrainerIsReady(r, sender, d, now); break;
            case TileCompleted c: TileCompleted(c, sender, d, now); break;
            case Messages.TileFailed f: TileFailed(f, d, now); break;
            case TileHandedBack h: HandedBack(h, sender, d, now); break;
            case Prepared p: OnPrepared(p, d, now); break;
            case StepFailed f: OnStepFailed(f, d); break;
            case TilesInvalid t: OnTilesInvalid(t, d); break;
            case Stitched s: OnStitched(s, d); break;
            case NodesClassified c: OnClassified(c, sender, d, now); break;
            case ClassifyFailed f: StepItemFailed(f.JobId, f.Attempt, "classifying", f.Error, f.Permanent, d, now); break;
            case PaintCompleted p: OnPainted(p, d, now); break;
            case PaintFailed f: StepItemFailed(f.JobId, f.Attempt, "painting", f.Error, f.Permanent, d, now); break;
            case ModelReady m: OnModelReady(m, sender, d, now); break;
            case TrainFailed f: OnTrainFailed(f, d, now); break;
            case NodeLost l: OnNodeLost(l, d, now); break;
            case Tick t: OnTick(t.Now, d); break;
            case RetryJob r: if (_jobs.TryGetValue(r.JobId, out var rj) && rj.Ended is null) ResumeJob(rj, d, now); break;
            case Resume r: if (_jobs.TryGetValue(r.JobId, out var sj) && sj.Ended is null) ResumeJob(sj, d, now); break;
            case Dispatch: DispatchWork(d, now); break;
            case Recovered rc: OnRecovered(rc, d, now); break;
            case Submitted s: OnSubmitted(s, d); break;
            case Finish f: if (_jobs.TryGetValue(f.JobId, out var fj)) AfterEnded(fj, d, now); break;
            case TrainingEnded t: AfterTraining(t.JobId, d); break;
            case AbortJob a: Abort(a, d); break;
        }
        return d.Build();
    }

    private sealed class DecisionBuilder
    {
        private readonly List<ICoordinatorEvent> _journal = new();
        private readonly List<Effect> _effects = new();
        public void Record(ICoordinatorEvent e) => _journal.Add(e);
        public void Do(Effect e) => _effects.Add(e);
        public void Send(string to, object m) => _effects.Add(new Send(to, m));
        public void Then(object command) => _effects.Add(new Continue(command));
        public Decision Build() => _journal.Count == 0 && _effects.Count == 0 ? Decision.None : new(_journal.ToArray(), _effects.ToArray());
    }

    private void Tell(IEnumerable<string> watchers, object m, DecisionBuilder d)
    {
        foreach (var w in watchers) d.Send(w, m);
    }

    // ---------------------------------------------------------------- recovery

    private void OnRecovered(Recovered rc, DecisionBuilder d, DateTime now)
    {
        var open = _jobs.Values.Where(j => j.Ended is null).ToList();
        if (_jobs.Count > 0)
            _log.Information("Coordinator recovered {Jobs} jobs ({Open} unfinished, {TilesDone} finished tiles kept) from the journal in {Seconds:F2}s",
                _jobs.Count, open.Count, open.Sum(j => j.Done.Count), rc.Seconds);
        else
            _log.Information("Coordinator started (empty journal, recovery {Seconds:F2}s)", rc.Seconds);
        var quarantined = SettleDamage(d, now);
        foreach (var t in _trainings.Values.Where(t => t.Ended is null && !quarantined.Contains(t.JobId)))
        {
            t.Log.Information("Training job {JobId} resumes: it will be trained again from the start on the next free trainer", t.JobId);
            if (t.Trained is not null) d.Record(new JobEnded(t.JobId, true, null));
        }
        // a job that failed just before the coordinator went down may not have put back the results it set aside
        foreach (var j in _jobs.Values.Where(j => j.Ended is { Succeeded: false })) PutBackEarlierResults(j);
        foreach (var j in open)
        {
            j.RecoveredTiles = j.Done.Count;
            if (quarantined.Contains(j.JobId)) continue;
            // a step that was started and never finished, MaxCrashes times: it is what brought the coordinator down
            if (j.StepStarts >= _s.MaxCrashes)
            {
                Telemetry.Quarantines.Add(1, Telemetry.Tag("kind", "job"));
                Fail(j, $"quarantined: the coordinator went down {j.StepStarts} times while it was {(j.Planned is null ? "preparing" : "stitching")} this job " +
                        "(an image too large for its memory, or a crash in that step); the other jobs go on", d);
                continue;
            }
            j.Log.Information("Job {JobId} resumes in phase {Phase}: {Done}/{Total} tiles already done", j.JobId, j.Phase, j.Done.Count, j.Planned?.Tiles ?? 0);
            d.Then(new Resume(j.JobId));
        }
        foreach (var b in _batches.Values.Where(b => !b.Finished))
        {
            b.Log.Information("Batch {BatchId} resumes: {Ended}/{Total} slides ended ({Done} done, {Failed} failed, {Skipped} skipped)",
                b.BatchId, b.Ended.Count, b.Spec.Slides.Length, b.Count("done"), b.Count("failed"), b.Count("skipped"));
            d.Then(new AdvanceBatch(b.BatchId));
        }
        d.Then(new Dispatch());
    }

    /// <summary>Takes a job on from whatever its recorded state is.</summary>
    private void ResumeJob(Job j, DecisionBuilder d, DateTime now)
    {
        if (j.Planned is null) { StartPrepare(j, d); return; }
        if (j.Manifest is null)
        {
            try { j.Manifest = _files.LoadManifest(j.Planned.ManifestPath); }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                j.Log.Warning("Job {JobId}: manifest {Manifest} unreadable ({Error}); planning again", j.JobId, j.Planned.ManifestPath, e.Message);
                StartPrepare(j, d);
                return;
            }
        }
        j.Clock.Start();
        if (j.Done.Count < j.Planned.Tiles)
        {
            var queued = j.Pending.Select(p => p.Tile).Concat(j.InFlight.Keys).ToHashSet();
            for (int t = 0; t < j.Planned.Tiles; t++) if (!j.Done.ContainsKey(t) && !queued.Contains(t)) j.Pending.Enqueue((t, 1));
            DispatchWork(d, now);
        }
        else if (j.Stitched is null) StartStitch(j, d);
        else if (j.Segments && (j.Classified is null || j.Segmented is null)) DispatchWork(d, now);
        else FinishJob(j, d);
    }

    // ---------------------------------------------------------------- clients

    private IEnumerable<OutputFootprint> OpenOutputs() =>
        _jobs.Values.Where(j => j.Ended is null).Select(j => new OutputFootprint(j.JobId, j.Spec.OutDir, true))
            .Concat(_trainings.Values.Where(t => t.Ended is null).Select(t => new OutputFootprint(t.JobId, t.Submitted.Spec.OutDir, false)))
            .Concat(_batches.Values.Where(b => !b.Finished).Select(b => new OutputFootprint(b.BatchId, b.Spec.OutDir, true)));

    private int OpenJobs => _jobs.Values.Count(j => j.Ended is null) + _trainings.Values.Count(t => t.Ended is null) + _batches.Values.Count(b => !b.Finished);

    /// <summary>Why this id cannot name a new job or training: it is a batch's, or the job of a batch's slide that has not started.</summary>
    private string? ReservedId(string id) =>
        _batches.ContainsKey(id) ? $"id {id} is a batch's"
        : _slideJobs.TryGetValue(id, out var sj) && !_jobs.ContainsKey(id) ? $"job id {id} belongs to slide '{sj.Slide.Name}' of batch {sj.Batch.BatchId}"
        : null;

    private void Refuse(JobRefused r, string sender, DecisionBuilder d)
    {
        _log.ForContext("JobId", r.JobId).Warning("Refused job {JobId} from {Client} ({Code}): {Reason}", r.JobId, sender, r.Code, r.Reason);
        d.Send(sender, r);
    }

    /// <summary>The limits that keep one job from taking the coordinator down: checked before anything is recorded.</summary>
    private string? OverLimits(GraphJobSpec spec)
    {
        if (spec.TileSize < _s.MinTileSize || spec.TileSize > _s.MaxTileSize)
            return $"tile size {spec.TileSize} is outside the limits [{_s.MinTileSize}, {_s.MaxTileSize}] (the coordinator's MinTileSize and MaxTileSize settings)";
        if (OpenJobs >= _s.MaxOpenJobs)
            return $"{OpenJobs} jobs are open, the limit (MaxOpenJobs) is {_s.MaxOpenJobs}: submit again when some have finished";
        return null;
    }

    private void Submit(SubmitGraphJob s, string sender, DecisionBuilder d)
    {
        if (ReservedId(s.JobId) is { } reserved) { Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, reserved), sender, d); return; }
        if (_jobs.TryGetValue(s.JobId, out var known) || _trainings.ContainsKey(s.JobId))
        {
            if (s.MustBeNew || known is null) { Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used"), sender, d); return; }
            // idempotent: the client re-sends its job as a heartbeat and to find a restarted coordinator
            if (!known.Spec.Equals(s.Spec) && !known.Spec.Equals(JobAuthorization.Check(s.JobId, s.Spec, _s.Policy, []).Spec))
            {
                Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used by a different job"), sender, d);
                return;
            }
            bool isNew = known.Watchers.Add(sender);
            if (known.Ended is not null) { d.Send(sender, Outcome(known)); return; }
            if (isNew) d.Send(sender, new JobReceived(s.JobId));
            if (isNew && known.Planned is { } p && known.Manifest is { } m)
                d.Send(sender, new GraphJobAccepted(s.JobId, p.ImageId, m.Width, m.Height, m.Channels, p.Tiles, m.Halo, m.Grid.Count, known.RecoveredTiles));
            return;
        }
        // every job is checked here, whatever door it came in by, before anything is recorded
        var c = JobAuthorization.Check(s.JobId, s.Spec, _s.Policy, OpenOutputs());
        if (c.Refused is { } refused) { Refuse(refused, sender, d); return; }
        if (OverLimits(c.Spec!) is { } limit) { Refuse(new JobRefused(s.JobId, RefusalCodes.Invalid, limit), sender, d); return; }
        d.Record(new JobSubmitted(s.JobId, c.Spec!, DateTime.UtcNow));
        d.Then(new Submitted(s.JobId, sender));
    }

    /// <summary>After a job's <see cref="JobSubmitted"/> is journaled: tell the client, start its first pass.</summary>
    private sealed record Submitted(string JobId, string Client);

    private void OnSubmitted(Submitted s, DecisionBuilder d)
    {
        if (_jobs.TryGetValue(s.JobId, out var j))
        {
            // a batch's slide has no client of its own: the batch follows it
            if (s.Client.Length > 0) { j.Watchers.Add(s.Client); d.Send(s.Client, new JobReceived(s.JobId)); }
            j.FreshSubmit = true;
            j.Log.Information("Job {JobId} submitted: {Image} → {OutDir}{Model}{Batch}", j.JobId, j.Spec.ImagePath, j.Spec.OutDir,
                j.Spec.ModelPath is { } mp ? $" (segment with {mp})" : "",
                _slideJobs.TryGetValue(j.JobId, out var sj) ? $" (slide '{sj.Slide.Name}' of batch {sj.Batch.BatchId})" : "");
            StartPrepare(j, d);
        }
        else if (_trainings.TryGetValue(s.JobId, out var t))
        {
            t.Watchers.Add(s.Client);
            d.Send(s.Client, new JobReceived(s.JobId));
            var sp = t.Submitted.Spec;
            t.Log.Information("Training job {JobId} submitted: {Graphs} graph(s) → {OutDir} ({Conv}, {Layers} layers × {Hidden}, {Edges} edges)",
                t.JobId, sp.Graphs.Length, sp.OutDir, sp.Conv, sp.Layers, sp.Hidden, sp.Edges);
            d.Then(new Dispatch());
        }
    }

    private static bool Same(TrainJobSpec a, TrainJobSpec b) => a with { Graphs = [] } == b with { Graphs = [] } && a.Graphs.SequenceEqual(b.Graphs);

    private void SubmitTraining(SubmitTrainJob s, string sender, DecisionBuilder d)
    {
        if (ReservedId(s.JobId) is { } reserved) { Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, reserved), sender, d); return; }
        if (_trainings.TryGetValue(s.JobId, out var known) || _jobs.ContainsKey(s.JobId))
        {
            if (s.MustBeNew || known is null) { Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used"), sender, d); return; }
            if (!Same(known.Submitted.Spec, s.Spec) && JobAuthorization.Check(s.JobId, s.Spec, _s.Policy, []).Spec is var canon
                && (canon is null || !Same(known.Submitted.Spec, canon)))
            {
                Refuse(new JobRefused(s.JobId, RefusalCodes.Conflict, $"job id {s.JobId} is already used by a different job"), sender, d);
                return;
            }
            if (known.Watchers.Add(sender) && known.Ended is null) d.Send(sender, new JobReceived(s.JobId));
            if (known.Ended is not null) d.Send(sender, TrainOutcome(known));
            return;
        }
        var c = JobAuthorization.Check(s.JobId, s.Spec, _s.Policy, OpenOutputs());
        if (c.Refused is { } refused) { Refuse(refused, sender, d); return; }
        var spec = c.Spec!;
        if (spec.Graphs.FirstOrDefault(g => !File.Exists(g)) is { } missing)
        {
            Refuse(new JobRefused(s.JobId, RefusalCodes.Invalid, $"{missing}: graph file not found (paths must be on storage every node sees)"), sender, d);
            return;
        }
        if (OpenJobs >= _s.MaxOpenJobs)
        {
            Refuse(new JobRefused(s.JobId, RefusalCodes.Invalid, $"{OpenJobs} jobs are open, the limit (MaxOpenJobs) is {_s.MaxOpenJobs}: submit again when some have finished"), sender, d);
            return;
        }
        d.Record(new TrainJobSubmitted(s.JobId, spec, DateTime.UtcNow));
        d.Then(new Submitted(s.JobId, sender));
    }

    /// <summary>What the gauges show: jobs by phase, tiles queued and in flight, the workers and trainers known.</summary>
    public BookGauges Gauges()
    {
        // the open batches' slides by state (pending, running, done, failed, skipped)
        var slides = new Dictionary<string, int>();
        foreach (var b in _batches.Values.Where(b => !b.Finished))
        {
            var st = BatchStatusOf(b, false);
            foreach (var (state, n) in new[] { ("pending", st.Total - st.Done - st.Failed - st.Skipped - st.Running), ("running", st.Running), ("done", st.Done), ("failed", st.Failed), ("skipped", st.Skipped) })
                slides[state] = slides.GetValueOrDefault(state) + n;
        }
        return new(
            _jobs.Values.Select(j => j.Phase).Concat(_trainings.Values.Select(t => t.Phase)).GroupBy(p => p).ToDictionary(g => g.Key, g => g.Count()),
            _jobs.Values.Sum(j => j.Ended is null ? j.Pending.Count : 0), _jobs.Values.Sum(j => j.Ended is null ? j.InFlight.Count : 0), _workers.Count, _trainers.Count,
            _batches.Values.Count(b => !b.Finished), slides);
    }

    /// <summary>A status of everything lists every open job and batch, and only this many of those that ended, the newest:
    /// a coordinator remembers up to <see cref="CoordinatorSettings.FinishedJobsKept"/> of them, and a report of all would
    /// be megabytes, every few seconds for the status page, and past the remote frame size (4 MiB) with long errors.</summary>
    public const int EndedListed = 100;

    /// <summary>An error as a status reports it: at most this many characters.</summary>
    private const int StatusErrorChars = 2_000;

    private static string? Short(string? error, int max = StatusErrorChars) => error is { } e && e.Length > max ? e[..max] + "…" : error;

    private StatusReport Status(GetStatus g)
    {
        // one batch: the batch with each slide's state, and its slides' jobs
        bool Asked(string jobId) => g.JobId is null || jobId == g.JobId || _slideJobs.TryGetValue(jobId, out var sj) && sj.Batch.BatchId == g.JobId;
        // everything: the newest ended ones only (see EndedListed)
        HashSet<string>? endedListed = null;
        int endedNotListed = 0;
        if (g.JobId is null)
        {
            endedListed = new HashSet<string>(StringComparer.Ordinal);
            foreach (var id in _finishedOrder.Reverse())
            {
                bool ended = _jobs.TryGetValue(id, out var fj) ? fj.Ended is not null
                    : _trainings.TryGetValue(id, out var ft) ? ft.Ended is not null
                    : _batches.TryGetValue(id, out var fb) && fb.Finished;
                if (!ended || endedListed.Contains(id)) continue;
                if (endedListed.Count < EndedListed) endedListed.Add(id); else endedNotListed++;
            }
        }
        bool Listed(string id, bool ended) => !ended || endedListed is null || endedListed.Contains(id);
        var batches = _batches.Values.Where(b => (g.JobId is null || b.BatchId == g.JobId) && Listed(b.BatchId, b.Finished))
            .Select(b => BatchStatusOf(b, g.JobId is not null)).ToArray();
        var jobs = _jobs.Values.Where(j => Asked(j.JobId) && Listed(j.JobId, j.Ended is not null))
            .Select(j => new JobStatus(j.JobId, j.Phase, j.Done.Count + (j.Ended is not null && j.Planned is not null ? j.Planned.Tiles : 0),
                j.Planned?.Tiles ?? 0, j.InFlight.Count, j.Retries, Short(j.Ended?.Error), j.Spec.OutDir))
            .Concat(_trainings.Values.Where(t => (g.JobId is null || t.JobId == g.JobId) && Listed(t.JobId, t.Ended is not null))
                .Select(t => new JobStatus(t.JobId, t.Phase, 0, 0, t.Step is null ? 0 : 1, t.Failures, Short(t.Ended?.Error), t.Submitted.Spec.OutDir)))
            .ToArray();
        string Node(string actor)
        {
            int i = actor.IndexOf("/user/", StringComparison.Ordinal);
            var node = i > 0 ? actor[..i] : actor;
            return !node.Contains('@') && SelfAddress is { } self ? self : node; // an actor of this process: this node's address
        }
        var nodes = _workers.GroupBy(Node).Select(g => new NodeStatus(g.Key, "tile-worker", g.Count(), g.Count(w => _idle.GetValueOrDefault(w) == 0)))
            .Concat(_trainers.GroupBy(Node).Select(g => new NodeStatus(g.Key, "gpu-trainer", g.Count(), g.Count(t => !_idleTrainers.Contains(t)))))
            .OrderBy(n => n.Role).ThenBy(n => n.Address, StringComparer.Ordinal).ToArray();
        return new StatusReport(jobs, _workers.Count, _trainers.Count, nodes, _recentErrors.ToArray(), batches, endedNotListed);
    }

    public object Outcome(Job j)
    {
        if (j.Ended is { Succeeded: false } e) return new GraphJobFailed(j.JobId, e.Error ?? "failed");
        var s = j.Stitched!;
        return new GraphJobCompleted(j.JobId, j.Spec.OutDir, s.Nodes, s.AdjacencyEdges, s.KnnEdges, j.Planned?.PrepareSeconds ?? 0, s.TilesSeconds,
            s.StitchSeconds, s.WriteSeconds, j.Retries, j.Segmented?.Mask.Path, j.Segmented?.PixelsPerClass ?? j.Classified?.PixelsPerClass, j.RecoveredTiles,
            j.Classified?.Seconds ?? 0, j.Segmented?.Seconds ?? 0, s.TissueFraction, s.TilesSkipped);
    }

    private static object TrainOutcome(Training t) => t.Ended is { Succeeded: false } e
        ? new GraphJobFailed(t.JobId, e.Error ?? "failed")
        : new TrainJobCompleted(t.JobId, t.Trained!.Result.BestModel.Path, t.Trained.Result.Epochs, t.Trained.Result.BestEpoch,
            t.Trained.Result.BestValidationLoss, t.Trained.Result.Seconds, t.Trained.Result.Device);

    // ---------------------------------------------------------------- the coordinator's own steps: prepare and stitch

    /// <summary>At most <c>MaxConcurrentSteps</c> jobs prepare or stitch at once; the others wait for a slot (retried on the tick).</summary>
    private bool StepSlotFree(Job j) => j.Busy || BusySteps < _s.MaxConcurrentSteps;

    private void StartPrepare(Job j, DecisionBuilder d)
    {
        if (j.Busy) return;
        if (!StepSlotFree(j)) { j.Log.Debug("Job {JobId} waits for a free preparing slot", j.JobId); return; }
        j.Busy = true; j.OwnStep = "prepare"; j.BusySince = null;
        bool mayExist = !j.FreshSubmit || j.PrepareAttempts++ > 0;
        d.Record(new StepStarted(j.JobId, "prepare"));
        d.Do(new RunPrepare(j.JobId, j.Spec, GraphOutputs.WorkDir(j.GraphDir, j.JobId), mayExist));
    }

    private void OnPrepared(Prepared p, DecisionBuilder d, DateTime now)
    {
        if (!_jobs.TryGetValue(p.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        var m = p.Manifest;
        j.Manifest = m;
        if (j.Planned is not null) { ResumeJob(j, d, now); return; } // re-planned after its manifest was lost: same plan, keep the tiles
        var plan = m.Plan;
        long pixels = (long)m.Width * m.Height;
        string? limit = pixels > _s.MaxPixelsPerImage ? $"the image has {pixels:N0} pixels, the limit (MaxPixelsPerImage) is {_s.MaxPixelsPerImage:N0}"
            : plan.Count > _s.MaxTilesPerJob ? $"{plan.Count:N0} tiles of {plan.TileSize} px, the limit (MaxTilesPerJob) is {_s.MaxTilesPerJob:N0}: use larger tiles"
            : null;
        if (limit is not null) { Fail(j, limit, d); return; }
        d.Record(new JobPlanned(m.JobId, m.ImageId, m.ManifestPath, plan.Count, pixels, p.Seconds, SetAside: true)); // (the prepare step sets them aside)
        j.Log.Information("Job {JobId} planned: {Width}x{Height}x{Channels} {BitDepth}-bit, {Tiles} tiles of {TileSize} px with halo {Halo}, {Seeds} seeds (spacing {Spacing:F1} px), stats pass {Seconds:F1}s",
            m.JobId, m.Width, m.Height, m.Channels, m.BitDepth, plan.Count, plan.TileSize, m.Halo, m.Grid.Count, m.Grid.S, p.Seconds);
        if (m.Tissue is { } ti)
            j.Log.Information("Job {JobId}: tissue ({TissueSource}) covers {TissueFraction:P1} of the image; {TilesSkipped} of {Tiles} tiles are glass only and will be skipped",
                m.JobId, ti.Source, ti.Fraction, ti.TilesSkipped, ti.Tiles);
        foreach (var w in j.Watchers) d.Send(w, new GraphJobAccepted(m.JobId, m.ImageId, m.Width, m.Height, m.Channels, plan.Count, m.Halo, m.Grid.Count));
        d.Then(new Resume(j.JobId));
        d.Then(new Dispatch());
    }

    private void OnStepFailed(StepFailed f, DecisionBuilder d)
    {
        if (!_jobs.TryGetValue(f.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        d.Record(new StepEnded(j.JobId, f.Step)); // it failed, it did not take the coordinator down
        if (FailurePolicy.IsPermanent(f.Error) || ++j.StepFailures >= _s.MaxAttempts) { Fail(j, $"{f.Step}: {FailurePolicy.Describe(f.Error)}", d); return; }
        // the reason in one line; the trace only at debug level (it is the same on every try)
        j.Log.Warning("Job {JobId}: {Step} failed ({Error}); trying again", j.JobId, f.Step, FailurePolicy.Describe(f.Error));
        j.Log.Debug(f.Error, "Job {JobId}: {Step} failure trace", j.JobId, f.Step);
        d.Do(new RetryLater(j.JobId, TimeSpan.FromSeconds(2)));
        d.Then(new Dispatch()); // the slot it held may let another job start
    }

    private void StartStitch(Job j, DecisionBuilder d)
    {
        if (j.Busy || j.Stitched is not null) return;
        if (!StepSlotFree(j)) { j.Log.Debug("Job {JobId} waits for a free stitching slot", j.JobId); return; }
        j.Busy = true; j.OwnStep = "stitch"; j.BusySince = null;
        double tilesSeconds = j.Clock.Elapsed.TotalSeconds;
        j.Log.Information("Job {JobId}: all {Total} tiles done in {Seconds:F1}s ({MPps:F1} MP/s this run, {Recovered} recovered from the journal); verifying and stitching",
            j.JobId, j.Planned!.Tiles, tilesSeconds, j.PixelsThisRun / 1e6 / Math.Max(1e-9, tilesSeconds), j.RecoveredTiles);
        Tell(j.Watchers, new GraphJobProgress(j.JobId, "stitching", j.Planned.Tiles, j.Planned.Tiles, 0), d);
        d.Record(new StepStarted(j.JobId, "stitch"));
        d.Do(new RunStitch(j.JobId, j.Manifest!, j.Done.Values.ToArray(), j.GraphDir, j.Spec.WriteNodeMap || j.Segments, tilesSeconds));
    }

    private void OnTilesInvalid(TilesInvalid t, DecisionBuilder d)
    {
        if (!_jobs.TryGetValue(t.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        foreach (var (tile, why) in t.Invalid)
        {
            j.Log.Warning("Job {JobId}: tile {TileId} must be computed again: {Error}", j.JobId, tile, why);
            d.Record(new TileInvalidated(j.JobId, tile, why));
        }
        d.Then(new Resume(j.JobId));
    }

    private void OnStitched(Stitched s, DecisionBuilder d)
    {
        if (!_jobs.TryGetValue(s.JobId, out var j) || j.Ended is not null) return;
        j.Busy = false;
        var g = s.Event;
        d.Record(g);
        j.Log.Information("Job {JobId}: graph of {Nodes} nodes, {Rag} adjacency and {Knn} kNN edges written to {OutDir} (stitch {Stitch:F1}s, write {Write:F1}s)",
            j.JobId, g.Nodes, g.AdjacencyEdges, g.KnnEdges, j.GraphDir, g.StitchSeconds, g.WriteSeconds);
        d.Then(j.Segments ? new Dispatch() : new Finish(j.JobId));
        d.Then(new Dispatch()); // a stitching slot is free again
    }

    // ---------------------------------------------------------------- workers and trainers

    private bool Compatible(int major, string who, string sender, DecisionBuilder d)
    {
        if (major == ProtocolVersion.Major) return true;
        _log.Error("Refusing {Who} {Sender}: it speaks protocol {Theirs}.x, this coordinator {Ours}", who, sender, major, ProtocolVersion.Text);
        d.Send(sender, new WorkRefused($"protocol {major}.x is not compatible with coordinator protocol {ProtocolVersion.Text}"));
        return false;
    }

    private void OfferWork(RequestWork r, string sender, DecisionBuilder d, DateTime now)
    {
        if (!Compatible(r.ProtocolMajor, "worker", sender, d)) return;
        if (_workers.Add(sender)) { d.Do(new WatchNode(sender)); _log.Information("Worker {Worker} joined ({Workers} workers)", sender, _workers.Count); }
        _idle[sender] = Math.Max(_idle.GetValueOrDefault(sender), r.FreeSlots);
        DispatchWork(d, now);
    }

    private void TrainerIsReady(TrainerReady r, string sender, DecisionBuilder d, DateTime now)
    {
        if (!Compatible(r.ProtocolMajor, "trainer", sender, d)) return;
        if (_trainers.Add(sender)) { d.Do(new WatchNode(sender)); _log.Information("Trainer {Trainer} joined on {Device}", sender, r.Device); }
        if (!_jobs.Values.Any(j => j.Step is { } s && s.Node == sender) && !_trainings.Values.Any(t => t.Ended is null && t.Step is { } s && s.Node == sender))
            _idleTrainers.Add(sender);
        DispatchWork(d, now);
    }

    private string? TakeWorker()
    {
        var w = _idle.FirstOrDefault(kv => kv.Value > 0).Key;
        if (w is null) return null;
        if (--_idle[w] == 0) _idle.Remove(w);
        return w;
    }

    private void DispatchWork(DecisionBuilder d, DateTime now)
    {
        foreach (var t in _trainings.Values)
        {
            if (t.Ended is not null || t.Trained is not null || t.Step is not null || _idleTrainers.Count == 0) continue;
            var tr = _idleTrainers.First(); _idleTrainers.Remove(tr);
            t.Attempt++;
            t.Step = (tr, now + _s.TrainDeadline, now);
            t.Log.Information("Training job {JobId}: {Graphs} graph(s) → {OutDir} on trainer {Trainer} (attempt {Attempt})", t.JobId, t.Submitted.Spec.Graphs.Length, t.Submitted.Spec.OutDir, tr, t.Attempt);
            Tell(t.Watchers, new GraphJobProgress(t.JobId, "training", 0, 0, 0), d);
            d.Send(tr, new TrainModel(t.JobId, t.Submitted.Spec, t.Attempt));
        }
        foreach (var j in _jobs.Values)
        {
            if (j.Ended is not null || j.Ending) continue;
            // a job waiting for a preparing or stitching slot starts when one is free
            if (!j.Busy && j.Planned is null && BusySteps < _s.MaxConcurrentSteps) { StartPrepare(j, d); continue; }
            if (!j.Busy && j.Planned is { } pl && j.Manifest is not null && j.Done.Count == pl.Tiles && j.Stitched is null && BusySteps < _s.MaxConcurrentSteps) { StartStitch(j, d); continue; }
            if (j.Manifest is null || j.Planned is null || j.Busy) continue;
            var m = j.Manifest;
            while (j.Pending.Count > 0 && _idle.Count > 0)
            {
                var (tile, attempt) = j.Pending.Dequeue();
                if (j.Done.ContainsKey(tile) || j.InFlight.ContainsKey(tile)) continue;
                var worker = TakeWorker()!;
                OnAssigned(j, tile, worker, attempt, now);
                d.Send(worker, new TileAssignment(m.JobId, m.ImageId, m.ManifestPath, tile, attempt, j.GraphDir));
            }
            if (j.Stitched is { } g && j.Segments && j.Step is null)
            {
                if (j.Classified is null && _idleTrainers.Count > 0)
                {
                    var t = _idleTrainers.First(); _idleTrainers.Remove(t);
                    j.StepAttempt++;
                    j.Step = (t, now + _s.StepDeadline);
                    j.Log.Information("Job {JobId}: classifying {Nodes} nodes on trainer {Trainer}", j.JobId, g.Nodes, t);
                    Tell(j.Watchers, new GraphJobProgress(j.JobId, "classifying", j.Planned.Tiles, j.Planned.Tiles, 0), d);
                    d.Send(t, new ClassifyNodes(j.JobId, m.ImageId, g.Graph, j.Spec.ModelPath!, Path.Combine(j.GraphDir, AssignmentPaths.ClassesFile), j.Spec.Device, j.StepAttempt, j.GraphDir, j.Spec.Refine,
                        Guarded: j.Planned.SetAside));
                }
                else if (j.Classified is { } c && j.Segmented is null && g.NodeMap is { } nm && TakeWorker() is { } w)
                {
                    j.StepAttempt++;
                    j.Step = (w, now + _s.StepDeadline);
                    j.Log.Information("Job {JobId}: painting the mask on {Worker}", j.JobId, w);
                    Tell(j.Watchers, new GraphJobProgress(j.JobId, "painting", j.Planned.Tiles, j.Planned.Tiles, 0), d);
                    d.Send(w, new PaintAssignment(j.JobId, m.ImageId, j.Spec.ImagePath, nm, c.Classes,
                        Path.Combine(j.Spec.OutDir, AssignmentPaths.MaskFile), Path.Combine(j.Spec.OutDir, AssignmentPaths.OverlayFile), j.StepAttempt, j.Spec.OutDir,
                        c.Probs, j.Spec.Objects, j.Spec.Simplify, c.Refine, j.Spec.Page, j.Spec.Series, Guarded: j.Planned.SetAside));
                }
            }
        }
    }

    private void TileCompleted(TileCompleted c, string sender, DecisionBuilder d, DateTime now)
    {
        if (!_jobs.TryGetValue(c.JobId, out var j) || j.Ended is not null || j.Manifest is null || j.Planned is null) return;
        if (j.Done.ContainsKey(c.TileId)) { j.Log.Debug("Duplicate result for tile {TileId} ignored", c.TileId); return; }
        if (c.TileId < 0 || c.TileId >= j.Planned.Tiles) { j.Log.Error("Worker {Worker} returned tile {TileId}, which job {JobId} does not have; ignored", sender, c.TileId, c.JobId); return; }
        // a result is accepted only where it belongs and when it is there; anything else is re-computed. Checksums are
        // verified once, in parallel, before the stitch (re-hashing every result here would cost the workers' CPU)
        string? bad = c.Result.Path != Path.GetFullPath(j.Manifest.ResultPath(c.TileId)) || c.Labels.Path != Path.GetFullPath(j.Manifest.LabelsPath(c.TileId))
            ? $"result references {c.Result.Path} and {c.Labels.Path} are not this tile's"
            : _files.CheckPresent(c.Result) ?? _files.CheckPresent(c.Labels);
        if (bad is not null)
        {
            j.Log.Error("Tile {TileId} from {Worker} rejected: {Error}; re-queued", c.TileId, sender, bad);
            RequeueFailed(j, c.TileId, c.Attempt, bad, d, now);
            return;
        }
        // a result that arrives past its tile's deadline, before a tick has seen the deadline pass, is taken: the deadline
        // is a watchdog against reads that hang, and a valid result is worth more than a retry
        j.InFlight.Remove(c.TileId);
        j.PixelsThisRun += c.Pixels;
        d.Record(new TileDone(c.JobId, c.TileId, c.Result, c.Labels, c.Pixels));
        Telemetry.TilesDone.Add(1);
        Telemetry.TileSeconds.Record(c.Seconds);
        if (j.Done.Count + 1 == j.Planned.Tiles) d.Then(new Resume(j.JobId)); // the last tile: stitch
        DispatchWork(d, now);
    }

    private void TileFailed(Messages.TileFailed f, DecisionBuilder d, DateTime now)
    {
        if (!_jobs.TryGetValue(f.JobId, out var j) || j.Ended is not null || j.Done.ContainsKey(f.TileId)) return;
        if (!j.InFlight.TryGetValue(f.TileId, out var fl) || fl.Attempt != f.Attempt) return; // stale
        if (f.Permanent) { Fail(j, $"tile {f.TileId} failed: {f.Error}", d); return; }
        j.Log.Warning("Tile {TileId} failed (attempt {Attempt}): {Error}", f.TileId, f.Attempt, f.Error);
        RecentError(now, j.JobId, $"tile {f.TileId} failed (attempt {f.Attempt}): {f.Error}");
        RequeueFailed(j, f.TileId, f.Attempt, f.Error, d, now);
    }

    private void HandedBack(TileHandedBack h, string sender, DecisionBuilder d, DateTime now)
    {
        if (!_jobs.TryGetValue(h.JobId, out var j) || j.Done.ContainsKey(h.TileId)) return;
        if (!j.InFlight.TryGetValue(h.TileId, out var fl) || fl.Attempt != h.Attempt || fl.Worker != sender) return;
        Release(j, h.TileId);
        Requeue(j, h.TileId, h.Attempt);
        _idle.Remove(sender);
        j.Log.Information("Tile {TileId} handed back by leaving worker {Worker}; re-queued", h.TileId, sender);
        DispatchWork(d, now);
    }

    /// <summary>Counts a failure against a tile; quarantines it (failing the job with the reason) after MaxAttempts.</summary>
    private void RequeueFailed(Job j, int tile, int attempt, string error, DecisionBuilder d, DateTime now)
    {
        Release(j, tile);
        int n = CountFailure(j, tile);
        if (n >= _s.MaxAttempts) { Telemetry.Quarantines.Add(1, Telemetry.Tag("kind", "tile")); Fail(j, $"tile {tile} failed {n} times; last error: {error}", d); return; }
        Requeue(j, tile, attempt);
        DispatchWork(d, now);
    }

    private void OnNodeLost(NodeLost l, DecisionBuilder d, DateTime now)
    {
        bool wasWorker = _workers.Contains(l.Node), wasTrainer = _trainers.Contains(l.Node);
        if (!wasWorker && !wasTrainer) return;
        if (!l.Downed)
        {
            // merely unreachable: it may come back with its results; only a downed node's work is taken back
            _log.Warning("{Kind} {Node} is {Why}; its work stays with it until the cluster downs it", wasWorker ? "Worker" : "Trainer", l.Node, l.Why);
            _idle.Remove(l.Node); _idleTrainers.Remove(l.Node);
            return;
        }
        _workers.Remove(l.Node); _trainers.Remove(l.Node);
        _idle.Remove(l.Node); _idleTrainers.Remove(l.Node);
        // its work counts against the tiles only when all of it belonged to one job: a node that dies while holding
        // several jobs' tiles says nothing about which of them killed it, and never fails an innocent job
        var holders = _jobs.Values.Where(j => j.Ended is null && j.InFlight.Values.Any(f => f.Worker == l.Node)).ToList();
        bool count = holders.Count == 1;
        int requeued = 0;
        foreach (var j in holders)
        {
            foreach (var (tile, fl) in j.InFlight.Where(kv => kv.Value.Worker == l.Node).ToList())
            {
                requeued++;
                Release(j, tile);
                if (count && CountFailure(j, tile) is var n && n >= _s.MaxAttempts) { Fail(j, $"tile {tile} was lost with its worker {n} times (it may crash workers)", d); break; }
                Requeue(j, tile, fl.Attempt);
            }
        }
        foreach (var j in _jobs.Values.Where(j => j.Ended is null && j.Step is { } s && s.Node == l.Node)) { OnStepReleased(j, failure: false); requeued++; }
        foreach (var t in _trainings.Values.Where(t => t.Ended is null && t.Step is { } s && s.Node == l.Node)) { t.Step = null; requeued++; }
        _log.Warning("{Kind} {Node} is {Why}; {Requeued} work items re-queued{Counted} ({Workers} workers, {Trainers} trainers left)",
            wasWorker ? "Worker" : "Trainer", l.Node, l.Why, requeued, holders.Count > 1 ? $" (held work of {holders.Count} jobs: not counted against any)" : "",
            _workers.Count, _trainers.Count);
        DispatchWork(d, now);
    }

    // ---------------------------------------------------------------- classifying, painting, finishing

    private void OnClassified(NodesClassified c, string sender, DecisionBuilder d, DateTime now)
    {
        if (!_jobs.TryGetValue(c.JobId, out var j) || j.Ended is not null || j.Classified is not null || c.Attempt != j.StepAttempt) return;
        if ((_files.Check(c.Classes) ?? (c.Probs is { } pr ? _files.Check(pr) : null) ?? (c.Refine is { } rf ? _files.Check(rf) : null)) is { } bad) { StepItemFailed(c.JobId, c.Attempt, "classifying", bad, false, d, now); return; }
        if (c.Nodes != j.Stitched!.Nodes) { StepItemFailed(c.JobId, c.Attempt, "classifying", $"trainer returned {c.Nodes} classes for a graph of {j.Stitched.Nodes} nodes", false, d, now); return; }
        if (ClassificationProblem(c) is { } why) { StepItemFailed(c.JobId, c.Attempt, "classifying", $"trainer returned {why}", false, d, now); return; }
        j.Step = null;
        if (sender.Length > 0) _idleTrainers.Add(sender);
        d.Record(new ImageClassified(c.JobId, c.Classes, c.PixelsPerClass, c.Seconds, c.Device, c.Probs, c.MeanProbabilityPerClass, c.Refine, c.Warnings));
        foreach (var w in c.Warnings ?? []) j.Log.Warning("Job {JobId}: {Warning}", j.JobId, w);
        j.Log.Information("Job {JobId}: {Nodes} nodes classified on {Device} in {Seconds:F1}s; pixels per class [{Pixels}]", j.JobId, c.Nodes, c.Device, c.Seconds, string.Join(", ", c.PixelsPerClass));
        d.Then(new Dispatch());
    }

    /// <summary>The most warnings a classification may carry, and the longest one: they are journaled and written into
    /// segment.json.</summary>
    public const int MaxWarnings = 8, MaxWarningLength = 2000;

    /// <summary>What is wrong with a trainer's figures, or null: they are journaled and written into segment.json, so a
    /// NaN or a negative count is refused here, as it arrives, not met later by the writer.</summary>
    public static string? ClassificationProblem(NodesClassified c)
    {
        if (c.PixelsPerClass is not { Length: >= 2 and <= 256 } pixels) return $"{c.PixelsPerClass?.Length ?? 0} pixel counts (2..256 classes expected)";
        if (pixels.Any(n => n < 0)) return "a negative pixel count";
        if (!(double.IsFinite(c.Seconds) && c.Seconds >= 0)) return $"a classification time of {c.Seconds}";
        if (c.MeanProbabilityPerClass is { } mp)
        {
            if (mp.Length != pixels.Length) return $"{mp.Length} mean probabilities for {pixels.Length} classes";
            if (mp.Any(p => !(p >= 0 && p <= 1))) return $"mean probabilities outside 0..1 ({string.Join(", ", mp)})";
        }
        if (c.Warnings is { } ws && (ws.Length > MaxWarnings || ws.Any(w => w is null || w.Length > MaxWarningLength)))
            return $"{ws.Length} warnings, or one empty or over {MaxWarningLength} characters (at most {MaxWarnings} of them)";
        return null;
    }

    private void OnPainted(PaintCompleted p, DecisionBuilder d, DateTime now)
    {
        if (!_jobs.TryGetValue(p.JobId, out var j) || j.Ended is not null || j.Segmented is not null || p.Attempt != j.StepAttempt) return;
        if (_files.Check(p.Mask) is { } bad) { StepItemFailed(p.JobId, p.Attempt, "painting", bad, false, d, now); return; }
        j.Step = null;
        d.Record(new ImageSegmented(p.JobId, p.Mask, p.Seconds, p.PixelsPerClass, p.RefinedPixels));
        j.Log.Information("Job {JobId}: mask painted in {Seconds:F1}s: {Mask}{Refined}", j.JobId, p.Seconds, p.Mask.Path,
            p.RefinedPixels > 0 ? $" ({p.RefinedPixels:N0} pixels refined)" : "");
        d.Then(new Finish(j.JobId));
    }

    private void StepItemFailed(string jobId, int attempt, string step, string error, bool permanent, DecisionBuilder d, DateTime now)
    {
        if (!_jobs.TryGetValue(jobId, out var j) || j.Ended is not null || attempt != j.StepAttempt) return;
        if (j.Step is { } s && step == "classifying" && s.Node.Length > 0) _idleTrainers.Add(s.Node);
        OnStepReleased(j, failure: true);
        if (permanent || j.StepFailures >= _s.MaxAttempts) { Fail(j, $"{step}: {error}", d); return; }
        j.Log.Warning("Job {JobId}: {Step} failed ({Error}); trying again", jobId, step, error);
        RecentError(now, jobId, $"{step} failed: {error}");
        DispatchWork(d, now);
    }

    /// <summary>Ends a job as done: the segmentation summary is written first; if it cannot be, the job fails instead.</summary>
    private sealed record Finish(string JobId);

    private void FinishJob(Job j, DecisionBuilder d)
    {
        if (j.Ended is not null || j.Ending) return;
        if (j.Segments)
        {
            try
            {
                var c = j.Classified!;
                _files.WriteSegmentSummary(j.Spec.OutDir, System.Text.Json.JsonSerializer.Serialize(new
                {
                    image = j.Spec.ImagePath, model = j.Spec.ModelPath, mask = j.Segmented!.Mask.Path, maskChecksum = j.Segmented.Mask.Checksum,
                    overlay = Path.Combine(j.Spec.OutDir, AssignmentPaths.OverlayFile), objects = AssignmentPaths.ObjectsFile(j.Spec.OutDir, j.Spec.Objects), nodes = j.Stitched!.Nodes,
                    // the painted mask's counts (they differ from the nodes' when the boundary refinement repainted pixels)
                    pixelsPerClass = j.Segmented.PixelsPerClass ?? c.PixelsPerClass, device = c.Device,
                    refined = c.Refine is not null, refinedPixels = j.Segmented.RefinedPixels, coarsePixelsPerClass = c.Refine is null ? null : c.PixelsPerClass,
                    probabilityMap = c.Probs is null ? null : Path.Combine(j.Spec.OutDir, AssignmentPaths.ProbabilityMapFile), meanProbabilityPerClass = c.MeanProbabilityPerClass,
                    tissueFraction = j.Stitched.TissueFraction, tilesSkipped = j.Stitched.TilesSkipped,
                    // what the trainer found doubtful (an image unlike the model's training images): the job still ran
                    warnings = c.Warnings ?? [],
                }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                // nothing half-written is reported done (a figure JSON cannot hold, NaN or infinity, fails the job too:
                // thrown again at every restart, it would bring the coordinator down for good)
                Fail(j, $"segment.json cannot be written in {j.Spec.OutDir}: {e.Message}", d);
                return;
            }
        }
        // the earlier results this job set aside go before its end is journaled: a restart in between finishes it again,
        // and a set-aside folder is never left to be taken for a failed job's (and put back over this job's results)
        try { _files.CommitResults(j.Spec.OutDir, j.JobId); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Fail(j, $"the earlier results set aside in {EarlierResults.Folder(j.Spec.OutDir, j.JobId)} cannot be removed: {e.Message}", d);
            return;
        }
        j.Ending = true;
        d.Record(new JobEnded(j.JobId, true, null));
        Telemetry.JobsEnded.Add(1, Telemetry.Tag("outcome", "done"));
        d.Then(new Finish(j.JobId));
    }

    private void Fail(Job j, string error, DecisionBuilder d)
    {
        if (j.Ended is not null || j.Ending) return;
        j.Ending = true;
        d.Record(new JobEnded(j.JobId, false, error));
        Telemetry.JobsEnded.Add(1, Telemetry.Tag("outcome", "failed"));
        RecentError(DateTime.UtcNow, j.JobId, $"job failed: {error}");
        d.Then(new Finish(j.JobId));
    }

    /// <summary>After a job's <see cref="JobEnded"/> is journaled: log, tell its watchers, delete its work folder.</summary>
    private void AfterEnded(Job j, DecisionBuilder d, DateTime now)
    {
        if (j.Ended is null) { if (!j.Ending) FinishJob(j, d); return; }
        if (j.Ended.Succeeded)
        {
            var g = j.Stitched!;
            j.Log.Information("Job {JobId} finished: {Nodes} nodes, {Rag} adjacency edges, {Knn} kNN edges; prepare {Prepare:F1}s, tiles {Tiles:F1}s, stitch {Stitch:F1}s, write {Write:F1}s, classify {Classify:F1}s, paint {Paint:F1}s, {Retries} retries, {Recovered} tiles recovered",
                j.JobId, g.Nodes, g.AdjacencyEdges, g.KnnEdges, j.Planned!.PrepareSeconds, g.TilesSeconds, g.StitchSeconds, g.WriteSeconds,
                j.Classified?.Seconds ?? 0, j.Segmented?.Seconds ?? 0, j.Retries, j.RecoveredTiles);
        }
        else
        {
            j.Log.Error("Job {JobId} failed: {Error}", j.JobId, j.Ended.Error);
            PutBackEarlierResults(j);
        }
        Tell(j.Watchers, Outcome(j), d);
        if (!j.Spec.KeepWork) d.Do(new DeleteWork(GraphOutputs.WorkDir(j.GraphDir, j.JobId))); // after the watchers are told
        // a batch's slide: the batch records how it ended and starts the next
        if (_slideJobs.TryGetValue(j.JobId, out var sj)) Advance(sj.Batch, d, now);
        d.Then(new Dispatch());
    }

    /// <summary>A failed job's own files go and the results it set aside come back (before its watchers are told: a
    /// client that reads the folder then finds the earlier results whole). Done again after a restart (idempotent).</summary>
    private void PutBackEarlierResults(Job j)
    {
        try
        {
            if (EarlierResults.Say(j.Spec.OutDir, _files.RestoreResults(j.Spec.OutDir, j.JobId, j.Spec.KeepWork)) is { } said)
                j.Log.Information("Job {JobId}: {PutBack:l}", j.JobId, said);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            j.Log.Error("Job {JobId}: {PutBack:l}", j.JobId, EarlierResults.NotPutBack(j.Spec.OutDir, j.JobId, e));
        }
    }

    // ---------------------------------------------------------------- batches

    /// <summary>After a batch's <see cref="BatchSubmitted"/> is journaled: tell its client, start its first slides.</summary>
    private sealed record BatchAccepted(string BatchId, string Client, bool Watch);
    /// <summary>Record the slides whose jobs ended, start the next ones.</summary>
    private sealed record AdvanceBatch(string BatchId);
    /// <summary>After a batch's last <see cref="BatchSlideEnded"/> is journaled: log it, tell its watchers.</summary>
    private sealed record BatchFinished(string BatchId);

    private void SubmitBatch(SubmitBatch s, string sender, DecisionBuilder d, DateTime now)
    {
        if (_batches.TryGetValue(s.BatchId, out var known))
        {
            // idempotent: a second client, a client started again or a retried Kubernetes Job attaches; the definition
            // it sends is compared as sent and, failing that, as admission would record it (canonical paths)
            if (s.Spec is null || !known.Spec.SameAs(s.Spec) && JobAuthorization.Check(s.BatchId, s.Spec, _s.Policy, []).Spec is var canon && (canon is null || !known.Spec.SameAs(canon)))
            {
                Refuse(new JobRefused(s.BatchId, RefusalCodes.Conflict, $"batch id {s.BatchId} is already used by a different batch (other slides, inputs or parameters): " +
                    "give another --batch-id, or the same slides and parameters to attach to it"), sender, d);
                return;
            }
            Attach(known, sender, s.Detached, existing: true, d);
            return;
        }
        if (_jobs.ContainsKey(s.BatchId) || _trainings.ContainsKey(s.BatchId) || _slideJobs.ContainsKey(s.BatchId))
        {
            Refuse(new JobRefused(s.BatchId, RefusalCodes.Conflict, $"id {s.BatchId} is already used by a job"), sender, d);
            return;
        }
        // the batch and every slide are checked here, before anything is recorded, as a job would be
        var c = s.Spec is null ? new Checked<BatchSpec>(null, new JobRefused(s.BatchId, RefusalCodes.Invalid, "no batch definition"))
            : JobAuthorization.Check(s.BatchId, s.Spec, _s.Policy, OpenOutputs());
        if (c.Refused is { } refused) { Refuse(refused, sender, d); return; }
        var spec = c.Spec!;
        if (spec.Slides.Select(sl => OverLimits(sl.Spec)).FirstOrDefault(l => l is not null) is { } limit)
        {
            Refuse(new JobRefused(s.BatchId, RefusalCodes.Invalid, limit), sender, d);
            return;
        }
        foreach (var sl in spec.Slides)
        {
            var id = JobIds.ForSlide(s.BatchId, sl.Name);
            if (_trainings.ContainsKey(id) || _batches.ContainsKey(id) || _jobs.TryGetValue(id, out var other) && !other.Spec.Equals(sl.Spec))
            {
                Refuse(new JobRefused(s.BatchId, RefusalCodes.Conflict, $"slide '{sl.Name}': job id {id} is already used by a different job"), sender, d);
                return;
            }
        }
        var names = spec.Slides.Select(sl => sl.Name).ToHashSet(StringComparer.Ordinal);
        var skipped = (s.AlreadyDone ?? []).Where(names.Contains).Distinct().ToArray();
        d.Record(new BatchSubmitted(s.BatchId, spec, now, skipped.Length > 0 ? skipped : null));
        d.Then(new BatchAccepted(s.BatchId, sender, !s.Detached));
    }

    private void OnBatchAccepted(BatchAccepted a, DecisionBuilder d, DateTime now)
    {
        if (!_batches.TryGetValue(a.BatchId, out var b)) return;
        b.Log.Information("Batch {BatchId} submitted: {Slides} slides ({Skipped} already done) → {OutDir}, {Parallel} at a time",
            b.BatchId, b.Spec.Slides.Length, b.Count("skipped"), b.Spec.OutDir, b.Spec.Parallel);
        Attach(b, a.Client, detached: !a.Watch, existing: false, d);
        if (b.Finished) Ended(b); // every slide was already done
        else Advance(b, d, now);
    }

    private void WatchBatch(WatchBatch w, string sender, DecisionBuilder d)
    {
        if (!_batches.TryGetValue(w.BatchId, out var b)) { d.Send(sender, new JobRefused(w.BatchId, RefusalCodes.Invalid, $"no batch {w.BatchId} is known to this coordinator")); return; }
        Attach(b, sender, detached: false, existing: true, d);
    }

    /// <summary>A client follows the batch: it is told the batch as recorded and every slide that has ended (or, when
    /// the batch is over, the whole outcome, again on every heartbeat until it stops). A detached client is only told
    /// that the batch is recorded.</summary>
    private void Attach(Batch b, string sender, bool detached, bool existing, DecisionBuilder d)
    {
        if (sender.Length == 0) return;
        if (detached) { d.Send(sender, new BatchReceived(b.BatchId, b.Spec, existing)); return; }
        if (b.Watchers.Add(sender))
        {
            d.Send(sender, new BatchReceived(b.BatchId, b.Spec, existing));
            // every slide ended so far, each with its whole error (a finished batch's too: its BatchCompleted cuts them)
            foreach (var o in b.Ended.Values) d.Send(sender, new BatchSlideFinished(b.BatchId, o));
        }
        if (b.Finished) d.Send(sender, Completed(b));
    }

    /// <summary>Characters of error that one <see cref="BatchCompleted"/> carries over all its slides at most (a 2,000-slide
    /// batch whose slides all failed with long errors would otherwise pass the 4 MiB remote frame, be dropped, and
    /// leave its client waiting). Each slide's whole error goes to the client in its own <see cref="BatchSlideFinished"/>.</summary>
    public const int CompletedErrorBudget = 1 << 20;

    private static BatchCompleted Completed(Batch b)
    {
        int each = Math.Clamp(CompletedErrorBudget / Math.Max(1, b.Spec.Slides.Length), 200, StatusErrorChars);
        return new(b.BatchId, b.Spec.Slides.Select(sl => b.Ended[sl.Name]).Select(o => o with { Error = Short(o.Error, each) }).ToArray());
    }

    /// <summary>
    /// Takes a batch on from what its jobs show: a slide whose job has ended gets its <see cref="BatchSlideEnded"/> (once),
    /// and pending slides start, in order, while fewer than <c>Parallel</c> run. Safe to call at any time and as often as
    /// needed (after a slide's job ends, on recovery): it decides only from recorded state.
    /// </summary>
    private void Advance(Batch b, DecisionBuilder d, DateTime now)
    {
        if (b.Finished) return;
        int running = 0;
        var pending = new List<int>();
        for (int i = 0; i < b.Spec.Slides.Length; i++)
        {
            var sl = b.Spec.Slides[i];
            if (b.Ended.ContainsKey(sl.Name) || b.Ending.Contains(sl.Name)) continue;
            if (_jobs.TryGetValue(b.SlideJobIds[i], out var j))
            {
                if (j.Ended is null) { running++; continue; }
                var o = SlideOutcome(j, sl, now);
                b.Ending.Add(sl.Name);
                d.Record(new BatchSlideEnded(b.BatchId, o));
                Telemetry.BatchSlidesEnded.Add(1, Telemetry.Tag("outcome", o.Status));
                if (o.Status == "failed") b.Log.Warning("Batch {BatchId}: slide {Slide} failed: {Error}", b.BatchId, sl.Name, o.Error);
                else b.Log.Information("Batch {BatchId}: slide {Slide} done in {Seconds:F1}s ({Nodes} nodes)", b.BatchId, sl.Name, o.Seconds, o.Nodes);
                Tell(b.Watchers, new BatchSlideFinished(b.BatchId, o), d);
            }
            else if (b.Starting.Contains(sl.Name)) running++;
            else pending.Add(i);
        }
        foreach (var i in pending.Take(Math.Max(0, b.Spec.Parallel - running)))
        {
            // admitted with the batch: the slide's job is recorded as it is, with its id derived from the batch and the slide
            b.Starting.Add(b.Spec.Slides[i].Name);
            d.Record(new JobSubmitted(b.SlideJobIds[i], b.Spec.Slides[i].Spec, now));
            d.Then(new Submitted(b.SlideJobIds[i], ""));
        }
        if (b.Ended.Count + b.Ending.Count >= b.Spec.Slides.Length) d.Then(new BatchFinished(b.BatchId));
    }

    private static BatchSlideOutcome SlideOutcome(Job j, BatchSlideSpec sl, DateTime now)
    {
        double secs = Math.Max(0, (now - j.Submitted.SubmittedUtc).TotalSeconds);
        if (j.Ended is { Succeeded: false } e) return new BatchSlideOutcome(sl.Name, j.JobId, "failed", e.Error ?? "failed", Seconds: secs);
        var g = j.Stitched;
        return new BatchSlideOutcome(sl.Name, j.JobId, "done", null, g?.Nodes ?? 0, secs, j.Segmented?.Mask.Path, g?.TissueFraction, g?.TilesSkipped ?? 0);
    }

    private void AfterBatch(Batch b, DecisionBuilder d)
    {
        if (!b.Finished) return;
        Ended(b);
        Tell(b.Watchers, Completed(b), d);
    }

    private static void Ended(Batch b)
    {
        int failed = b.Count("failed");
        b.Log.Information("Batch {BatchId} finished: {Done} done, {Failed} failed, {Skipped} skipped (already done) of {Total} slides",
            b.BatchId, b.Count("done"), failed, b.Count("skipped"), b.Spec.Slides.Length);
        Telemetry.BatchesEnded.Add(1, Telemetry.Tag("outcome", failed > 0 ? "failed" : "done"));
    }

    /// <summary>A batch's slides counted by how they stand; with <paramref name="slides"/>, each slide's state.</summary>
    private BatchStatus BatchStatusOf(Batch b, bool slides)
    {
        int running = 0;
        var list = slides ? new List<BatchSlideStatus>(b.Spec.Slides.Length) : null;
        for (int i = 0; i < b.Spec.Slides.Length; i++)
        {
            var sl = b.Spec.Slides[i];
            if (b.Ended.TryGetValue(sl.Name, out var o)) { list?.Add(new BatchSlideStatus(sl.Name, o.JobId, o.Status, Short(o.Error))); continue; }
            if (_jobs.TryGetValue(b.SlideJobIds[i], out var j))
            {
                running++;
                list?.Add(new BatchSlideStatus(sl.Name, j.JobId, "running", null, j.Phase, j.Done.Count, j.Planned?.Tiles ?? 0));
            }
            else list?.Add(new BatchSlideStatus(sl.Name, b.SlideJobIds[i], "pending"));
        }
        return new BatchStatus(b.BatchId, b.Phase, b.Spec.Slides.Length, b.Count("done"), b.Count("failed"), b.Count("skipped"), running, b.Spec.OutDir, list?.ToArray());
    }

    // ---------------------------------------------------------------- training

    private void OnModelReady(ModelReady m, string sender, DecisionBuilder d, DateTime now)
    {
        if (!_trainings.TryGetValue(m.JobId, out var t) || t.Ended is not null || t.Trained is not null || m.Attempt != t.Attempt) return;
        if (_files.Check(m.BestModel) is { } bad) { OnTrainFailed(new TrainFailed(m.JobId, m.Attempt, bad, false), d, now); return; }
        t.Step = null;
        if (sender.Length > 0) _idleTrainers.Add(sender);
        d.Record(new ModelTrained(m.JobId, m));
        d.Record(new JobEnded(t.JobId, true, null));
        t.Log.Information("Training job {JobId}: model trained on {Device} in {Seconds:F1}s ({Epochs} epochs, best {BestEpoch}, validation loss {Loss:F4}, peak RSS {Rss:F0} MiB): {Model}",
            t.JobId, m.Device, m.Seconds, m.Epochs, m.BestEpoch, m.BestValidationLoss, m.PeakRssMiB, m.BestModel.Path);
        d.Then(new TrainingEnded(t.JobId));
    }

    private sealed record TrainingEnded(string JobId);

    private void Abort(AbortJob a, DecisionBuilder d)
    {
        if (_jobs.TryGetValue(a.JobId, out var j))
        {
            if (j.Step is { } s && s.Node.Length > 0) _idleTrainers.Add(s.Node);
            j.Step = null;
            Fail(j, a.Error, d);
        }
        else if (_trainings.TryGetValue(a.JobId, out var t) && t.Ended is null)
        {
            if (t.Step is { } s && s.Node.Length > 0) _idleTrainers.Add(s.Node);
            t.Step = null;
            d.Record(new JobEnded(t.JobId, false, a.Error));
            t.Log.Error("Training job {JobId} failed: {Error}", t.JobId, a.Error);
            d.Then(new TrainingEnded(t.JobId));
        }
    }

    private void OnTrainFailed(TrainFailed f, DecisionBuilder d, DateTime now)
    {
        if (!_trainings.TryGetValue(f.JobId, out var t) || t.Ended is not null || f.Attempt != t.Attempt) return;
        if (t.Step is { } s && s.Node.Length > 0) _idleTrainers.Add(s.Node);
        t.Step = null;
        if (f.Permanent || ++t.Failures >= _s.MaxAttempts)
        {
            d.Record(new JobEnded(t.JobId, false, $"training: {f.Error}"));
            t.Log.Error("Training job {JobId} failed: {Error}", t.JobId, f.Error);
            d.Then(new TrainingEnded(t.JobId));
            return;
        }
        t.Log.Warning("Training job {JobId} failed ({Error}); trying again", t.JobId, f.Error);
        DispatchWork(d, now);
    }

    private void AfterTraining(string jobId, DecisionBuilder d)
    {
        if (_trainings.TryGetValue(jobId, out var t) && t.Ended is not null) Tell(t.Watchers, TrainOutcome(t), d);
        d.Then(new Dispatch());
    }

    // ---------------------------------------------------------------- the clock

    private void OnTick(DateTime now, DecisionBuilder d)
    {
        foreach (var t in _trainings.Values.Where(t => t.Ended is null))
        {
            if (now > t.Deadline)
            {
                d.Record(new JobEnded(t.JobId, false, $"the job deadline ({Human(_s.JobDeadline)}, JobDeadline) passed before it finished"));
                d.Then(new TrainingEnded(t.JobId));
                continue;
            }
            if (t.Step is not { } st) continue;
            if (st.Deadline < now)
            {
                t.Log.Warning("Training job {JobId} missed its deadline on {Trainer}; it counts as a failed attempt", t.JobId, st.Node);
                d.Send(st.Node, new AbandonWork(t.JobId, -1, t.Attempt));
                t.Step = null; // the trainer is still busy: it says when it is ready again
                OnTrainFailed(new TrainFailed(t.JobId, t.Attempt, $"training missed its deadline ({Human(_s.TrainDeadline)}) on {st.Node}", false), d, now);
            }
            else t.Log.Information("Training job {JobId}: training on {Trainer} for {Seconds:F0}s", t.JobId, st.Node, (now - st.Started).TotalSeconds);
        }
        foreach (var j in _jobs.Values.Where(j => j.Ended is null && !j.Ending).ToList())
        {
            if (now > j.Deadline)
            {
                Fail(j, $"the job deadline ({Human(_s.JobDeadline)}, JobDeadline) passed in phase {j.Phase}", d);
                continue;
            }
            foreach (var (tile, fl) in j.InFlight.Where(kv => kv.Value.Deadline < now).ToList())
            {
                // a missed deadline is an attempt: a tile whose read hangs is not retried forever, and the late worker is told to let go
                j.Log.Warning("Tile {TileId} missed its deadline ({Deadline}) on {Worker}; counted as a failed attempt and given to another worker", tile, Human(_s.TileDeadline), fl.Worker);
                RecentError(now, j.JobId, $"tile {tile} missed its deadline ({Human(_s.TileDeadline)}) on {fl.Worker}");
                d.Send(fl.Worker, new AbandonWork(j.JobId, tile, fl.Attempt));
                RequeueFailed(j, tile, fl.Attempt, $"missed its deadline ({Human(_s.TileDeadline)}) on {fl.Worker}", d, now);
                if (j.Ending) break;
            }
            if (j.Ending) continue;
            if (j.Busy && _s.PrepareStitchDeadline > TimeSpan.Zero)
            {
                // timed from the first tick that sees the step running: at most one tick late, and no clock in the step's messages
                j.BusySince ??= now;
                if (now - j.BusySince.Value > _s.PrepareStitchDeadline)
                {
                    string what = j.OwnStep == "stitch" ? "stitching the graph and writing its files" : "preparing (the statistics pass over the image)";
                    string why = $"{what} did not finish within {Human(_s.PrepareStitchDeadline)} (ACTORSEG_PREPARESTITCHDEADLINEMINUTES): a read of {j.Spec.ImagePath} or of the job's files may hang; the job's step slot is freed";
                    j.Log.Error("Job {JobId}: {Reason}", j.JobId, why);
                    j.Busy = false; // its slot goes to the next job; the step's late outcome finds the job ended and is dropped
                    d.Do(new AbandonStep(j.JobId));
                    Fail(j, why, d);
                    continue;
                }
            }
            if (j.Step is { } s && s.Deadline < now)
            {
                j.Log.Warning("Job {JobId}: {Phase} missed its deadline on {Node}; it counts as a failed attempt", j.JobId, j.Phase, s.Node);
                d.Send(s.Node, new AbandonWork(j.JobId, -1, j.StepAttempt));
                j.Step = null; // the late node is not given this job's work again until it asks
                StepItemFailed(j.JobId, j.StepAttempt, j.Classified is null ? "classifying" : "painting", $"missed its deadline on {s.Node}", false, d, now);
            }
            if (j.Planned is { } p && j.Phase == "tiles")
            {
                double secs = Math.Max(1e-9, j.Clock.Elapsed.TotalSeconds);
                double mps = j.PixelsThisRun / 1e6 / secs;
                j.Log.Information("Job {JobId}: {Done}/{Total} tiles, {InFlight} in flight, {Queued} queued, {Retries} retries, {Workers} workers, {TilesPerSecond:F2} tiles/s, {MPps:F1} MP/s",
                    j.JobId, j.Done.Count, p.Tiles, j.InFlight.Count, j.Pending.Count, j.Retries, _workers.Count, (j.Done.Count - j.RecoveredTiles) / secs, mps);
                Tell(j.Watchers, new GraphJobProgress(j.JobId, "tiles", j.Done.Count, p.Tiles, mps, j.InFlight.Count, j.Pending.Count, j.Retries), d);
            }
            else Tell(j.Watchers, new GraphJobProgress(j.JobId, j.Phase, j.Done.Count, j.Planned?.Tiles ?? 0, 0, j.InFlight.Count, j.Pending.Count, j.Retries), d);
        }
        foreach (var t in _trainings.Values.Where(t => t.Ended is null))
            Tell(t.Watchers, new GraphJobProgress(t.JobId, t.Phase, 0, 0, 0), d);
        foreach (var b in _batches.Values.Where(b => !b.Finished).ToList())
        {
            Advance(b, d, now); // a safety net: it decides from recorded state only, so it never starts a slide twice
            if (b.Watchers.Count == 0) continue;
            var st = BatchStatusOf(b, false);
            Tell(b.Watchers, new BatchProgress(b.BatchId, st.Total, st.Done, st.Failed, st.Skipped, st.Running), d);
        }
        DispatchWork(d, now);
    }

    /// <summary>The ids the book still refers to (workers, trainers, watchers of open jobs): the host may forget any other.</summary>
    /// <summary>Whether a graph or segmentation job is still open (not ended, nor decided to end): the coordinator holds
    /// its output folder's lock while it is.</summary>
    public bool IsOpen(string jobId) => _jobs.TryGetValue(jobId, out var j) && j.Ended is null && !j.Ending;

    /// <summary>The output folder of every open graph or segmentation job, by job (asked after a recovery, to hold them again).</summary>
    public IReadOnlyList<(string JobId, string OutDir)> OpenJobFolders() =>
        _jobs.Values.Where(j => j.Ended is null && !j.Ending).Select(j => (j.JobId, j.Spec.OutDir)).ToList();

    public HashSet<string> KnownIds()
    {
        var ids = new HashSet<string>(_workers);
        ids.UnionWith(_trainers);
        foreach (var j in _jobs.Values) ids.UnionWith(j.Watchers);
        foreach (var t in _trainings.Values) ids.UnionWith(t.Watchers);
        foreach (var b in _batches.Values) ids.UnionWith(b.Watchers);
        return ids;
    }

    private static string Human(TimeSpan t) => t.TotalSeconds < 90 ? $"{t.TotalSeconds:0.##} s" : t.TotalMinutes < 90 ? $"{t.TotalMinutes:0.#} min" : $"{t.TotalHours:0.#} h";
}
