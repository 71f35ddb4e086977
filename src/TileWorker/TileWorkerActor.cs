using Akka.Actor;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Refine;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.TileWorker;

/// <summary>
/// A tile worker: one slot of a tile-worker node. It pulls work from the coordinator one item at a time: tiles
/// (superpixels and the partial graph, written to the result store) and mask painting (node classes back to pixels).
/// All work is in <see cref="GraphJob.ProcessTile"/> and <see cref="MaskPainter"/>; this actor moves messages, caches
/// a job's open inputs, and hands its tile back when the node leaves.
/// </summary>
public sealed class TileWorkerActor : ReceiveActor, IWithTimers
{
    private readonly IActorRef _coordinator;
    private readonly WorkGuard<IActorRef> _guard;
    private readonly DataRoots _roots;
    private readonly IResultStore _store;
    private readonly ILogger _log;
    private string? _jobId;
    private GraphJobManifest? _manifest;
    private IRegionSource? _image, _mask;
    private CancellationTokenSource? _tileCancel;
    private TileScratch _scratch = new(); // reused for every tile this worker processes; dropped when idle
    private TileAssignment? _current;
    private PaintAssignment? _currentPaint;
    private bool _leaving;
    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record Done(TileAssignment Work, GraphJob.TileOutcome Outcome, ResultRef Result, ResultRef Labels) : INoSerializationVerificationNeeded;
    private sealed record Failed(TileAssignment Work, Exception Error) : INoSerializationVerificationNeeded;
    private sealed record Painted(PaintAssignment Work, ResultRef Mask, double Seconds, long[] PixelsPerClass, long RefinedPixels) : INoSerializationVerificationNeeded;
    private sealed record PaintError(PaintAssignment Work, Exception Error) : INoSerializationVerificationNeeded;
    private sealed record AskForWork : INoSerializationVerificationNeeded;
    private sealed record ReleaseBuffers : INoSerializationVerificationNeeded;

    /// <summary>Sent by the node's coordinated shutdown: stop taking work and hand the current tile back. Replies <see cref="Akka.Done"/>.</summary>
    public sealed record Leave : INoSerializationVerificationNeeded
    {
        public static readonly Leave Instance = new();
    }

    /// <param name="isCoordinator">whether a sender is the current coordinator singleton; assignments from anyone else are
    /// refused and logged (default: the given coordinator ref, or an actor of this process)</param>
    /// <param name="roots">the data roots outputs must lie in (none: any absolute, canonical folder)</param>
    /// <param name="keepBuffers">how long an idle worker keeps its tile buffers (default <see cref="KeepBuffers"/>)</param>
    public TileWorkerActor(IActorRef coordinator, IResultStore? store = null, Func<IActorRef, bool>? isCoordinator = null, DataRoots? roots = null,
        TimeSpan? keepBuffers = null)
    {
        _releaseAfter = keepBuffers ?? KeepBuffers;
        _coordinator = coordinator;
        _guard = new WorkGuard<IActorRef>(isCoordinator ?? (s => s.Equals(coordinator) || s.Path.Address.HasLocalScope));
        _roots = roots ?? new DataRoots([]);
        _store = store ?? DirectoryResultStore.Instance;
        _log = Log.ForContext("Role", "tile-worker").ForContext("Worker", Self.Path.Name);
        Idle();
    }

    public static Props Props(IActorRef coordinator, IResultStore? store = null, Func<IActorRef, bool>? isCoordinator = null, DataRoots? roots = null,
        TimeSpan? keepBuffers = null) =>
        Akka.Actor.Props.Create(() => new TileWorkerActor(coordinator, store, isCoordinator, roots, keepBuffers));

    /// <summary>Acts on an order only when the coordinator sent it and every path in it is the job's own; else refuses and logs why.</summary>
    private bool Allowed(string kind, string jobId, Func<string?> check, Action<string> refuseToCoordinator)
    {
        if (_guard.Refusal(Sender, check) is not { } r) return true;
        _log.ForContext("JobId", jobId).Warning("Refused {Kind} for job {JobId} from {Sender}: {Reason}", kind, jobId, Sender.Path.ToString(), r.Reason);
        if (r.Answer) refuseToCoordinator(r.Reason);
        return false;
    }

