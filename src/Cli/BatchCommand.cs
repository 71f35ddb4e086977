using ActorSeg.Core.Imaging;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using Serilog;
using Vips = NetVips;

namespace ActorSeg.Cli;

/// <summary>One slide of a batch, as the input named it.</summary>
public sealed record BatchSlide(string Name, string Image, string? Mask, string? Split);

/// <summary>What happened to one slide. <paramref name="TissueFraction"/> and <paramref name="TilesSkipped"/> come from
/// tissue detection (the job's summary) and are null where it did not report them.</summary>
public sealed record BatchRow(string Name, string Image, string? Mask, string? Split, string Status, string? Reason,
    int Nodes = 0, double Seconds = 0, PixelMetrics? Metrics = null, int Level = 0, double? MicronsPerPixel = null,
    double? TissueFraction = null, int? TilesSkipped = null);

/// <summary>
/// Reads a batch: a folder, a glob, or a CSV manifest (image[,mask][,split] with a header row). Rows that cannot run
/// (a missing file, a duplicate slide) are returned as rejected, with the reason; they never stop the others.
/// </summary>
public static class BatchInput
{
    private static readonly string[] Extensions = [".tif", ".tiff", ".png", ".jpg", ".jpeg", ".btf", ".ome.tif",
        // whole-slide formats, read through OpenSlide
        ".svs", ".ndpi", ".vms", ".vmu", ".mrxs", ".scn", ".svslide", ".bif"];

    public static (List<BatchSlide> Slides, List<BatchRow> Rejected) Load(string source, string? masksDir)
    {
        var rows = new List<(string Image, string? Mask, string? Split)>();
        if (source.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            if (!File.Exists(source)) throw new FileNotFoundException($"{source}: manifest not found");
            var baseDir = Path.GetDirectoryName(Path.GetFullPath(source))!;
            rows.AddRange(ReadManifest(source).Select(r => (Path.GetFullPath(r.Image, baseDir), r.Mask is { } m ? Path.GetFullPath(m, baseDir) : null, r.Split)));
        }
        else if (Directory.Exists(source))
        {
            rows.AddRange(Directory.GetFiles(source).Where(IsImage).Order(StringComparer.Ordinal).Select(f => (Path.GetFullPath(f), (string?)null, (string?)null)));
        }
        else if (source.IndexOfAny(['*', '?']) >= 0)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(source))!;
            if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: no such directory (from the pattern {source})");
            rows.AddRange(Directory.GetFiles(dir, Path.GetFileName(source)).Where(IsImage).Order(StringComparer.Ordinal).Select(f => (f, (string?)null, (string?)null)));
        }
        else throw new FileNotFoundException($"{source}: not a directory, a glob pattern or a .csv manifest");
        if (rows.Count == 0) throw new FileNotFoundException($"{source}: no images");

        var slides = new List<BatchSlide>();
        var rejected = new List<BatchRow>();
        var seenImages = new HashSet<string>(StringComparer.Ordinal);
        var seenNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (img, mask0, split) in rows)
        {
            var name = Path.GetFileNameWithoutExtension(img);
            var mask = mask0 ?? (masksDir is null ? null : FindMask(masksDir, name));
            string? why = !File.Exists(img) ? $"{img}: image not found"
                : mask is not null && !File.Exists(mask) ? $"{mask}: mask not found"
                : !seenImages.Add(img) ? $"{img}: duplicate slide (listed before)"
                : !seenNames.Add(name) ? $"{img}: another slide is already named '{name}' (outputs would collide)"
                : null;
            if (why is null) slides.Add(new BatchSlide(name, img, mask, split));
            else rejected.Add(new BatchRow(name, img, mask, split, "rejected", why));
        }
        return (slides, rejected);
    }

    /// <summary>A manifest read by a real CSV parser (quoted fields with commas, quotes or line breaks; # comments;
    /// blank lines): a header row with an 'image' column and optionally 'mask' and 'split', in any order and case.</summary>
    public static List<(string Image, string? Mask, string? Split)> ReadManifest(string path)
    {
        var rows = new List<(string, string?, string?)>();
        using var parser = new Microsoft.VisualBasic.FileIO.TextFieldParser(path)
        {
            TextFieldType = Microsoft.VisualBasic.FileIO.FieldType.Delimited, Delimiters = [","], HasFieldsEnclosedInQuotes = true,
            TrimWhiteSpace = true, CommentTokens = ["#"],
        };
        string[]? Next()
        {
            try
            {
                while (!parser.EndOfData)
                    if (parser.ReadFields() is { } f && f.Any(x => x.Length > 0)) return f;
                return null;
            }
            catch (Microsoft.VisualBasic.FileIO.MalformedLineException e) { throw new InvalidDataException($"{path}, line {e.LineNumber}: not a readable CSV row ({e.Message})", e); }
        }
        var header = Next()?.Select(h => h.Trim().ToLowerInvariant()).ToList() ?? throw new InvalidDataException($"{path}: the manifest is empty");
        int ii = header.IndexOf("image"), mi = header.IndexOf("mask"), si = header.IndexOf("split");
        if (ii < 0) throw new InvalidDataException($"{path}: the first row must be a header with an 'image' column (and optionally 'mask', 'split')");
        while (Next() is { } f)
        {
            string? Get(int i) => i >= 0 && i < f.Length && f[i].Length > 0 ? f[i] : null;
            var img = Get(ii) ?? throw new InvalidDataException($"{path}, line {parser.LineNumber - 1}: no image");
            rows.Add((img, Get(mi), Get(si)));
        }
        return rows;
    }

    private static bool IsImage(string f) => Extensions.Any(e => f.EndsWith(e, StringComparison.OrdinalIgnoreCase));

    private static string? FindMask(string dir, string name) =>
        Directory.Exists(dir) ? Directory.GetFiles(dir).FirstOrDefault(f => IsImage(f) && Path.GetFileNameWithoutExtension(f) == name) : null;
}

