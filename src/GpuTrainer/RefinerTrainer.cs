using System.Diagnostics;
using System.Text.Json;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Refine;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorSeg.GpuTrainer;

/// <summary>
/// A graph as the boundary refinement sees it: where its image, mask and node map are (from graph.json beside
/// graph.npz), the image's statistics, and the coarse model's classes, probabilities and refine flags of its nodes.
/// </summary>
public sealed class RefineInput
{
    public required string GraphPath { get; init; }
    public required string ImagePath { get; init; }
    public required int Page { get; init; }
    /// <summary>A CZI's scene or a LIF's image (−1 the default), as the graph read it.</summary>
    public int Series { get; init; } = -1;
    public required string NodeMapPath { get; init; }
    public string? MaskPath { get; init; }
    public MaskMode MaskMode { get; init; }
    public int? IgnoreValue { get; init; }
    public required double[] Mean { get; init; }
    public required double[] Std { get; init; }
    public required byte[] Classes { get; init; }
    public required float[] Probs { get; init; }
    public required long[] RagEdges { get; init; }
    public required long[] Area { get; init; }
    /// <summary>Pixels of each mask class per node (nodes × <see cref="HistClasses"/>), when the graph has a mask.</summary>
    public long[]? ClassHist { get; init; }
    public int HistClasses { get; init; }
    public required double SeedSpacing { get; init; }
    public required int Channels { get; init; }

    private static string SummaryOf(string graphPath)
    {
        var real = new FileInfo(graphPath).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(graphPath);
        return Path.Combine(Path.GetDirectoryName(real)!, GraphOutputs.SummaryFile);
    }

    /// <summary>The image a graph was built from, as its summary names it.</summary>
    public static string ImageOf(string graphPath) => GraphOutputs.ReadSummaryInputs(SummaryOf(graphPath)).ImagePath;

    /// <summary>Reads the graph and its summary and runs the coarse model over it.</summary>
    public static RefineInput Load(string graphPath, ModelSpec spec, GnnModel model, Device device)
    {
        // a link to graph.npz (a split of graphs built elsewhere) leads to the folder it was built in
        var real = new FileInfo(graphPath).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(graphPath);
        var dir = Path.GetDirectoryName(real)!;
        var summaryPath = Path.Combine(dir, GraphOutputs.SummaryFile);
        var nodeMap = Path.Combine(dir, GraphOutputs.NodeMapFile);
        if (!File.Exists(summaryPath)) throw new InvalidDataException($"{graphPath}: refinement needs the graph's {GraphOutputs.SummaryFile} beside it (the folder 'actorseg graph' wrote)");
        if (!File.Exists(nodeMap)) throw new InvalidDataException($"{graphPath}: refinement needs the node map {GraphOutputs.NodeMapFile} beside it (build the graph without --no-node-map)");
        var inputs = GraphOutputs.ReadSummaryInputs(summaryPath);
        var (image, page, series, mask, mode, ignore) = (inputs.ImagePath, inputs.Page, inputs.Series, inputs.MaskPath, inputs.MaskMode, inputs.IgnoreValue);
        // graphs written since 2026-12-07 record the file as it was read
        if (File.Exists(image) && inputs is { Bytes: { } then, ModifiedUtc: { } when })
        {
            var now = new FileInfo(image);
            if (now.Length != then || now.LastWriteTimeUtc != when)
                Serilog.Log.Warning("{Graph}: its image {Image} has changed since the graph was built from it ({Bytes:N0} bytes, modified {Then:u}; now {Now:N0} bytes, modified {NowWhen:u}): " +
                    "what is refined or measured is read from the image as it is now; rebuild the graph if its pixels changed",
                    graphPath, image, then, when, now.Length, now.LastWriteTimeUtc);
        }
        var npz = NpzReader.Read(graphPath);
        NpyArray Need(string key) => npz.TryGetValue(key, out var a) ? a : throw new InvalidDataException($"{graphPath}: graph has no '{key}' array");
        var g = GraphSample.Load(graphPath, spec.Edges);
        var (pred, probs) = Predictor.PredictWithProbabilities(spec, model, g, device);
        var classes = pred.Select(c => (byte)c).ToArray();
        var shape = Need("image_shape").AsSpan<long>();
        return new RefineInput
        {
            GraphPath = graphPath, ImagePath = image, Page = page, Series = series, NodeMapPath = nodeMap, MaskPath = mask, MaskMode = mode, IgnoreValue = ignore,
            Mean = Need("image_mean").AsSpan<double>().ToArray(), Std = Need("image_std").AsSpan<double>().ToArray(),
            Classes = classes, Probs = probs, RagEdges = Need("rag_edge_index").AsSpan<long>().ToArray(), Area = Need("area").AsSpan<long>().ToArray(),
            ClassHist = g.ClassHist, HistClasses = g.ClassHist is null ? 0 : g.Classes,
            SeedSpacing = g.SeedSpacing, Channels = (int)shape[2],
        };
    }

