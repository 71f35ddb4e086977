using System.Diagnostics;
using Akka.Actor;
using ActorSeg.Core.IO;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.GpuTrainer;

/// <summary>
/// The gpu-trainer role: takes a stitched graph by reference, runs the model over it on the node's device (CUDA when
/// present) and writes one class id per node to the result store. It pulls work like the tile workers do: it tells
/// the coordinator it is ready (again every few seconds while idle, so a restarted coordinator finds it).
/// </summary>
public sealed class TrainerActor : ReceiveActor, IWithTimers
{
    private readonly IActorRef _coordinator;
    private readonly WorkGuard<IActorRef> _guard;
    private readonly DataRoots _roots;
    private readonly IResultStore _store;
    private readonly string _device;
    private readonly ILogger _log;
    private readonly Dictionary<(string Path, DateTime Stamp, string Device), (ModelSpec Spec, GnnModel Model)> _models = new();
    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record Ready : INoSerializationVerificationNeeded;
    private sealed record Finished(ClassifyNodes Work, NodesClassified Result) : INoSerializationVerificationNeeded;
    private sealed record Failed(ClassifyNodes Work, Exception Error) : INoSerializationVerificationNeeded;
    private sealed record Trained(ModelReady Result) : INoSerializationVerificationNeeded;
    private sealed record TrainError(TrainModel Work, Exception Error) : INoSerializationVerificationNeeded;

    /// <param name="isCoordinator">whether a sender is the current coordinator singleton; work from anyone else is refused and logged</param>
    /// <param name="roots">the data roots outputs and inputs must lie in (none: any absolute, canonical folder)</param>
    public TrainerActor(IActorRef coordinator, string device = "auto", IResultStore? store = null, Func<IActorRef, bool>? isCoordinator = null, DataRoots? roots = null)
    {
        _coordinator = coordinator;
        _guard = new WorkGuard<IActorRef>(isCoordinator ?? (s => s.Equals(coordinator) || s.Path.Address.HasLocalScope));
        _roots = roots ?? new DataRoots([]);
        _device = device;
        _store = store ?? DirectoryResultStore.Instance;
        _log = Log.ForContext("Role", "gpu-trainer");
        Idle();
    }

    public static Props Props(IActorRef coordinator, string device = "auto", IResultStore? store = null, Func<IActorRef, bool>? isCoordinator = null, DataRoots? roots = null) =>
        Akka.Actor.Props.Create(() => new TrainerActor(coordinator, device, store, isCoordinator, roots));

    /// <summary>Acts on an order only when the coordinator sent it and every path in it is the job's own; else refuses and logs why.</summary>
    private bool Allowed(string kind, string jobId, Func<string?> check, Action<string> refuseToCoordinator)
    {
        if (_guard.Refusal(Sender, check) is not { } r) return true;
        _log.ForContext("JobId", jobId).Warning("Refused {Kind} for job {JobId} from {Sender}: {Reason}", kind, jobId, Sender.Path.ToString(), r.Reason);
        if (r.Answer) refuseToCoordinator(r.Reason);
        return false;
    }

    protected override void PreStart()
    {
        Core.Telemetry.AddTrainer();
        Self.Tell(new Ready());
    }

    /// <summary>The training under way (its job and attempt), which an abandon order from the coordinator stops.</summary>
    private (string JobId, int Attempt, CancellationTokenSource Stop)? _training;

    private bool _busy;
    private void MarkBusy(bool busy)
    {
        if (busy == _busy) return;
        _busy = busy;
        Core.Telemetry.TrainerBusy(busy);
    }

    private void Idle()
    {
        Receive<Ready>(_ =>
        {
            _coordinator.Tell(new TrainerReady(ProtocolVersion.Major, _device, Self.Path.Address.ToString()));
            Timers.StartSingleTimer("ready", new Ready(), TimeSpan.FromSeconds(5));
        });
        Receive<ClassifyNodes>(w => { if (Allowed("a classification", w.JobId, () => AssignmentPaths.Check(w, _roots), why => Sender.Tell(new ClassifyFailed(w.JobId, w.Attempt, why, true)))) Start(w); });
        Receive<TrainModel>(w => { if (Allowed("a training", w.JobId, () => AssignmentPaths.Check(w, _roots), why => Sender.Tell(new TrainFailed(w.JobId, w.Attempt, why, true)))) StartTraining(w); });
        Receive<WorkRefused>(r => _log.Error("The coordinator refuses this trainer: {Reason}", r.Reason));
        Receive<AbandonWork>(_ => { }); // work that ended here already
    }