public static class BatchCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var source = new Argument<string>("SOURCE") { Description = "A folder of slides, a glob ('/data/slides/*.tif'), or a CSV manifest with a header: image[,mask][,split]." };
        var output = new Option<string>("--out", "-o") { Required = true, Description = "Batch directory: slides/NAME/ per slide (mask.tif, overlay.png, graph/, metrics.json, slide.json), summary.csv, report.html." };
        var model = new Option<string?>("--model", "-m") { Description = "Segment with this model (best.model); without it the batch builds graphs only." };
        var masks = new Option<string?>("--masks") { Description = "A folder of masks paired with the slides by base name (a manifest names its own)." };
        var coordinator = new Option<string?>("--coordinator", "-c") { Description = "Run on this cluster (akka.tcp://actorseg@HOST:PORT, or env ACTORSEG_COORDINATOR); default: every role in this process." };
        var workers = new Option<int>("--workers", "-w") { DefaultValueFactory = _ => Environment.ProcessorCount, Description = "Tile workers (in-process mode)." };
        var parallel = new Option<int>("--parallel") { DefaultValueFactory = _ => 2, Description = "Slides in flight at once." };
        var tileSize = new Option<int>("--tile-size") { DefaultValueFactory = _ => 2048, Description = "Tile size in pixels." };
        var spacing = new Option<double?>("--spacing") { Description = "Seed spacing in pixels (default: the model's, else 40.96)." };
        var level = new Option<int>("--level") { Description = "Whole slides: the pyramid level to segment (0 = full resolution); other images are read at full resolution.", DefaultValueFactory = _ => 0 };
        var mpp = new Option<double?>("--mpp") { Description = "Whole slides: the level closest to this many microns per pixel without being coarser (instead of --level)." };
        var tissue = GraphCommand.TissueOption();
        var objects = ObjectFlags.Format();
        var simplify = ObjectFlags.Simplify();
        var cmd = new Command("batch", "Run a whole slide collection: every slide succeeds or fails alone; finished slides are skipped when the batch is run again; a summary CSV and an HTML report at the end.")
        {
            source, output, model, masks, coordinator, workers, parallel, tileSize, spacing, level, mpp, tissue, objects, simplify,
        };
        var tls = TlsFlags.Create();
        tls.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                return await RunAsync(pr.GetValue(source)!, Path.GetFullPath(pr.GetValue(output)!), pr.GetValue(model) is { } m ? Path.GetFullPath(m) : null,
                    pr.GetValue(masks), pr.GetValue(coordinator) ?? Environment.GetEnvironmentVariable("ACTORSEG_COORDINATOR"), pr.GetValue(workers), Math.Max(1, pr.GetValue(parallel)), pr.GetValue(tileSize), pr.GetValue(spacing), ct, tls.Read(pr), pr.GetValue(level), pr.GetValue(mpp),
                    GraphCommand.TissueValue(pr.GetValue(tissue)), pr.GetValue(objects)!, pr.GetValue(simplify));
            }
            catch (Exception e) when (ExitCodes.IsInputError(e) || e is IOException)
            {
                Log.Error("Batch failed: {Error}", e.Message);
                return ExitCodes.Failed;
            }
        });
        return cmd;
    }

    public static async Task<int> RunAsync(string source, string outDir, string? model, string? masks, string? coordinator, int workers,
        int parallel, int tileSize, double? spacing, CancellationToken ct, TlsOptions? tls = null, int level = 0, double? mpp = null, string? tissue = null,
        string objects = "geojson", double simplify = 0)
    {
        var sw = Stopwatch.StartNew();
        var (slides, rejected) = BatchInput.Load(source, masks);
        foreach (var r in rejected) Log.Warning("Slide {Slide} rejected: {Reason}", r.Name, r.Reason);
        ModelSpec? spec = null;
        if (model is not null) spec = ModelFile.Load(model).Spec; // a bad model fails the batch before any work
        double sp = spacing ?? (spec?.SeedSpacing > 0 ? spec.SeedSpacing : 40.96);
        Directory.CreateDirectory(outDir);
        Log.Information("Batch of {Slides} slides ({Rejected} rejected) → {Out}{Model}", slides.Count, rejected.Count, outDir, model is null ? "" : $", segmenting with {model}");

        // the runner: every role in this process, or a running cluster
        await using var local = coordinator is null ? await LocalRuntime.StartAsync(workers) : null;
        await using var remote = coordinator is not null ? ClusterConnection.Open(ClusterConnection.Addresses(coordinator), tls ?? new TlsOptions()) : null;
        async Task<object> Run(SubmitGraphJob job)
        {
            object last = new GraphJobFailed(job.JobId, "no answer");
            await foreach (var m in local is not null ? local.RunJobAsync(job, ct) : remote!.RunJobAsync(job, job.JobId, ct)) last = m;
            return last;
        }

        var rows = new BatchRow?[slides.Count];
        using var gate = new SemaphoreSlim(parallel);
        int done = 0;
        await Task.WhenAll(slides.Select(async (s, i) =>
        {
            await gate.WaitAsync(ct);
            try { rows[i] = await RunSlide(s, outDir, model, spec, sp, tileSize, Run, level, mpp, tissue, objects, simplify); }
            catch (Exception e) when (e is not OperationCanceledException) { rows[i] = new BatchRow(s.Name, s.Image, s.Mask, s.Split, "failed", e.Message); }
            finally { gate.Release(); }
            var r = rows[i]!;
            int n = Interlocked.Increment(ref done);
            if (r.Status == "failed") Log.Error("[{Done}/{Total}] {Slide} failed: {Reason}", n, slides.Count, r.Name, r.Reason);
            else Log.Information("[{Done}/{Total}] {Slide} {Status}{Accuracy}", n, slides.Count, r.Name, r.Status,
                r.Metrics is { } pm ? $": pixel accuracy {pm.Accuracy:P2}, macro F1 {pm.MacroF1:F3}" : "");
        }));

        var all = rows.Select(r => r!).Concat(rejected).ToList();
        WriteSummary(Path.Combine(outDir, "summary.csv"), all);
        BatchReport.Write(Path.Combine(outDir, "report.html"), outDir, all, model, sw.Elapsed.TotalSeconds);
        int ok = all.Count(r => r.Status is "done" or "skipped"), bad = all.Count - ok;
        Log.Information("Batch finished in {Seconds:F1}s: {Ok} slides done or already done, {Bad} failed or rejected; {Summary}, {Report}",
            sw.Elapsed.TotalSeconds, ok, bad, Path.Combine(outDir, "summary.csv"), Path.Combine(outDir, "report.html"));
        Console.WriteLine(Path.Combine(outDir, "report.html"));
        return bad == 0 ? ExitCodes.Ok : ExitCodes.Failed;
    }

    /// <summary>What a finished slide was made from: a later run skips it only when every one of these is the same
    /// (the image by size and time, the mask and the model by their contents, and every parameter of the job).</summary>
    private sealed record SlideRecord(string Status, string Image, long ImageLength, DateTime ImageTime, string? Mask, string? Model, DateTime? ModelTime,
        int Nodes, double Seconds, int Level = 0, string? Tissue = null, string? Objects = null, double Simplify = 0,
        double Spacing = 0, int TileSize = 0, string? MaskHash = null, string? ModelHash = null);

    private static SlideRecord Fingerprint(BatchSlide s, string? model, string status, int nodes, double seconds, GraphJobSpec spec)
    {
        var fi = new FileInfo(s.Image);
        return new SlideRecord(status, s.Image, fi.Length, fi.LastWriteTimeUtc, s.Mask, model, model is null ? null : File.GetLastWriteTimeUtc(model), nodes, seconds,
            spec.Page, spec.Tissue, model is null ? null : spec.Objects, model is null ? 0 : spec.Simplify, spec.Spacing, spec.TileSize,
            s.Mask is null ? null : ContentHash(s.Mask), model is null ? null : ContentHash(model));
    }

    /// <summary>A file's contents as a 64-bit hash (XxHash64), read streaming.</summary>
    private static string ContentHash(string path)
    {
        var h = new System.IO.Hashing.XxHash64();
        using (var f = File.OpenRead(path)) h.Append(f);
        return Convert.ToHexString(h.GetCurrentHash());
    }

    /// <summary>The level a slide is read at and its microns per pixel there (whole slides; other images: full resolution, pixel size from the file when it has one).</summary>
    private static (int Level, double? Mpp) Resolution(string image, int level, double? mpp)
    {
        if (!ImageSources.IsSlide(image))
        {
            VipsImageSource.Open(image).Dispose(); // a bad file fails here, naming the file and the problem
            using var v = NetVips.Image.NewFromFile(image);
            return (0, v.Xres > 1.0001 ? 1000.0 / v.Xres : null);
        }
        int l = GraphCommand.LevelFor(image, level, mpp);
        using var s = OpenSlideSource.Open(image, l);
        return (l, s.MppX);
    }

    private static async Task<BatchRow> RunSlide(BatchSlide s, string outDir, string? model, ModelSpec? modelSpec, double spacing, int tileSize, Func<SubmitGraphJob, Task<object>> run,
        int levelOption = 0, double? mppOption = null, string? tissue = null, string objects = "geojson", double simplify = 0)
    {
        int level; double? um;
        try { (level, um) = Resolution(s.Image, levelOption, mppOption); }
        catch (Exception e) when (e is InputFileException or NetVips.VipsException) { return new BatchRow(s.Name, s.Image, s.Mask, s.Split, "failed", e is InputFileException ? e.Message : $"{s.Image}: {e.Message.Split('\n')[0]}"); }
        var dir = Path.Combine(outDir, "slides", s.Name);
        var recordPath = Path.Combine(dir, "slide.json");
        var spec = new GraphJobSpec(s.Image, s.Mask, dir, Page: level, Spacing: spacing, TileSize: tileSize, WriteNodeMap: model is not null, ModelPath: model,
            Features: modelSpec?.FeatureSet ?? "texture", Tissue: tissue, Objects: objects, Simplify: simplify);
        // a slide finished by an earlier run of this batch (same inputs) is not redone
        if (File.Exists(recordPath))
        {
            try
            {
                var old = JsonSerializer.Deserialize<SlideRecord>(await File.ReadAllTextAsync(recordPath));
                if (old is not null && old.Status == "done" && old with { Nodes = 0, Seconds = 0 } == Fingerprint(s, model, "done", 0, 0, spec))
                {
                    var metrics = File.Exists(Path.Combine(dir, "metrics.json")) ? JsonSerializer.Deserialize<PixelMetrics>(await File.ReadAllTextAsync(Path.Combine(dir, "metrics.json"))) : null;
                    var (tf, ts) = Tissue(dir);
                    return new BatchRow(s.Name, s.Image, s.Mask, s.Split, "skipped", "already done", old.Nodes, old.Seconds, metrics, level, um, tf, ts);
                }
            }
            catch (JsonException) { /* unreadable record: run the slide again */ }
        }
        Directory.CreateDirectory(dir);
        File.Delete(recordPath);
        var sw = Stopwatch.StartNew();
        // job ids name actors and work folders: the slide's name with anything but letters, digits, '-', '_' and '.' replaced
        var plain = new string(s.Name.Select(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.' ? ch : '_').ToArray()).TrimStart('.');
        var jobId = "batch-" + plain[..Math.Min(plain.Length, 96)] + "-" + Guid.NewGuid().ToString("N")[..6];
        var outcome = await run(new SubmitGraphJob(jobId, spec));
        if (outcome is GraphJobFailed f) return new BatchRow(s.Name, s.Image, s.Mask, s.Split, "failed", f.Error);
        if (outcome is JobRefused r) return new BatchRow(s.Name, s.Image, s.Mask, s.Split, "failed", $"refused by the coordinator: {r.Reason}");
        var c = (GraphJobCompleted)outcome;
        PixelMetrics? pm = null;
        if (modelSpec is not null && s.Mask is not null)
        {
            // the superpixel ceiling from each node's class histogram (only the graph knows it)
            var graphDir = Path.Combine(dir, "graph");
            var npz = NpzReader.Read(Path.Combine(graphDir, GraphOutputs.GraphFile));
            var hist = npz["class_hist"];
            var pred = File.ReadAllBytes(Path.Combine(graphDir, "classes.u8")).Select(b => (long)b).ToArray();
            var byNodes = PixelMetrics.FromHistograms([(hist.AsSpan<long>().ToArray(), hist.Shape[1], pred)], modelSpec.Classes);
            // the confusion matrix counted over the painted mask and the ground truth, band by band, with the error map on the way
            var cmp = MaskComparison.Compare(c.MaskPath ?? Path.Combine(dir, AssignmentPaths.MaskFile), s.Mask, modelSpec.Classes,
                errorMapPng: Path.Combine(dir, BatchReport.ErrorMapFile), image: s.Image);
            pm = PixelMetrics.FromConfusion(cmp.Confusion, modelSpec.Classes, byNodes.SuperpixelCeiling);
            // the graph counts tissue only; the mask counts glass too (as class 0)
            if (c.TissueFraction is null && !pm.Confusion.SequenceEqual(byNodes.Confusion))
                Log.Warning("Slide {Slide}: the painted mask's confusion matrix differs from the graph's (accuracy {Mask:P3} against {Graph:P3})", s.Name, pm.Accuracy, byNodes.Accuracy);
            SafePaths.WriteAllText(Path.Combine(dir, "metrics.json"), JsonSerializer.Serialize(pm, new JsonSerializerOptions { WriteIndented = true }), "metrics");
        }
        double secs = sw.Elapsed.TotalSeconds;
        SafePaths.WriteAllText(recordPath, JsonSerializer.Serialize(Fingerprint(s, model, "done", c.Nodes, secs, spec), new JsonSerializerOptions { WriteIndented = true }), "slide record");
        return new BatchRow(s.Name, s.Image, s.Mask, s.Split, "done", null, c.Nodes, secs, pm, level, um, c.TissueFraction, c.TissueFraction is null ? null : c.TilesSkipped);
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
        "micro_jaccard", "superpixel_ceiling", "level", "um_per_pixel", "tissue_fraction", "tiles_skipped"];

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
                F(r.MicronsPerPixel, "0.####"), F(r.TissueFraction, "0.#####"), r.TilesSkipped?.ToString(I) }.Select(CsvField)).Append('\n');
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