    /// <summary>Why these graphs cannot train a refinement (the first graph without its summary or node map, or whose
    /// image or mask is no longer where its summary says), or null.</summary>
    public static string? MissingFor(IEnumerable<string> graphPaths)
    {
        foreach (var p in graphPaths)
        {
            var real = new FileInfo(p).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(p);
            var dir = Path.GetDirectoryName(real)!;
            foreach (var f in new[] { GraphOutputs.SummaryFile, GraphOutputs.NodeMapFile })
                if (!File.Exists(Path.Combine(dir, f))) return $"{p} has no {f} beside it";
            // the refinement reads the image (and the mask) the graph was built from, as its summary names them
            GraphOutputs.SummaryInputs s;
            try { s = GraphOutputs.ReadSummaryInputs(Path.Combine(dir, GraphOutputs.SummaryFile)); }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException) { return e.Message; }
            if (!File.Exists(s.ImagePath)) return $"{p} was built from {s.ImagePath}, which is not there any more (the refinement reads it)";
            if (s.MaskPath is { Length: > 0 } mask && !File.Exists(mask)) return $"{p} was built with the mask {mask}, which is not there any more (the refinement reads it)";
        }
        return null;
    }

    public bool[] Flags(double threshold, int classes) => PixelRefiner.Flags(Classes, Probs, classes, RagEdges, threshold);
    public bool[] Flags(PixelRefinerSpec spec) => PixelRefiner.Flags(spec, Classes, Probs, RagEdges);

    /// <summary>The refiner over this graph's image and node map.</summary>
    public (RefineBlocks Blocks, IDisposable Sources) Open(PixelRefiner refiner, bool[] flags)
    {
        var image = ImageSources.Open(ImagePath, Page, Series);
        NodeMapReader? map = null;
        try
        {
            map = new NodeMapReader(NodeMapPath);
            var blocks = new RefineBlocks(refiner, image, map, Mean, Std, Classes, Probs, flags);
            return (blocks, new Both(image, map));
        }
        catch { image.Dispose(); map?.Dispose(); throw; }
    }

    private sealed class Both(IDisposable a, IDisposable b) : IDisposable { public void Dispose() { a.Dispose(); b.Dispose(); } }

    /// <summary>The mask's classes over a block (255 = unlabelled).</summary>
    public byte[] MaskClasses(IRegionSource mask, PixelRect r)
    {
        var raw = new ushort[r.Pixels];
        mask.ReadRegion(r.X, r.Y, r.W, r.H, raw);
        var cls = new byte[r.Pixels];
        GraphJob.MapMask(raw, cls, MaskMode, IgnoreValue, MaskPath!);
        return cls;
    }
}

