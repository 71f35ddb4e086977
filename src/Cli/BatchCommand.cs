using ActorSeg.Core.Imaging;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using Akka.Actor;
using Serilog;
using Vips = NetVips;

namespace ActorSeg.Cli;

/// <summary>One slide of a batch, as the input named it.</summary>
/// <summary>A slide of a batch; <paramref name="Series"/>: which image of a file that holds several (a manifest's
/// 'series' column; null: the default image).</summary>
public sealed record BatchSlide(string Name, string Image, string? Mask, string? Split, int? Series = null);

/// <summary>What happened to one slide. <paramref name="TissueFraction"/> and <paramref name="TilesSkipped"/> come from
/// tissue detection (the job's summary) and are null where it did not report them. <paramref name="Warnings"/>: why its
/// classes may be wrong although it ran (read at another scale than the model's training images, grey levels unlike
/// theirs), or null.</summary>
public sealed record BatchRow(string Name, string Image, string? Mask, string? Split, string Status, string? Reason,
    int Nodes = 0, double Seconds = 0, PixelMetrics? Metrics = null, int Level = 0, double? MicronsPerPixel = null,
    double? TissueFraction = null, int? TilesSkipped = null, string? Warnings = null);

/// <summary>
/// Reads a batch: a folder, a glob, or a CSV manifest (image[,mask][,split][,series] with a header row). Rows that cannot run
/// (a missing file, a duplicate slide) are returned as rejected, with the reason; they never stop the others.
/// </summary>
public static class BatchInput
{
    private static readonly string[] Extensions = [".tif", ".tiff", ".png", ".jpg", ".jpeg", ".btf", ".ome.tif", ".companion.ome",
        // whole-slide formats, read through OpenSlide
        ".svs", ".ndpi", ".vms", ".vmu", ".mrxs", ".scn", ".svslide", ".bif",
        // Zeiss CZI and Leica LIF, read by ActorSeg itself
        ".czi", ".lif"];

    /// <param name="allSeries">folders and globs: every image of a Zeiss CZI or Leica LIF file that holds several (a
    /// plate's wells, a project's fields) as a slide of its own, named FILE_sN (a manifest names its series itself)</param>
    public static (List<BatchSlide> Slides, List<BatchRow> Rejected) Load(string source, string? masksDir, bool allSeries = false)
    {
        var rows = new List<(string Image, string? Mask, string? Split, int? Series)>();
        if (allSeries && source.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"{source}: --all-series is for a folder or a glob; a manifest names each file's images in its 'series' column");
        if (source.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            if (!File.Exists(source)) throw new FileNotFoundException($"{source}: manifest not found");
            var baseDir = Path.GetDirectoryName(Path.GetFullPath(source))!;
            rows.AddRange(ReadManifest(source).Select(r => (Path.GetFullPath(r.Image, baseDir), r.Mask is { } m ? Path.GetFullPath(m, baseDir) : null, r.Split, r.Series)));
        }
        else if (Directory.Exists(source))
        {
            rows.AddRange(OneEachImage(Directory.GetFiles(source).Where(IsImage).Order(StringComparer.Ordinal).Select(Path.GetFullPath)).Select(f => (f, (string?)null, (string?)null, (int?)null)));
        }
        else if (source.IndexOfAny(['*', '?']) >= 0)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(source))!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: no such directory (from the pattern {source})");
            rows.AddRange(OneEachImage(Directory.GetFiles(dir, Path.GetFileName(source)).Where(IsImage).Order(StringComparer.Ordinal)).Select(f => (f, (string?)null, (string?)null, (int?)null)));
        }
        else throw new FileNotFoundException($"{source}: not a directory, a glob pattern or a .csv manifest");
        if (rows.Count == 0) throw new FileNotFoundException($"{source}: no images");
        if (masksDir is not null)
        {
            // a relative folder is the working directory's, like SOURCE and --out; one that is not there is a typo, not
            // a collection without masks
            masksDir = Path.GetFullPath(masksDir);
            if (!Directory.Exists(masksDir)) throw new DirectoryNotFoundException(File.Exists(masksDir) ? $"--masks {masksDir}: a file, not a folder of masks" : $"--masks {masksDir}: no such folder");
        }
        if (allSeries)
            rows = [.. rows.SelectMany(r => SeriesOf(r.Image) is var n and > 1
                ? Enumerable.Range(0, n).Select(i => (r.Image, r.Mask, r.Split, (int?)i)) : [r])];

        var slides = new List<BatchSlide>();
        var rejected = new List<BatchRow>();
        var seenImages = new HashSet<string>(StringComparer.Ordinal);
        var seenNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (img, mask0, split, series) in rows)
        {
            // image N of a file of several: its own slide, named after the file and the series
            var name = SlideName(img, series);
            var mask = mask0 ?? (masksDir is null ? null : FindMask(masksDir, name));
            string? why = Directory.Exists(img) ? $"{img}: a folder, not an image"
                : !File.Exists(img) ? $"{img}: image not found"
                : mask is not null && Directory.Exists(mask) ? $"{mask}: a folder, not a mask"
                : mask is not null && !File.Exists(mask) ? $"{mask}: mask not found"
                : !seenImages.Add(series is { } sn ? $"{img}\0{sn}" : img) ? $"{img}{(series is { } sd ? $" series {sd}" : "")}: duplicate slide (listed before)"
                : !seenNames.Add(name) ? $"{img}: another slide is already named '{name}' (outputs would collide)"
                : null;
            if (why is null) slides.Add(new BatchSlide(name, img, mask, split, series));
            else rejected.Add(new BatchRow(name, img, mask, split, "rejected", why));
        }
        return (slides, rejected);
    }

    /// <summary>A manifest read by a real CSV parser (quoted fields with commas, quotes or line breaks; # comments;
    /// blank lines): a header row with an 'image' column and optionally 'mask', 'split' and 'series' (which image of a
    /// CZI or LIF file that holds several, from 0; empty: the default), in any order and case.</summary>
    public static List<(string Image, string? Mask, string? Split, int? Series)> ReadManifest(string path)
    {
        var rows = new List<(string, string?, string?, int?)>();
        using var parser = new Microsoft.VisualBasic.FileIO.TextFieldParser(path)
        {
            TextFieldType = Microsoft.VisualBasic.FileIO.FieldType.Delimited, Delimiters = [","], HasFieldsEnclosedInQuotes = true,
            TrimWhiteSpace = true, CommentTokens = ["#"],
        };
        long line = 0; // the line the row last returned starts on (the parser's LineNumber is -1 once it reached the end)
        string[]? Next()
        {
            try
            {
                while (!parser.EndOfData)
                {
                    line = parser.LineNumber;
                    if (parser.ReadFields() is { } f && f.Any(x => x.Length > 0)) return f;
                }
                return null;
            }
            catch (Microsoft.VisualBasic.FileIO.MalformedLineException e) { throw new InvalidDataException($"{path}, line {e.LineNumber}: not a readable CSV row ({e.Message})", e); }
        }
        var header = Next()?.Select(h => h.Trim().ToLowerInvariant()).ToList() ?? throw new InvalidDataException($"{path}: the manifest is empty");
        int ii = header.IndexOf("image"), mi = header.IndexOf("mask"), si = header.IndexOf("split"), ni = header.IndexOf("series");
        if (ii < 0) throw new InvalidDataException($"{path}: the first row must be a header with an 'image' column (and optionally 'mask', 'split', 'series')");
        while (Next() is { } f)
        {
            string? Get(int i) => i >= 0 && i < f.Length && f[i].Length > 0 ? f[i] : null;
            var img = Get(ii) ?? throw new InvalidDataException($"{path}, line {line}: no image");
            if (f.Any(x => x.Contains('\0')))
                throw new InvalidDataException($"{path}, line {line}: a field holds a NUL character (a binary file, or a manifest saved in UTF-16?)");
            int? series = null;
            if (Get(ni) is { } sv)
                series = int.TryParse(sv, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n <= 1_000_000 ? n
                    : throw new InvalidDataException($"{path}, line {line}: series '{sv}' is not an image's index (0, 1, 2, …)");
            rows.Add((img, Get(mi), Get(si), series));
        }
        return rows;
    }

    /// <summary>
    /// The files of a folder or a glob, one per image: the other files of a multi-file OME-TIFF set (one file per channel,
    /// with or without a companion file) and the JPEGs a VMS slide names are read as part of that image, not as slides of
    /// their own. A set is taken by its companion file where it has one, else by its first file by name.
    /// </summary>
    private static IEnumerable<string> OneEachImage(IEnumerable<string> files)
    {
        var list = files.ToList();
        static bool Has(string f, string ext) => f.EndsWith(ext, StringComparison.OrdinalIgnoreCase);
        static bool Owner(string f) => OmeChannels.IsCompanion(f) || Has(f, ".vms") || Has(f, ".vmu");
        static bool MaybeInASet(string f) => Has(f, ".ome.tif") || Has(f, ".ome.tiff");
        static string Real(string f)
        {
            try { return SafePaths.RealPath(Path.GetFullPath(f)); }
            catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException) { return Path.GetFullPath(f); }
        }
        var partOf = new Dictionary<string, string>(StringComparer.Ordinal); // file → the image it is read with
        foreach (var f in list.Where(Owner).Concat(list.Where(f => !Owner(f) && MaybeInASet(f))))
        {
            if (partOf.ContainsKey(Real(f))) continue;
            try
            {
                foreach (var g in ImageSources.FilesOf(f).Skip(1)) partOf.TryAdd(Real(g), f);
            }
            catch (Exception e) when (e is InputFileException or NetVips.VipsException or IOException or UnauthorizedAccessException)
            {
                // unreadable: listed as a slide, whose job then says what is wrong
            }
        }
        foreach (var f in list)
        {
            if (partOf.TryGetValue(Real(f), out var image) && image != f)
                Log.Information("{File} is not a slide of its own: it is read as part of {Image}", f, image);
            else yield return f;
        }
    }

    /// <summary>A slide's default name: the image's file name without extension, and for image N of a file that holds
    /// several, _sN after it (the CLI's batches and POST /batches name them alike).</summary>
    public static string SlideName(string image, int? series) => Path.GetFileNameWithoutExtension(image) + (series is { } n ? $"_s{n}" : "");

    private static bool IsImage(string f) => Extensions.Any(e => f.EndsWith(e, StringComparison.OrdinalIgnoreCase));

    /// <summary>How many images a CZI (its scenes) or LIF file holds; 1 for any other file, or one that cannot be read
    /// (its slide then fails with the reason).</summary>
    private static int SeriesOf(string path)
    {
        try
        {
            if (CziSource.IsCzi(path)) { using var c = CziSource.Open(path, 0, 0); return c.Scenes; }
            if (LifSource.IsLif(path)) { using var l = LifSource.Open(path, 0, 0); return l.Images; }
        }
        catch (Exception e) when (e is InputFileException or IOException or UnauthorizedAccessException) { }
        return 1;
    }

    private static string? FindMask(string dir, string name) =>
        Directory.Exists(dir) ? Directory.GetFiles(dir).FirstOrDefault(f => IsImage(f) && Path.GetFileNameWithoutExtension(f) == name) : null;
}

