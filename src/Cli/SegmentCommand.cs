using System.CommandLine;
using System.Text.Json;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Cli;

public static class SegmentCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var image = new Argument<FileInfo>("IMAGE") { Description = "The image to segment (any size: it is processed tile by tile)." };
        var model = new Option<FileInfo>("--model", "-m") { Description = "A model file from 'actorseg train' (best.model).", Required = true };
        var output = new Option<DirectoryInfo>("--out", "-o") { Description = "Output directory: mask.tif (pyramidal tiled BigTIFF of class ids), overlay.png, segment.json, graph/.", Required = true };
        var spacing = new Option<double?>("--spacing") { Description = "Seed spacing in pixels (default: the spacing the model was trained with)." };
        var workers = new Option<int>("--workers", "-w") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "Tile workers." };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto", Description = "auto, cpu or cuda." };
        var cmd = new Command("segment", "Segment an image with a trained model: superpixel graph, node classes, painted back to a full-size mask.")
        {
            image, model, output, spacing, workers, device,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            var outDir = pr.GetValue(output)!.FullName;
            try
            {
                var dev = TorchDevice.Pick(pr.GetValue(device));
                var modelPath = pr.GetValue(model)!.FullName;
                var (spec, m) = ModelFile.Load(modelPath, dev); // fail before any work if the model is bad
                double sp = pr.GetValue(spacing) ?? (spec.SeedSpacing > 0 ? spec.SeedSpacing : 40.96);
                var img = pr.GetValue(image)!.FullName;
                var graphDir = Path.Combine(outDir, "graph");
                var job = new GraphJobSpec(img, null, graphDir, Spacing: sp, Features: spec.FeatureSet);
                Log.Information("Segmenting {Image} with {Model} ({Conv}, {Edges} edges, {Features} features, spacing {Spacing:F1} px) on {Device}",
                    img, modelPath, spec.Architecture.Conv, spec.Edges, spec.FeatureSet, sp, TorchDevice.Describe(dev));
                if (await GraphCommand.RunAsync(job, pr.GetValue(workers), ct) != ExitCodes.Ok) return ExitCodes.Failed;
                var g = GraphSample.Load(Path.Combine(graphDir, GraphOutputs.GraphFile), spec.Edges);
                var pred = Predictor.Predict(spec, m, g, dev);
                var classes = pred.Select(p => (byte)p).ToArray();
                var maskPath = Path.Combine(outDir, "mask.tif");
                MaskPainter.Paint(Path.Combine(graphDir, GraphOutputs.NodeMapFile), classes, maskPath, new Progress<string>(s => Log.Information("{Step}", s)));
                var overlay = Path.Combine(outDir, "overlay.png");
                MaskPainter.Overlay(img, maskPath, overlay);
                var area = Core.IO.NpzReader.Read(Path.Combine(graphDir, GraphOutputs.GraphFile))["area"].AsSpan<long>().ToArray();
                var pixels = new long[spec.Classes];
                for (int v = 0; v < pred.Length; v++) pixels[pred[v]] += area[v];
                File.WriteAllText(Path.Combine(outDir, "segment.json"), JsonSerializer.Serialize(new
                {
                    image = img, model = modelPath, mask = maskPath, overlay, nodes = pred.Length, pixelsPerClass = pixels,
                }, new JsonSerializerOptions { WriteIndented = true }));
                Log.Information("Mask {Mask}, overlay {Overlay}; pixels per class [{Pixels}]", maskPath, overlay, string.Join(", ", pixels));
                Console.WriteLine(maskPath);
                return ExitCodes.Ok;
            }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException or ArgumentException or InvalidOperationException or Core.Imaging.InputFileException)
            {
                Log.Error("Segmentation failed: {Error}", e.Message);
                return ExitCodes.Failed;
            }
        });
        return cmd;
    }
}
