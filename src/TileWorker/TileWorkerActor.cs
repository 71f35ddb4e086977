using Akka.Actor;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.TileWorker;

/// <summary>
/// A tile worker: pulls tiles from the coordinator one at a time, computes superpixels and the partial graph
/// of each, writes them to shared storage and reports the reference back. All work is in
/// <see cref="GraphJob.ProcessTile"/>; this actor only moves messages and caches open inputs per job.
/// </summary>
public sealed class TileWorkerActor : ReceiveActor, IWithTimers
{
    private readonly IActorRef _coordinator;
    private readonly ILogger _log;
    private string? _jobId;
    private GraphJobManifest? _manifest;
    private IRegionSource? _image, _mask;
    private TileScratch _scratch = new(); // reused for every tile this worker processes; dropped when idle
    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record Done(TileAssignment Work, GraphJob.TileOutcome Outcome);
    private sealed record Failed(TileAssignment Work, Exception Error);
    private sealed record AskForWork;
    private sealed record ReleaseBuffers;

    public TileWorkerActor(IActorRef coordinator)
    {
        _coordinator = coordinator;
        _log = Log.ForContext("Role", "tile-worker").ForContext("Worker", Self.Path.Name);
        Idle();
    }

    public static Props Props(IActorRef coordinator) => Akka.Actor.Props.Create(() => new TileWorkerActor(coordinator));

    protected override void PreStart() => _coordinator.Tell(new RequestWork(1));

    private void Idle()
    {
        Receive<TileAssignment>(Start);
        // the coordinator may lose our request (restart, failover): ask again until work arrives
        Receive<AskForWork>(_ => _coordinator.Tell(new RequestWork(1)));
        // no work for a while (the job is stitching, or over): give the tile buffers (hundreds of MB) back
        Receive<ReleaseBuffers>(_ =>
        {
            _scratch = new TileScratch();
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        });
    }

    private void Busy()
    {
        Receive<Done>(d =>
        {
            var o = d.Outcome;
            _log.ForContext("JobId", d.Work.JobId).ForContext("ImageId", d.Work.ImageId).ForContext("TileId", d.Work.TileId)
                .Debug("Tile {TileId} done: {Fragments} fragments in {Groups} groups, {Open} open, {Shipped} groups shipped, in {Seconds:F2}s (read {Read:F2}s, slic {Slic:F2}s, graph {Graph:F2}s, write {Write:F2}s)", o.TileId, o.Fragments, o.Groups, o.Open, o.Shipped, o.Seconds, o.ReadSeconds, o.SlicSeconds, o.FragmentSeconds, o.WriteSeconds);
            _coordinator.Tell(new TileCompleted(d.Work.JobId, o.TileId, d.Work.Attempt, _manifest!.ResultPath(o.TileId),
                _manifest.LabelsPath(o.TileId), o.Fragments, o.Shipped, o.Pixels, o.Seconds));
            BecomeIdle();
        });
        Receive<Failed>(f =>
        {
            bool permanent = f.Error is InputFileException or InvalidDataException or ArgumentException;
            var msg = f.Error is InputFileException or InvalidDataException ? f.Error.Message : f.Error.GetType().Name + ": " + f.Error.Message;
            _log.ForContext("JobId", f.Work.JobId).ForContext("TileId", f.Work.TileId)
                .Warning(f.Error, "Tile {TileId} failed (attempt {Attempt}, permanent {Permanent}): {Error}", f.Work.TileId, f.Work.Attempt, permanent, msg);
            _coordinator.Tell(new TileFailed(f.Work.JobId, f.Work.TileId, f.Work.Attempt, msg, permanent));
            if (!permanent) CloseInputs(); // a transient fault may have left a source in a bad state
            BecomeIdle();
        });
        Receive<AskForWork>(_ => { });
        Receive<ReleaseBuffers>(_ => { });
        Receive<TileAssignment>(w => _coordinator.Tell(new TileFailed(w.JobId, w.TileId, w.Attempt, "worker busy", false)));
    }

    private void BecomeIdle()
    {
        Become(Idle);
        _coordinator.Tell(new RequestWork(1));
        Timers.StartSingleTimer("ask", new AskForWork(), TimeSpan.FromSeconds(5));
        Timers.StartSingleTimer("release", new ReleaseBuffers(), TimeSpan.FromSeconds(1));
    }

    private void Start(TileAssignment w)
    {
        Timers.Cancel("ask");
        Timers.Cancel("release");
        Become(Busy);
        var self = Self;
        Task.Run(() =>
        {
            var job = Open(w);
            var tile = job.Plan.Tile(w.TileId);
            var outcome = GraphJob.ProcessTile(job, tile, _image!, _mask, _scratch);
            // A tile leaves tens of MB of large-object garbage; collecting now (about 2 ms) keeps the process's peak
            // memory flat instead of letting the large-object heap grow until the GC's own budget triggers.
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
            return outcome;
        }).ContinueWith<object>(t => t.IsCompletedSuccessfully ? new Done(w, t.Result) : new Failed(w, t.Exception!.GetBaseException()))
          .PipeTo(self);
    }

    /// <summary>Runs on the work thread; only one tile runs at a time per worker, so the cache needs no lock.</summary>
    private GraphJobManifest Open(TileAssignment w)
    {
        if (_jobId == w.JobId && _manifest is not null) return _manifest;
        CloseInputs();
        _manifest = GraphJobManifest.Load(w.ManifestPath);
        _image = VipsImageSource.Open(_manifest.Request.ImagePath, _manifest.Request.Page);
        if (_manifest.Request.MaskPath is { } mp) _mask = VipsImageSource.Open(mp, 0, firstBandOnly: true);
        if (_image.Width != _manifest.Width || _image.Height != _manifest.Height || _image.Channels != _manifest.Channels)
            throw new InputFileException(_manifest.Request.ImagePath, "image changed since the job was planned");
        _jobId = w.JobId;
        return _manifest;
    }

    private void CloseInputs()
    {
        _image?.Dispose(); _mask?.Dispose();
        _image = null; _mask = null; _manifest = null; _jobId = null;
    }

    protected override void PostStop() => CloseInputs();
}
