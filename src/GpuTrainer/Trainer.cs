using ActorSeg.Core.IO;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorSeg.GpuTrainer;

public sealed record TrainOptions
{
    public GnnArchitecture Architecture { get; init; } = new();
    public string Edges { get; init; } = "knn";
    public double LearningRate { get; init; } = 0.01;
    public int MaxEpochs { get; init; } = 500;
    public int Patience { get; init; } = Messages.TrainDefaults.Patience;
    /// <summary>A validation loss counts as better only if it improves by more than this.</summary>
    public double MinDelta { get; init; } = 1e-4;
    public double ValidationFraction { get; init; } = 0.15;
    public int Seed { get; init; } = 1;
    public string Device { get; init; } = "auto";
    /// <summary>Names and colours of the classes, class 0 first (null: background, class 1, …).</summary>
    public Core.IO.ClassInfo[]? Classes { get; init; }
}

public sealed record TrainResult(string BestModel, string LastModel, int Epochs, int BestEpoch, double BestValidationLoss,
    double Seconds, double PeakRssMiB, string Device, int TrainGraphs, int ValidationGraphs, long TrainNodes, long ValidationNodes);

/// <summary>
/// Full-graph training over one or many image graphs: features normalised with training statistics saved in the
/// model, class-weighted cross entropy from the training labels, unlabelled nodes (−1) contribute no loss, Adam,
/// early stopping on validation loss, best and last checkpoints, curves in curves.csv. Reproducible with a seed.
/// With a single graph, a fixed random fraction of its labelled nodes is held out for validation instead.
/// </summary>
public static class Trainer
{
    private sealed class Prepared : IDisposable
    {
        public required Tensor X, EdgeIndex, EdgeWeight, YTrain, YVal;
        public void Dispose() { X.Dispose(); EdgeIndex.Dispose(); EdgeWeight.Dispose(); YTrain.Dispose(); YVal.Dispose(); }
    }