    private bool _busy;
    /// <summary>Keeps this node's busy-slot gauge in step with the actor's state.</summary>
    private void MarkBusy(bool busy)
    {
        if (busy == _busy) return;
        _busy = busy;
        Core.Telemetry.WorkerBusy(busy);
    }

    protected override void PreStart()
    {
        Core.Telemetry.AddWorkerSlot();
        _coordinator.Tell(new RequestWork(1, ProtocolVersion.Major, Self.Path.Address.ToString()));
        Timers.StartSingleTimer("ask", new AskForWork(), TimeSpan.FromSeconds(5));
    }

    private void Common()
    {
        Receive<WorkRefused>(r => _log.Error("The coordinator refuses this worker: {Reason}", r.Reason));
        Receive<Leave>(_ =>
        {
            _leaving = true;
            Timers.CancelAll();
            if (_current is { } w)
            {
                _coordinator.Tell(new TileHandedBack(w.JobId, w.TileId, w.Attempt));
                _log.Information("Leaving: tile {TileId} of job {JobId} handed back", w.TileId, w.JobId);
            }
            Sender.Tell(Akka.Done.Instance);
        });
    }

    private void Idle()
    {
        Common();
        Receive<Done>(d => _log.ForContext("JobId", d.Work.JobId).Information("Abandoned tile {TileId} finished late; its result is dropped", d.Work.TileId));
        Receive<Failed>(LogAbandonedStop);
        Receive<Painted>(_ => { });
        Receive<PaintError>(_ => { });
        Receive<AbandonWork>(_ => { });
        Receive<TileAssignment>(w => { if (Allowed("a tile", w.JobId, () => AssignmentPaths.Check(w, _roots), why => Sender.Tell(new TileFailed(w.JobId, w.TileId, w.Attempt, why, true)))) Start(w); });
        Receive<PaintAssignment>(w => { if (Allowed("a paint job", w.JobId, () => AssignmentPaths.Check(w, _roots), why => Sender.Tell(new PaintFailed(w.JobId, w.Attempt, why, true)))) StartPaint(w); });
        // the coordinator may lose our request (restart, failover): ask again until work arrives
        Receive<AskForWork>(_ =>
        {
            if (_leaving) return;
            _coordinator.Tell(new RequestWork(1, ProtocolVersion.Major, Self.Path.Address.ToString()));
            Timers.StartSingleTimer("ask", new AskForWork(), TimeSpan.FromSeconds(5));
        });
        // no work for a while (the job is stitching, or over): give the tile buffers (hundreds of MB) back
        Receive<ReleaseBuffers>(_ =>
        {
            _log.Debug("Idle for {Seconds:0.###} s: tile buffers given back", _releaseAfter.TotalSeconds);
            _scratch = new TileScratch();
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        });
    }