public sealed record RefineOptions
{
    /// <summary>Winning probability under which a node is refined even when all its neighbours agree with it.</summary>
    public double Threshold { get; init; } = 0.9;
    public int Hidden { get; init; } = 32;
    public double[] Sigmas { get; init; } = [1, 2, 4];
    /// <summary>Scale of the smoothed coarse probability field, as a fraction of the seed spacing.</summary>
    public double ContextFraction { get; init; } = 0.25;
    /// <summary>A class is refined whole when, on the training graphs, the sure nodes called it hold at least
    /// <see cref="HoldShare"/> of another class's pixels and that class loses at least <see cref="LostShare"/> of its
    /// pixels to sure nodes of other classes (<see cref="RefinerTrainer.ClassesToRefineWhole"/>). 1: never.</summary>
    public double LostShare { get; init; } = 0.1;
    public double HoldShare { get; init; } = 0.05;
    public int MaxEpochs { get; init; } = 30;
    public int Patience { get; init; } = 5;
    public double LearningRate { get; init; } = 0.003;
    /// <summary>At most this many sampled pixels per graph, and in all.</summary>
    public int PixelsPerGraph { get; init; } = 200_000;
    public int MaxPixels { get; init; } = 1_500_000;
    public int Block { get; init; } = 512;

    /// <summary>These options with <see cref="LostShare"/> set to <paramref name="share"/> (<c>--refine-whole</c>), the hold
    /// share never above it.</summary>
    public RefineOptions WithLostShare(double share) => this with { LostShare = share, HoldShare = Math.Min(HoldShare, share) };
}

