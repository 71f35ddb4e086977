using System.CommandLine;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Cli;

public static class DemoCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var output = new Option<DirectoryInfo>("--out", "-o") { Description = "Working directory for the sample data and results.", DefaultValueFactory = _ => new DirectoryInfo("runs/demo") };
        var size = new Option<int>("--size") { Description = "Side of the generated square image in pixels.", DefaultValueFactory = _ => 4096 }.Within(64, 1 << 20);
        var workers = WorkersOption.Create("Tile worker actors");
        var cmd = new Command("demo", "The main job end to end on generated sample data: generate images with masks, build their superpixel graphs, train a GNN, segment a held-out image and measure it.")
        {
            output, size, workers,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            var dir = pr.GetValue(output)!.FullName;
            int n = pr.GetValue(size), nWorkers = pr.GetValue(workers);
            var data = Path.Combine(dir, "data");
            // 1. sample data: three training fields and one large held-out image, each with its exact mask
            string trImg = Path.Combine(data, "train", "images"), trMask = Path.Combine(data, "train", "masks");
            Directory.CreateDirectory(trImg); Directory.CreateDirectory(trMask);
            for (int s = 1; s <= 3; s++)
            {
                var (img, mask) = GenerateCommand.Run(Path.Combine(data, "gen"), $"field{s}", 1024, 1024, "colonies", 16, 1, 100 + s, ct);
                File.Move(img, Path.Combine(trImg, $"field{s}.tif"), true);
                File.Move(mask, Path.Combine(trMask, $"field{s}.tif"), true);
            }
            var (held, heldMask) = GenerateCommand.Run(data, "sample", n, n, "colonies", 16, 1, 1, ct);
            // 2. its superpixel graph, with labels from the mask (the tiled, stitched engine)
            var graphDir = Path.Combine(dir, "graph");
            if (await GraphCommand.RunAsync(new GraphJobSpec(held, heldMask, graphDir), nWorkers, ct) != ExitCodes.Ok) return ExitCodes.Failed;
            // 3. a GNN trained on the training fields (their graphs are built on the way)
            var modelDir = Path.Combine(dir, "model");
            var graphs = new List<string>();
            foreach (var (img, mask) in TrainCommand.Pair(trImg, trMask))
            {
                var gdir = Path.Combine(modelDir, "graphs", Path.GetFileNameWithoutExtension(img));
                if (await GraphCommand.RunAsync(new GraphJobSpec(img, mask, gdir, Features: GpuTrainer.Recipes.Best.Features), nWorkers, ct) != ExitCodes.Ok) return ExitCodes.Failed;
                graphs.Add(Path.Combine(gdir, Core.IO.GraphOutputs.GraphFile));
            }
            var trained = GpuTrainer.Trainer.Train(graphs, modelDir, new GpuTrainer.TrainOptions { Edges = GpuTrainer.Recipes.Best.Edges, Architecture = GpuTrainer.Recipes.Best.Architecture, ValidationFraction = 0.34 }, s => Log.Information("{Step}", s), ct);
            // and its boundary refinement, as `actorseg train` adds by default
            TrainCommand.RefineModel(trained.BestModel, new GpuTrainer.RefineOptions(), 1, "auto");
            // 4. the held-out image segmented, and the result measured against its mask
            var mask2 = await SegmentCommand.RunAsync(held, trained.BestModel, Path.Combine(dir, "segment"), null, nWorkers, "auto", ct);
            if (mask2 is null) return ExitCodes.Failed;
            var (spec, model) = GpuTrainer.ModelFile.Load(trained.BestModel);
            var g = GpuTrainer.GraphSample.Load(Path.Combine(graphDir, Core.IO.GraphOutputs.GraphFile), spec.Edges);
            var pred = GpuTrainer.Predictor.Predict(spec, model, g, TorchSharp.torch.CPU);
            var coarse = GpuTrainer.PixelMetrics.FromHistograms([(g.ClassHist!, g.Classes, pred)], spec.Classes);
            var refined = GpuTrainer.RefinedEvaluation.Run(GpuTrainer.RefineInput.Load(Path.Combine(graphDir, Core.IO.GraphOutputs.GraphFile), spec, model, TorchSharp.torch.CPU), new Core.Refine.PixelRefiner(spec.Refiner!));
            var mt = GpuTrainer.PixelMetrics.FromConfusion(refined.Confusion, spec.Classes, coarse.SuperpixelCeiling);
            Log.Information("Demo finished. Held-out {Size}x{Size} image: pixel accuracy {Accuracy:P2} with the boundary refinement ({Coarse:P2} coarse), macro F1 {F1:F3}, superpixel ceiling {Ceiling:P2}. Mask {Mask}, overlay {Overlay}",
                n, n, mt.Accuracy, coarse.Accuracy, mt.MacroF1, mt.SuperpixelCeiling, mask2, Path.Combine(dir, "segment", "overlay.png"));
            Console.WriteLine(Path.Combine(dir, "segment", "overlay.png"));
            return ExitCodes.Ok;
        });
        return cmd;
    }
}