    private void Busy()
    {
        Common();
        // the outcome of an item this worker abandoned arrives late: it is dropped (the item belongs to another worker now)
        Receive<Done>(d => !ReferenceEquals(d.Work, _current), d => _log.ForContext("JobId", d.Work.JobId).Information("Abandoned tile {TileId} finished late; its result is dropped", d.Work.TileId));
        Receive<Failed>(f => !ReferenceEquals(f.Work, _current), f => LogAbandonedStop(f));
        Receive<Painted>(p => !ReferenceEquals(p.Work, _currentPaint), _ => { });
        Receive<PaintError>(p => !ReferenceEquals(p.Work, _currentPaint), _ => { });
        Receive<Done>(d =>
        {
            var o = d.Outcome;
            _log.ForContext("JobId", d.Work.JobId).ForContext("ImageId", d.Work.ImageId).ForContext("TileId", d.Work.TileId)
                .Debug("Tile {TileId} done: {Fragments} fragments in {Groups} groups, {Open} open, {Shipped} groups shipped, in {Seconds:F2}s (read {Read:F2}s, slic {Slic:F2}s, graph {Graph:F2}s, write {Write:F2}s)", o.TileId, o.Fragments, o.Groups, o.Open, o.Shipped, o.Seconds, o.ReadSeconds, o.SlicSeconds, o.FragmentSeconds, o.WriteSeconds);
            if (!_leaving) _coordinator.Tell(new TileCompleted(d.Work.JobId, o.TileId, d.Work.Attempt, d.Result, d.Labels, o.Fragments, o.Shipped, o.Pixels, o.Seconds));
            BecomeIdle();
        });
        Receive<Failed>(f =>
        {
            bool permanent = Core.FailurePolicy.IsPermanent(f.Error);
            var msg = Core.FailurePolicy.Describe(f.Error);
            // bad input speaks for itself in one line (its trace at debug level); anything else keeps its trace
            var log = _log.ForContext("JobId", f.Work.JobId).ForContext("TileId", f.Work.TileId);
            log.Warning(permanent ? null : f.Error, "Tile {TileId} failed (attempt {Attempt}, permanent {Permanent}): {Error}", f.Work.TileId, f.Work.Attempt, permanent, msg);
            if (permanent) log.Debug(f.Error, "Tile {TileId} failure trace", f.Work.TileId);
            if (!_leaving) _coordinator.Tell(new TileFailed(f.Work.JobId, f.Work.TileId, f.Work.Attempt, msg, permanent));
            if (!permanent) CloseInputs(); // a transient fault may have left a source in a bad state
            BecomeIdle();
        });
        Receive<Painted>(p =>
        {
            _log.ForContext("JobId", p.Work.JobId).ForContext("ImageId", p.Work.ImageId).Information("Mask painted in {Seconds:F1}s: {Mask}", p.Seconds, p.Mask.Path);
            _coordinator.Tell(new PaintCompleted(p.Work.JobId, p.Work.Attempt, p.Mask, p.Seconds, p.PixelsPerClass, p.RefinedPixels));
            BecomeIdle();
        });
        Receive<PaintError>(f =>
        {
            bool permanent = Core.FailurePolicy.IsPermanent(f.Error);
            _log.ForContext("JobId", f.Work.JobId).Warning(f.Error, "Painting failed: {Error}", f.Error.Message);
            _coordinator.Tell(new PaintFailed(f.Work.JobId, f.Work.Attempt, f.Error.Message, permanent));
            BecomeIdle();
        });
        Receive<AskForWork>(_ => { });
        // the coordinator gave this item to another worker (it missed its deadline): let go of it and take new work;
        // a read that hangs keeps its thread, but not this slot, its buffers or its open inputs
        Receive<AbandonWork>(a =>
        {
            bool mine = _current is { } c ? c.JobId == a.JobId && c.TileId == a.TileId && c.Attempt == a.Attempt
                : _currentPaint is { } p && a.TileId < 0 && p.JobId == a.JobId && p.Attempt == a.Attempt;
            if (!mine || !Allowed("an abandon order", a.JobId, () => null, _ => { })) return;
            _log.ForContext("JobId", a.JobId).ForContext("TileId", a.TileId).Warning("Abandoning tile {TileId} of job {JobId} (attempt {Attempt}): it missed its deadline and was given to another worker", a.TileId, a.JobId, a.Attempt);
            _scratch = new TileScratch();
            _image = null; _mask = null; _manifest = null; _jobId = null; // still in use by the abandoned read: dropped, not disposed
            _tileCancel?.Cancel(); // its computation stops at the next SLIC iteration or phase (a read that hangs stays hung)
            BecomeIdle();
        });
        Receive<ReleaseBuffers>(_ => { });
        Receive<TileAssignment>(w => { if (Allowed("a tile", w.JobId, () => null, _ => { })) _coordinator.Tell(new TileHandedBack(w.JobId, w.TileId, w.Attempt)); });
        Receive<PaintAssignment>(w => { if (Allowed("a paint job", w.JobId, () => null, _ => { })) _coordinator.Tell(new PaintFailed(w.JobId, w.Attempt, "worker busy", false)); });
    }