    private void Busy()
    {
        Receive<Ready>(_ => { });
        Receive<ClassifyNodes>(w => { if (Allowed("a classification", w.JobId, () => null, _ => { })) _coordinator.Tell(new ClassifyFailed(w.JobId, w.Attempt, "trainer busy", false)); });
        Receive<TrainModel>(w => { if (Allowed("a training", w.JobId, () => null, _ => { })) _coordinator.Tell(new TrainFailed(w.JobId, w.Attempt, "trainer busy", false)); });
        // the coordinator gave up on the training under way (it missed its deadline) and will try it again elsewhere: it
        // stops at its next graph and writes nothing more into the model folder, where the next attempt trains
        Receive<AbandonWork>(a =>
        {
            if (_training is not { } t || t.JobId != a.JobId || t.Attempt != a.Attempt || !Allowed("an abandon order", a.JobId, () => null, _ => { })) return;
            _log.ForContext("JobId", a.JobId).Warning("Abandoning the training of job {JobId} (attempt {Attempt}): it missed its deadline; it stops at its next graph and writes nothing more", a.JobId, a.Attempt);
            t.Stop.Cancel();
        });
        Receive<Trained>(t => Reply(t.Result));
        Receive<Finished>(f => Reply(f.Result));
        Receive<TrainError>(f => Reply(new TrainFailed(f.Work.JobId, f.Work.Attempt, Report(f.Work.JobId, "Training", f.Error), IsPermanent(f.Error))));
        Receive<Failed>(f => Reply(new ClassifyFailed(f.Work.JobId, f.Work.Attempt, Report(f.Work.JobId, "Classifying", f.Error), IsPermanent(f.Error))));
        Receive<WorkRefused>(_ => { });
    }

    /// <summary>Answers the coordinator and is ready for the next work item.</summary>
    private void Reply(object result)
    {
        if (_training is { } t) { t.Stop.Dispose(); _training = null; }
        _coordinator.Tell(result);
        Become(Idle);
        MarkBusy(false);
        Self.Tell(new Ready());
    }

    /// <summary>Bad input (a model or graph that cannot be used) will fail again anywhere: no retry.</summary>
    private static bool IsPermanent(Exception e) => Core.FailurePolicy.IsPermanent(e);

    private string Report(string jobId, string what, Exception e)
    {
        _log.ForContext("JobId", jobId).Warning(e, "{What} failed: {Error}", what, e.Message);
        return e.Message;
    }

