using ActorSeg.Core.IO;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Cli;

public static class TrainCommand
{
    private static readonly string[] MaskExtensions = [".tif", ".tiff", ".png", ".jpg", ".jpeg"];
    /// <summary>Training images: the masks' formats, Zeiss CZI and Leica LIF.</summary>
    private static readonly string[] ImageExtensions = [.. MaskExtensions, ".czi", ".lif"];

    /// <summary>Pairs images with masks by base name, whatever their extensions.</summary>
    public static List<(string Image, string Mask)> Pair(string images, string masks)
    {
        if (!Directory.Exists(images)) throw new DirectoryNotFoundException($"{images}: no such directory");
        if (!Directory.Exists(masks)) throw new DirectoryNotFoundException($"{masks}: no such directory");
        var maskByBase = Directory.GetFiles(masks).Where(f => MaskExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .GroupBy(f => Path.GetFileNameWithoutExtension(f)).ToDictionary(g => g.Key, g => g.First());
        var pairs = new List<(string, string)>();
        var imageFiles = Directory.GetFiles(images).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToList();
        // each image's graph is named after its base name: two images of one base name would write one graph folder
        if (imageFiles.GroupBy(f => Path.GetFileNameWithoutExtension(f)).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new ArgumentException($"{images}: {string.Join(" and ", twice.Select(Path.GetFileName))} share the base name '{twice.Key}', which names both their graphs and their mask: rename one");
        foreach (var img in imageFiles)
        {
            var b = Path.GetFileNameWithoutExtension(img);
            if (maskByBase.TryGetValue(b, out var m)) pairs.Add((img, m));
            else Log.Warning("No mask for {Image} in {Masks}: skipped", img, masks);
        }
        if (pairs.Count == 0) throw new FileNotFoundException($"{images}: no image has a mask of the same base name in {masks}");
        return pairs;
    }

    /// <summary>Trains the boundary refinement for a trained model on the model's own training and validation graphs
    /// and writes it into the model file; returns what the training summary records.</summary>
    /// <summary><c>--refine-whole</c>: when a class's nodes are all refined (<see cref="RefinerTrainer.ClassesToRefineWhole"/>).</summary>
    public static Option<double> RefineWholeOption()
    {
        var o = new Option<double>("--refine-whole")
        {
            DefaultValueFactory = _ => new RefineOptions().LostShare,
            Description = "Refine every node of a class, sure or not, when on the training graphs another class loses at least this share of its pixels "
                + "to sure nodes of other classes, 5 % of them or more to this one's (a line or fibre a few pixels wide running through it); 1 turns it off.",
        };
        return o.Within(0, 1, loOpen: true); // refused as the command line is read, before any training
    }


    public static object RefineModel(string modelPath, RefineOptions ro, int seed, string device, string? outPath = null, CancellationToken ct = default) =>
        RefineModelFile.Train(modelPath, ro, seed, device, s => Log.Information("{Step}", s), outPath: outPath, ct: ct);

    public static Command Create(Option<bool> verbose)
    {
        var graphs = new Option<string[]>("--graphs", "-g") { Description = "Graphs from 'actorseg graph' (.npz files or directories), built with --mask.", AllowMultipleArgumentsPerToken = true };
        var images = new Option<DirectoryInfo?>("--images") { Description = "Images to build training graphs from (with --masks)." };
        var masks = new Option<DirectoryInfo?>("--masks") { Description = "Masks paired with --images by base name, whatever the extension." };
        var maskMode = new Option<string>("--mask-mode") { Description = "binary (non-zero = class 1) or classes.", DefaultValueFactory = _ => "binary" };
        maskMode.AcceptOnlyFromAmong("binary", "classes");
        var segments = new Option<int?>("--segments") { Description = "Superpixels per image when building graphs (default: spacing 41 px)." }.Within(1, int.MaxValue);
        var output = new Option<DirectoryInfo>("--out", "-o") { Description = "Model directory: best.model, last.model, curves.csv, split.json, train.json.", Required = true };
        var recipe = RecipeOptions.Recipe();
        var conv = RecipeOptions.Conv();
        var classes = new Option<string?>("--classes") { Description = "Names and colours of the classes, class 0 first: background:#000000,colony:#ff0000 (kept in the model; used by the overlay, mask.ome.tif and the report)." };
        var edges = RecipeOptions.Edges();
        var layers = RecipeOptions.Layers();
        var hidden = RecipeOptions.Hidden();
        var dropout = RecipeOptions.Dropout();
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 0.01, Description = "Adam learning rate." };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 500, Description = "Maximum epochs." };
        var patience = new Option<int>("--patience") { DefaultValueFactory = _ => Messages.TrainDefaults.Patience, Description = "Epochs without validation improvement before stopping." };
        lr.Validators.Add(r => { if (OptionRanges.TryValue(r, out double v) && !(v > 0 && double.IsFinite(v))) r.AddError($"--lr must be a finite number > 0 (got {v})"); });
        foreach (var o in new[] { epochs, patience })
            o.Validators.Add(r => { if (OptionRanges.TryValue(r, out int v) && v < 1) r.AddError($"{o.Name} must be at least 1 (got {v})"); });
        var valFrac = new Option<double>("--val-frac") { DefaultValueFactory = _ => 0.15, Description = "Fraction of graphs (or, with one graph, of its labelled nodes) held out for validation." }.Within(0, 1, loOpen: true, hiOpen: true);
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1, Description = "Seed for the split and the weights." };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto", Description = "auto (CUDA when present), cpu or cuda." };
        var workers = WorkersOption.Create("Tile workers when building graphs");
        var features = RecipeOptions.Features();
        var refine = new Option<bool>("--refine") { Description = "Require the boundary refinement (the default whenever the graphs have their node maps and images: fail instead of skipping it). The pixels of nodes with a neighbour of another class, or whose winning probability is under --refine-threshold, are classified one by one from multi-scale intensity features and the coarse graph's probabilities; segment and evaluate then apply it." };
        var noRefine = new Option<bool>("--no-refine") { Description = "Train the coarse GNN only." };
        var refineThreshold = new Option<double>("--refine-threshold") { DefaultValueFactory = _ => 0.9, Description = "With --refine: nodes whose winning probability is under this are refined even when their neighbours agree." }.Within(0, 1);
        var refineWhole = RefineWholeOption();
        var cmd = new Command("train", "Train a GNN node classifier on superpixel graphs (full-graph training, early stopping on validation loss).")
        {
            graphs, images, masks, maskMode, segments, output, recipe, conv, edges, layers, hidden, dropout, lr, epochs, patience, valFrac, seed, device, workers, features, classes, refine, noRefine, refineThreshold, refineWhole,
        };
        // refused as the command line is read, before any graph is built or any training
        cmd.Validators.Add(r =>
        {
            // (values the parser could not read are not read here: it reports them itself)
            if (OptionRanges.Flag(r, refine) && OptionRanges.Flag(r, noRefine)) r.AddError("--refine and --no-refine contradict each other");
            if (!OptionRanges.Given(r, graphs) && !OptionRanges.Given(r, images)) r.AddError("nothing to train on: give --graphs, or --images with --masks");
            if (OptionRanges.Given(r, images) != OptionRanges.Given(r, masks)) r.AddError("--images and --masks go together");
        });
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            var outDir = pr.GetValue(output)!.FullName;
            try
            {
                using var folder = Core.IO.OutputFolderLock.Acquire(outDir, "train"); // one run at a time in a model folder
                var classTable = pr.GetValue(classes) is { } cs ? Core.IO.ClassTable.Parse(cs) : null;
                var r0 = RecipeOptions.Resolve(pr, recipe, features, edges, conv, layers, hidden, dropout);
                var paths = new List<string>();
                if (pr.GetValue(graphs) is { Length: > 0 } gs) paths.AddRange(GraphSample.Discover(gs));
                var pairs = pr.GetValue(images) is { } imgDir
                    ? Pair(imgDir.FullName, pr.GetValue(masks)!.FullName) // (the command's own check: --images and --masks go together)
                    : [];
                if (paths.Count == 0 && pairs.Count == 0) throw new ArgumentException("nothing to train on: give --graphs, or --images with --masks");
                // what the refinement needs of the given graphs is checked before anything is built or trained
                if (pr.GetValue(refine) && RefineInput.MissingFor(paths) is { } lacking) throw new InvalidDataException($"--refine: {lacking}");
                if (pairs.Count > 0 && paths.FirstOrDefault(p => SafePaths.IsWithin(Path.GetFullPath(p), Path.Combine(outDir, "graphs"))) is { } inside)
                    throw new ArgumentException($"--graphs {inside} lies in {Path.Combine(outDir, "graphs")}, which the graphs built from --images replace: copy it elsewhere first, or give its images instead");
                // graphs built from --images go to a folder of their own, swapped in for OUT/graphs once every one is
                // built, and swapped back out if the run then fails: the graphs of the model already there stay its own
                using var built = pairs.Count == 0 ? null : new GraphsSwap(outDir);
                if (built is not null)
                {
                    foreach (var (img, mask) in pairs)
                    {
                        var spec = new GraphJobSpec(img, mask, built.Staged(Path.GetFileNameWithoutExtension(img)), MaskMode: pr.GetValue(maskMode)!, Segments: pr.GetValue(segments), WriteNodeMap: !pr.GetValue(noRefine), Features: r0.Features);
                        if (await GraphCommand.RunAsync(spec, pr.GetValue(workers), ct) != ExitCodes.Ok) return ExitCodes.Failed;
                    }
                    built.SwapIn();
                    paths.AddRange(pairs.Select(p => Path.Combine(built.Final(Path.GetFileNameWithoutExtension(p.Image)), Core.IO.GraphOutputs.GraphFile)));
                }
                RecipeOptions.WarnIfGraphsDiffer(paths, r0);
                var opts = new TrainOptions
                {
                    Architecture = r0.Architecture,
                    Edges = r0.Edges, LearningRate = pr.GetValue(lr), MaxEpochs = pr.GetValue(epochs), Patience = pr.GetValue(patience),
                    ValidationFraction = pr.GetValue(valFrac), Seed = pr.GetValue(seed), Device = pr.GetValue(device)!, Classes = classTable,
                };
                var missing = pr.GetValue(noRefine) ? null : RefineInput.MissingFor(paths);
                if (missing is not null && pr.GetValue(refine)) throw new InvalidDataException($"--refine: {missing}");
                Log.Information("Training {Conv} ({Layers} layers, width {Hidden}) with {Edges} edges on {Graphs} graph(s) → {Out}", opts.Architecture.Conv, opts.Architecture.Layers, opts.Architecture.Hidden, opts.Edges, paths.Count, outDir);
                // every file of the run is written to a staging folder and published only when the whole run succeeds
                var r = StagedTraining.Run(outDir, stage =>
                {
                    var log = StagedTraining.Log(s => Log.Information("{Step}", s), stage, outDir);
                    var r = Trainer.Train(paths, stage, opts, log, ct);
                    object? refined = null;
                    if (missing is not null) Log.Warning("No boundary refinement: {Reason} (build the graphs without --no-node-map, or train with --no-refine to silence this)", missing);
                    if (!pr.GetValue(noRefine) && missing is null)
                    {
                        var ro = new RefineOptions { Threshold = pr.GetValue(refineThreshold) }.WithLostShare(pr.GetValue(refineWhole));
                        try { refined = RefineModelFile.Train(r.BestModel, ro, pr.GetValue(seed), pr.GetValue(device)!, log, ct: ct); }
                        catch (Core.Refine.RefinerNotTrainableException e) when (!pr.GetValue(refine))
                        {
                            // the coarse model is trained and kept: only the refinement has nothing to learn from these graphs
                            Log.Warning("No boundary refinement: {Reason}; {Model} classifies nodes only (--refine makes this an error)", e.Message, StagedTraining.Final(outDir, r.BestModel));
                            refined = new { skipped = e.Message };
                        }
                    }
                    ct.ThrowIfCancellationRequested();
                    r = StagedTraining.Published(r, outDir);
                    SafePaths.WriteAllText(Path.Combine(stage, "train.json"), JsonSerializer.Serialize(new { recipe = pr.GetValue(recipe), overridden = r0.Overridden, options = opts, result = r, refiner = refined }, new JsonSerializerOptions { WriteIndented = true }), "training summary");
                    return r;
                });
                built?.Keep();
                Console.WriteLine(r.BestModel);
                return ExitCodes.Ok;
            }
            catch (Exception e) when (ExitCodes.IsInputError(e))
            {
                Log.Error("Training failed: {Error}", e.Message);
                return ExitCodes.Failed;
            }
        });
        return cmd;
    }
}

