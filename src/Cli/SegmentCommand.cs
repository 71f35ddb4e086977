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
            try
            {
                var mask = await RunAsync(pr.GetValue(image)!.FullName, pr.GetValue(model)!.FullName, pr.GetValue(output)!.FullName,
                    pr.GetValue(spacing), pr.GetValue(workers), pr.GetValue(device)!, ct);
                if (mask is null) return ExitCodes.Failed;
                Console.WriteLine(mask);
                return ExitCodes.Ok;
            }
            catch (Exception e) when (ExitCodes.IsInputError(e))
            {
                Log.Error("Segmentation failed: {Error}", e.Message);
                return ExitCodes.Failed;
            }
        });
        return cmd;
    }

    /// <summary>Segments one image; returns the mask's path, or null when building the graph failed (already logged).</summary>
    public static async Task<string?> RunAsync(string img, string modelPath, string outDir, double? spacing, int workers, string device, CancellationToken ct)
    {
        var dev = TorchDevice.Pick(device);
        var (spec, m) = ModelFile.Load(modelPath, dev); // fail before any work if the model is bad
        double sp = spacing ?? (spec.SeedSpacing > 0 ? spec.SeedSpacing : 40.96);
        var graphDir = Path.Combine(outDir, "graph");
        var job = new GraphJobSpec(img, null, graphDir, Spacing: sp, Features: spec.FeatureSet);
        Log.Information("Segmenting {Image} with {Model} ({Conv}, {Edges} edges, {Features} features, spacing {Spacing:F1} px) on {Device}",
            img, modelPath, spec.Architecture.Conv, spec.Edges, spec.FeatureSet, sp, TorchDevice.Describe(dev));
        if (await GraphCommand.RunAsync(job, workers, ct) != ExitCodes.Ok) return null;
        var g = GraphSample.Load(Path.Combine(graphDir, GraphOutputs.GraphFile), spec.Edges);
        var pred = Predictor.Predict(spec, m, g, dev);
        var classes = pred.Select(p => (byte)p).ToArray();
        var maskPath = Path.Combine(outDir, "mask.tif");
        MaskPainter.Paint(Path.Combine(graphDir, GraphOutputs.NodeMapFile), classes, maskPath, new Progress<string>(s => Log.Information("{Step}", s)));
        var overlay = Path.Combine(outDir, "overlay.png");
        MaskPainter.Overlay(img, maskPath, overlay);
        var area = NpzReader.Read(Path.Combine(graphDir, GraphOutputs.GraphFile))["area"].AsSpan<long>().ToArray();
        var pixels = new long[spec.Classes];
        for (int v = 0; v < pred.Length; v++) pixels[pred[v]] += area[v];
        File.WriteAllText(Path.Combine(outDir, "segment.json"), JsonSerializer.Serialize(new
        {
            image = img, model = modelPath, mask = maskPath, overlay, nodes = pred.Length, pixelsPerClass = pixels,
        }, new JsonSerializerOptions { WriteIndented = true }));
        Log.Information("Mask {Mask}, overlay {Overlay}; pixels per class [{Pixels}]", maskPath, overlay, string.Join(", ", pixels));
        return maskPath;
    }
}