/// <summary>
/// Trains the boundary refinement after the coarse GNN: the pixels of the nodes it flags on the training graphs
/// (neighbours of another class, or unsure), their intensity features and the coarse context, against the mask.
/// </summary>
public static class RefinerTrainer
{
    public static PixelRefinerSpec Train(ModelSpec spec, GnnModel model, Device device, IReadOnlyList<string> trainGraphs, IReadOnlyList<string> validationGraphs,
        RefineOptions o, int seed, Action<string>? log = null, CancellationToken cancel = default)
    {
        log ??= _ => { };
        var sw = Stopwatch.StartNew();
        int K = spec.Classes;
        var first = RefineInput.Load(trainGraphs[0], spec, model, device);
        double spacing = first.SeedSpacing > 0 ? first.SeedSpacing : spec.SeedSpacing > 0 ? spec.SeedSpacing : 40.96;
        var shell = new PixelRefinerSpec
        {
            Channels = first.Channels, Classes = K, Hidden = o.Hidden, Sigmas = o.Sigmas, ContextSigma = Math.Clamp(spacing * o.ContextFraction, 1, PixelRefinerSpec.MaxSigma), Threshold = o.Threshold,
            FeatureMean = [], FeatureStd = [], W1 = [], B1 = [], W2 = [], B2 = [], W3 = [], B3 = [],
        };
        int F = shell.Features;
        // an identity refiner computes features only (its weights are never used)
        var featureOnly = new PixelRefiner(shell with
        {
            FeatureMean = new float[F], FeatureStd = Enumerable.Repeat(1f, F).ToArray(), W1 = new float[F * o.Hidden], B1 = new float[o.Hidden],
            W2 = new float[o.Hidden * o.Hidden], B2 = new float[o.Hidden], W3 = new float[o.Hidden * K], B3 = new float[K],
        });
        var rnd = new Random(seed);
        // every training graph through the coarse model once: which classes hide another's pixels, then their pixels
        var trainInputs = new List<RefineInput> { first };
        for (int gi = 1; gi < trainGraphs.Count; gi++) { cancel.ThrowIfCancellationRequested(); trainInputs.Add(RefineInput.Load(trainGraphs[gi], spec, model, device)); }
        var whole = ClassesToRefineWhole(trainInputs, o, spec.ClassTable.Select(c => c.Name).ToArray(), out var why);
        foreach (var line in why) log($"refiner: {line}");
        shell = shell with { RefineClasses = whole };
        featureOnly = new PixelRefiner(featureOnly.Spec with { RefineClasses = whole });
        var (xt, yt, ct) = Collect(trainGraphs, trainInputs, spec, model, device, featureOnly, o, K, rnd, log);
        trainInputs.Clear();
        cancel.ThrowIfCancellationRequested();
        float[] xv; long[] yv; byte[] cv;
        if (validationGraphs.Count > 0) (xv, yv, cv) = Collect(validationGraphs, [], spec, model, device, featureOnly, o, K, rnd, log);
        else (xv, yv, cv) = ([], [], []);
        if (yt.Length == 0) throw new RefinerNotTrainableException("no pixel to refine in the training graphs: every node agrees with its neighbours and is sure (nothing for --refine to learn)");
        if (yv.Length == 0)
        {
            if (yt.Length < 2) throw new RefinerNotTrainableException($"{yt.Length} pixel to refine in the training graphs and none in the validation graphs: too few to train and validate the refinement");
            // one graph, or validation graphs without a flagged pixel: a tenth of the training pixels validate
            int n = yt.Length, nv = Math.Max(1, n / 10);
            var order = Enumerable.Range(0, n).OrderBy(_ => rnd.Next()).ToArray();
            (xv, yv, cv) = Take(xt, yt, ct, order[..nv], F);
            (xt, yt, ct) = Take(xt, yt, ct, order[nv..], F);
        }
        log($"refiner: {yt.Length:N0} training and {yv.Length:N0} validation pixels from the flagged nodes; features {F}; collected in {sw.Elapsed.TotalSeconds:F1}s");

        // per-feature standardisation from the training pixels
        var mean = new float[F]; var std = new float[F];
        int N = yt.Length;
        for (int f = 0; f < F; f++)
        {
            double s = 0, s2 = 0;
            for (int i = 0; i < N; i++) { double v = xt[(long)i * F + f]; s += v; s2 += v * v; }
            double m = s / N, var = Math.Max(0, s2 / N - m * m);
            mean[f] = (float)m; std[f] = var > 1e-12 ? (float)Math.Sqrt(var) : 1f;
        }
        void Standardise(float[] x) { for (long i = 0; i < x.Length; i++) { int f = (int)(i % F); x[i] = (x[i] - mean[f]) / std[f]; } }
        var xtn = (float[])xt.Clone(); Standardise(xtn);
        var xvn = (float[])xv.Clone(); Standardise(xvn);

        torch.manual_seed(seed);
        using var net = nn.Sequential(("l1", nn.Linear(F, o.Hidden)), ("r1", nn.ReLU()), ("l2", nn.Linear(o.Hidden, o.Hidden)), ("r2", nn.ReLU()), ("l3", nn.Linear(o.Hidden, K)));
        net.to(device);
        using var opt = torch.optim.Adam(net.parameters(), o.LearningRate);
        using var Xt = torch.tensor(xtn, [N, F], device: device);
        using var Yt = torch.tensor(yt, device: device);
        using var Xv = torch.tensor(xvn, [yv.Length, F], device: device);
        using var Yv = torch.tensor(yv, device: device);
        const int batch = 4096;
        double best = double.MaxValue; int bestEpoch = 0, epoch;
        Dictionary<string, float[]>? bestWeights = null;
        for (epoch = 1; epoch <= o.MaxEpochs; epoch++)
        {
            cancel.ThrowIfCancellationRequested();
            net.train();
            using (var scope = torch.NewDisposeScope())
            {
                var perm = torch.randperm(N, device: device);
                for (int b = 0; b < N; b += batch)
                {
                    var idx = perm.slice(0, b, Math.Min(N, b + batch), 1);
                    opt.zero_grad();
                    var loss = nn.functional.cross_entropy(net.forward(Xt.index_select(0, idx)), Yt.index_select(0, idx));
                    loss.backward();
                    opt.step();
                    scope.DisposeEverythingBut(perm);
                }
            }
            double vloss;
            net.eval();
            using (torch.no_grad())
            using (var scope = torch.NewDisposeScope())
                vloss = nn.functional.cross_entropy(net.forward(Xv), Yv).item<float>();
            if (vloss < best - 1e-5) { best = vloss; bestEpoch = epoch; bestWeights = Export(net); }
            else if (epoch - bestEpoch >= o.Patience) break;
        }
        var w = bestWeights ?? throw new RefinerNotTrainableException($"the refinement's validation loss was never finite in {epoch - 1} epochs on {N:N0} training and {yv.Length:N0} validation pixels");
        var result = shell with { FeatureMean = mean, FeatureStd = std, W1 = w["l1.w"], B1 = w["l1.b"], W2 = w["l2.w"], B2 = w["l2.b"], W3 = w["l3.w"], B3 = w["l3.b"], TrainingPixels = N };
        // the validation pixels through the C# classifier the painter uses: refined and coarse accuracy on the same pixels
        var refiner = new PixelRefiner(result);
        var vc = new byte[yv.Length]; var vp = new float[yv.Length];
        refiner.ClassifyMany(xv.AsSpan(0, yv.Length * F), vc, vp);
        long right = 0, coarseRight = 0;
        for (int i = 0; i < yv.Length; i++)
        {
            if (vc[i] == yv[i]) right++;
            if (cv[i] == yv[i]) coarseRight++;
        }
        result = result with { ValidationAccuracy = (double)right / Math.Max(1, yv.Length), ValidationCoarseAccuracy = (double)coarseRight / Math.Max(1, yv.Length) };
        log($"refiner: best epoch {bestEpoch} of {epoch - 1}, validation loss {best:F4}; on the validation fields' flagged pixels {result.ValidationAccuracy:P2} refined against {result.ValidationCoarseAccuracy:P2} coarse; {sw.Elapsed.TotalSeconds:F1}s");
        return result;
    }