    /// <summary>The outcome of a tile this worker abandoned: stopped by its cancellation (or failed) after it was given away.</summary>
    private void LogAbandonedStop(Failed f)
    {
        if (f.Error is OperationCanceledException)
            _log.ForContext("JobId", f.Work.JobId).Information("Abandoned tile {TileId} stopped before its end; nothing of it was written", f.Work.TileId);
    }

    private void BecomeIdle()
    {
        _current = null;
        _currentPaint = null;
        Become(Idle);
        MarkBusy(false);
        if (_leaving) return;
        _coordinator.Tell(new RequestWork(1, ProtocolVersion.Major, Self.Path.Address.ToString()));
        Timers.StartSingleTimer("ask", new AskForWork(), TimeSpan.FromSeconds(5));
        Timers.StartSingleTimer("release", new ReleaseBuffers(), _releaseAfter);
    }

    /// <summary>
    /// How long an idle worker keeps its tile buffers (hundreds of MB) in a process without the coordinator: late enough
    /// that the gap between one job's tiles and the next's (a stitch, a statistics pass) does not make every job touch
    /// them afresh (1 s did: two worker processes ran 1.24× one instead of 1.62-1.68×).
    /// </summary>
    public static readonly TimeSpan KeepBuffers = TimeSpan.FromSeconds(3);
    /// <summary>
    /// The same where the coordinator shares the process (a one-process command, a node with every role): a job's
    /// stitch starts as its last tile ends and builds the graph in the same memory, so the buffers go sooner. Measured
    /// (2 workers, `graph`): peak RSS 1,228 → 999 MiB on a gigapixel (its stitch peaks seconds in), 778 → 665 MiB on a
    /// 16384² image, the time unchanged. 100 ms gave 765 → 525 MiB on the 16384², but a batch of six 4096² images then
    /// re-touched the buffers between jobs (faults 103k → 158-222k, peak RSS 421 → 472-487 MiB); at 1 s it is unchanged.
    /// </summary>
    public static readonly TimeSpan KeepBuffersBesideCoordinator = TimeSpan.FromSeconds(1);
    private readonly TimeSpan _releaseAfter;

    private void Start(TileAssignment w)
    {
        if (_leaving) { _coordinator.Tell(new TileHandedBack(w.JobId, w.TileId, w.Attempt)); return; }
        Timers.Cancel("ask");
        Timers.Cancel("release");
        _current = w;
        var cts = new CancellationTokenSource(); // cancelled when the coordinator gives the tile to another worker
        _tileCancel = cts;
        _log.ForContext("JobId", w.JobId).ForContext("TileId", w.TileId).Debug("Tile {TileId} started (attempt {Attempt})", w.TileId, w.Attempt);
        Become(Busy);
        MarkBusy(true);
        var self = Self;
        var store = _store;
        Task.Run(() =>
        {
            var job = Open(w);
            var tile = job.Plan.Tile(w.TileId);
            // the tile's large buffers are the worker's scratch, reused tile after tile: it leaves about 2 MB of small
            // garbage, which the GC's own young-generation collections take (no forced full collection per tile)
            var outcome = GraphJob.ProcessTile(job, tile, _image!, _mask, _scratch, cts.Token);
            return new Done(w, outcome, store.Describe(job.ResultPath(w.TileId)), store.Describe(job.LabelsPath(w.TileId)));
        }).ContinueWith<object>(t => t.IsCompletedSuccessfully ? t.Result
            : new Failed(w, t.Exception?.GetBaseException() ?? new OperationCanceledException("tile abandoned")))
          .PipeTo(self);
    }