/// <summary>
/// <c>actorseg batch</c>: a slide collection as one journaled batch. The client reads the input, resolves every slide
/// (its level, a file that cannot be read fails here with the reason), and submits the whole batch to the coordinator
/// (<see cref="SubmitBatch"/>), which journals it and runs the slides itself, at most <c>--parallel</c> at a time, each
/// as a graph job whose id comes from the batch and the slide. The batch id is derived from what the batch is (the
/// folder, the slides, their inputs' sizes, times and contents, the model and every parameter; or <c>--batch-id</c>), so
/// a client that died, a second client or a retried Kubernetes Job submits the same batch again and attaches to it:
/// nothing runs twice, and a different batch under the same id is refused.
/// <para>
/// What needs the client (and stays with it): the metrics against the ground-truth masks (metrics.json, errors.png),
/// each slide's record (slide.json, what a later batch checks to skip a finished slide), summary.csv and report.html.
/// They are made from the slide folders and the coordinator's outcomes by whichever client follows the batch, as each
/// slide ends and at the end, and are idempotent: a client that attaches later (the same command again, or
/// <c>--attach ID</c>) finishes what a detached or dead client left, and two clients write the same files, each
/// atomically (a unique temporary name, then renamed into place), so neither can leave a torn summary. They are kept out
/// of the coordinator on purpose: comparing a gigapixel mask band by band is long work its actor must not wait for, and
/// the report needs the model and the training curves, which the coordinator never reads.
/// </para>
/// </summary>
public static class BatchCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var source = new Argument<string?>("SOURCE") { Description = "A folder of slides, a glob ('/data/slides/*.tif'), or a CSV manifest with a header: image[,mask][,split][,series] (series: which image of a CZI or LIF file that holds several, from 0). Not with --attach.", Arity = ArgumentArity.ZeroOrOne };
        var output = new Option<string?>("--out", "-o") { Description = "Batch directory: slides/NAME/ per slide (mask.tif, overlay.png, graph/, metrics.json, slide.json), summary.csv, report.html. Required unless --attach." };
        var model = new Option<string?>("--model", "-m") { Description = "Segment with this model (best.model); without it the batch builds graphs only." };
        var masks = new Option<string?>("--masks") { Description = "A folder of masks paired with the slides by base name (a manifest names its own)." };
        var maskMode = new Option<string?>("--mask-mode") { Description = "How the masks are read: binary (any non-zero value is foreground) or classes (values are class ids 0..254). Default: classes when the model has more than two classes, else binary." };
        maskMode.AcceptOnlyFromAmong("binary", "classes");
        var coordinator = new Option<string?>("--coordinator", "-c") { Description = "Run on this cluster (akka.tcp://actorseg@HOST:PORT, or env ACTORSEG_COORDINATOR); default: every role in this process." };
        var workers = WorkersOption.Create("Tile workers (in-process mode)");
        var parallel = new Option<int>("--parallel") { DefaultValueFactory = _ => 2, Description = "Slides in flight at once (the coordinator keeps the value the batch was first submitted with)." }.Within(1, Coordinator.JobAuthorization.MaxParallel);
        var tileSize = new Option<int>("--tile-size") { DefaultValueFactory = _ => 2048, Description = "Tile size in pixels." };
        var spacing = new Option<double?>("--spacing") { Description = "Seed spacing in pixels (default: the model's, else 40.96)." }.Within(2, double.PositiveInfinity);
        var level = new Option<int>("--level") { Description = "Whole slides and OME-TIFF pyramids (reduced levels as SubIFDs): the pyramid level to segment (0 = full resolution); other images are read at full resolution.", DefaultValueFactory = _ => 0 };
        var mpp = new Option<double?>("--mpp") { Description = GraphCommand.MppHelp };
        var batchId = new Option<string?>("--batch-id") { Description = "The batch's id (default: derived from the folder, the slides, their inputs and every parameter). The same batch again attaches to it; a different one under this id is refused." };
        var detach = new Option<bool>("--detach") { Description = "Return once the cluster has recorded the batch, printing its id; 'actorseg status ID' follows it, the same command again (or --attach ID) waits for it and writes the summary." };
        var attach = new Option<string?>("--attach") { Description = "Follow a batch already submitted (by 'batch --detach' or POST /batches) by its id, and write its metrics, summary.csv and report.html when it ends." };
        var timeout = new Option<double>("--connect-timeout") { DefaultValueFactory = _ => 60, Description = "Seconds to wait for the coordinator to answer before giving up (exit 3)." }.Within(0, 86_400, loOpen: true);
        var tissue = GraphCommand.TissueOption();
        var objects = ObjectFlags.Format();
        var simplify = ObjectFlags.Simplify();
        var allSeries = new Option<bool>("--all-series") { Description = "A folder or glob: every image of a Zeiss CZI or Leica LIF file that holds several (a plate's wells, a project's images) is a slide of its own, FILE_sN (masks in --masks by that name); without it each file's default image." };
        var cmd = new Command("batch", "Run a whole slide collection as one journaled batch: every slide succeeds or fails alone; nothing runs twice when the batch is submitted again (a client that died, a second client); finished slides are skipped by a new batch; a summary CSV and an HTML report at the end.")
        {
            source, output, model, masks, maskMode, coordinator, workers, parallel, tileSize, spacing, level, mpp, tissue, objects, simplify, batchId, detach, attach, timeout, allSeries,
        };
        var tls = TlsFlags.Create();
        tls.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            var coord = pr.GetValue(coordinator) ?? Environment.GetEnvironmentVariable("ACTORSEG_COORDINATOR");
            var connect = TimeSpan.FromSeconds(pr.GetValue(timeout));
            try
            {
                if (pr.GetValue(attach) is { } id)
                {
                    if (pr.GetValue(source) is not null || coord is null)
                        return Usage("--attach follows a batch on a cluster by its id: give --coordinator (or ACTORSEG_COORDINATOR), and no SOURCE");
                    return await AttachAsync(id, coord, connect, ct, tls.Read(pr));
                }
                if (pr.GetValue(source) is not { } src || pr.GetValue(output) is not { } outDir) return Usage("give SOURCE and --out (or --attach ID)");
                if (pr.GetValue(detach) && coord is null) return Usage("--detach needs a cluster (--coordinator): in this process the batch would stop with it");
                if (pr.GetValue(allSeries) && src.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
                    return Usage($"--all-series is for a folder or a glob; the manifest {src} names each file's images in its 'series' column (a row per image)");
                return await RunAsync(src, Path.GetFullPath(outDir), pr.GetValue(model) is { } m ? Path.GetFullPath(m) : null,
                    pr.GetValue(masks), coord, pr.GetValue(workers), Math.Max(1, pr.GetValue(parallel)), pr.GetValue(tileSize), pr.GetValue(spacing), ct, tls.Read(pr), pr.GetValue(level), pr.GetValue(mpp),
                    GraphCommand.TissueValue(pr.GetValue(tissue)), pr.GetValue(objects)!, pr.GetValue(simplify), pr.GetValue(batchId), pr.GetValue(detach), connect, pr.GetValue(allSeries),
                    pr.GetValue(maskMode));
            }
            catch (Exception e) when (ExitCodes.IsInputError(e) || e is IOException)
            {
                Log.Error("Batch failed: {Error}", e.Message);
                return ExitCodes.Failed;
            }
        });
        return cmd;
    }

    private static int Usage(string why)
    {
        Console.Error.WriteLine($"actorseg batch: {why}");
        return ExitCodes.Usage;
    }

    public static async Task<int> RunAsync(string source, string outDir, string? model, string? masks, string? coordinator, int workers,
        int parallel, int tileSize, double? spacing, CancellationToken ct, TlsOptions? tls = null, int level = 0, double? mpp = null, string? tissue = null,
        string objects = "geojson", double simplify = 0, string? batchId = null, bool detach = false, TimeSpan? connectTimeout = null, bool allSeries = false,
        string? maskMode = null)
    {
        var sw = Stopwatch.StartNew();
        var (input, rejected) = BatchInput.Load(source, masks, allSeries);
        foreach (var r in rejected) Log.Warning("Slide {Slide} rejected: {Reason}", r.Name, r.Reason);
        ModelSpec? spec = null;
        if (model is not null) spec = ModelFile.ReadSpec(model); // a bad model fails the batch before any work
        double sp = Recipes.GraphSpacing(spec, spacing);
        // the masks as the model's classes need them: a model of more than two classes was trained on class ids, and
        // reading its masks as binary would measure six classes against two
        maskMode = Recipes.MaskMode(spec, maskMode);
        if (input.Any(s => s.Mask is not null))
            Log.Information("Masks read as {MaskMode}{Why}", maskMode == "classes" ? "class ids (--mask-mode classes)" : "binary (any non-zero value is foreground)",
                spec is { Classes: > 2 } ? $": the model has {spec.Classes} classes" : "");
        // one run at a time in a batch folder, which it makes where missing (a cluster's coordinator refuses a second batch
        // there itself)
        using var folder = coordinator is null ? OutputFolderLock.Acquire(outDir, "batch") : null;
        folder?.LogEarlierRun();
        Directory.CreateDirectory(outDir);
        // every path as the coordinator will record it (real, symlink-free), so this client's definition is the recorded one
        outDir = SafePaths.Canonical(outDir, "batch folder");
        model = model is null ? null : SafePaths.Canonical(model, "model");
        tissue = tissue is null or "auto" or "none" ? tissue : SafePaths.Canonical(tissue, "tissue mask");

        // each slide resolved (its level; an image that cannot be read fails here, alone, with the reason), as the batch will run it
        var hashes = new FileHashes();
        var slides = new List<BatchSlideSpec>();
        var readings = new Dictionary<string, Reading>(StringComparer.Ordinal);
        var notRun = rejected.Select(r => new BatchSlideRejected(r.Name, r.Image, r.Mask, r.Split, r.Status, r.Reason ?? "")).ToList();
        foreach (var s in input)
        {
            var image = SafePaths.Canonical(s.Image, "image");
            var mask = s.Mask is null ? null : SafePaths.Canonical(s.Mask, "mask");
            try
            {
                var (l, _, channels, reading) = Resolution(image, level, mpp, s.Series ?? -1);
                readings[s.Name] = reading;
                // a slide whose channels give other features than the model's fails here, before its graph is built
                if (spec is not null && SegmentCommand.ChannelMismatch(spec, model!, channels) is { } why) throw new InputFileException(image, why);
                if (spec?.ScaleMismatch(reading.Mpp?.X) is { } scale) Log.Warning("Slide {Slide}: {Why}", s.Name, scale);
                slides.Add(new BatchSlideSpec(s.Name, new GraphJobSpec(image, mask, Path.Combine(outDir, "slides", s.Name), MaskMode: mask is null ? "binary" : maskMode, Page: l, Spacing: sp, TileSize: tileSize,
                    WriteNodeMap: model is not null, ModelPath: model, Features: Recipes.GraphFeatures(spec), Tissue: tissue, Objects: objects, Simplify: simplify,
                    Series: s.Series), s.Split));
            }
            catch (Exception e) when (e is InputFileException or NetVips.VipsException)
            {
                var why = e is InputFileException ? e.Message : $"{image}: {e.Message.Split('\n')[0]}";
                Log.Error("Slide {Slide} failed: {Reason}", s.Name, why);
                notRun.Add(new BatchSlideRejected(s.Name, image, mask, s.Split, "failed", why));
            }
        }
        var digest = Digest(outDir, model, tissue, slides, notRun, hashes);
        var id = batchId ?? "batch-" + digest[..16];
        var definition = new BatchSpec(outDir, slides.ToArray(), parallel, notRun.ToArray(), digest);
        // slides an earlier run finished from the same inputs and parameters: the batch skips them
        // (and whose result read the image as this build reads it: a reader fixed since, such as one that now reads all of an
        // image's channels or its pixel size right, makes the result stale)
        var alreadyDone = slides.Where(s => IsDone(s.Spec, hashes) && !ReadOtherwise(s, readings[s.Name])).Select(s => s.Name).ToArray();
        Log.Information("Batch {BatchId}: {Slides} slides ({Done} already done, {NotRun} rejected or unreadable) → {Out}{Model}", id, slides.Count, alreadyDone.Length,
            notRun.Count, outDir, model is null ? "" : $", segmenting with {model}");
        if (slides.Count == 0)
        {
            // nothing to run: the summary says why
            Finish(outDir, definition, [], model, sw);
            return ExitCodes.Failed;
        }

        // the work folders of the slides' jobs, noted so that they go if this run is killed (its journal dies with it)
        folder?.AddWorkDirs(slides.Select(s => GraphOutputs.WorkDir(s.Spec, JobIds.ForSlide(id, s.Name))));
        bool ended = false;
        try
        {
            // the runner: every role in this process, or a running cluster
            await using var local = coordinator is null ? await LocalRuntime.StartAsync(workers) : null;
            await using var remote = coordinator is not null ? ClusterConnection.Open(ClusterConnection.Addresses(coordinator), tls ?? new TlsOptions()) : null;
            var follow = new BatchFollower(local?.System ?? remote!.System, local is not null ? (m, s) => local.Coordinator.Tell(m, s) : (m, s) => remote!.Send(m, s), local is not null, remote?.Tls ?? false);
            var run = new BatchRun(definition, spec, model, hashes, Math.Max(1, parallel));
            int rc = await follow.RunAsync(id, new SubmitBatch(id, definition, alreadyDone, Detached: detach), detach, connectTimeout ?? TimeSpan.FromSeconds(60), run, ct);
            // a batch of this process that did not end (stopped with Ctrl-C) ends with it: its unfinished jobs' work goes
            ended = remote is not null || run.Completed is not null;
            if (detach || rc != ExitCodes.Ok || run.Completed is null) return rc;
            return run.Finish(sw);
        }
        finally
        {
            if (!ended)
            {
                folder?.RemoveWorkDirs(); // stopped before its end: nothing resumes this run's jobs
                // and the slides it was working on have their earlier results put back (the finished ones have none set aside)
                foreach (var s in slides)
                {
                    var (said, error) = EarlierResults.PutBack(s.Spec.OutDir, JobIds.ForSlide(id, s.Name), keepFailed: false);
                    if (said is not null) Log.Information("Slide {Slide}: {PutBack:l}", s.Name, said);
                    if (error is not null) Log.Error("Slide {Slide}: {PutBack:l}", s.Name, error);
                }
            }
        }
    }

    /// <summary>Follows a batch already submitted, by its id, and finishes it as the client that submitted it would.</summary>
    public static async Task<int> AttachAsync(string batchId, string coordinator, TimeSpan connectTimeout, CancellationToken ct, TlsOptions? tls = null)
    {
        var sw = Stopwatch.StartNew();
        await using var remote = ClusterConnection.Open(ClusterConnection.Addresses(coordinator), tls ?? new TlsOptions());
        var follow = new BatchFollower(remote.System, remote.Send, tls: remote.Tls);
        var run = new BatchRun(null, null, null, new FileHashes(), 2);
        int rc = await follow.RunAsync(batchId, null, false, connectTimeout, run, ct);
        if (rc != ExitCodes.Ok || run.Completed is null) return rc;
        return run.Finish(sw);
    }

    /// <summary>The batch's digest: a hash of its folder, its model (contents), and every slide's name, job parameters,
    /// image (size and time, and its set's other files), mask (contents) and tissue mask, and the rows that do not run. Equal digests: the same results.</summary>
    private static string Digest(string outDir, string? model, string? tissue, IEnumerable<BatchSlideSpec> slides, IEnumerable<BatchSlideRejected> notRun, FileHashes hashes)
    {
        var sb = new StringBuilder("actorseg-batch-1\n").Append(outDir).Append('\n');
        sb.Append(model is null ? "-" : hashes.Of(model)).Append('\n');
        if (tissue is not (null or "auto" or "none")) sb.Append(hashes.Of(tissue)).Append('\n');
        foreach (var s in slides)
        {
            var fi = new FileInfo(s.Spec.ImagePath);
            sb.Append(s.Name).Append('\t').Append(JsonSerializer.Serialize(s.Spec)).Append('\t').Append(s.Split).Append('\t')
              .Append(fi.Length).Append('\t').Append(fi.LastWriteTimeUtc.Ticks).Append('\t').Append(s.Spec.MaskPath is { } m ? hashes.Of(m) : "-")
              .Append(hashes.Companions(s.Spec.ImagePath, s.Spec.Page) is { } set ? "\t" + set : "").Append('\n'); // (a one-file image: the digest as before)
        }
        foreach (var r in notRun) sb.Append(JsonSerializer.Serialize(r)).Append('\n');
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()))).ToLowerInvariant();
    }

    /// <summary>Files' contents as 64-bit hashes (XxHash64), each read once per run.</summary>
    internal sealed class FileHashes
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _known = new();
        private readonly System.Collections.Concurrent.ConcurrentDictionary<(string, int), string?> _sets = new();
        public string Of(string path) => _known.GetOrAdd(path, ContentHash);

        /// <summary>The other files an image is read from (a multi-file OME-TIFF set's, a MIRAX slide's data folder, a
        /// VMS slide's JPEGs: <see cref="ImageSources.FilesOf"/>), each by name, size and time, as one hash; null when the
        /// image is its one file. Asked once per image and run.</summary>
        public string? Companions(string image, int page) => _sets.GetOrAdd((image, page), k =>
        {
            IReadOnlyList<string> files;
            try { files = ImageSources.FilesOf(k.Item1, k.Item2); }
            catch (Exception e) when (e is InputFileException or NetVips.VipsException or IOException or UnauthorizedAccessException)
            {
                return "unreadable"; // never equal to a finished slide's record: the job says what is wrong
            }
            if (files.Count < 2) return null;
            var sb = new StringBuilder();
            foreach (var f in files.Skip(1))
            {
                var fi = new FileInfo(f);
                sb.Append(f).Append('\t').Append(fi.Exists ? fi.Length : -1).Append('\t').Append(fi.Exists ? fi.LastWriteTimeUtc.Ticks : 0).Append('\n');
            }
            return Convert.ToHexString(System.IO.Hashing.XxHash64.Hash(Encoding.UTF8.GetBytes(sb.ToString())));
        });
    }

    /// <summary>What a finished slide was made from: a later run skips it only when every one of these is the same
    /// (the image by size and time, the other files of its set by name, size and time, the mask and the model by their
    /// contents, and every parameter of the job).</summary>
    private sealed record SlideRecord(string Status, string Image, long ImageLength, DateTime ImageTime, string? Mask, string? Model, DateTime? ModelTime,
        int Nodes, double Seconds, int Level = 0, string? Tissue = null, string? Objects = null, double Simplify = 0,
        double Spacing = 0, int TileSize = 0, string? MaskHash = null, string? ModelHash = null, string? ImageSet = null, string? MaskMode = null);

    private static SlideRecord Fingerprint(GraphJobSpec spec, string status, int nodes, double seconds, FileHashes hashes)
    {
        var fi = new FileInfo(spec.ImagePath);
        var model = spec.ModelPath;
        return new SlideRecord(status, spec.ImagePath, fi.Length, fi.LastWriteTimeUtc, spec.MaskPath, model, model is null ? null : File.GetLastWriteTimeUtc(model), nodes, seconds,
            spec.Page, spec.Tissue, model is null ? null : spec.Objects, model is null ? 0 : spec.Simplify, spec.Spacing, spec.TileSize,
            spec.MaskPath is null ? null : hashes.Of(spec.MaskPath), model is null ? null : hashes.Of(model), hashes.Companions(spec.ImagePath, spec.Page),
            spec.MaskPath is null || spec.MaskMode == "binary" ? null : spec.MaskMode); // (binary: the records written before the mode was kept)
    }

    /// <summary>The slide's record (slide.json) when it says the slide was finished from these very inputs and parameters; else null.</summary>
    private static SlideRecord? DoneRecord(GraphJobSpec spec, FileHashes hashes)
    {
        var path = Path.Combine(spec.OutDir, "slide.json");
        if (!File.Exists(path)) return null;
        try
        {
            var old = JsonSerializer.Deserialize<SlideRecord>(File.ReadAllText(path));
            return old is not null && old.Status == "done" && old with { Nodes = 0, Seconds = 0 } == Fingerprint(spec, "done", 0, 0, hashes) ? old : null;
        }
        catch (Exception e) when (e is JsonException or IOException) { return null; } // unreadable: the slide is not done
    }

    private static bool IsDone(GraphJobSpec spec, FileHashes hashes) => DoneRecord(spec, hashes) is not null;

    /// <summary>A file's contents as a 64-bit hash (XxHash64), read streaming.</summary>
    private static string ContentHash(string path)
    {
        var h = new System.IO.Hashing.XxHash64();
        using (var f = File.OpenRead(path)) h.Append(f);
        return Convert.ToHexString(h.GetCurrentHash());
    }

    /// <summary>How this build reads an image at the level a batch reads it: what a graph made from it records in its
    /// graph.json (size, channels, depth, and µm per pixel, null where the image states none).</summary>
    internal sealed record Reading(int Width, int Height, int Channels, int BitDepth, (double X, double Y)? Mpp);

    /// <summary>The level a slide is read at and its microns per pixel there (whole slides and OME-TIFF pyramids; other
    /// images: full resolution, pixel size from the file when it has one), and how it is read there.</summary>
    private static (int Level, double? Mpp, int Channels, Reading Reading) Resolution(string image, int level, double? mpp, int series = -1)
    {
        // an OME-TIFF pyramid (reduced levels as SubIFDs) is read at the level asked, as a slide is; other images at full resolution
        int l = ImageSources.IsSlide(image) || ImageSources.PyramidLevels(image, series).Length > 1 ? GraphCommand.LevelFor(image, level, mpp, series) : 0;
        Reading reading;
        // a bad file fails here, naming the file and the problem (an OME-TIFF: all its channels; a slide: its metadata only)
        using (var src = ImageSources.IsSlide(image) ? (IRegionSource)OpenSlideSource.Open(image, l, direct: false) : ImageSources.Open(image, l, series))
            reading = new Reading(src.Width, src.Height, src.Channels, src.BitDepth, PixelSize.MicronsPerPixel(image, l, series)); // (OpenSlide's, an OME-TIFF's PhysicalSize, else the resolution tags)
        return (l, reading.Mpp?.X, reading.Channels, reading);
    }

    /// <summary>Whether a finished slide's result read its image otherwise than this build reads it (its graph.json's size,
    /// channels, depth or pixel size differ, or it is gone), which is then said: such a slide is done again, not skipped.</summary>
    private static bool ReadOtherwise(BatchSlideSpec slide, Reading now)
    {
        var summary = Path.Combine(GraphOutputs.GraphDir(slide.Spec), GraphOutputs.SummaryFile);
        string? why;
        try
        {
            var was = GraphOutputs.ReadSummaryImage(summary);
            why = (was.Width, was.Height, was.Channels, was.BitDepth) != (now.Width, now.Height, now.Channels, now.BitDepth)
                ? $"its result read the image as {was.Width}x{was.Height}, {was.Channels} channel(s), {was.BitDepth}-bit; it reads as {now.Width}x{now.Height}, {now.Channels} channel(s), {now.BitDepth}-bit now"
                : null;
            // (graph.json records the pixel size since 2026-12-06; an older one's is not compared)
            if (why is null && was.RecordsPixelSize)
            {
                static bool Same(double a, double b) => Math.Abs(a - b) <= 1e-9 * Math.Max(Math.Abs(a), Math.Abs(b));
                bool same = (was.MicronsPerPixel, now.Mpp) switch
                {
                    (null, null) => true,
                    ({ } o, { } n) => Same(o.X, n.X) && Same(o.Y, n.Y),
                    _ => false,
                };
                if (!same)
                    why = $"its result took the pixels as {(was.MicronsPerPixel is { } o2 ? $"{o2.X:0.#####} x {o2.Y:0.#####} µm" : "of no stated size")}; the image says {(now.Mpp is { } n2 ? $"{n2.X:0.#####} x {n2.Y:0.#####} µm" : "none")} now";
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            why = File.Exists(summary) ? $"its graph summary {summary} cannot be read ({e.Message})" : $"its graph summary {summary} is gone";
        }
        if (why is not null) Log.Information("Slide {Slide} is done again, though an earlier run finished it from the same inputs: {Why}", slide.Name, why);
        return why is not null;
    }

    /// <summary>The microns per pixel of a slide at the level it was read, or null where unknown or unreadable.</summary>
    private static double? MicronsPerPixel(string image, int level, int series = -1)
    {
        try { return Resolution(image, level, null, series).Mpp; }
        catch (Exception e) when (e is InputFileException or NetVips.VipsException or IOException) { return null; }
    }

    /// <summary>
    /// One client's part in a batch: as each slide ends, its metrics and record are made (unless an earlier client made
    /// them from the same inputs); at the end, every row, summary.csv and report.html. Works from the batch as the
    /// coordinator recorded it, so a client that attaches by id alone does the same as the one that submitted it.
    /// </summary>
    internal sealed class BatchRun(BatchSpec? definition, ModelSpec? modelSpec, string? model, FileHashes hashes, int parallel)
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Task<BatchRow>> _rows = new(StringComparer.Ordinal);
        private readonly SemaphoreSlim _gate = new(parallel);
        private int _ended;
        public BatchSpec? Definition { get; private set; } = definition;
        public BatchCompleted? Completed { get; set; }

        /// <summary>The batch as the coordinator recorded it (attaching by id: the first time this client sees it).</summary>
        public void Received(BatchReceived r)
        {
            Definition = r.Spec;
            model ??= r.Spec.Slides.Select(s => s.Spec.ModelPath).FirstOrDefault(m => m is not null);
            if (model is not null && modelSpec is null) modelSpec = ModelFile.ReadSpec(model);
        }

        /// <summary>A slide ended: its row is made in the background (at most <c>parallel</c> at once); once per slide.</summary>
        public void SlideEnded(BatchSlideOutcome o)
        {
            if (Definition?.Slides.FirstOrDefault(s => s.Name == o.Name) is not { } slide) return;
            _rows.GetOrAdd(o.Name, _ => Task.Run(async () =>
            {
                await _gate.WaitAsync();
                try
                {
                    BatchRow r;
                    try { r = Row(slide, o); }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        // a slide whose outputs cannot be measured fails alone, with the reason, as its job would
                        r = new BatchRow(slide.Name, slide.Spec.ImagePath, slide.Spec.MaskPath, slide.Split, "failed", $"the slide's job is done, but measuring it failed: {e.Message}");
                    }
                    int n = Interlocked.Increment(ref _ended);
                    int total = Definition!.Slides.Length;
                    if (r.Status == "failed") Log.Error("[{Done}/{Total}] {Slide} failed: {Reason}", n, total, r.Name, r.Reason);
                    else Log.Information("[{Done}/{Total}] {Slide} {Status}{Accuracy}", n, total, r.Name, r.Status,
                        r.Metrics is { } pm ? $": pixel accuracy {pm.Accuracy:P2}, macro F1 {pm.MacroF1:F3}" : "");
                    return r;
                }
                finally { _gate.Release(); }
            }));
        }

        /// <summary>The batch has ended: every row (a slide whose end this client missed is made now), then the summary and the report.</summary>
        public int Finish(Stopwatch sw)
        {
            foreach (var o in Completed!.Outcomes) SlideEnded(o);
            var rows = Definition!.Slides.Select(s => _rows.TryGetValue(s.Name, out var t) ? t.GetAwaiter().GetResult()
                : new BatchRow(s.Name, s.Spec.ImagePath, s.Spec.MaskPath, s.Split, "failed", "the coordinator reported no outcome for this slide")).ToList();
            return BatchCommand.Finish(Definition.OutDir, Definition, rows, model, sw);
        }

        private BatchRow Row(BatchSlideSpec slide, BatchSlideOutcome o)
        {
            var s = slide.Spec;
            var dir = s.OutDir;
            if (o.Status == "failed") return new BatchRow(slide.Name, s.ImagePath, s.MaskPath, slide.Split, "failed", o.Error, Level: s.Page);
            double? um = MicronsPerPixel(s.ImagePath, s.Page, s.Series ?? -1);
            PixelMetrics? Stored() => File.Exists(Path.Combine(dir, "metrics.json")) ? JsonSerializer.Deserialize<PixelMetrics>(File.ReadAllText(Path.Combine(dir, "metrics.json"))) : null;
            var record = DoneRecord(s, hashes);
            if (o.Status == "skipped")
            {
                // finished by an earlier batch from the same inputs and parameters
                var (tf, ts) = Tissue(dir);
                return new BatchRow(slide.Name, s.ImagePath, s.MaskPath, slide.Split, "skipped", "already done", record?.Nodes ?? o.Nodes, record?.Seconds ?? o.Seconds,
                    Stored(), s.Page, um, tf, ts, Warnings(dir, modelSpec, um));
            }
            PixelMetrics? pm;
            if (record is not null) pm = Stored(); // another client following this batch measured it already
            else
            {
                pm = modelSpec is not null && s.MaskPath is not null ? Measure(slide, o, modelSpec) : null;
                SafePaths.WriteAllText(Path.Combine(dir, "slide.json"), JsonSerializer.Serialize(Fingerprint(s, "done", o.Nodes, o.Seconds, hashes),
                    new JsonSerializerOptions { WriteIndented = true }), "slide record");
            }
            return new BatchRow(slide.Name, s.ImagePath, s.MaskPath, slide.Split, "done", null, o.Nodes, o.Seconds, pm, s.Page, um,
                o.TissueFraction, o.TissueFraction is null ? null : o.TilesSkipped, Warnings(dir, modelSpec, um));
        }

        /// <summary>Whether the slide's mask was painted with the boundary refinement (its segment.json says so).</summary>
        private static bool Refined(string slideDir)
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(slideDir, "segment.json")));
                return doc.RootElement.TryGetProperty("refined", out var r) && r.ValueKind == JsonValueKind.True;
            }
            catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { return false; }
        }

        /// <summary>The slide's metrics against its ground truth: metrics.json and errors.png, each written atomically.</summary>
        private static PixelMetrics Measure(BatchSlideSpec slide, BatchSlideOutcome o, ModelSpec modelSpec)
        {
            var s = slide.Spec;
            var dir = s.OutDir;
            // the superpixel ceiling from each node's class histogram (only the graph knows it)
            var graphDir = Path.Combine(dir, "graph");
            var npz = NpzReader.Read(Path.Combine(graphDir, GraphOutputs.GraphFile));
            var hist = npz["class_hist"];
            var pred = File.ReadAllBytes(Path.Combine(graphDir, "classes.u8")).Select(b => (long)b).ToArray();
            var byNodes = PixelMetrics.FromHistograms([(hist.AsSpan<long>().ToArray(), hist.Shape[1], pred)], modelSpec.Classes);
            // the confusion matrix counted over the painted mask and the ground truth, band by band, with the error map on the way
            var cmp = MaskComparison.Compare(o.MaskPath ?? Path.Combine(dir, AssignmentPaths.MaskFile), s.MaskPath!, modelSpec.Classes,
                Core.Pipeline.MaskModes.Parse(s.MaskMode), s.IgnoreValue,
                errorMapPng: Path.Combine(dir, BatchReport.ErrorMapFile), image: s.ImagePath, series: s.Series ?? -1);
            var pm = PixelMetrics.FromConfusion(cmp.Confusion, modelSpec.Classes, byNodes.SuperpixelCeiling);
            // the graph counts tissue only; the mask counts glass too (as class 0); a refined mask is not the nodes' classes
            if (o.TissueFraction is null && !Refined(dir) && !pm.Confusion.SequenceEqual(byNodes.Confusion))
                Log.Warning("Slide {Slide}: the painted mask's confusion matrix differs from the graph's (accuracy {Mask:P3} against {Graph:P3})", slide.Name, pm.Accuracy, byNodes.Accuracy);
            SafePaths.WriteAllText(Path.Combine(dir, "metrics.json"), JsonSerializer.Serialize(pm, new JsonSerializerOptions { WriteIndented = true }), "metrics");
            return pm;
        }
    }

    /// <summary>summary.csv and report.html from every row (the slides', then those that did not run), each written atomically; the exit code.</summary>
    private static int Finish(string outDir, BatchSpec definition, List<BatchRow> rows, string? model, Stopwatch sw)
    {
        var all = rows.Concat((definition.Rejected ?? []).Select(r => new BatchRow(r.Name, r.Image, r.Mask, r.Split, r.Status, r.Reason))).ToList();
        WriteSummary(Path.Combine(outDir, "summary.csv"), all);
        BatchReport.Write(Path.Combine(outDir, "report.html"), outDir, all, model, sw.Elapsed.TotalSeconds);
        int ok = all.Count(r => r.Status is "done" or "skipped"), bad = all.Count - ok;
        Log.Information("Batch finished in {Seconds:F1}s: {Ok} slides done or already done, {Bad} failed or rejected; {Summary}, {Report}",
            sw.Elapsed.TotalSeconds, ok, bad, Path.Combine(outDir, "summary.csv"), Path.Combine(outDir, "report.html"));
        Console.WriteLine(Path.Combine(outDir, "report.html"));
        return bad == 0 ? ExitCodes.Ok : ExitCodes.Failed;
    }

    /// <summary>
    /// Follows one batch on a coordinator (in this process or a cluster's) through a <see cref="BatchWatcher"/>: logs its
    /// progress, hands each slide's end to the <see cref="BatchRun"/>, and stops at its end, at a refusal, when the
    /// coordinator stays silent, or (detached) once the batch is recorded.
    /// </summary>
    /// <param name="local">the batch runs in this process (its journal in memory), so it stops when following stops</param>
    internal sealed class BatchFollower(ActorSystem system, Action<object, IActorRef> send, bool local = false, bool tls = false)
    {
        public async Task<int> RunAsync(string batchId, SubmitBatch? submit, bool detach, TimeSpan connectTimeout, BatchRun run, CancellationToken ct)
        {
            var channel = System.Threading.Channels.Channel.CreateUnbounded<object>();
            var watcher = system.ActorOf(BatchWatcher.Props(send, batchId, submit, channel.Writer), "batch-" + Guid.NewGuid().ToString("N"));
            try
            {
                var last = Stopwatch.StartNew();
                bool heard = false;
                while (true)
                {
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
                    wait.CancelAfter(TimeSpan.FromSeconds(1));
                    object m;
                    try { m = await channel.Reader.ReadAsync(wait.Token); }
                    catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                    {
                        if (!heard && last.Elapsed > connectTimeout)
                        {
                            ClusterConnection.LogNoAnswer(connectTimeout.TotalSeconds, tls);
                            return ExitCodes.NoCoordinator;
                        }
                        if (heard && last.Elapsed > ClientCommands.SilenceTimeout)
                        {
                            Log.Error("The coordinator has said nothing about batch {BatchId} for {Seconds:F0}s (it reports every few seconds): it may be down or unable to reach its journal. " +
                                      "The batch is journaled: run the same command again to follow it once the cluster is back", batchId, ClientCommands.SilenceTimeout.TotalSeconds);
                            return ExitCodes.NoCoordinator;
                        }
                        continue;
                    }
                    catch (OperationCanceledException)
                    {
                        if (local) Log.Warning("Stopped batch {BatchId}: the slides it finished are kept, the same command runs the others", batchId);
                        else Log.Warning("Stopped following batch {BatchId}; it goes on where it runs (the same command attaches again)", batchId);
                        return ExitCodes.Failed;
                    }
                    catch (System.Threading.Channels.ChannelClosedException) { return ExitCodes.Failed; }
                    heard = true; last.Restart();
                    switch (m)
                    {
                        case BatchReceived r:
                            run.Received(r);
                            Log.Information(r.Existing ? "Batch {BatchId} was submitted before: attached to it ({Slides} slides, {Parallel} at a time)"
                                : "Batch {BatchId} recorded by the coordinator: {Slides} slides, {Parallel} at a time", batchId, r.Spec.Slides.Length, r.Spec.Parallel);
                            if (detach)
                            {
                                Log.Information("Detached: the batch runs on the cluster. 'actorseg status {BatchId}' shows it; the same command without --detach, or 'actorseg batch --attach {BatchId}', waits for it and writes the summary", batchId, batchId);
                                Console.WriteLine(batchId);
                                return ExitCodes.Ok;
                            }
                            break;
                        case BatchSlideFinished f:
                            run.SlideEnded(f.Outcome);
                            break;
                        case BatchProgress p:
                            Log.Information("Batch {BatchId}: {Ended}/{Total} slides ended ({Done} done, {Failed} failed, {Skipped} already done), {Running} running",
                                p.BatchId, p.Done + p.Failed + p.Skipped, p.Total, p.Done, p.Failed, p.Skipped, p.Running);
                            break;
                        case BatchCompleted c:
                            if (run.Definition is null) { Log.Error("Batch {BatchId} ended before this client was told what it is", batchId); return ExitCodes.Failed; }
                            run.Completed = c;
                            return ExitCodes.Ok;
                        case JobRefused r:
                            Log.Error("Batch {BatchId} refused by the coordinator ({Code}): {Reason}", r.JobId, r.Code, r.Reason);
                            return ExitCodes.Failed;
                    }
                }
            }
            finally { system.Stop(watcher); }
        }
    }

    /// <summary>
    /// Why a slide's classes may be wrong although its job ran, in one line, or null: read at another scale than the
    /// model's training images (<see cref="ModelSpec.ScaleMismatch"/>), and what its classification warned of (segment.json's
    /// <c>warnings</c>, e.g. grey levels unlike the training images').
    /// </summary>
    public static string? Warnings(string slideDir, ModelSpec? model, double? micronsPerPixel)
    {
        var all = new List<string>();
        if (model?.ScaleMismatch(micronsPerPixel) is { } scale) all.Add(scale);
        var path = Path.Combine(slideDir, "segment.json");
        if (File.Exists(path))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(path));
                if (doc.RootElement.TryGetProperty("warnings", out var w) && w.ValueKind == JsonValueKind.Array)
                    all.AddRange(w.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.String).Select(e => e.GetString()!));
            }
            catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException) { }
        }
        return all.Count == 0 ? null : string.Join(" | ", all);
    }

    /// <summary>
    /// The tissue fraction and tiles skipped that tissue detection reports in the job's summary (segment.json:
    /// <c>tissueFraction</c>, <c>tilesSkipped</c>); null where the job did not report them.
    /// </summary>
    public static (double? TissueFraction, int? TilesSkipped) Tissue(string slideDir)
    {
        var path = Path.Combine(slideDir, "segment.json");
        if (!File.Exists(path))
        {
            // a graph-only slide: the graph's summary has a "tissue" section
            var graph = new[] { Path.Combine(slideDir, GraphOutputs.SummaryFile), Path.Combine(slideDir, "graph", GraphOutputs.SummaryFile) }.FirstOrDefault(File.Exists);
            if (graph is null) return (null, null);
            try
            {
                using var g = JsonDocument.Parse(File.ReadAllText(graph));
                if (!g.RootElement.TryGetProperty("tissue", out var ti) || ti.ValueKind != JsonValueKind.Object) return (null, null);
                return (ti.GetProperty("fraction").GetDouble(), ti.GetProperty("tilesSkipped").GetInt32());
            }
            catch (Exception e) when (e is JsonException or IOException or FormatException or KeyNotFoundException or InvalidOperationException) { return (null, null); }
        }
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            double? tf = root.TryGetProperty("tissueFraction", out var t) && t.ValueKind == JsonValueKind.Number ? t.GetDouble() : null;
            int? ts = root.TryGetProperty("tilesSkipped", out var k) && k.ValueKind == JsonValueKind.Number ? k.GetInt32() : null;
            return (tf, ts);
        }
        catch (Exception e) when (e is JsonException or IOException or FormatException) { return (null, null); }
    }

    public static readonly string[] SummaryColumns = ["slide", "image", "mask", "split", "status", "reason", "nodes", "seconds", "pixel_accuracy", "macro_f1",
        "micro_jaccard", "superpixel_ceiling", "level", "um_per_pixel", "tissue_fraction", "tiles_skipped", "warnings"];

    /// <summary>summary.csv: every field through <see cref="CsvField"/> (quoted where it must be; a slide named
    /// "=HYPERLINK(…)" cannot become a formula in a spreadsheet), written to a unique temporary file, then renamed into place.</summary>
    public static void WriteSummary(string path, IEnumerable<BatchRow> rows)
    {
        var I = CultureInfo.InvariantCulture;
        string F(double? v, string f) => v is { } x ? x.ToString(f, I) : "";
        var sb = new StringBuilder(string.Join(',', SummaryColumns)).Append('\n');
        foreach (var r in rows)
        {
            var m = r.Metrics;
            sb.AppendJoin(',', new[] { r.Name, r.Image, r.Mask, r.Split, r.Status, r.Reason, r.Nodes.ToString(I), r.Seconds.ToString("F1", I),
                F(m?.Accuracy, "F5"), F(m?.MacroF1, "F5"), F(m?.MicroJaccard, "F5"), F(m?.SuperpixelCeiling, "F5"), r.Level.ToString(I),
                F(r.MicronsPerPixel, "0.####"), F(r.TissueFraction, "0.#####"), r.TilesSkipped?.ToString(I), r.Warnings }.Select(CsvField)).Append('\n');
        }
        SafePaths.WriteAllText(path, sb.ToString(), "batch summary");
    }

    /// <summary>One CSV field: quoted when it holds a comma, a quote or a line break (quotes doubled), and prefixed with an
    /// apostrophe when a spreadsheet would run it as a formula (=, +, -, @, tab, carriage return first). Numbers we
    /// write ourselves never start with those, except negative ones, which no column here has.</summary>
    public static string CsvField(string? v)
    {
        if (string.IsNullOrEmpty(v)) return "";
        if (v[0] is '=' or '+' or '-' or '@' or '\t' or '\r') v = "'" + v;
        return v.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + v.Replace("\"", "\"\"") + "\"" : v;
    }
}
