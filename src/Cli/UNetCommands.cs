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
        var patch = new Option<int>("--patch") { DefaultValueFactory = _ => 128, Description = "Training patch size." };
        var width = new Option<int>("--base") { DefaultValueFactory = _ => 16, Description = "Channels of the first level (doubling per level)." };
        var depth = new Option<int>("--depth") { DefaultValueFactory = _ => 3, Description = "Down-sampling levels." };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 100, Description = "Maximum epochs (of --steps batches)." };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 40, Description = "Batches per epoch." };
        var patience = new Option<int>("--patience") { DefaultValueFactory = _ => 10, Description = "Early-stopping patience." };
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 1e-3, Description = "Adam learning rate." };
        var valFrac = new Option<double>("--val-frac") { DefaultValueFactory = _ => 0.15, Description = "Fraction of images for validation." };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto" };
        var cmd = new Command("unet-train", "Train the UNet baseline on image tiles (random patches with flips and rotations, early stopping).")
        { images, masks, output, patch, width, depth, epochs, steps, patience, lr, valFrac, seed, device };
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
                };
                var outDir = pr.GetValue(output)!.FullName;
                var r = UNetRunner.Train(pairs, outDir, o, s => Log.Information("{Step}", s));
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
        var cmd = new Command("unet-evaluate", "Pixel metrics of the UNet baseline on labelled images (sliding-window inference).") { model, images, masks, device };
        cmd.SetAction((pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                var pairs = TrainCommand.Pair(pr.GetValue(images)!.FullName, pr.GetValue(masks)!.FullName);
                var m = UNetRunner.Evaluate(pr.GetValue(model)!.FullName, pairs, true, pr.GetValue(device)!);
                Console.WriteLine($"images {pairs.Count}, pixels {m.Pixels:N0}, {sw.Elapsed.TotalSeconds:F1}s");
                Console.WriteLine(string.Format(CultureInfo.InvariantCulture, "pixel accuracy {0:P2}  macro F1 {1:F4}  micro Jaccard {2:F4}", m.Accuracy, m.MacroF1, m.MicroJaccard));
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
