using System.CommandLine;
using System.Diagnostics;
using ActorSeg.Core.Imaging;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Cli;

public static class ExitCodes
{
    public const int Ok = 0, Failed = 1, Usage = 2;
    /// <summary>A cluster node that lost its coordinator for too long, or a client that could not reach one.</summary>
    public const int NoCoordinator = 3;
    /// <summary>The job database could not be reached at start.</summary>
    public const int NoDatabase = 4;

    /// <summary>Failures caused by the user's input or data (reported in one line, exit 1), as opposed to bugs. An
    /// <see cref="InvalidOperationException"/> counts only when ActorSeg's own code raised it (its messages say what to do,
    /// e.g. "training diverged …; try a lower --lr"); one from the runtime or a library ("Sequence contains no elements",
    /// "Collection was modified") is a fault of ActorSeg's and keeps its trace.</summary>
    public static bool IsInputError(Exception e) => e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException
        or ArgumentException or Core.Imaging.InputFileException or Core.Refine.RefinerNotTrainableException
        || e is InvalidOperationException && RaisedByActorSeg(e);

    private static bool RaisedByActorSeg(Exception e)
    {
        var name = e.TargetSite?.DeclaringType?.Assembly.GetName().Name;
        return name is not null && (name == "actorseg" || name.StartsWith("ActorSeg.", StringComparison.Ordinal));
    }

    /// <summary>The one line to print for an exception that escaped a command, when the user's input or environment caused it
    /// (a bad file or value, a path that cannot be written); null for a fault of ActorSeg's, which keeps its trace.</summary>
    public static string? DescribeUserError(Exception e)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerExceptions[0];
        return IsInputError(e) || e is IOException or UnauthorizedAccessException ? e.Message : null;
    }
}

/// <summary>Job progress for a person: a bar redrawn in place on a terminal, one plain line per report otherwise (logs, CI).</summary>
public static class Progress
{
    public static void Report(GraphJobProgress p)
    {
        double f = (double)p.TilesDone / Math.Max(1, p.TilesTotal);
        if (Console.IsErrorRedirected)
        {
            Console.Error.WriteLine($"  progress: {p.TilesDone}/{p.TilesTotal} tiles ({100 * f:F0}%), {p.MegapixelsPerSecond:F1} MP/s");
            return;
        }
        int width = 30, full = (int)Math.Round(f * width);
        Console.Error.Write($"\r  [{new string('#', full)}{new string('.', width - full)}] {p.TilesDone}/{p.TilesTotal} tiles, {p.MegapixelsPerSecond:F1} MP/s, {p.InFlight} in flight, {p.Retries} retries   ");
        if (p.TilesDone >= p.TilesTotal) Console.Error.WriteLine();
    }

    /// <summary>Ends an unfinished bar line before other output.</summary>
    public static void End() { if (!Console.IsErrorRedirected) Console.Error.WriteLine(); }
}

/// <summary>What a one-process command says of its output folder.</summary>
public static class OutputFolderLogging
{
    /// <summary>Says what this run found of an earlier one in the folder: the work folders it deleted, or kept.</summary>
    public static void LogEarlierRun(this Core.IO.OutputFolderLock folder)
    {
        foreach (var w in folder.RemovedWorkDirs)
            Log.Warning("Deleted {WorkDir}: the work folder of an earlier run in {OutDir} that was killed before its end", w, folder.Folder);
        foreach (var w in folder.KeptWorkDirs)
            Log.Warning("Kept {WorkDir}, a work folder of an earlier run in {OutDir} ({EarlierRun}) that cannot be known to have ended: delete it once that run is gone",
                w, folder.Folder, folder.EarlierRun);
    }
}

