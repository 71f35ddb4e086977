using ActorSeg.Core.IO;
using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using ActorSeg.GpuTrainer;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>The CNN baseline the GNN is compared with.</summary>
public static class UNetCommands
{
    public static Command Train(Option<bool> verbose)
    {
        var images = new Option<DirectoryInfo>("--images") { Required = true, Description = "Training images." };
        var masks = new Option<DirectoryInfo>("--masks") { Required = true, Description = "Masks paired by base name." };
        var output = new Option<DirectoryInfo>("--out", "-o") { Required = true, Description = "Model directory: best.unet, unet-curves.csv, unet-train.json." };
        var patch = new Option<int>("--patch") { DefaultValueFactory = _ => 128, Description = "Training patch size." }.Within(16, 1024);
        var width = new Option<int>("--base") { DefaultValueFactory = _ => 16, Description = "Channels of the first level (doubling per level)." }.Within(1, 256);
        var depth = new Option<int>("--depth") { DefaultValueFactory = _ => 3, Description = "Down-sampling levels." }.Within(1, 6);
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 100, Description = "Maximum epochs (of --steps batches)." }.Within(1, int.MaxValue);
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 40, Description = "Batches per epoch." }.Within(1, 1_000_000);
        var patience = new Option<int>("--patience") { DefaultValueFactory = _ => 10, Description = "Early-stopping patience." }.Within(1, int.MaxValue);
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 1e-3, Description = "Adam learning rate." }.Within(0, double.PositiveInfinity, loOpen: true);
        var valFrac = new Option<double>("--val-frac") { DefaultValueFactory = _ => 0.15, Description = "Fraction of images for validation." }.Within(0, 1, loOpen: true, hiOpen: true);
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto" };
        var maskMode = new Option<string>("--mask-mode") { Description = "binary (non-zero = class 1) or classes (values are class ids), as for the GNN commands.", DefaultValueFactory = _ => "binary" };
        maskMode.AcceptOnlyFromAmong("binary", "classes");
        var classes = new Option<string?>("--classes") { Description = "Names and colours of the classes, class 0 first: background:#000000,nucleus:#0060ff (kept in the model, used by unet-evaluate)." };
        var cmd = new Command("unet-train", "Train the UNet baseline on image tiles (random patches with flips and rotations, early stopping).")
        { images, masks, maskMode, output, patch, width, depth, epochs, steps, patience, lr, valFrac, seed, device, classes };
        cmd.SetAction((pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                var pairs = TrainCommand.Pair(pr.GetValue(images)!.FullName, pr.GetValue(masks)!.FullName);
                var o = new UNetTrainOptions
                {
                    Patch = pr.GetValue(patch), Base = pr.GetValue(width), Depth = pr.GetValue(depth), MaxEpochs = pr.GetValue(epochs),
                    StepsPerEpoch = pr.GetValue(steps), Patience = pr.GetValue(patience), LearningRate = pr.GetValue(lr),
                    ValidationFraction = pr.GetValue(valFrac), Seed = pr.GetValue(seed), Device = pr.GetValue(device)!,
                    BinaryMask = pr.GetValue(maskMode) == "binary", Classes = pr.GetValue(classes) is { } cs ? ClassTable.Parse(cs) : null,
                };
                var outDir = pr.GetValue(output)!.FullName;
                using var folder = Core.IO.OutputFolderLock.Acquire(outDir, "unet-train"); // one run at a time in a model folder
                var r = UNetRunner.Train(pairs, outDir, o, s => Log.Information("{Step}", s), ct);
                SafePaths.WriteAllText(Path.Combine(outDir, "unet-train.json"), JsonSerializer.Serialize(new { options = o, result = r }, new JsonSerializerOptions { WriteIndented = true }), "training summary");
                Console.WriteLine(r.BestModel);
                return Task.FromResult(ExitCodes.Ok);
            }
            catch (Exception e) when (ExitCodes.IsInputError(e))
            {
                Log.Error("UNet training failed: {Error}", e.Message);
                return Task.FromResult(ExitCodes.Failed);
            }
        });
        return cmd;
    }

    public static Command Evaluate(Option<bool> verbose)
    {
        var model = new Option<FileInfo>("--model", "-m") { Required = true, Description = "best.unet" };
        var images = new Option<DirectoryInfo>("--images") { Required = true };
        var masks = new Option<DirectoryInfo>("--masks") { Required = true };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto" };
        var maskMode = new Option<string?>("--mask-mode") { Description = "binary (non-zero = class 1) or classes (values are class ids) (default: as the model was trained)." };
        maskMode.AcceptOnlyFromAmong("binary", "classes");
        var output = new Option<DirectoryInfo?>("--out", "-o") { Description = "Write metrics.json here (overall, per class, confusion matrix)." };
        var cmd = new Command("unet-evaluate", "Pixel accuracy, per-class and macro F1/Dice, IoU, precision, recall and the confusion matrix of the UNet baseline on labelled images (sliding-window inference).")
        { model, images, masks, maskMode, device, output };
        cmd.SetAction((pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                if (pr.GetValue(output) is { } outDir) SafePaths.EnsureDirectory(outDir.FullName, "metrics folder");
                var pairs = TrainCommand.Pair(pr.GetValue(images)!.FullName, pr.GetValue(masks)!.FullName);
                var modelPath = pr.GetValue(model)!.FullName;
                var spec = UNetRunner.ReadSpec(modelPath);
                var mode = pr.GetValue(maskMode) ?? spec.MaskMode;
                if (mode != spec.MaskMode) Log.Warning("The model was trained with --mask-mode {Trained}; evaluating with {Mode}", spec.MaskMode, mode);
                var m = UNetRunner.Evaluate(modelPath, pairs, mode == "binary", pr.GetValue(device)!, ct);
                Console.WriteLine($"images {pairs.Count}, pixels {m.Pixels:N0}, {sw.Elapsed.TotalSeconds:F1}s");
                Console.WriteLine(string.Format(CultureInfo.InvariantCulture, "pixel accuracy {0:P2}  macro F1 {1:F4}  micro Jaccard {2:F4}", m.Accuracy, m.MacroF1, m.MicroJaccard));
                EvaluateCommand.PrintPerClass(m, spec.ClassTable);
                if (pr.GetValue(output) is { } od)
                {
                    SafePaths.WriteAllText(Path.Combine(od.FullName, "metrics.json"), JsonSerializer.Serialize(new
                    {
                        model = modelPath, maskMode = mode, images = pairs.Select(p => p.Image), overall = m, perClass = EvaluateCommand.PerClass(m, spec.ClassTable),
                    }, new JsonSerializerOptions { WriteIndented = true }), "metrics");
                }
                return Task.FromResult(ExitCodes.Ok);
            }
            catch (Exception e) when (ExitCodes.IsInputError(e))
            {
                Log.Error("UNet evaluation failed: {Error}", e.Message);
                return Task.FromResult(ExitCodes.Failed);
            }
        });
        return cmd;
    }
}