    private static (float[] X, long[] Y, byte[] Coarse) Take(float[] x, long[] y, byte[] c, int[] idx, int F)
    {
        var xo = new float[(long)idx.Length * F]; var yo = new long[idx.Length]; var co = new byte[idx.Length];
        for (int j = 0; j < idx.Length; j++) { x.AsSpan(idx[j] * F, F).CopyTo(xo.AsSpan(j * F, F)); yo[j] = y[idx[j]]; co[j] = c[idx[j]]; }
        return (xo, yo, co);
    }

    private static Dictionary<string, float[]> Export(nn.Module net)
    {
        var d = new Dictionary<string, float[]>();
        foreach (var (name, p) in net.named_parameters())
        {
            using var cpu = p.detach().cpu();
            string layer = name.Split('.')[0];
            if (name.EndsWith("weight"))
            {
                // torch keeps [out, in]; the painter reads [in, out]
                using var t = cpu.t().contiguous();
                d[layer + ".w"] = t.data<float>().ToArray();
            }
            else d[layer + ".b"] = cpu.data<float>().ToArray();
        }
        return d;
    }

    /// <summary>
    /// The classes whose nodes are all refined: a structure a few pixels wide (a membrane between cells, a fibre) that
    /// runs through the inside of another class's superpixels is never their majority, so the coarse nodes that hold it
    /// are sure and agree with their neighbours, and the boundary rule never looks at its pixels. Measured on the training
    /// graphs from their nodes' class histograms: a class c is refined whole when its sure nodes (not flagged by the
    /// boundary and probability rule) hold at least <see cref="RefineOptions.HoldShare"/> of some class k's pixels, and k
    /// loses at least <see cref="RefineOptions.LostShare"/> of its pixels to the sure nodes of other classes altogether.
    /// </summary>
    /// <param name="why">one line per class refined whole, with the figures that decided it</param>
    /// <param name="names">the model's class names (their count is the model's classes)</param>
    public static int[] ClassesToRefineWhole(IReadOnlyList<RefineInput> inputs, RefineOptions o, IReadOnlyList<string> names, out List<string> why)
    {
        why = [];
        int K = names.Count;
        var total = new long[K]; var lost = new long[K]; var held = new long[K * K]; // held[c * K + k]: k's pixels in sure nodes called c
        foreach (var input in inputs)
        {
            if (input.ClassHist is not { } hist) continue;
            int HK = input.HistClasses, n = input.Classes.Length;
            if (hist.Length != (long)n * HK) continue;
            var flags = input.Flags(o.Threshold, K);
            for (int v = 0; v < n; v++)
            {
                int c = input.Classes[v];
                for (int k = 0; k < Math.Min(HK, K); k++)
                {
                    long px = hist[(long)v * HK + k];
                    if (px == 0) continue;
                    total[k] += px;
                    if (flags[v] || c == k) continue;
                    lost[k] += px; held[c * K + k] += px;
                }
            }
        }
        if (total.Any(t => t > 0))
            why.Add("share of each class's pixels in sure nodes of other classes on the training graphs: " +
                string.Join(", ", Enumerable.Range(0, K).Where(k => total[k] > 0).Select(k => $"{names[k]} {100.0 * lost[k] / total[k]:F1} %")));
        var refine = new SortedSet<int>();
        for (int k = 0; k < K && o.LostShare < 1; k++)
        {
            if (total[k] == 0 || lost[k] < o.LostShare * total[k]) continue;
            for (int c = 0; c < K; c++)
                if (c != k && held[c * K + k] >= o.HoldShare * total[k])
                {
                    refine.Add(c);
                    why.Add($"every node called {names[c]} is refined: on the training graphs its sure nodes hold {100.0 * held[c * K + k] / total[k]:F1} % of {names[k]}'s pixels, " +
                        $"and {names[k]} loses {100.0 * lost[k] / total[k]:F1} % of its pixels to sure nodes of other classes");
                }
        }
        return refine.ToArray();
    }