public static class GraphCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var image = new Argument<FileInfo>("IMAGE") { Description = "Image: TIFF/BigTIFF (tiled or stripped, 8/16-bit, grey or RGB, OME, pyramidal), PNG or JPEG." };
        var mask = new Option<FileInfo?>("--mask", "-m") { Description = "Ground-truth mask of the same size: gives each node a class histogram and majority label." };
        var output = new Option<DirectoryInfo>("--out", "-o") { Description = "Output directory: graph.npz, nodes.tif (node ids), nodes.ome.tif (the same as pyramidal OME-TIFF), graph.json.", Required = true };
        var page = new Option<int>("--level", "--page") { Description = LevelHelp, DefaultValueFactory = _ => 0 }.Within(0, 1 << 20);
        var mpp = new Option<double?>("--mpp") { Description = MppHelp };
        var maskMode = new Option<string>("--mask-mode") { Description = "binary: any non-zero value is foreground (class 1); classes: values are class ids 0..254.", DefaultValueFactory = _ => "binary" };
        maskMode.AcceptOnlyFromAmong("binary", "classes");
        var ignore = new Option<int?>("--ignore-value") { Description = "Mask value meaning 'unlabelled' (ignored for labels)." }.Within(0, 65535);
        var segments = new Option<int?>("--segments") { Description = "Target number of superpixels for the whole image (overrides --spacing)." }.Within(1, int.MaxValue);
        var spacing = new Option<double>("--spacing") { Description = "Seed spacing in pixels (default: about 40,000 superpixels per 67 megapixels).", DefaultValueFactory = _ => Core.Superpixels.SlicParameters.DefaultSpacing }.Within(2, double.PositiveInfinity);
        var compactness = new Option<double>("--compactness") { Description = "SLIC compactness (published recipe: 0.1).", DefaultValueFactory = _ => 0.1 }.Within(0, double.PositiveInfinity, loOpen: true);
        var sigma = new Option<double>("--sigma") { Description = "Gaussian smoothing before SLIC (published: 1).", DefaultValueFactory = _ => 1.0 }.Within(0, 20);
        var iterations = new Option<int>("--iterations") { Description = "SLIC iterations.", DefaultValueFactory = _ => 10 }.Within(1, 100);
        var window = new Option<double>("--window") { Description = "SLIC search half-window in spacings (1 = SLIC paper, 2 = scikit-image).", DefaultValueFactory = _ => 1.0 }.Within(0.5, 4);
        var minSize = new Option<double>("--min-size-factor") { Description = "Pieces smaller than this fraction of the mean superpixel merge into a neighbour.", DefaultValueFactory = _ => 0.1 }.Within(0, 1, hiOpen: true);
        var tileSize = new Option<int>("--tile-size") { Description = "Tile core size in pixels.", DefaultValueFactory = _ => 2048 };
        var halo = new Option<int?>("--halo") { Description = "Halo around each tile core in pixels (default: 10 seed spacings, which keeps tiled and whole-image superpixels identical on all but ~0.001% of pixels)." }.Within(0, Core.Pipeline.GraphRequest.MaxHalo);
        var k = new Option<int>("--k") { Description = "Nearest centroids per node for the kNN edges.", DefaultValueFactory = _ => 10 }.Within(1, 100);
        var workers = WorkersOption.Create("Tile worker actors");
        var noNodeMap = new Option<bool>("--no-node-map") { Description = "Do not write nodes.tif (nor nodes.ome.tif)." };
        var keepWork = new Option<bool>("--keep-work") { Description = "Keep the per-tile partial graphs in OUT/.work-JOB." };
        var features = new Option<string>("--features") { Description = "absolute (default, the best recipe's): the published 11 intensity features per channel plus gradient and local-variation statistics and boundary contrast, in the image's grey levels scaled to 8 bits (one unit for a whole collection); texture: the same features in z units of the image's own statistics; published: the 11 alone, in z units.", DefaultValueFactory = _ => GpuTrainer.Recipes.Best.Features };
        features.AcceptOnlyFromAmong(Core.Pipeline.GraphRequest.FeatureSets);
        var tissue = TissueOption();
        var series = SeriesOption();

        var cmd = new Command("graph", "Build the superpixel graph of an image, tile by tile, stitched without seams.")
        {
            image, mask, output, page, mpp, series, maskMode, ignore, segments, spacing, compactness, sigma, iterations, window, minSize, tileSize, halo, k, workers, noNodeMap, keepWork, features, tissue,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            int level; string? tissueMode;
            try { level = LevelFor(pr.GetValue(image)!.FullName, pr.GetValue(page), pr.GetValue(mpp), pr.GetValue(series) ?? -1); tissueMode = TissueValue(pr.GetValue(tissue)); }
            catch (InputFileException e) { Log.Error("{Error}", e.Message); return ExitCodes.Failed; }
            var spec = new GraphJobSpec(
                ImagePath: pr.GetValue(image)!.FullName, MaskPath: pr.GetValue(mask)?.FullName, OutDir: pr.GetValue(output)!.FullName,
                Page: level, MaskMode: pr.GetValue(maskMode)!, IgnoreValue: pr.GetValue(ignore),
                Segments: pr.GetValue(segments), Spacing: pr.GetValue(spacing), Compactness: pr.GetValue(compactness), Sigma: pr.GetValue(sigma),
                Iterations: pr.GetValue(iterations), WindowFactor: pr.GetValue(window), MinSizeFactor: pr.GetValue(minSize),
                TileSize: pr.GetValue(tileSize), Halo: pr.GetValue(halo), K: pr.GetValue(k),
                WriteNodeMap: !pr.GetValue(noNodeMap), KeepWork: pr.GetValue(keepWork), Features: pr.GetValue(features)!, Tissue: tissueMode,
                Series: pr.GetValue(series));
            int rc = await RunAsync(spec, pr.GetValue(workers), ct);
            if (rc == ExitCodes.Ok) Console.WriteLine(Path.Combine(spec.OutDir, Core.IO.GraphOutputs.GraphFile));
            return rc;
        });
        return cmd;
    }

    /// <summary>--tissue, shared by every command that builds graphs.</summary>
    public static Option<string?> TissueOption() => new("--tissue")
    {
        Description = "Where the tissue is: auto (detect it: Otsu on saturation and optical density at low resolution; the default for brightfield whole slides: colour slides OpenSlide reads and colour CZI slide scans with a pyramid), "
            + "none (the whole image; the default for other images), or a mask image (non-zero = tissue, any size in the image's proportions). "
            + "Tiles without tissue are skipped and glass gets no node (class 0 in the mask).",
    };

    /// <summary>The --tissue value as a job carries it: null (the default), auto, none, or the mask's full path (which must exist).</summary>
    public static string? TissueValue(string? v)
    {
        if (v is null) return null;
        if (v is "auto" or "none") return v;
        var full = Path.GetFullPath(v);
        if (!File.Exists(full)) throw new InputFileException(full, "tissue mask not found (--tissue takes auto, none or a mask image)");
        return full;
    }

    public const string SeriesHelp = "Which image of a file that holds several, from 0: a Zeiss CZI's scene (alone), a Leica LIF's image (actorseg info --series lists them). Without it a CZI's scenes of one slide are read together, else its first scene, and a LIF's first image.";

    public static Option<int?> SeriesOption() => new("--series") { Description = SeriesHelp };

    public const string LevelHelp = "Pyramid level of a whole slide or of an OME-TIFF pyramid (reduced levels as SubIFDs), or page of another multi-page TIFF (0 = full resolution).";
    public const string MppHelp = "Whole slides and OME-TIFF pyramids: use the level closest to this many microns per pixel without being coarser (instead of --level).";

    /// <summary>The level to read: --mpp picks a pyramid level by resolution, else --level as given.</summary>
    public static int LevelFor(string image, int level, double? mpp, int series = -1)
    {
        if (mpp is not { } m) return level;
        if (!(m > 0 && double.IsFinite(m))) throw new InputFileException(image, $"--mpp must be a positive number of microns per pixel (got {m})");
        if (!ImageSources.IsSlide(image))
        {
            // a TIFF pyramid (reduced levels as SubIFDs or pages): the same choice from level 0's pixel size and the levels' sizes
            var levels = ImageSources.PyramidLevels(image, series);
            if (levels.Length < 2)
                throw new InputFileException(image, "--mpp picks a pyramid level; this image has none (not a whole-slide format, nor a TIFF pyramid of SubIFDs or pages): use --level");
            if (PixelSize.MicronsPerPixel(image, 0, series) is not { } um)
                throw new InputFileException(image, "--mpp needs the image's pixel size, which the file does not state (no OME PhysicalSize, no resolution tags): choose a level with --level");
            int best = ImageSources.LevelNear(um.X, Enumerable.Range(0, levels.Length).Select(k => ImageSources.Downsample(levels, k).X), m);
            Log.Information("{Image}: level {Level} ({Mpp:0.###} µm/px) for --mpp {Asked}", image, best, um.X * ImageSources.Downsample(levels, best).X, m);
            return best;
        }
        using var s = OpenSlideSource.Open(image, direct: false); // its levels only
        int l = s.LevelFor(m);
        Log.Information("{Image}: level {Level} ({Mpp:0.###} µm/px) for --mpp {Asked}", image, l, (s.MppX ?? 0) * s.Levels[l].Downsample, m);
        return l;
    }

    public static async Task<int> RunAsync(GraphJobSpec spec, int workers, CancellationToken ct) =>
        await RunJobAsync(spec, workers, "auto", ct) is null ? ExitCodes.Failed : ExitCodes.Ok;

    /// <summary>Runs one job in this process (every role, embedded journal); null when it failed (already logged).</summary>
    public static async Task<GraphJobCompleted?> RunJobAsync(GraphJobSpec spec, int workers, string device, CancellationToken ct)
    {
        var jobId = JobIds.New();
        var sw = Stopwatch.StartNew();
        // one run at a time in an output folder; a run killed there before leaves work folders this one deletes
        using var folder = Core.IO.OutputFolderLock.Acquire(spec.OutDir, spec.ModelPath is null ? "graph" : "segment");
        folder.LogEarlierRun();
        // the job's work folder (under OUT/graph when it segments): noted before it exists, so that it goes if this run is
        // killed, and deleted below if this run stops before its job ends (its journal is this process's memory)
        folder.AddWorkDir(Core.IO.GraphOutputs.WorkDir(spec, jobId));
        bool ended = false;
        try
        {
            var outcome = await RunJobAsync(spec, workers, device, jobId, sw, ct);
            ended = true;
            return outcome;
        }
        finally
        {
            // cancelled (Ctrl-C) or thrown: the runtime is stopped by now; what its job left goes, unless asked to be kept,
            // and the earlier results it had set aside come back (a run killed outright has them put back by the next job here)
            if (!ended && !spec.KeepWork) folder.RemoveWorkDirs();
            if (!ended) PutBack(spec, jobId);
        }
    }

    private static void PutBack(GraphJobSpec spec, string jobId)
    {
        var (said, error) = Core.IO.EarlierResults.PutBack(spec.OutDir, jobId, spec.KeepWork);
        if (said is not null) Log.Information("Job {JobId}: {PutBack:l}", jobId, said);
        if (error is not null) Log.Error("Job {JobId}: {PutBack:l}", jobId, error);
    }

    private static async Task<GraphJobCompleted?> RunJobAsync(GraphJobSpec spec, int workers, string device, string jobId, Stopwatch sw, CancellationToken ct)
    {
        // the statistics pass runs while the actor system and its journal start; the job takes it over (checked)
        Core.Imaging.HistogramPrefetch.Start(spec.ImagePath, spec.Page, spec.Series ?? -1);
        // and the workers' tile buffers are sized and touched on another thread (taken by their first tiles)
        Core.Pipeline.GraphRequest? req = null;
        try { req = Coordinator.GraphCoordinatorActor.ToRequest(spec); }
        catch (ArgumentException) { } // a bad request: the job refuses it, saying why
        using var warm = req is null ? null : Core.Pipeline.WarmScratches.Start(req, workers);
        await using var rt = await LocalRuntime.StartAsync(workers, device: device);
        Log.Information("ActorSeg: {Image} with {Workers} tile workers (job {JobId})", spec.ImagePath, workers, jobId);
        await foreach (var m in rt.RunJobAsync(new SubmitGraphJob(jobId, spec), ct))
        {
            switch (m)
            {
                case GraphJobAccepted a:
                    Log.Information("{Width}x{Height} px, {Channels} channel(s): {Tiles} tiles, halo {Halo} px, {Seeds} seeds", a.Width, a.Height, a.Channels, a.Tiles, a.Halo, a.Seeds);
                    break;
                case GraphJobProgress p when p.Phase == "tiles" && p.TilesTotal > 0:
                    Progress.Report(p);
                    break;
                case GraphJobCompleted c:
                    Progress.End();
                    Log.Information("Done in {Seconds:F1}s: {Nodes} nodes, {Rag} adjacency edges, {Knn} kNN edges → {Out} (prepare {Prepare:F1}s, tiles {Tiles:F1}s, stitch {Stitch:F1}s, write {Write:F1}s, peak RSS {PeakRssMiB:F0} MiB)",
                        sw.Elapsed.TotalSeconds, c.Nodes, c.AdjacencyEdges, c.KnnEdges, c.OutDir, c.PrepareSeconds, c.TilesSeconds, c.StitchSeconds, c.WriteSeconds, Core.ProcessStats.PeakRssMiB());
                    if (c.TissueFraction is { } tf) Log.Information("Tissue {TissueFraction:P1} of the image; {TilesSkipped} glass-only tiles skipped", tf, c.TilesSkipped);
                    return c;
                case GraphJobFailed f:
                    Log.Error("Failed: {Error}", f.Error);
                    return null;
                case JobRefused r:
                    Log.Error("Refused: {Error}", r.Reason);
                    return null;
            }
        }
        return null;
    }
}