/// <summary>
/// The graphs <c>train --images</c> builds: into a folder of their own inside the model folder, swapped in for
/// OUT/graphs once every one is built. Until <see cref="Keep"/>, disposing swaps the model folder's earlier graphs back
/// (a run that failed or was cancelled after the swap leaves the earlier model's training graphs as they were).
/// </summary>
internal sealed class GraphsSwap : IDisposable
{
    private readonly string _graphs, _staged, _old;
    private bool _swapped, _kept;

    public GraphsSwap(string outDir)
    {
        SafePaths.EnsureDirectory(outDir, "model folder");
        _graphs = Path.Combine(outDir, "graphs");
        // folders a killed run left (the caller holds the model folder's lock, so no other run is using them): its new
        // graphs are removed if it had not swapped them in; if it had, they stay (the run may have published its model
        // before it was killed) and the earlier ones it had moved aside go, or come back where no graphs folder is left
        foreach (var old in Directory.EnumerateDirectories(outDir, ".graphs-old-*"))
        {
            if (!Directory.Exists(_graphs)) Directory.Move(old, _graphs);
            else Directory.Delete(old, recursive: true);
        }
        foreach (var stale in Directory.EnumerateDirectories(outDir, ".graphs-new-*")) Directory.Delete(stale, recursive: true);
        var id = Guid.NewGuid().ToString("N");
        _staged = Path.Combine(outDir, ".graphs-new-" + id);
        _old = Path.Combine(outDir, ".graphs-old-" + id);
    }