    /// <summary>The flagged pixels of the graphs, sampled: features, true class, coarse class.</summary>
    /// <param name="loaded">the first graphs, already through the coarse model (the rest are loaded here)</param>
    private static (float[] X, long[] Y, byte[] Coarse) Collect(IReadOnlyList<string> graphs, IReadOnlyList<RefineInput> loaded, ModelSpec spec, GnnModel model, Device device,
        PixelRefiner featureOnly, RefineOptions o, int K, Random rnd, Action<string> log)
    {
        var xs = new List<float>(); var ys = new List<long>(); var cs = new List<byte>();
        int F = featureOnly.Features;
        int perGraph = Math.Min(o.PixelsPerGraph, Math.Max(1000, o.MaxPixels / graphs.Count));
        for (int gi = 0; gi < graphs.Count; gi++)
        {
            var input = gi < loaded.Count ? loaded[gi] : RefineInput.Load(graphs[gi], spec, model, device);
            if (input.MaskPath is null) throw new InvalidDataException($"{graphs[gi]}: graph was built without a mask: nothing to train the refiner on");
            if (input.Channels != featureOnly.Spec.Channels) throw new InvalidDataException($"{graphs[gi]}: {input.Channels} channels, the first graph has {featureOnly.Spec.Channels}");
            var flags = input.Flags(featureOnly.Spec);
            long flaggedArea = 0;
            for (int v = 0; v < flags.Length; v++) if (flags[v]) flaggedArea += input.Area[v];
            if (flaggedArea == 0) continue;
            double keep = Math.Min(1.0, (double)perGraph / flaggedArea);
            var (blocks, sources) = input.Open(featureOnly, flags);
            using (sources)
            using (var mask = VipsImageSource.Open(input.MaskPath, 0, firstBandOnly: true))
            {
                if (mask.Width != blocks.Width || mask.Height != blocks.Height) throw new InputFileException(input.MaskPath, $"mask is {mask.Width}x{mask.Height}, the image {blocks.Width}x{blocks.Height}");
                foreach (var core in RefineBlocks.Blocks(blocks.Width, blocks.Height, o.Block))
                {
                    var (f, pix, nodes) = blocks.FlaggedFeatures(core);
                    if (pix.Length == 0) continue;
                    var truth = input.MaskClasses(mask, core);
                    for (int j = 0; j < pix.Length; j++)
                    {
                        byte t = truth[pix[j]];
                        if (t == 255 || t >= K) continue;
                        if (keep < 1 && rnd.NextDouble() >= keep) continue;
                        for (int q = 0; q < F; q++) xs.Add(f[j * F + q]);
                        ys.Add(t); cs.Add(input.Classes[nodes[j]]);
                    }
                }
            }
        }
        return (xs.ToArray(), ys.ToArray(), cs.ToArray());
    }
}

