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
        var output = new Option<DirectoryInfo>("--out", "-o") { Description = "Output directory: mask.tif (pyramidal tiled BigTIFF of class ids), mask.ome.tif, prob.tif (per pixel the painted class's probability × 255, uint8, pyramidal), objects.geojson, overlay.png, segment.json, graph/ (with probs.npy, the nodes' class probabilities).", Required = true };
        var spacing = new Option<double?>("--spacing") { Description = "Seed spacing in pixels (default: the spacing the model was trained with)." }.Within(2, double.PositiveInfinity);
        var workers = WorkersOption.Create("Tile workers");
        var tileSize = new Option<int>("--tile-size") { DefaultValueFactory = _ => 2048, Description = "Tile size in pixels." };
        var device = new Option<string>("--device") { DefaultValueFactory = _ => "auto", Description = "auto, cpu or cuda." };
        var level = new Option<int>("--level", "--page") { Description = GraphCommand.LevelHelp, DefaultValueFactory = _ => 0 };
        var mpp = new Option<double?>("--mpp") { Description = GraphCommand.MppHelp };
        var tissue = GraphCommand.TissueOption();
        var objects = ObjectFlags.Format();
        var simplify = ObjectFlags.Simplify();
        var noRefine = new Option<bool>("--no-refine") { Description = "Paint the coarse node classes even when the model has a boundary refinement (train --refine)." };
        var series = GraphCommand.SeriesOption();
        var cmd = new Command("segment", "Segment an image or whole slide with a trained model: superpixel graph, node classes, painted back to a full-size mask (mask.tif and mask.ome.tif).")
        {
            image, model, output, spacing, workers, device, tileSize, level, mpp, series, tissue, objects, simplify, noRefine,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                int lv = GraphCommand.LevelFor(pr.GetValue(image)!.FullName, pr.GetValue(level), pr.GetValue(mpp), pr.GetValue(series) ?? -1);
                var mask = await RunAsync(pr.GetValue(image)!.FullName, pr.GetValue(model)!.FullName, pr.GetValue(output)!.FullName,
                    pr.GetValue(spacing), pr.GetValue(workers), pr.GetValue(device)!, ct, pr.GetValue(tileSize), lv, GraphCommand.TissueValue(pr.GetValue(tissue)),
                    pr.GetValue(objects)!, pr.GetValue(simplify), refine: !pr.GetValue(noRefine), series: pr.GetValue(series));
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

    /// <summary>Why an image of <paramref name="channels"/> channels cannot be classified by the model (its graph would
    /// have other features than the model was trained on), without the image's name; null when it can.</summary>
    internal static string? ChannelMismatch(ModelSpec spec, string modelPath, int channels) =>
        Core.IO.ModelFileFormat.ChannelMismatch(spec.FeatureNames, modelPath, channels);

    /// <summary>Warns when the image is read at a pixel size more than 1.25× away from the model's training images'
    /// (<see cref="ModelSpec.ScaleMismatch"/>): the job still runs.</summary>
    public static void WarnIfOtherScale(ModelSpec spec, string modelPath, string image, int level, int series = -1)
    {
        if (spec.ScaleMismatch(Core.Imaging.PixelSize.MicronsPerPixel(image, level, series)?.X) is { } scale) Log.Warning("{Image}: {Why} ({Model})", image, scale, modelPath);
    }

    /// <summary>Segments one image through the same roles a cluster runs (tile workers build the graph, the coordinator
    /// stitches it, the trainer classifies the nodes, a worker paints the mask); returns the mask's path, or null when
    /// the job failed (already logged).</summary>
    public static async Task<string?> RunAsync(string img, string modelPath, string outDir, double? spacing, int workers, string device, CancellationToken ct, int tileSize = 2048, int level = 0,
        string? tissue = null, string objects = "geojson", double simplify = 0, bool refine = true, int? series = null)
    {
        var dev = TorchDevice.Pick(device);
        var spec = ModelFile.ReadSpec(modelPath); // fail before any work if the model is bad
        // and before the graph is built if the image's channels give other features than the model was trained on
        int channels;
        using (var probe = Core.Imaging.ImageSources.Open(img, level, series ?? -1)) channels = probe.Channels;
        if (ChannelMismatch(spec, modelPath, channels) is { } why) throw new InvalidDataException($"{img}: {why}");
        // a model trained at another resolution still runs, but the user is told
        WarnIfOtherScale(spec, modelPath, img, level, series ?? -1);
        double sp = Recipes.GraphSpacing(spec, spacing);
        var job = new GraphJobSpec(Path.GetFullPath(img), null, Path.GetFullPath(outDir), Page: level, Spacing: sp, TileSize: tileSize, Features: spec.FeatureSet, ModelPath: Path.GetFullPath(modelPath), Device: device,
            Tissue: tissue, Objects: objects, Simplify: simplify, Refine: refine, Series: series);
        Log.Information("Segmenting {Image} with {Model} ({Conv}, {Edges} edges, {Features} features, spacing {Spacing:F1} px{Refinement}) on {Device}",
            img, modelPath, spec.Architecture.Conv, spec.Edges, spec.FeatureSet, sp, spec.Refiner is null ? "" : refine ? ", boundary refinement" : ", boundary refinement off", TorchDevice.Describe(dev));
        var done = await GraphCommand.RunJobAsync(job, workers, device, ct);
        if (done?.MaskPath is null) return null;
        if (done.TissueFraction is { } tf)
            Log.Information("Tissue covered {TissueFraction:P1} of the image; {TilesSkipped} glass-only tiles skipped (tissue map {TissueMap})", tf, done.TilesSkipped, Path.Combine(outDir, "graph", Core.IO.GraphOutputs.TissueFile));
        var probMap = Path.Combine(Path.GetFullPath(outDir), AssignmentPaths.ProbabilityMapFile);
        Log.Information("Mask {Mask}, overlay {Overlay}{Objects}{ProbabilityMap}; pixels per class [{Pixels}]", done.MaskPath, Path.Combine(outDir, "overlay.png"),
            AssignmentPaths.ObjectsFile(Path.GetFullPath(outDir), objects) is { } op ? $", objects {op}" : "", File.Exists(probMap) ? $", probability map {probMap}" : "",
            string.Join(", ", done.PixelsPerClass ?? []));
        return done.MaskPath;
    }
}