    private void Start(ClassifyNodes w)
    {
        Timers.Cancel("ready");
        Become(Busy);
        MarkBusy(true);
        var self = Self;
        var log = _log.ForContext("JobId", w.JobId).ForContext("ImageId", w.ImageId);
        Task.Run<object>(() =>
        {
            // given up on at its deadline and its job ended meanwhile, it writes nothing over what the job's end left
            using var guard = AssignmentPaths.StillRunning(w) is { } whyNot ? SafePaths.GuardPublishing(whyNot) : null;
            var sw = Stopwatch.StartNew();
            if (_store.Check(w.Graph) is { } bad) throw new ResultStoreException(bad);
            var dev = TorchDevice.Pick(w.Device ?? _device);
            var (spec, model) = LoadModel(w.ModelPath, dev);
            var g = GraphSample.Load(w.Graph.Path, spec.Edges);
            var (pred, probs) = Predictor.PredictWithProbabilities(spec, model, g, dev);
            var warnings = new List<string>();
            if (spec.GreyLevelMismatch(g) is { } unlike)
            {
                log.Warning("Job {JobId}: image {ImageId}: {Why} (model {Model})", w.JobId, w.ImageId, unlike, w.ModelPath);
                warnings.Add(unlike);
            }
            var classes = new byte[pred.Length];
            var pixels = new long[spec.Classes];
            var probSum = new double[spec.Classes];
            var npz = NpzReader.Read(w.Graph.Path);
            var area = npz["area"].AsSpan<long>();
            for (int v = 0; v < pred.Length; v++)
            {
                classes[v] = (byte)pred[v]; pixels[pred[v]] += area[v];
                probSum[pred[v]] += (double)area[v] * probs[(long)v * spec.Classes + pred[v]];
            }
            // per class, the pixel-weighted mean probability of the pixels painted with it (0 where none is: see the pixel counts)
            var meanProb = probSum.Select((s, c) => pixels[c] > 0 ? Math.Round(s / pixels[c], 6) : 0).ToArray();
            // derived here from the job's folder, which is checked again now that it is about to be written
            var classesPath = Path.Combine(w.OutDir!, AssignmentPaths.ClassesFile);
            SafePaths.WriteAllBytes(classesPath, classes, "node classes");
            // the class probabilities (N×C float32, little-endian), for the objects' mean probability
            var probsPath = Path.Combine(w.OutDir!, AssignmentPaths.ProbsFile);
            SafePaths.WriteAllBytes(probsPath, System.Runtime.InteropServices.MemoryMarshal.AsBytes(probs.AsSpan()), "node probabilities");
            // the same as a NumPy array beside graph.npz: np.load("probs.npy") is N × C, row v = node v (as in graph.npz)
            NpyFile.Write<float>(Path.Combine(w.OutDir!, AssignmentPaths.ProbsNpyFile), probs, [pred.Length, spec.Classes], "node probabilities (npy)");
            ClassTable.Write(w.OutDir!, spec.ClassTable); // names and colours for the painter, the OME-XML and the report
            // the boundary refinement, when the model has one and the job wants it: which nodes the painter refines, and with what
            string? refinePath = null;
            if (spec.Refiner is { } refiner && w.Refine)
            {
                NpyArray Need(string key) => npz.TryGetValue(key, out var a) ? a : throw new InvalidDataException($"{w.Graph.Path}: graph has no '{key}' array (the refinement needs it)");
                var flags = Core.Refine.PixelRefiner.Flags(refiner, classes, probs, Need("rag_edge_index").AsSpan<long>());
                refinePath = Path.Combine(w.OutDir!, Core.Refine.RefineFile.FileName);
                Core.Refine.RefineFile.Write(refinePath, refiner, Need("image_mean").AsSpan<double>().ToArray(), Need("image_std").AsSpan<double>().ToArray(), flags);
                log.Information("Job {JobId}: {Flagged} of {Nodes} nodes will be refined pixel by pixel (a neighbour of another class, probability under {Threshold}{Whole})",
                    w.JobId, flags.Count(f => f), flags.Length, refiner.Threshold,
                    refiner.RefineClasses.Length == 0 ? "" : $", or called {string.Join(" or ", refiner.RefineClasses.Select(k => spec.ClassTable[k].Name))}");
            }
            var desc = TorchDevice.Describe(dev);
            log.Information("Job {JobId}: {Nodes} nodes classified with {Model} on {Device} in {Seconds:F2}s, peak RSS {PeakRssMiB:F0} MiB",
                w.JobId, pred.Length, w.ModelPath, desc, sw.Elapsed.TotalSeconds, Core.ProcessStats.PeakRssMiB());
            return new Finished(w, new NodesClassified(w.JobId, w.Attempt, _store.Describe(classesPath), pred.Length, pixels, sw.Elapsed.TotalSeconds, desc, _store.Describe(probsPath), meanProb, refinePath is null ? null : _store.Describe(refinePath), warnings.Count == 0 ? null : warnings.ToArray()));
        }).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : new Failed(w, t.Exception!.GetBaseException()))
          .PipeTo(self);
    }

    private void StartTraining(TrainModel w)
    {
        Timers.Cancel("ready");
        Become(Busy);
        MarkBusy(true);
        var self = Self;
        var log = _log.ForContext("JobId", w.JobId);
        var sp = w.Spec;
        var stop = new CancellationTokenSource();
        _training = (w.JobId, w.Attempt, stop);
        var ct = stop.Token;
        Task.Run<object>(() =>
        {
            var sw = Stopwatch.StartNew();
            // the model folder is held while it trains: a one-process run of another process writing it (a shared file
            // system) refuses the training, naming that run, and one started later is refused in its turn. An earlier
            // attempt of this job, given up on and still stopping on another trainer, is waited for a while
            using var folder = OutputFolderLock.HoldForJob(sp.OutDir, $"cluster training job {w.JobId}", TimeSpan.FromSeconds(30), ct);
            var opts = new TrainOptions
            {
                Architecture = new GnnArchitecture { Conv = sp.Conv, Layers = sp.Layers, Hidden = sp.Hidden, Dropout = sp.Dropout },
                Edges = sp.Edges, LearningRate = sp.LearningRate, MaxEpochs = sp.MaxEpochs, Patience = sp.Patience,
                ValidationFraction = sp.ValidationFraction, Seed = sp.Seed, Device = sp.Device ?? _device,
                Classes = sp.Classes is { } cs ? ClassTable.Parse(cs) : null,
            };
            log.Information("Job {JobId}: training {Conv} ({Layers} layers, width {Hidden}) with {Edges} edges on {Graphs} graph(s) → {OutDir}",
                w.JobId, sp.Conv, sp.Layers, sp.Hidden, sp.Edges, sp.Graphs.Length, sp.OutDir);
            // every file of the attempt goes to a staging folder, published only when the whole attempt succeeds: a failed
            // or abandoned attempt leaves the folder's earlier model, refinement and summary as they were
            // checked where it is acted on, as well as where the coordinator admitted it
            if (sp.RefineProblem() is { } bad) throw new ArgumentException(bad);
            var r = StagedTraining.Run(sp.OutDir, stage =>
            {
                var step = StagedTraining.Log(s => log.Information("Job {JobId}: {Step}", w.JobId, s), stage, sp.OutDir);
                var r = Trainer.Train(sp.Graphs, stage, opts, step, ct);
                // the boundary refinement, as `actorseg train` adds it, whenever the graphs have their node maps; the images
                // the graphs name are read here, so they are checked against this node's data roots first
                object? refined = null;
                if (sp.NoRefine)
                    log.Information("Job {JobId}: no boundary refinement (not asked for)", w.JobId);
                else if (RefineInput.MissingFor(sp.Graphs) is { } missing)
                    log.Warning("Job {JobId}: no boundary refinement: {Reason}", w.JobId, missing);
                else
                {
                    try
                    {
                        var ro = new RefineOptions();
                        ro = ro.WithLostShare(sp.RefineWhole ?? ro.LostShare) with { Threshold = sp.RefineThreshold ?? ro.Threshold };
                        refined = RefineModelFile.Train(r.BestModel, ro, sp.Seed, opts.Device, step,
                            image => AssignmentPaths.CheckInput(image, "image", _roots), ct: ct);
                    }
                    catch (Core.Refine.RefinerNotTrainableException e)
                    {
                        // the coarse model is trained and kept, as `actorseg train` keeps it without --refine
                        log.Warning("Job {JobId}: no boundary refinement: {Reason}; the model classifies nodes only", w.JobId, e.Message);
                        refined = new { skipped = e.Message };
                    }
                }
                ct.ThrowIfCancellationRequested();
                r = StagedTraining.Published(r, sp.OutDir);
                SafePaths.WriteAllText(Path.Combine(stage, "train.json"), System.Text.Json.JsonSerializer.Serialize(new { options = opts, result = r, refiner = refined },
                    new System.Text.Json.JsonSerializerOptions { WriteIndented = true }), "training summary");
                return r;
            });
            var desc = TorchDevice.Describe(TorchDevice.Pick(opts.Device));
            return new Trained(new ModelReady(w.JobId, w.Attempt, _store.Describe(r.BestModel), r.Epochs, r.BestEpoch, r.BestValidationLoss,
                sw.Elapsed.TotalSeconds, desc, Core.ProcessStats.PeakRssMiB()));
        }).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : new TrainError(w, t.Exception!.GetBaseException()))
          .PipeTo(self);
    }

    /// <summary>Models are cached per file version and device (a batch segments many slides with one model).</summary>
    private (ModelSpec, GnnModel) LoadModel(string path, TorchSharp.torch.Device dev)
    {
        var key = (path, File.GetLastWriteTimeUtc(path), dev.ToString());
        lock (_models)
        {
            if (_models.TryGetValue(key, out var m)) return m;
            var loaded = ModelFile.Load(path, dev);
            _models.Clear();
            _models[key] = loaded;
            return loaded;
        }
    }
}