    /// <param name="ct">stops the training between graphs (Ctrl-C): nothing in <paramref name="outDir"/> is replaced</param>
    public static TrainResult Train(IReadOnlyList<string> graphPaths, string outDir, TrainOptions o, Action<string>? log = null, CancellationToken ct = default)
    {
        log ??= _ => { };
        o.Architecture.Validate();
        if (graphPaths.Count == 0) throw new ArgumentException("no graphs to train on");
        if (!(o.ValidationFraction > 0 && o.ValidationFraction < 1)) throw new ArgumentException($"validation fraction must be in (0, 1) (got {o.ValidationFraction})");
        if (o.MaxEpochs < 1) throw new ArgumentException($"the epochs must be at least 1 (got {o.MaxEpochs})");
        if (o.Patience < 1) throw new ArgumentException($"the patience must be at least 1 epoch (got {o.Patience})");
        if (!(o.LearningRate > 0 && double.IsFinite(o.LearningRate))) throw new ArgumentException($"the learning rate must be a finite number > 0 (got {o.LearningRate})");
        if (!(o.MinDelta >= 0 && double.IsFinite(o.MinDelta))) throw new ArgumentException($"the minimum improvement must be a finite number >= 0 (got {o.MinDelta})");
        SafePaths.EnsureDirectory(outDir, "model folder");
        var sw = Stopwatch.StartNew();
        torch.manual_seed(o.Seed);
        var device = TorchDevice.Pick(o.Device);
        log($"device {TorchDevice.Describe(device)}");

        var graphs = graphPaths.Select(p => GraphSample.Load(p, o.Edges)).ToList();
        foreach (var g in graphs)
        {
            if (g.Y is null) throw new InvalidDataException($"{g.Path}: graph has no labels (build it with --mask)");
            if (!g.FeatureNames.SequenceEqual(graphs[0].FeatureNames)) throw new InvalidDataException($"{g.Path}: features differ from {graphs[0].Path}");
        }
        // the masks' classes mean the same in every graph: class 1 of a binary mask (foreground) is not class 1 of a
        // mask of class ids
        var modes = graphPaths.Select(p => (Path: p, Mode: MaskModeOf(p))).Where(m => m.Mode is not null).ToList();
        if (modes.FirstOrDefault(m => m.Mode != modes[0].Mode) is { Path: not null } other)
            throw new InvalidDataException($"{other.Path} was built with its mask read as {other.Mode}, {modes[0].Path} with its mask read as {modes[0].Mode}: their class numbers mean different things (build them all with one --mask-mode)");
        // masks that label one class only (an empty or full mask, or one read in the wrong mode) make a model that only
        // ever predicts it: trained as asked, and said
        var present = new SortedSet<long>();
        foreach (var g in graphs) foreach (var v in g.Y!) if (v >= 0 && present.Add(v) && present.Count > 1) break;
        if (present.Count == 1)
            Serilog.Log.Warning("Every labelled node of these {Graphs} graph(s) is of class {Class}: the model will only ever predict that class (an empty or full mask, or one read in the wrong --mask-mode?)",
                graphs.Count, present.Min);
        int F = graphs[0].F;
        int K = Math.Max(2, graphs.Max(g => (int)(g.Y!.DefaultIfEmpty(-1).Max() + 1)));
        if (o.Classes is { } named)
        {
            // the named classes are the model's classes: as many as the labels have, or more (classes absent from these graphs)
            if (named.Length < K) throw new ArgumentException($"--classes names {named.Length} classes, but the masks have {K} (ids 0..{K - 1})");
            K = named.Length;
        }

        // the split: whole graphs when there are several, labelled nodes of the one graph otherwise
        var rnd = new Random(o.Seed);
        var trainIdx = new List<int>(); var valIdx = new List<int>();
        bool nodeSplit = graphs.Count == 1;
        if (!nodeSplit)
        {
            var order = Enumerable.Range(0, graphs.Count).OrderBy(_ => rnd.Next()).ToList();
            int nv = Math.Max(1, (int)Math.Round(graphs.Count * o.ValidationFraction));
            valIdx.AddRange(order.Take(nv).Order()); trainIdx.AddRange(order.Skip(nv).Order());
        }
        var yTrain = new List<long[]>(); var yVal = new List<long[]>();
        for (int i = 0; i < graphs.Count; i++)
        {
            var y = graphs[i].Y!;
            var yt = (long[])y.Clone(); var yv = Enumerable.Repeat(-1L, y.Length).ToArray();
            if (nodeSplit)
            {
                for (int v = 0; v < y.Length; v++) if (y[v] >= 0 && rnd.NextDouble() < o.ValidationFraction) { yv[v] = y[v]; yt[v] = -1; }
            }
            else if (valIdx.Contains(i)) { yv = yt; yt = Enumerable.Repeat(-1L, y.Length).ToArray(); }
            yTrain.Add(yt); yVal.Add(yv);
        }
        if (nodeSplit) { trainIdx.Add(0); valIdx.Add(0); }
        long trainNodes = yTrain.Sum(a => a.LongCount(v => v >= 0)), valNodes = yVal.Sum(a => a.LongCount(v => v >= 0));
        if (trainNodes == 0) throw new InvalidDataException("no labelled training nodes");
        if (valNodes == 0) throw new InvalidDataException("no labelled validation nodes");

        // normalisation and class weights from the training nodes only
        var mean = new double[F]; var sq = new double[F]; long cnt = 0;
        var counts = new double[K];
        foreach (int i in trainIdx)
        {
            var g = graphs[i]; var yt = yTrain[i];
            for (int v = 0; v < g.Nodes; v++)
            {
                if (yt[v] < 0) continue;
                counts[yt[v]]++; cnt++;
                for (int f = 0; f < F; f++) { double x = g.X[v * F + f]; mean[f] += x; sq[f] += x * x; }
            }
        }
        var fMean = new float[F]; var fStd = new float[F];
        for (int f = 0; f < F; f++) { double m = mean[f] / cnt; fMean[f] = (float)m; fStd[f] = (float)Math.Max(1e-6, Math.Sqrt(Math.Max(0, sq[f] / cnt - m * m))); }
        var cw = counts.Select(c => (float)(counts.Max() / Math.Max(c, 1))).ToArray();

        Prepared Prepare(int i)
        {
            var g = graphs[i];
            var x = new float[g.X.Length];
            for (int v = 0; v < g.Nodes; v++) for (int f = 0; f < F; f++) x[v * F + f] = (g.X[v * F + f] - fMean[f]) / fStd[f];
            return new Prepared
            {
                X = torch.tensor(x, [g.Nodes, F], device: device),
                EdgeIndex = torch.tensor(g.EdgeIndex, [2, g.E], device: device),
                EdgeWeight = torch.tensor(g.EdgeWeight, device: device),
                YTrain = torch.tensor(yTrain[i], device: device), YVal = torch.tensor(yVal[i], device: device),
            };
        }
        var data = Enumerable.Range(0, graphs.Count).Select(Prepare).ToList();
        using var weight = torch.tensor(cw, device: device);
        log($"{graphs.Count} graph(s): {trainIdx.Count} train / {valIdx.Count} validation{(nodeSplit ? " (node split)" : "")}, {trainNodes} / {valNodes} labelled nodes, {F} features, {K} classes, class weights [{string.Join(", ", cw.Select(c => c.ToString("F2", CultureInfo.InvariantCulture)))}]");

        var featureSet = Core.Pipeline.GraphRequest.FeatureSetOf(graphs[0].FeatureNames);
        var recipe = Recipes.NameOf(featureSet, o.Edges, o.Architecture);
        log($"recipe {recipe}: {featureSet} features, {o.Edges} edges, {o.Architecture.Conv} {o.Architecture.Layers} layers × {o.Architecture.Hidden}, dropout {o.Architecture.Dropout.ToString(CultureInfo.InvariantCulture)}, {o.Architecture.Activation}");
        var model = new GnnModel(o.Architecture, F, K);
        model.to(device);
        var opt = torch.optim.Adam(model.parameters(), lr: o.LearningRate);
        SafePaths.EnsureDirectory(outDir, "model folder");
        string best = Path.Combine(outDir, "best.model"), last = Path.Combine(outDir, "last.model");
        // checkpoints go to a staging name of this run's own while training runs: a failed or interrupted run never replaces
        // a good model, and a run given up on (a cluster training past its deadline, stopping while the next attempt starts
        // in the same folder) never deletes or overwrites the next one's checkpoint
        string bestStaging = StagingFor(outDir, "best.model");
        try
        {
        // the training images' pixel size, read once from the graphs' summaries (not at every checkpoint)
        var greyLevels = ModelSpec.GreyLevelsOf(trainIdx.Concat(valIdx).Select(i => graphs[i]).ToList());
        var pixelSizes = TrainingPixelSizes(trainIdx.Concat(valIdx).Select(i => (graphs[i].Path, graphs[i].MicronsPerPixel)));
        ModelSpec Spec(int epoch, double vl) => new()
        {
            Architecture = o.Architecture, FeatureNames = graphs[0].FeatureNames, FeatureMean = fMean, FeatureStd = fStd, Classes = K,
            Edges = o.Edges, ClassWeights = cw, Epoch = epoch, ValidationLoss = vl, Seed = o.Seed, SeedSpacing = graphs.Average(g => g.SeedSpacing),
            TrainGraphs = trainIdx.Select(i => graphs[i].Path).ToArray(), ValidationGraphs = valIdx.Select(i => graphs[i].Path).ToArray(),
            ClassNames = o.Classes, Recipe = recipe, MicronsPerPixel = pixelSizes, GreyLevels = greyLevels,
        };
        var curves = new System.Text.StringBuilder("epoch,train_loss,val_loss,val_node_accuracy\n");
        double bestLoss = double.PositiveInfinity, lastLoss = double.PositiveInfinity; int bestEpoch = 0, since = 0, epoch = 0;
        for (epoch = 1; epoch <= o.MaxEpochs; epoch++)
        {
            double trainLoss = 0;
            model.train();
            foreach (int i in trainIdx)
            {
                ct.ThrowIfCancellationRequested();
                using var scope = torch.NewDisposeScope();
                var d = data[i];
                opt.zero_grad();
                var loss = nn.functional.cross_entropy(model.forward(d.X, d.EdgeIndex, d.EdgeWeight), d.YTrain, weight, ignore_index: -1);
                loss.backward();
                opt.step();
                trainLoss += loss.item<float>();
            }
            trainLoss /= trainIdx.Count;
            double valLoss = 0; long right = 0, total = 0;
            model.eval();
            using (torch.no_grad())
                foreach (int i in valIdx)
                {
                    using var scope = torch.NewDisposeScope();
                    var d = data[i];
                    var logits = model.forward(d.X, d.EdgeIndex, d.EdgeWeight);
                    valLoss += nn.functional.cross_entropy(logits, d.YVal, weight, ignore_index: -1).item<float>();
                    var mask = d.YVal.ge(0);
                    right += logits.argmax(1).eq(d.YVal).logical_and(mask).sum().item<long>();
                    total += mask.sum().item<long>();
                }
            valLoss /= valIdx.Count;
            lastLoss = valLoss;
            NativeMemory.Settle();
            if (!double.IsFinite(valLoss) || !double.IsFinite(trainLoss))
                throw new InvalidOperationException($"training diverged at epoch {epoch} (loss {trainLoss}, validation loss {valLoss}); try a lower --lr");
            curves.Append(FormattableString.Invariant($"{epoch},{trainLoss:G6},{valLoss:G6},{(double)right / total:G6}\n"));
            if (valLoss < bestLoss - o.MinDelta)
            {
                bestLoss = valLoss; bestEpoch = epoch; since = 0;
                ModelFile.Save(bestStaging, Spec(epoch, valLoss), model);
            }
            else if (++since >= o.Patience) break;
            if (epoch == 1 || epoch % 10 == 0) log(FormattableString.Invariant($"epoch {epoch}: train loss {trainLoss:F4}, validation loss {valLoss:F4}, validation node accuracy {(double)right / total:P1}"));
        }
        epoch = Math.Min(epoch, o.MaxEpochs);
        ct.ThrowIfCancellationRequested(); // a run given up on replaces nothing, even one that ended as it was stopped
        ModelFile.Save(last, Spec(epoch, lastLoss), model);
        SafePaths.Publish(bestStaging, best, "model");
        SafePaths.WriteAllText(Path.Combine(outDir, "curves.csv"), curves.ToString(), "training curves");
        SafePaths.WriteAllText(Path.Combine(outDir, "split.json"), JsonSerializer.Serialize(new
        {
            seed = o.Seed, nodeSplit, validationFraction = o.ValidationFraction,
            train = trainIdx.Select(i => graphs[i].Path), validation = valIdx.Select(i => graphs[i].Path),
        }, new JsonSerializerOptions { WriteIndented = true }), "training split");
        foreach (var d in data) d.Dispose();
        var result = new TrainResult(best, last, epoch, bestEpoch, bestLoss, sw.Elapsed.TotalSeconds, Core.ProcessStats.PeakRssMiB(),
            TorchDevice.Describe(device), trainIdx.Count, valIdx.Count, trainNodes, valNodes);
        log(FormattableString.Invariant($"stopped after {epoch} epochs; best validation loss {bestLoss:F4} at epoch {bestEpoch}; {result.Seconds:F1}s, peak RSS {result.PeakRssMiB:F0} MiB"));
        return result;
        }
        finally
        {
            if (File.Exists(bestStaging)) File.Delete(bestStaging);
        }
    }