    /// <summary>Where the graph of <paramref name="name"/> is built.</summary>
    public string Staged(string name) => Path.Combine(_staged, name);
    /// <summary>Where it lies once swapped in.</summary>
    public string Final(string name) => Path.Combine(_graphs, name);

    public void SwapIn()
    {
        if (Directory.Exists(_graphs)) Directory.Move(_graphs, _old);
        Directory.Move(_staged, _graphs);
        _swapped = true;
    }

    /// <summary>The run succeeded: the new graphs stay, the earlier ones go.</summary>
    public void Keep()
    {
        _kept = true;
        if (Directory.Exists(_old)) Directory.Delete(_old, recursive: true);
    }

    public void Dispose()
    {
        if (_kept) return;
        try
        {
            if (_swapped)
            {
                Directory.Delete(_graphs, recursive: true);
                if (Directory.Exists(_old)) Directory.Move(_old, _graphs);
            }
            if (Directory.Exists(_staged)) Directory.Delete(_staged, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Warning("Could not put the model folder's earlier graphs back ({Error}); they are in {Old}", e.Message, _old);
        }
    }
}

/// <summary><c>actorseg refine</c>: trains the boundary refinement for a model trained before (its own training graphs).</summary>
public static class RefineCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = new Option<FileInfo>("--model", "-m") { Description = "A model file from 'actorseg train' whose training graphs still exist with their node maps and images.", Required = true };
        var output = new Option<FileInfo>("--out", "-o") { Description = "The refined model file to write (may be the input model itself).", Required = true };
        var threshold = new Option<double>("--refine-threshold") { DefaultValueFactory = _ => 0.9, Description = "Nodes whose winning probability is under this are refined even when their neighbours agree." }.Within(0, 1);
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 32, Description = "Width of the refiner's two hidden layers." };
        var sigmas = new Option<string>("--sigmas") { DefaultValueFactory = _ => "1,2,4", Description = "Gaussian scales of the intensity features in pixels (2 to 8 of them, comma-separated; the first two also give gradient magnitudes)." };
        var context = new Option<double>("--context") { DefaultValueFactory = _ => 0.25, Description = "Scale of the smoothed coarse probability field, as a fraction of the seed spacing." };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1, Description = "Seed for the pixel sample and the weights." };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto", Description = "auto, cpu or cuda." };
        var whole = TrainCommand.RefineWholeOption();
        var cmd = new Command("refine", "Train the boundary refinement of a trained model (what 'train --refine' adds) and write the refined model.") { model, output, threshold, whole, hidden, sigmas, context, seed, device };
        cmd.SetAction((pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                double[] sg;
                try { sg = pr.GetValue(sigmas)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray(); }
                catch (FormatException) { throw new ArgumentException($"--sigmas: '{pr.GetValue(sigmas)}' is not a list of numbers"); }
                if (sg.Length is < 2 or > 8 || sg.Any(v => !(v >= 0.5 && v <= Core.Refine.PixelRefinerSpec.MaxSigma))) throw new ArgumentException($"--sigmas: 2 to 8 scales in 0.5..{Core.Refine.PixelRefinerSpec.MaxSigma} (got '{pr.GetValue(sigmas)}')");
                if (!(pr.GetValue(context) > 0 && pr.GetValue(context) <= 4)) throw new ArgumentException($"--context must be in (0, 4] (got {pr.GetValue(context)})");
                var ro = new RefineOptions { Threshold = pr.GetValue(threshold), Hidden = pr.GetValue(hidden), Sigmas = sg, ContextFraction = pr.GetValue(context) }.WithLostShare(pr.GetValue(whole));
                if (!(ro.Threshold >= 0 && ro.Threshold <= 1)) throw new ArgumentException($"--refine-threshold must be in [0, 1] (got {ro.Threshold})");
                if (ro.Hidden is < 1 or > Core.Refine.PixelRefinerSpec.MaxHidden) throw new ArgumentException($"--hidden must be in [1, {Core.Refine.PixelRefinerSpec.MaxHidden}] (got {ro.Hidden})");
                var src = pr.GetValue(model)!.FullName; var dst = pr.GetValue(output)!.FullName;
                // read from the model given, written to --out only once refined: a model that cannot be read (or is
                // missing) is named as itself, and a failure leaves whatever --out held as it was
                SafePaths.EnsureWritableFile(dst, "--out");
                TrainCommand.RefineModel(src, ro, pr.GetValue(seed), pr.GetValue(device)!, dst, ct);
                Console.WriteLine(dst);
                return Task.FromResult(ExitCodes.Ok);
            }
            catch (Exception e) when (ExitCodes.IsInputError(e))
            {
                Log.Error("Refinement training failed: {Error}", e.Message);
                return Task.FromResult(ExitCodes.Failed);
            }
        });
        return cmd;
    }
}