    private void StartPaint(PaintAssignment w)
    {
        if (_leaving) { _coordinator.Tell(new PaintFailed(w.JobId, w.Attempt, "worker leaving", false)); return; }
        Timers.Cancel("ask");
        Timers.Cancel("release");
        _currentPaint = w;
        Become(Busy);
        MarkBusy(true);
        var self = Self;
        var store = _store;
        var log = _log.ForContext("JobId", w.JobId).ForContext("ImageId", w.ImageId);
        Task.Run<object>(() =>
        {
            // given up on at its deadline and its job ended meanwhile (its earlier results put back), it writes nothing over them
            using var guard = AssignmentPaths.StillRunning(w) is { } whyNot ? SafePaths.GuardPublishing(whyNot) : null;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            if (store.Check(w.Classes) is { } bad1) throw new ResultStoreException(bad1);
            if (store.Check(w.NodeMap) is { } bad2) throw new ResultStoreException(bad2);
            // the image is read again for the overlay (and the refinement): gone since its graph was built is said as such, once
            if (!File.Exists(w.ImagePath)) throw new InputFileException(w.ImagePath, "file not found");
            var classes = File.ReadAllBytes(w.Classes.Path);
            // the paths are derived here from the job's folder, which is checked again now that it is about to be written
            string maskPath = Path.Combine(w.OutDir!, AssignmentPaths.MaskFile), overlayPath = Path.Combine(w.OutDir!, AssignmentPaths.OverlayFile);
            SafePaths.CheckUnchanged(w.OutDir!, "output folder");
            var table = ClassTable.Read(Path.GetDirectoryName(w.Classes.Path)!);
            var (probs, probClasses) = ReadProbabilities(w, classes.Length);
            // with the trainer's probabilities, prob.tif beside the mask: the painted class's probability × 255 per pixel
            var probOfNode = probs is null ? null : MaskPainter.WinningProbabilities(classes, probs, probClasses);
            string? probPath = probs is null ? null : Path.Combine(w.OutDir!, AssignmentPaths.ProbabilityMapFile);
            var (refine, refineSources) = OpenRefinement(w, classes, probs, probClasses, log);
            long[] painted;
            using (refineSources)
                painted = MaskPainter.Paint(w.NodeMap.Path, classes, maskPath, new Core.InlineProgress<string>(s => log.Information("Job {JobId}: {Step}", w.JobId, s)), sourceImage: w.ImagePath, classTable: table,
                    probabilityOfNode: probOfNode, probabilityPath: probPath, refine: refine, series: w.Series ?? -1);
            // one count per class of the model, the classes no pixel took included (the painter's counts end at the last class painted)
            int modelClasses = Math.Max(probClasses, table?.Length ?? 0);
            if (painted.Length < modelClasses) Array.Resize(ref painted, modelClasses);
            if (refine is not null)
                log.Information("Job {JobId}: boundary refinement classified {Refined:N0} pixels one by one and changed {Changed:N0} of them", w.JobId, refine.RefinedPixels, refine.ChangedPixels);
            MaskPainter.Overlay(w.ImagePath, maskPath, overlayPath, classTable: table, series: w.Series ?? -1);
            if (AssignmentPaths.ObjectsFile(w.OutDir!, w.Objects) is { } objectsPath) ExportObjects(w, maskPath, objectsPath, probs, probClasses, table, log, refine is not null ? probPath : null);
            return new Painted(w, store.Describe(maskPath), sw.Elapsed.TotalSeconds, painted, refine?.RefinedPixels ?? 0);
        }).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : new PaintError(w, t.Exception!.GetBaseException()))
          .PipeTo(self);
    }

    /// <summary>The boundary refinement the trainer asked for (refine.bin, checked against its checksum and the graph),
    /// over the job's image (checked against the data roots here, where it is read) and node map; (null, null) without one.</summary>
    private (RefineBlocks?, IDisposable?) OpenRefinement(PaintAssignment w, byte[] classes, float[]? probs, int probClasses, ILogger log)
    {
        if (w.Refine is not { } rf) return (null, null);
        if (_store.Check(rf) is { } bad) throw new ResultStoreException(bad);
        if (probs is null) throw new InputFileException(rf.Path, "a refinement without the nodes' probabilities");
        if (AssignmentPaths.CheckInput(w.ImagePath, "image", _roots) is { } outside) throw new UnsafePathException(outside);
        var image = ImageSources.Open(w.ImagePath, w.Page, w.Series ?? -1);
        NodeMapReader? map = null;
        try
        {
            var (refiner, mean, std, flags) = RefineFile.Read(rf.Path, classes.Length, probClasses, image.Channels);
            map = new NodeMapReader(w.NodeMap.Path);
            var blocks = new RefineBlocks(refiner, image, map, mean, std, classes, probs, flags);
            log.Information("Job {JobId}: refining the pixels of {Flagged:N0} of {Nodes:N0} nodes (halo {Halo} px)", w.JobId, flags.Count(f => f), flags.Length, refiner.Halo);
            return (blocks, new Disposables(image, map));
        }
        catch { image.Dispose(); map?.Dispose(); throw; }
    }

    private sealed class Disposables(params IDisposable[] all) : IDisposable { public void Dispose() { foreach (var d in all) d.Dispose(); } }

    /// <summary>The mask's regions as QuPath objects (objects.geojson[.gz]), in level-0 pixels, with the nodes' mean class probability when the trainer wrote probabilities.</summary>
    private void ExportObjects(PaintAssignment w, string maskPath, string objectsPath, float[]? probs, int probClasses, IReadOnlyList<ClassInfo>? table, ILogger log, string? refinedProbabilityMap)
    {
        var (mppX, mppY, dsX, dsY) = MaskPainter.LevelScaleOfMask(w.ImagePath, maskPath, w.Series ?? -1);
        var r = ObjectExporter.Export(maskPath, objectsPath, table, new ObjectExportOptions(Simplify: w.Simplify, MicronsPerPixelX: mppX, MicronsPerPixelY: mppY, DownsampleX: dsX, DownsampleY: dsY),
            probs is null ? null : w.NodeMap.Path, probs, probClasses, probabilityMap: refinedProbabilityMap);
        log.Information("Job {JobId}: {Objects} objects written in {Seconds:F1}s ({Joined} joined across blocks): {ObjectsPath}", w.JobId, r.Objects, r.Seconds, r.JoinedAcrossBlocks, objectsPath);
    }

    /// <summary>The trainer's node probabilities (probs.f32, N×C float32), checked against their checksum; null when the job has none.</summary>
    private (float[]? Probs, int Classes) ReadProbabilities(PaintAssignment w, int nodes)
    {
        if (w.Probs is not { } pr) return (null, 0);
        if (_store.Check(pr) is { } bad) throw new ResultStoreException(bad);
        var bytes = File.ReadAllBytes(pr.Path);
        if (nodes == 0 || bytes.Length == 0 || bytes.Length % (4L * nodes) != 0) throw new InputFileException(pr.Path, $"{bytes.Length} bytes are not float32 probabilities for {nodes} nodes");
        var probs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
        return (probs, probs.Length / nodes);
    }

    /// <summary>Runs on the work thread; only one item runs at a time per worker, so the cache needs no lock.</summary>
    private GraphJobManifest Open(TileAssignment w)
    {
        if (_jobId == w.JobId && _manifest is not null) return _manifest;
        CloseInputs();
        var workDir = AssignmentPaths.WorkDir(w.OutDir!, w.JobId);
        SafePaths.CheckUnchanged(workDir, "work folder");
        _manifest = GraphJobManifest.Load(w.ManifestPath);
        // the manifest decides where results go: it must be this job's, in this job's work folder
        if (_manifest.JobId != w.JobId || Path.GetFullPath(_manifest.WorkDir) != workDir)
            throw new UnsafePathException($"{w.ManifestPath}: manifest of job {_manifest.JobId} with work folder {_manifest.WorkDir}, not job {w.JobId}'s {workDir}: refused");
        var outside = AssignmentPaths.CheckInput(_manifest.Request.ImagePath, "image", _roots)
            ?? (_manifest.Request.MaskPath is { } m0 ? AssignmentPaths.CheckInput(m0, "mask", _roots) : null);
        if (outside is not null) throw new UnsafePathException(outside);
        _image = ImageSources.Open(_manifest.Request.ImagePath, _manifest.Request.Page, _manifest.Request.Series);
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

    protected override void PostStop()
    {
        MarkBusy(false);
        Core.Telemetry.RemoveWorkerSlot();
        CloseInputs();
    }
}
