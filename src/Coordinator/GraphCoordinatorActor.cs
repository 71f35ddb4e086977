using System.Diagnostics;
using Akka.Actor;
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
    public int MaxAttempts { get; init; } = 3;
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// The coordinator: plans a job's tiles, hands them to workers that ask for work, re-queues the tiles of workers
/// that die or miss their deadline, ignores duplicate results, then stitches and writes the graph.
/// The algorithms live in <see cref="GraphJob"/>; this actor only keeps the job's state and moves messages.
/// </summary>
public sealed class GraphCoordinatorActor : ReceiveActor, IWithTimers
{
    private sealed class JobState
    {
        public required SubmitGraphJob Submit;
        public required IActorRef Client;
        public GraphJobManifest? Manifest;
        public readonly Queue<(int Tile, int Attempt)> Pending = new();
        public readonly Dictionary<int, (IActorRef Worker, int Attempt, DateTime Deadline)> InFlight = new();
        public readonly HashSet<int> Done = new();
        public int Total, Retries;
        public long PixelsDone;
        public readonly Stopwatch Clock = Stopwatch.StartNew();
        public double PrepareSeconds, TilesSeconds;
        public bool Finishing;
        public ILogger Log = Serilog.Log.Logger;
    }

    private sealed record Prepared(string JobId, GraphJobManifest Manifest, double Seconds);
    private sealed record PrepareFailed(string JobId, Exception Error);
    private sealed record Finished(string JobId, GraphOutputs.Summary Summary);
    private sealed record FinishFailed(string JobId, Exception Error);
    private sealed record Tick;

    private readonly CoordinatorSettings _settings;
    private readonly Dictionary<string, JobState> _jobs = new();
    private readonly Dictionary<IActorRef, int> _idle = new();     // worker → free slots
    private readonly HashSet<IActorRef> _known = new();
    private readonly ILogger _log = Log.ForContext("Role", "coordinator");
    public ITimerScheduler Timers { get; set; } = null!;

    public GraphCoordinatorActor(CoordinatorSettings settings)
    {
        _settings = settings;
        Receive<SubmitGraphJob>(OnSubmit);
        Receive<Prepared>(OnPrepared);
        Receive<PrepareFailed>(f => Fail(f.JobId, Describe(f.Error)));
        Receive<RequestWork>(r =>
        {
            if (_known.Add(Sender)) { Context.Watch(Sender); _log.Information("Worker {Worker} joined", Sender.Path.ToString()); }
            _idle[Sender] = Math.Max(_idle.GetValueOrDefault(Sender), r.FreeSlots);
            Dispatch();
        });
        Receive<TileCompleted>(OnTileCompleted);
        Receive<TileFailed>(OnTileFailed);
        Receive<Terminated>(t => OnWorkerGone(t.ActorRef));
        Receive<Finished>(OnFinished);
        Receive<FinishFailed>(f => Fail(f.JobId, Describe(f.Error)));
        Receive<Tick>(_ => OnTick());
    }

    public static Props Props(CoordinatorSettings settings) => Akka.Actor.Props.Create(() => new GraphCoordinatorActor(settings));

    protected override void PreStart() => Timers.StartPeriodicTimer("tick", new Tick(), _settings.ProgressInterval);