    /// <summary>How the mask of the graph at <paramref name="graphPath"/> was read ("binary" or "classes"), as the graph's
    /// summary (graph.json beside it) records it; null where there is no summary or it records no mask.</summary>
    public static string? MaskModeOf(string graphPath)
    {
        var real = new FileInfo(graphPath).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(graphPath);
        var summary = Path.Combine(Path.GetDirectoryName(real)!, Core.IO.GraphOutputs.SummaryFile);
        try { return File.Exists(summary) && GraphOutputs.ReadSummaryInputs(summary) is { MaskPath: not null } s ? s.MaskMode.ToString().ToLowerInvariant() : null; }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// A new staging name for a run's best checkpoint of <paramref name="file"/> in <paramref name="outDir"/>, after the
    /// staging files earlier runs left there are deleted: a run killed outright (SIGKILL, the OOM killer) leaves its own
    /// behind, and nothing else may be writing one in that folder now (a one-process run holds the folder's lock; a
    /// cluster runs one attempt of a training at a time, and an attempt it gave up on publishes nothing).
    /// </summary>
    internal static string StagingFor(string outDir, string file)
    {
        foreach (var stale in Directory.EnumerateFiles(outDir, $".{file}.*.training"))
            try { File.Delete(stale); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        return Path.Combine(outDir, $".{file}.{Guid.NewGuid():N}.training");
    }

    /// <summary>The smallest and largest µm per pixel of the graphs' images: each graph's own record
    /// (<see cref="GraphSample.MicronsPerPixel"/>, the graph's <c>image_microns_per_pixel</c>), else the graph.json it was
    /// written with (beside it, naming it; graphs written before 2026-12-07); null where any graph has none known (a graph
    /// copied away from its summary, an image that states no pixel size).</summary>
    public static double[]? TrainingPixelSizes(IEnumerable<(string Path, (double X, double Y)? Stated)> graphs)
    {
        double lo = double.PositiveInfinity, hi = 0;
        foreach (var (path, stated) in graphs)
        {
            if (stated is { } own)
            {
                lo = Math.Min(lo, own.X); hi = Math.Max(hi, own.X);
                continue;
            }
            var summary = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, Core.IO.GraphOutputs.SummaryFile);
            try
            {
                var image = Core.IO.GraphOutputs.ReadSummaryImage(summary);
                if (image.GraphFile != Path.GetFileName(path) || image.MicronsPerPixel is not { } um || !(double.IsFinite(um.X) && um.X > 0)) return null;
                lo = Math.Min(lo, um.X); hi = Math.Max(hi, um.X);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                return null;
            }
        }
        return hi > 0 ? [lo, hi] : null;
    }
}