public static class EvaluateCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var model = new Option<FileInfo>("--model", "-m") { Description = "A model file (best.model).", Required = true };
        var graphs = new Option<string[]>("--graphs", "-g") { Description = "Graphs built with --mask (.npz files or directories).", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<DirectoryInfo?>("--out", "-o") { Description = "Write metrics.json here." };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto", Description = "auto, cpu or cuda." };
        var noRefine = new Option<bool>("--no-refine") { Description = "Measure the coarse node classes only, even when the model has a boundary refinement." };
        var cmd = new Command("evaluate", "Pixel-level accuracy, F1/Dice, IoU and the superpixel ceiling of a model on labelled graphs (exact against the masks).")
        {
            model, graphs, output, device, noRefine,
        };
        cmd.SetAction((pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                // the metrics' folder first: a path that cannot take them fails before minutes of evaluation
                if (pr.GetValue(output) is { } outDir) SafePaths.EnsureWritableDirectory(outDir.FullName, "metrics folder");
                var dev = TorchDevice.Pick(pr.GetValue(device));
                var (spec, m) = ModelFile.Load(pr.GetValue(model)!.FullName, dev);
                var per = new List<(long[], int, long[])>();
                var rows = new List<object>();
                var refiner = spec.Refiner is { } rs && !pr.GetValue(noRefine) ? new Core.Refine.PixelRefiner(rs) : null;
                var refinedCm = new long[spec.Classes * spec.Classes];
                long refinedPixels = 0, changedPixels = 0;
                foreach (var path in GraphSample.Discover(pr.GetValue(graphs)!))
                {
                    ct.ThrowIfCancellationRequested(); // Ctrl-C stops between graphs
                    var g = GraphSample.Load(path, spec.Edges);
                    if (g.ClassHist is null) throw new InvalidDataException($"{path}: graph has no class histograms (build it with --mask)");
                    var pred = Predictor.Predict(spec, m, g, dev);
                    if (spec.GreyLevelMismatch(g) is { } unlike) Log.Warning("{Graph}: {Why}", path, unlike);
                    per.Add((g.ClassHist, g.Classes, pred));
                    var one = PixelMetrics.FromHistograms([(g.ClassHist, g.Classes, pred)], spec.Classes);
                    double? refinedAccuracy = null;
                    if (refiner is not null)
                    {
                        var r = RefinedEvaluation.Run(RefineInput.Load(path, spec, m, dev), refiner);
                        for (int i = 0; i < refinedCm.Length; i++) refinedCm[i] += r.Confusion[i];
                        refinedPixels += r.Refined; changedPixels += r.Changed;
                        refinedAccuracy = PixelMetrics.FromConfusion(r.Confusion, spec.Classes, one.SuperpixelCeiling).Accuracy;
                    }
                    rows.Add(new { graph = path, accuracy = refinedAccuracy ?? one.Accuracy, coarseAccuracy = one.Accuracy, macroF1 = one.MacroF1, microJaccard = one.MicroJaccard, ceiling = one.SuperpixelCeiling });
                }
                var coarse = PixelMetrics.FromHistograms(per, spec.Classes);
                var all = refiner is null ? coarse : PixelMetrics.FromConfusion(refinedCm, spec.Classes, coarse.SuperpixelCeiling);
                var inv = CultureInfo.InvariantCulture;
                Console.WriteLine($"graphs {per.Count}, pixels {all.Pixels:N0}{(refiner is null ? "" : $", refined {refinedPixels:N0} ({(double)refinedPixels / Math.Max(1, all.Pixels):P1}), changed {changedPixels:N0}")}");
                Console.WriteLine(string.Format(inv, "pixel accuracy {0:P2}  macro F1 {1:F4}  micro Jaccard {2:F4}  superpixel ceiling {3:P2}", all.Accuracy, all.MacroF1, all.MicroJaccard, all.SuperpixelCeiling));
                if (refiner is not null)
                    Console.WriteLine(string.Format(inv, "coarse (before refinement): pixel accuracy {0:P2}  macro F1 {1:F4}  micro Jaccard {2:F4}", coarse.Accuracy, coarse.MacroF1, coarse.MicroJaccard));
                PrintPerClass(all, spec.ClassTable);
                if (pr.GetValue(output) is { } od)
                {
                    SafePaths.WriteAllText(Path.Combine(od.FullName, "metrics.json"), JsonSerializer.Serialize(new { model = pr.GetValue(model)!.FullName, overall = all, refined = refiner is not null, coarse = refiner is null ? null : coarse, refinedPixels, changedPixels, perClass = PerClass(all, spec.ClassTable), graphs = rows }, new JsonSerializerOptions { WriteIndented = true }), "metrics");
                }
                return Task.FromResult(ExitCodes.Ok);
            }
            catch (Exception e) when (ExitCodes.IsInputError(e))
            {
                Log.Error("Evaluation failed: {Error}", e.Message);
                return Task.FromResult(ExitCodes.Failed);
            }
        });
        return cmd;
    }

    /// <summary>Per class: its name, pixels in the truth and predicted, F1/Dice, IoU, precision and recall; then the confusion matrix.</summary>
    public static void PrintPerClass(PixelMetrics m, IReadOnlyList<ClassInfo> table)
    {
        var inv = CultureInfo.InvariantCulture;
        var rows = PerClass(m, table);
        int w = Math.Max(5, rows.Max(r => r.Name.Length));
        Console.WriteLine($"{"class".PadRight(w + 4)}  {"truth px",14} {"predicted px",14}  F1/Dice   IoU      precision recall");
        foreach (var r in rows)
            Console.WriteLine(string.Format(inv, "{0,2} {1}  {2,14} {3,14}  {4:F4}    {5:F4}   {6:F4}    {7:F4}", r.Id, r.Name.PadRight(w + 1), r.TruePixels, r.PredictedPixels, r.F1, r.IoU, r.Precision, r.Recall));
        Console.WriteLine("confusion (rows: truth, columns: prediction)");
        for (int t = 0; t < m.Classes; t++) Console.WriteLine(string.Join(" ", Enumerable.Range(0, m.Classes).Select(p => m.Confusion[t * m.Classes + p].ToString(inv).PadLeft(14))));
    }

    public sealed record ClassRow(int Id, string Name, long TruePixels, long PredictedPixels, double F1, double IoU, double Precision, double Recall);

    /// <summary>The per-class figures of <paramref name="m"/>, named from the model's classes.</summary>
    public static ClassRow[] PerClass(PixelMetrics m, IReadOnlyList<ClassInfo> table) =>
        Enumerable.Range(0, m.Classes).Select(c => new ClassRow(c, c < table.Count ? table[c].Name : $"class {c}",
            Enumerable.Range(0, m.Classes).Sum(p => m.Confusion[c * m.Classes + p]), Enumerable.Range(0, m.Classes).Sum(t => m.Confusion[t * m.Classes + c]),
            m.F1[c], m.IoU[c], m.Precision?[c] ?? double.NaN, m.Recall?[c] ?? double.NaN)).ToArray();
}