    private static string Describe(Exception e) => e switch
    {
        AggregateException a when a.InnerException is not null => Describe(a.InnerException),
        InputFileException or InvalidDataException or ArgumentException => e.Message,
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    private void OnSubmit(SubmitGraphJob s)
    {
        if (_jobs.ContainsKey(s.JobId)) { Sender.Tell(new GraphJobFailed(s.JobId, $"job {s.JobId} is already running")); return; }
        var st = new JobState { Submit = s, Client = Sender };
        st.Log = _log.ForContext("JobId", s.JobId).ForContext("ImageId", Path.GetFileNameWithoutExtension(s.Spec.ImagePath));
        _jobs[s.JobId] = st;
        st.Log.Information("Job {JobId} submitted: {Image} → {OutDir}", s.JobId, s.Spec.ImagePath, s.Spec.OutDir);
        var self = Self;
        var sw = Stopwatch.StartNew();
        Task.Run(() =>
        {
            var req = ToRequest(s.Spec);
            var work = GraphOutputs.WorkDir(s.Spec.OutDir, s.JobId);
            var m = GraphJob.Prepare(s.JobId, req, work);
            m.Save();
            return m;
        }).ContinueWith<object>(t => t.IsCompletedSuccessfully ? new Prepared(s.JobId, t.Result, sw.Elapsed.TotalSeconds) : new PrepareFailed(s.JobId, t.Exception!.GetBaseException()))
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
        if (!_jobs.TryGetValue(p.JobId, out var st)) return;
        var m = p.Manifest;
        st.Manifest = m; st.PrepareSeconds = p.Seconds; st.Clock.Restart();
        var plan = m.Plan;
        st.Total = plan.Count;
        for (int t = 0; t < plan.Count; t++) st.Pending.Enqueue((t, 1));
        st.Log.Information("Job {JobId} planned: {Width}x{Height}x{Channels} {BitDepth}-bit, {Tiles} tiles of {TileSize} px with halo {Halo}, {Seeds} seeds (spacing {Spacing:F1} px), stats pass {Seconds:F1}s, peak RSS {PeakRssMiB:F0} MiB",
            m.JobId, m.Width, m.Height, m.Channels, m.BitDepth, plan.Count, plan.TileSize, m.Halo, m.Grid.Count, m.Grid.S, p.Seconds, Core.ProcessStats.PeakRssMiB());
        st.Client.Tell(new GraphJobAccepted(m.JobId, m.ImageId, m.Width, m.Height, m.Channels, plan.Count, m.Halo, m.Grid.Count));
        Dispatch();
    }

    private void Dispatch()
    {
        foreach (var st in _jobs.Values)
        {
            if (st.Manifest is null || st.Finishing) continue;
            while (st.Pending.Count > 0)
            {
                var worker = _idle.FirstOrDefault(kv => kv.Value > 0).Key;
                if (worker is null) return;
                if (--_idle[worker] == 0) _idle.Remove(worker);
                var (tile, attempt) = st.Pending.Dequeue();
                if (st.Done.Contains(tile)) continue;
                st.InFlight[tile] = (worker, attempt, DateTime.UtcNow + _settings.TileDeadline);
                worker.Tell(new TileAssignment(st.Manifest.JobId, st.Manifest.ImageId, st.Manifest.ManifestPath, tile, attempt));
            }
        }
    }

    private void OnTileCompleted(TileCompleted c)
    {
        if (!_jobs.TryGetValue(c.JobId, out var st) || st.Manifest is null) return;
        if (!st.Done.Add(c.TileId)) { st.Log.Debug("Duplicate result for tile {TileId} ignored", c.TileId); return; }
        st.InFlight.Remove(c.TileId);
        st.PixelsDone += c.Pixels;
        if (st.Done.Count == st.Total) StartFinish(st);
        else Dispatch();
    }

    private void OnTileFailed(TileFailed f)
    {
        if (!_jobs.TryGetValue(f.JobId, out var st) || st.Done.Contains(f.TileId)) return;
        if (!st.InFlight.TryGetValue(f.TileId, out var fl) || fl.Attempt != f.Attempt) return; // stale
        st.InFlight.Remove(f.TileId);
        if (f.Permanent || f.Attempt >= _settings.MaxAttempts)
        {
            Fail(f.JobId, $"tile {f.TileId} failed{(f.Permanent ? "" : $" {f.Attempt} times")}: {f.Error}");
            return;
        }
        st.Retries++;
        st.Log.Warning("Tile {TileId} failed (attempt {Attempt}): {Error}; retrying", f.TileId, f.Attempt, f.Error);
        st.Pending.Enqueue((f.TileId, f.Attempt + 1));
        Dispatch();
    }

    private void OnWorkerGone(IActorRef worker)
    {
        _idle.Remove(worker); _known.Remove(worker);
        _log.Warning("Worker {Worker} is gone; re-queueing its tiles", worker.Path.ToString());
        foreach (var st in _jobs.Values)
            foreach (var (tile, fl) in st.InFlight.Where(kv => kv.Value.Worker.Equals(worker)).ToList())
            {
                st.InFlight.Remove(tile); st.Retries++;
                st.Pending.Enqueue((tile, fl.Attempt + 1));
            }
        Dispatch();
    }

    private void OnTick()
    {
        var now = DateTime.UtcNow;
        foreach (var st in _jobs.Values.ToList())
        {
            if (st.Manifest is null) continue;
            foreach (var (tile, fl) in st.InFlight.Where(kv => kv.Value.Deadline < now).ToList())
            {
                st.Log.Warning("Tile {TileId} missed its deadline on {Worker}; re-queued", tile, fl.Worker.Path.ToString());
                st.InFlight.Remove(tile); st.Retries++;
                st.Pending.Enqueue((tile, fl.Attempt + 1));
            }
            if (!st.Finishing)
            {
                double secs = Math.Max(1e-9, st.Clock.Elapsed.TotalSeconds);
                double mps = st.PixelsDone / 1e6 / secs;
                st.Log.Information("Job {JobId}: {Done}/{Total} tiles, {InFlight} in flight, {Queued} queued, {Retries} retries, {TilesPerSecond:F2} tiles/s, {MPps:F1} MP/s",
                    st.Manifest.JobId, st.Done.Count, st.Total, st.InFlight.Count, st.Pending.Count, st.Retries, st.Done.Count / secs, mps);
                st.Client.Tell(new GraphJobProgress(st.Manifest.JobId, "tiles", st.Done.Count, st.Total, mps));
            }
        }
        Dispatch();
    }

    private void StartFinish(JobState st)
    {
        st.Finishing = true;
        st.TilesSeconds = st.Clock.Elapsed.TotalSeconds;
        var m = st.Manifest!;
        st.Log.Information("Job {JobId}: all {Total} tiles done in {Seconds:F1}s ({MPps:F1} MP/s), peak RSS {PeakRssMiB:F0} MiB; stitching", m.JobId, st.Total, st.TilesSeconds, st.PixelsDone / 1e6 / Math.Max(1e-9, st.TilesSeconds), Core.ProcessStats.PeakRssMiB());
        st.Client.Tell(new GraphJobProgress(m.JobId, "stitching", st.Total, st.Total, 0));
        var self = Self;
        var spec = st.Submit.Spec;
        var log = st.Log;
        Task.Run(() => GraphOutputs.StitchAndWrite(m, spec.OutDir, spec.WriteNodeMap, new Progress<string>(s => log.Information("Job {JobId}: {Step}", m.JobId, s))))
            .ContinueWith<object>(t => t.IsCompletedSuccessfully ? new Finished(m.JobId, t.Result) : new FinishFailed(m.JobId, t.Exception!.GetBaseException()))
            .PipeTo(self);
    }

    private void OnFinished(Finished f)
    {
        if (!_jobs.Remove(f.JobId, out var st)) return;
        var s = f.Summary;
        if (!st.Submit.Spec.KeepWork) GraphOutputs.CleanWork(st.Manifest!.WorkDir);
        st.Log.Information("Job {JobId} finished: {Nodes} nodes, {Rag} adjacency edges, {Knn} kNN edges; prepare {Prepare:F1}s, tiles {Tiles:F1}s, stitch {Stitch:F1}s, write {Write:F1}s, {Retries} retries",
            f.JobId, s.Nodes, s.AdjacencyEdges, s.KnnEdges, st.PrepareSeconds, st.TilesSeconds, s.StitchSeconds, s.WriteSeconds, st.Retries);
        st.Client.Tell(new GraphJobCompleted(f.JobId, st.Submit.Spec.OutDir, s.Nodes, s.AdjacencyEdges, s.KnnEdges,
            st.PrepareSeconds, st.TilesSeconds, s.StitchSeconds, s.WriteSeconds, st.Retries));
    }

    private void Fail(string jobId, string error)
    {
        if (!_jobs.Remove(jobId, out var st)) return;
        st.Log.Error("Job {JobId} failed: {Error}", jobId, error);
        if (st.Manifest is not null && !st.Submit.Spec.KeepWork) GraphOutputs.CleanWork(st.Manifest.WorkDir);
        else if (st.Manifest is null) GraphOutputs.CleanWork(GraphOutputs.WorkDir(st.Submit.Spec.OutDir, jobId));
        st.Client.Tell(new GraphJobFailed(jobId, error));
    }
}