/// <summary>The refinement trained into a model file, on the model's own training graphs.</summary>
public static class RefineModelFile
{
    /// <param name="checkImage">refuses an image the graphs name (a data-roots check), with the reason; null: all allowed</param>
    /// <param name="outPath">where the refined model is written (atomically, once it is trained); null: over
    /// <paramref name="modelPath"/>. Nothing is written there when the model cannot be read or the refinement fails.</param>
    /// <returns>what the training summary records</returns>
    /// <param name="ct">stops the training (Ctrl-C) before anything is written</param>
    public static object Train(string modelPath, RefineOptions ro, int seed, string device, Action<string> log, Func<string, string?>? checkImage = null,
        string? outPath = null, CancellationToken ct = default)
    {
        var dev = TorchDevice.Pick(device);
        var (spec, model) = ModelFile.Load(modelPath, dev);
        outPath ??= modelPath;
        using (model)
        {
            var sw = Stopwatch.StartNew();
            // the refinement learns from the model's own training graphs, with their node maps and images: each named
            // before any is read
            foreach (var g in spec.TrainGraphs.Concat(spec.ValidationGraphs).Distinct())
                if (!File.Exists(g)) throw new FileNotFoundException($"{modelPath}: its training graph {g} is not there any more (the refinement trains on the model's own training graphs: rebuild them there, or train again)");
            if (RefineInput.MissingFor(spec.TrainGraphs.Concat(spec.ValidationGraphs).Distinct()) is { } missing)
                throw new InvalidDataException($"{modelPath}: cannot refine it: {missing}");
            if (checkImage is not null)
                foreach (var g in spec.TrainGraphs.Concat(spec.ValidationGraphs).Distinct())
                    if (checkImage(RefineInput.ImageOf(g)) is { } why) throw new UnsafePathException(why);
            // one graph trains and validates on its nodes: the refiner then holds out a tenth of its pixels instead
            string[] validation = spec.ValidationGraphs.SequenceEqual(spec.TrainGraphs) ? [] : spec.ValidationGraphs;
            var refiner = RefinerTrainer.Train(spec, model, dev, spec.TrainGraphs, validation, ro, seed, log, ct);
            ModelFile.Save(outPath, spec with { Refiner = refiner }, model);
            log($"boundary refinement written into {outPath} ({sw.Elapsed.TotalSeconds:F1}s)");
            return new { threshold = ro.Threshold, refineClasses = refiner.RefineClasses, refiner.Hidden, refiner.Sigmas, refiner.ContextSigma, refiner.TrainingPixels, refiner.ValidationAccuracy, refiner.ValidationCoarseAccuracy, seconds = sw.Elapsed.TotalSeconds };
        }
    }
}

/// <summary>The refined mask of a labelled graph against its ground truth, pixel by pixel, block by block.</summary>
public static class RefinedEvaluation
{
    public sealed record Result(long[] Confusion, long Refined, long Changed);

    public static Result Run(RefineInput input, PixelRefiner refiner, int block = 512)
    {
        if (input.MaskPath is null) throw new InvalidDataException($"{input.GraphPath}: graph was built without a mask: nothing to measure against");
        int K = refiner.Spec.Classes;
        var cm = new long[K * K];
        var (blocks, sources) = input.Open(refiner, input.Flags(refiner.Spec));
        using (sources)
        using (var mask = VipsImageSource.Open(input.MaskPath, 0, firstBandOnly: true))
        {
            if (mask.Width != blocks.Width || mask.Height != blocks.Height) throw new InputFileException(input.MaskPath, $"mask is {mask.Width}x{mask.Height}, the image {blocks.Width}x{blocks.Height}");
            foreach (var core in RefineBlocks.Blocks(blocks.Width, blocks.Height, block))
            {
                var cls = new byte[core.Pixels];
                blocks.Paint(core, cls, default, noNode: 255); // glass (no node) is left out, as the coarse node histograms leave it
                var truth = input.MaskClasses(mask, core);
                for (int i = 0; i < cls.Length; i++)
                {
                    int t = truth[i];
                    if (t == 255 || cls[i] == 255) continue;
                    if (t >= K) throw new InvalidDataException($"{input.MaskPath}: class {t} is not known to the model");
                    cm[t * K + cls[i]]++;
                }
            }
            return new Result(cm, blocks.RefinedPixels, blocks.ChangedPixels);
        }
    }
}
