using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ActorSeg.Bench;
using ActorSeg.Core.Imaging;
using OpenCvSharp.XImgProc;

// ActorSeg benchmarks. Figures are printed, never asserted. Modes: see bench/README.md.
//   throughput [--sizes 8192,32768] [--dir DIR]   graph building: MP/s, MP/s per core, peak RSS (each run its own process)
//   quality [--dir DIR] [--fields N]              superpixel quality vs masks, beside OpenCV ximgproc SLIC
//   sidebyside [--size 8192] [--bits 8,16] [--rounds N]
//                                                 ActorSeg, the published Python pipeline and OpenCV SLIC on the same images
//                                                 (ActorSeg and Python alternate N times; medians and per-round ratios)
//   stats [--size 8192] [--images 8x1,8x3,16x1]   the statistics pass: libvips' histogram, blocks on one thread, in parallel
//   slide [--size 8192] [--glass 0.3] [--rounds 1] a generated Aperio slide's graph, read through libvips from its TIFF pages
//                                                 and through OpenSlide, alternating
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
var mode = args.Length > 0 ? args[0] : "help";
string Arg(string name, string def) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : def; }
var dir = Arg("--dir", Path.Combine(Path.GetTempPath(), "actorseg-bench"));
Directory.CreateDirectory(dir);
var shared = Arg("--shared", Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../../shared")));
if (!Directory.Exists(shared)) shared = Path.GetFullPath("../shared");

try
{
switch (mode)
{
    case "throughput": Throughput(); break;
    case "quality": QualityBench(); break;
    case "tile": TileProfile(); break;
    case "seam": SeamBench(); break;
    case "tissue": TissueBench(); break;
    case "slide": SlideBench(); break;
    case "stats": StatsBench(); break;
    case "sidebyside": SideBySide(); break;
    case "opencv-slic": OpenCvSlicChild(); break; // the OpenCV row of sidebyside, in its own process
    default:
        Console.WriteLine("usage: actorseg-bench throughput [--sizes 8192,32768] | quality [--fields N] | tile | seam | tissue | slide [--size N] [--glass F] [--rounds N] | stats [--size N] | sidebyside [--size N] [--bits 8,16] [--features published|texture] [--rounds N]  (all take --dir DIR, --shared DIR; see bench/README.md)");
        break;
}
}
catch (Exception e) when (e is FormatException or OverflowException)
{
    // a number option that is not one (--rounds abc): said in one line, not as a trace
    Console.Error.WriteLine($"actorseg-bench {mode}: an option's value is not a number in range ({e.Message}); see bench/README.md");
    return 2;
}
return 0;

(string Img, string Mask) Sample(int size, int channels = 1)
{
    string tag = channels == 1 ? "" : $"-c{channels}";
    var img = Path.Combine(dir, $"colonies-{size}{tag}.tif");
    var mask = Path.Combine(dir, $"colonies-{size}{tag}_mask.tif");
    if (!File.Exists(img) || !File.Exists(mask))
    {
        var sw = Stopwatch.StartNew();
        var r = SyntheticMicroscopy.Generate(new SyntheticSpec(size, size, SyntheticKind.Colonies, 16, channels, 1), img, mask);
        Console.WriteLine($"generated {size}x{size} in {sw.Elapsed.TotalSeconds:F1}s ({(double)size * size / 1e6 / sw.Elapsed.TotalSeconds:F1} MP/s): {r}");
    }
    return (img, mask);
}

void Throughput()
{
    var sizes = Arg("--sizes", "8192,32768").Split(',').Select(int.Parse).ToArray();
    int cores = Environment.ProcessorCount;
    var rows = new List<string>();
    foreach (var size in sizes)
    {
        var (img, mask) = Sample(size);
        var outDir = Path.Combine(dir, $"graph-{size}");
        var (wall, peak, log, exit) = RunCli("graph", img, "--mask", mask, "--out", outDir);
        if (exit != 0) { Console.WriteLine($"{size}: FAILED (exit {exit})"); Console.Error.WriteLine(log); continue; }
        var (nodes, t) = GraphFigures(outDir, log);
        double mp = (double)size * size / 1e6;
        string breakdown = t.Success ? $"prepare {t.Groups[1].Value}s, tiles {t.Groups[2].Value}s, stitch {t.Groups[3].Value}s, write {t.Groups[4].Value}s" : "";
        double tilesMps = t.Success ? mp / double.Parse(t.Groups[2].Value) : double.NaN;
        rows.Add($"| {size}x{size} | {mp:F0} | {nodes} | {wall:F1} | {mp / wall:F1} | {mp / wall / cores:F1} | {tilesMps / cores:F1} | {peak:F0} | {breakdown} |");
    }
    Console.WriteLine();
    Console.WriteLine($"Graph building (superpixels + features + stitch + kNN + outputs), {cores} cores, whole command wall time:");
    Console.WriteLine("| image | MP | nodes | wall s | MP/s | MP/s per core | tile phase MP/s per core | peak RSS MiB | phases |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
    foreach (var r in rows) Console.WriteLine(r);
}

/// <summary>What a finished `actorseg graph` run says of itself: its node count (graph.json) and its phases (the log's
/// closing line; groups 1-4: prepare, tiles, stitch, write seconds).</summary>
(int Nodes, Match Phases) GraphFigures(string outDir, string log)
{
    using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "graph.json")));
    return (doc.RootElement.GetProperty("graph").GetProperty("nodes").GetInt32(),
        Regex.Match(log, @"prepare ([\d.]+)s, tiles ([\d.]+)s, stitch ([\d.]+)s, write ([\d.]+)s"));
}

/// <summary>A generated grey or RGB colony image (and its mask when asked), cached in the bench folder.</summary>
(string Img, string Mask) Generated(int size, int bits, int channels, bool keepMask = false)
{
    var img = Path.Combine(dir, $"colonies-{size}-{bits}bit-{channels}c.tif");
    var mask = Path.Combine(dir, $"colonies-{size}-{bits}bit-{channels}c_mask.tif");
    if (!File.Exists(img) || (keepMask && !File.Exists(mask)))
    {
        var sw = Stopwatch.StartNew();
        SyntheticMicroscopy.Generate(new SyntheticSpec(size, size, SyntheticKind.Colonies, bits, channels, 1), img, mask);
        if (!keepMask) File.Delete(mask);
        Console.WriteLine($"generated {img} in {sw.Elapsed.TotalSeconds:F1}s");
    }
    return (img, mask);
}

// the statistics pass alone: libvips' histogram (the pass before issue #12), the block reader on one thread, and on every core
void StatsBench()
{
    int size = int.Parse(Arg("--size", "8192"));
    Console.WriteLine($"Statistics pass (exact per-channel histograms) on generated {size}x{size} images, {Environment.ProcessorCount} cores:");
    Console.WriteLine("| image | libvips hist_find s | blocks, 1 thread s | blocks, parallel s | MP/s parallel | identical |");
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var kind in Arg("--images", "8x1,8x3,16x1").Split(','))
    {
        int bits = int.Parse(kind.Split('x')[0]), ch = int.Parse(kind.Split('x')[1]);
        var (img, _) = Generated(size, bits, ch);
        using var src = VipsImageSource.Open(img);
        // best of three after a warm-up on a small region (the JIT), each alone
        (long[][] H, double S) Best(Func<long[][]> f) { long[][] h = f(); double best = double.MaxValue; for (int r = 0; r < 3; r++) { var sw = Stopwatch.StartNew(); h = f(); best = Math.Min(best, sw.Elapsed.TotalSeconds); } return (h, best); }
        var (a, tv) = Best(() => src.Histograms());
        var (b, t1) = Best(() => ImageSources.Histograms(src));
        var (c, tp) = Best(() => ImageSources.Histograms(src, img, 0));
        bool same = a.Zip(b).All(p => p.Item1.AsSpan().SequenceEqual(p.Item2)) && a.Zip(c).All(p => p.Item1.AsSpan().SequenceEqual(p.Item2));
        Console.WriteLine($"| {bits}-bit, {ch} channel(s) | {tv:F2} | {t1:F2} | {tp:F2} | {(double)size * size / 1e6 / tp:F0} | {same} |");
    }
}

/// <summary>Runs the command line in its own process; returns the wall time, the peak RSS and what it logged.</summary>
(double Wall, double PeakMiB, string Log, int Exit) RunCli(params string[] cliArgs) => RunCliWith(null, cliArgs);

(double Wall, double PeakMiB, string Log, int Exit) RunCliWith(IReadOnlyDictionary<string, string>? env, params string[] cliArgs)
{
    // the command as run.sh runs it (its output folder has the ReadyToRun start-up assemblies), else the bench's copy
    var product = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../src/Cli/bin/Release/net10.0/actorseg.dll"));
    var r = RunProcess("dotnet", [File.Exists(product) ? product : Path.Combine(AppContext.BaseDirectory, "actorseg.dll"), .. cliArgs], env);
    var m = Regex.Match(r.Stderr, @"peak RSS (\d+) MiB");
    return (r.Wall, m.Success ? Math.Max(r.PeakMiB, double.Parse(m.Groups[1].Value)) : r.PeakMiB, r.Stderr, r.Exit);
}

/// <summary>Runs a program in its own process, polling its peak RSS (VmHWM) every 200 ms; returns the wall time, the
/// peak, what it printed on stdout and stderr, and its exit code.</summary>
(double Wall, double PeakMiB, string Stdout, string Stderr, int Exit) RunProcess(string file, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? env = null)
{
    var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
    foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
    foreach (var a in arguments) psi.ArgumentList.Add(a);
    var sw = Stopwatch.StartNew();
    using var p = Process.Start(psi)!;
    var stderr = new System.Text.StringBuilder();
    p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
    p.BeginErrorReadLine();
    var stdout = p.StandardOutput.ReadToEndAsync();
    double peak = 0;
    while (!p.WaitForExit(200)) { try { peak = Math.Max(peak, ActorSeg.Core.ProcessStats.PeakRssMiB(p.Id)); } catch { } }
    p.WaitForExit();
    double wall = sw.Elapsed.TotalSeconds;
    lock (stderr) return (wall, peak, stdout.Result, stderr.ToString(), p.ExitCode);
}

// tissue detection: a generated brightfield slide that is about 60 % glass, its graph with and without --tissue
void TissueBench()
{
    int size = int.Parse(Arg("--size", "8192"));
    double glass = double.Parse(Arg("--glass", "0.6"));
    var slide = Path.Combine(dir, $"glass-{size}.svs");
    if (!File.Exists(slide))
    {
        var g = RunCli("generate", "--out", dir, "--name", $"glass-{size}", "--width", size.ToString(), "--height", size.ToString(), "--format", "svs", "--glass", glass.ToString(CultureInfo.InvariantCulture), "--seed", "7");
        if (g.Exit != 0) { Console.WriteLine("generation failed:\n" + g.Log); return; }
        Console.WriteLine($"generated {slide} ({size}², {glass:P0} glass asked) in {g.Wall:F1}s");
    }
    Console.WriteLine($"Graph of a generated {size}x{size} brightfield slide ({glass:P0} glass), {Environment.ProcessorCount} cores, whole command:");
    Console.WriteLine("| --tissue | wall s | prepare s | tiles s | stitch s | nodes | tissue | tiles skipped | peak RSS MiB |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|---|");
    foreach (var mode in new[] { "none", "auto" })
    {
        var outDir = Path.Combine(dir, $"glass-{size}-{mode}");
        var r = RunCli("graph", slide, "--out", outDir, "--tissue", mode);
        if (r.Exit != 0) { Console.WriteLine($"| {mode} | FAILED (exit {r.Exit}) |"); Console.Error.WriteLine(r.Log); continue; }
        var (nodes, t) = GraphFigures(outDir, r.Log);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "graph.json")));
        var ti = doc.RootElement.GetProperty("tissue");
        string frac = ti.ValueKind == JsonValueKind.Object ? ti.GetProperty("fraction").GetDouble().ToString("P1") : "(all)";
        int tiles = doc.RootElement.GetProperty("tiling").GetProperty("tiles").GetInt32();
        int skipped = doc.RootElement.GetProperty("tiling").GetProperty("tilesSkipped").GetInt32();
        Console.WriteLine($"| {mode} | {r.Wall:F1} | {t.Groups[1].Value} | {t.Groups[2].Value} | {t.Groups[3].Value} | {nodes} | {frac} | {skipped}/{tiles} | {r.PeakMiB:F0} |");
    }
}

// a generated Aperio slide (RGB JPEG tiles, glass around tissue islands): its graph read through libvips from the TIFF
// pages (the default where the samples match OpenSlide's) and through OpenSlide alone, alternating
void SlideBench()
{
    int size = int.Parse(Arg("--size", "8192")), rounds = int.Parse(Arg("--rounds", "1"));
    double glass = double.Parse(Arg("--glass", "0.3"), CultureInfo.InvariantCulture);
    var slide = Path.Combine(dir, $"slide-{size}-{glass.ToString(CultureInfo.InvariantCulture)}.svs");
    if (!File.Exists(slide))
    {
        var g = RunCli("generate", "--out", dir, "--name", Path.GetFileNameWithoutExtension(slide), "--width", size.ToString(), "--height", size.ToString(),
            "--format", "svs", "--glass", glass.ToString(CultureInfo.InvariantCulture), "--seed", "7");
        if (g.Exit != 0) { Console.WriteLine("generation failed:\n" + g.Log); return; }
        Console.WriteLine($"generated {slide} in {g.Wall:F1}s");
    }
    Console.WriteLine($"Graph of a generated {size}x{size} Aperio slide (RGB JPEG, {glass:P0} glass), {Environment.ProcessorCount} cores, whole command, {rounds} round(s):");
    Console.WriteLine("| reader | round | wall s | prepare s | tiles s | stitch s | write s | nodes | peak RSS MiB | graph.npz md5 |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
    for (int round = 1; round <= rounds; round++)
        foreach (var reader in new[] { "libvips", "openslide" })
        {
            var outDir = Path.Combine(dir, $"slide-{size}-{reader}");
            var env = new Dictionary<string, string> { ["ACTORSEG_SLIDE_READER"] = reader == "openslide" ? "openslide" : "" };
            var r = RunCliWith(env, "graph", slide, "--out", outDir);
            if (r.Exit != 0) { Console.WriteLine($"| {reader} | {round} | FAILED (exit {r.Exit}) |"); Console.Error.WriteLine(r.Log); continue; }
            var (nodes, t) = GraphFigures(outDir, r.Log);
            using var md5 = System.Security.Cryptography.MD5.Create();
            using var f = File.OpenRead(Path.Combine(outDir, "graph.npz"));
            var hash = Convert.ToHexStringLower(md5.ComputeHash(f))[..12];
            Console.WriteLine($"| {reader} | {round} | {r.Wall:F1} | {t.Groups[1].Value} | {t.Groups[2].Value} | {t.Groups[3].Value} | {t.Groups[4].Value} | {nodes} | {r.PeakMiB:F0} | {hash}… |");
        }
}

void QualityBench()
{
    int fields = int.Parse(Arg("--fields", "10"));
    var sets = new List<(string Name, string[] Images, Func<string, string> MaskOf, double Spacing)>();
    var (gimg, gmask) = Sample(2048);
    sets.Add(("generated colonies 2048²", new[] { gimg }, _ => gmask, 40.96));
    var nist = Path.Combine(shared, "data/nist-colonies");
    if (Directory.Exists(nist))
        sets.Add(("NIST colonies 256² (1000 sp/field)", Directory.GetFiles(Path.Combine(nist, "images"), "*.tif").Order().Take(fields).ToArray(),
            f => Path.Combine(nist, "masks", Path.GetFileName(f)), Math.Sqrt(256.0 * 256 / 1000)));
    var bbbc = Path.Combine(shared, "data/bbbc039");
    if (Directory.Exists(bbbc))
        sets.Add(("BBBC039 nuclei 520x696 (3000 sp/field)", Directory.GetFiles(Path.Combine(bbbc, "images"), "*.tif").Order().Take(fields).ToArray(),
            f => Path.Combine(bbbc, "masks", Path.GetFileNameWithoutExtension(f) + ".png"), Math.Sqrt(520.0 * 696 / 3000)));
    if (sets.Count == 1) Console.WriteLine($"(no shared data at {shared}: real-image rows skipped)");

    Console.WriteLine("| data | method | superpixels/field | ASA (achievable acc.) | boundary recall (2 px) | under-seg. error | MP/s |");
    Console.WriteLine("|---|---|---|---|---|---|---|");
    foreach (var (name, images, maskOf, spacing) in sets)
    {
        var acc = new Dictionary<string, List<Quality.Scores>>();
        foreach (var f in images)
        {
            var (data, w, h, c) = Quality.Load(f);
            var gt = Quality.LoadMask(maskOf(f));
            void Add(string method, (int[] L, double S) r) { if (!acc.TryGetValue(method, out var l)) acc[method] = l = new(); l.Add(Quality.Score(r.L, gt, w, h, r.S)); }
            Add("ActorSeg SLIC (tiled 1024)", Quality.ActorSeg(f, spacing, 1024));
            Add("OpenCV ximgproc SLIC", Quality.OpenCv(data, w, h, c, spacing, SLICType.SLIC));
            Add("OpenCV ximgproc SLICO", Quality.OpenCv(data, w, h, c, spacing, SLICType.SLICO));
        }
        foreach (var (method, l) in acc)
            Console.WriteLine($"| {name} ×{images.Length} | {method} | {l.Average(s => s.Superpixels):F0} | {l.Average(s => s.Asa):P2} | {l.Average(s => s.BoundaryRecall):P1} | {l.Average(s => s.UnderSegError):F4} | {l.Sum(s => s.Pixels) / 1e6 / l.Sum(s => s.Seconds):F2} |");
    }
}

void TileProfile()
{
    // one worker thread, phase by phase, on tiles of a generated image
    int size = int.Parse(Arg("--size", "8192")), tileSize = int.Parse(Arg("--tile-size", "2048")), n = int.Parse(Arg("--tiles", "2"));
    // --channels 3: a colour (three-channel) image, as brightfield slides are
    var (img, mask) = Sample(size, int.Parse(Arg("--channels", "1")));
    var work = Path.Combine(dir, "tile-profile");
    var req = new ActorSeg.Core.Pipeline.GraphRequest { ImagePath = img, MaskPath = mask, TileSize = tileSize };
    var job = ActorSeg.Core.Pipeline.GraphJob.Prepare("profile", req, work);
    job.Save();
    using var src = VipsImageSource.Open(img);
    using var msk = VipsImageSource.Open(mask, 0, true);
    var plan = job.Plan;
    var scratch = new ActorSeg.Core.Pipeline.TileScratch();
    // --cpu: the phase figures in this thread's CPU seconds rather than wall seconds (for a machine busy with other work)
    ActorSeg.Core.ProcessStats.ThreadCpuClock = args.Contains("--cpu");
    if (args.Contains("--read-only"))
    {
        var buf = new ushort[(tileSize + 2 * job.Halo) * (tileSize + 2 * job.Halo)];
        foreach (var t in plan.Tiles()) { src.ReadRegion(t.Read.X, t.Read.Y, t.Read.W, t.Read.H, buf); Console.WriteLine($"read tile {t.Id}: peak RSS {ActorSeg.Core.ProcessStats.PeakRssMiB():F0} MiB"); }
        return;
    }
    var inner = Enumerable.Range(0, plan.Count).Where(i => plan.Tile(i).Col > 0 && plan.Tile(i).Row > 0).ToList();
    if (inner.Count == 0) inner = Enumerable.Range(0, plan.Count).ToList();
    if (args.Contains("--prewarm"))
    {
        // a small tile of a small-tile plan first: the code paths compiled, the big buffers not yet touched
        var small = ActorSeg.Core.Pipeline.GraphJob.Prepare("prewarm", req with { TileSize = 256 }, work + "-small");
        small.Save();
        var sw0 = Stopwatch.StartNew();
        ActorSeg.Core.Pipeline.GraphJob.ProcessTile(small, small.Plan.Tile(small.Plan.Cols + 1), src, msk, new ActorSeg.Core.Pipeline.TileScratch());
        Console.WriteLine($"pre-warm 256 tile: {sw0.Elapsed.TotalSeconds:F2}s");
        Array.Clear(ActorSeg.Core.Superpixels.SlicRegion.PhaseSeconds);
        Array.Clear(ActorSeg.Core.Graph.FragmentBuilder.PhaseSeconds);
    }
    // a warm-up tile first (JIT, first touch of the buffers), not counted: long-running workers are warm
    if (!args.Contains("--cold"))
    {
        var w = ActorSeg.Core.Pipeline.GraphJob.ProcessTile(job, plan.Tile(inner[0]), src, msk, scratch);
        var wp = ActorSeg.Core.Superpixels.SlicRegion.PhaseSeconds;
        Console.WriteLine($"warm-up tile {inner[0]}: {w.Seconds:F2}s (not counted): read {w.ReadSeconds:F2}s slic {w.SlicSeconds:F2}s (smooth {wp[0]:F2}s, seeds+init {wp[1]:F2}s, assign+sums {wp[2]:F2}s, centres {wp[3]:F2}s) texture {w.TextureSeconds:F2}s fragments {w.FragmentSeconds:F2}s write {w.WriteSeconds:F2}s");
        Array.Clear(ActorSeg.Core.Superpixels.SlicRegion.PhaseSeconds);
        Array.Clear(ActorSeg.Core.Graph.FragmentBuilder.PhaseSeconds);
    }
    double sumSeconds = 0; long sumCore = 0; var sumPhase = new double[6];
    foreach (var id in inner.Take(n))
    {
        var t = plan.Tile(id);
        long alloc0 = GC.GetTotalAllocatedBytes(true), faults0 = ActorSeg.Core.ProcessStats.MinorFaults();
        var o = ActorSeg.Core.Pipeline.GraphJob.ProcessTile(job, t, src, msk, scratch);
        long alloc = GC.GetTotalAllocatedBytes(true) - alloc0, faults = ActorSeg.Core.ProcessStats.MinorFaults() - faults0;
        if (args.Contains("--gc")) { var g0 = Stopwatch.StartNew(); GC.Collect(2, GCCollectionMode.Forced, true, false); Console.Write($"[gc {g0.Elapsed.TotalMilliseconds:F0} ms] "); }
        sumSeconds += o.Seconds; sumCore += t.Core.Area;
        sumPhase[0] += o.ReadSeconds; sumPhase[1] += o.SlicSeconds; sumPhase[2] += o.TextureSeconds; sumPhase[3] += o.FragmentSeconds; sumPhase[4] += o.WriteSeconds;
        Console.WriteLine($"tile {id}: core {t.Core.W}x{t.Core.H}, read {t.Read.W}x{t.Read.H}: read {o.ReadSeconds:F2}s slic {o.SlicSeconds:F2}s texture {o.TextureSeconds:F2}s fragments {o.FragmentSeconds:F2}s write {o.WriteSeconds:F2}s total {o.Seconds:F2}s = {t.Core.Area / 1e6 / o.Seconds:F1} core MP/s; {o.Fragments} fragments, {o.Groups} groups, {o.Open} open, {o.Shipped} groups shipped; allocated {alloc / 1048576.0:F1} MiB, {faults} minor faults; peak RSS {ActorSeg.Core.ProcessStats.PeakRssMiB():F0} MiB, GC heap {GC.GetTotalMemory(false) / 1048576.0:F0} MiB");
    }
    int counted = Math.Min(n, inner.Count);
    Console.WriteLine($"per tile, mean of {counted}: read {sumPhase[0] / counted:F3}s slic {sumPhase[1] / counted:F3}s texture {sumPhase[2] / counted:F3}s fragments {sumPhase[3] / counted:F3}s write {sumPhase[4] / counted:F3}s total {sumSeconds / counted:F3}s = {sumCore / 1e6 / sumSeconds:F2} core MP/s per worker thread");
    var ph = ActorSeg.Core.Superpixels.SlicRegion.PhaseSeconds;
    Console.WriteLine($"SLIC phases over these tiles: smooth {ph[0]:F2}s, seeds+init {ph[1]:F2}s, assign+sums {ph[2]:F2}s, centres {ph[3]:F2}s");
    var fp = ActorSeg.Core.Graph.FragmentBuilder.PhaseSeconds;
    Console.WriteLine("Fragment phases over these tiles: " + string.Join(", ", ActorSeg.Core.Graph.FragmentBuilder.PhaseNames.Select((nm, i) => $"{nm} {fp[i]:F2}s")));
    Directory.Delete(work, true);
}

void SeamBench()
{
    // the seam invariant on a realistic image: tiled runs at several halos against the whole image as one tile
    int size = int.Parse(Arg("--size", "4096"));
    var (img, mask) = Sample(size);
    (ActorSeg.Core.Graph.SuperpixelGraph, int[]) Run(int tile, int? halo)
    {
        var work = Path.Combine(dir, "seam-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var req = new ActorSeg.Core.Pipeline.GraphRequest { ImagePath = img, MaskPath = mask, TileSize = tile, Halo = halo };
            var job = ActorSeg.Core.Pipeline.GraphJob.Prepare("seam", req, work);
            job.Save();
            Parallel.ForEach(job.Plan.Tiles(), new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
                () => (VipsImageSource.Open(img), VipsImageSource.Open(mask, 0, true), new ActorSeg.Core.Pipeline.TileScratch()),
                (t, _, s) => { ActorSeg.Core.Pipeline.GraphJob.ProcessTile(job, t, s.Item1, s.Item2, s.Item3); return s; },
                s => { s.Item1.Dispose(); s.Item2.Dispose(); });
            var (g, nog) = ActorSeg.Core.Pipeline.GraphJob.Stitch(job);
            return (g, ActorSeg.Core.Pipeline.GraphJob.NodeMap(job, nog));
        }
        finally { Directory.Delete(work, true); }
    }
    var (wg, wm) = Run(size, 0);
    Console.WriteLine($"whole image {size}x{size} as one tile: {wg.NodeCount} nodes");
    Console.WriteLine("| tile | halo (px) | halo (spacings) | differing pixels | identical nodes | feature mismatches | edge mismatches |");
    Console.WriteLine("|---|---|---|---|---|---|---|");
    foreach (var tile in Arg("--tiles", "1024,2048").Split(',').Select(int.Parse))
        foreach (var f in Arg("--halos", "3,5,8").Split(',').Select(double.Parse))
        {
            int halo = (int)Math.Ceiling(f * 40.96);
            var (tg, tm) = Run(tile, halo);
            var c = ActorSeg.Core.Graph.GraphComparison.Compare(wg, wm, tg, tm);
            Console.WriteLine($"| {tile} | {halo} | {f} | {c.DifferingPixelFraction:P4} ({c.DifferingPixels}) | {c.IdenticalNodes}/{c.NodesA} (tiled {c.NodesB}) | {c.FeatureMismatches} | {c.EdgeMismatches} |");
        }
}

// ActorSeg, the published pipeline (../shared/peers/reference_pipeline.py, scikit-image SLIC) and OpenCV's ximgproc SLIC
// side by side on the same generated images: wall, MP/s, MP/s per core, peak RSS, and the ratio to the published pipeline
void SideBySide()
{
    int size = int.Parse(Arg("--size", "8192"));
    var depths = Arg("--bits", "8,16").Split(',').Select(int.Parse).ToArray();
    var features = Arg("--features", "published");
    int rounds = int.Parse(Arg("--rounds", "1"));
    if (rounds < 1) throw new ArgumentException($"--rounds {rounds}: give 1 or more");
    int cores = Environment.ProcessorCount;
    double spacing = ActorSeg.Core.Superpixels.SlicParameters.DefaultSpacing;
    int segments = (int)Math.Round((double)size * size / (spacing * spacing));
    int region = (int)Math.Round(spacing);
    var peer = Path.Combine(shared, "peers", "reference_pipeline.py");
    string? peerSkip = !Directory.Exists(shared) ? $"no {shared} (give the folder that holds peers/ with --shared DIR)"
        : !File.Exists(peer) ? $"no {peer}"
        : EnsureDebianPackages("python3-skimage", "python3-scipy", "python3-torch", "python3-tifffile");
    if (peerSkip is not null) Console.WriteLine($"(published pipeline skipped: {peerSkip})");
    var rows = new List<string>();
    foreach (int bits in depths)
    {
        var (img, mask) = Generated(size, bits, 1, keepMask: true);
        double mp = (double)size * size / 1e6;
        var results = new List<(string Method, double Wall, double PeakMiB, string Note)>();

        // ActorSeg and the published pipeline alternate, --rounds times: this machine's speed swings by tens of per cent
        // within minutes, so each round's pair is taken in the same stretch and the ratio is given per round as well
        var ours = new List<(double Wall, double PeakMiB, string Note)>();
        var theirs = new List<(double Wall, double PeakMiB, string Note)>();
        for (int round = 1; round <= rounds; round++)
        {
            var outDir = Path.Combine(dir, $"sidebyside-{size}-{bits}");
            var a = RunCli("graph", img, "--mask", mask, "--out", outDir, "--features", features);
            if (a.Exit != 0) { Console.WriteLine($"ActorSeg {bits}-bit, round {round}: FAILED (exit {a.Exit})"); Console.Error.WriteLine(a.Log); }
            else
            {
                var (nodes, t) = GraphFigures(outDir, a.Log);
                ours.Add((a.Wall, a.PeakMiB, $"{nodes:N0} nodes" + (t.Success ? $"; prepare {t.Groups[1].Value} s, tiles {t.Groups[2].Value} s, stitch {t.Groups[3].Value} s, write {t.Groups[4].Value} s" : "")));
                Console.WriteLine($"  {size}² {bits}-bit round {round}: ActorSeg {a.Wall:F1} s");
            }
            if (peerSkip is not null) continue;
            var pt = Path.Combine(dir, $"sidebyside-{size}-{bits}.pt");
            var p = RunProcess("/usr/bin/python3", [peer, "graph", img, mask, pt, "--segments", segments.ToString()]);
            if (p.Exit != 0) { Console.WriteLine($"published pipeline {bits}-bit, round {round}: FAILED (exit {p.Exit})"); Console.Error.WriteLine(p.Stderr); }
            else
            {
                using var doc = JsonDocument.Parse(p.Stdout.Trim().Split('\n')[^1]);
                var r = doc.RootElement;
                double peak = Math.Max(p.PeakMiB, r.GetProperty("peak_rss_mib").GetDouble());
                theirs.Add((p.Wall, peak, $"{r.GetProperty("nodes").GetInt32():N0} nodes; SLIC {r.GetProperty("slic_s").GetDouble():F1} s, graph {r.GetProperty("total_s").GetDouble():F1} s in-process"));
                Console.WriteLine($"  {size}² {bits}-bit round {round}: published pipeline {p.Wall:F1} s");
            }
            File.Delete(pt);
        }
        // each method's median wall and largest peak; with several rounds, every round's walls and (for ActorSeg) the
        // ratio within each round in the notes
        (double Wall, double PeakMiB, string Note) Summary(List<(double Wall, double PeakMiB, string Note)> runs, string extra)
        {
            var w = runs.Select(r => r.Wall).Order().ToArray();
            double median = w.Length % 2 == 1 ? w[w.Length / 2] : (w[w.Length / 2 - 1] + w[w.Length / 2]) / 2;
            string rounds = runs.Count == 1 ? "" : $"; the {runs.Count} rounds {string.Join(" / ", runs.Select(r => r.Wall.ToString("F1")))} s, median given";
            return (median, runs.Max(r => r.PeakMiB), runs[^1].Note + rounds + extra);
        }
        string perRound = rounds > 1 && ours.Count == rounds && theirs.Count == rounds
            ? $"; per round {string.Join(" / ", ours.Zip(theirs, (x, y) => (y.Wall / x.Wall).ToString("F2") + "×"))} the published pipeline's speed" : "";
        if (ours.Count > 0) { var m = Summary(ours, perRound); results.Add(("ActorSeg `graph` (features " + features + ", mask labels, all outputs)", m.Wall, m.PeakMiB, m.Note)); }
        if (theirs.Count > 0) { var m = Summary(theirs, ""); results.Add(("published pipeline (scikit-image SLIC, Python)", m.Wall, m.PeakMiB, m.Note)); }

        var o = RunProcess("dotnet", [Path.Combine(AppContext.BaseDirectory, "actorseg-bench.dll"), "opencv-slic", img, region.ToString()]);
        if (o.Exit != 0) { Console.WriteLine($"OpenCV SLIC {bits}-bit: FAILED (exit {o.Exit})"); Console.Error.WriteLine(o.Stderr); }
        else
        {
            using var doc = JsonDocument.Parse(o.Stdout.Trim().Split('\n')[^1]);
            var r = doc.RootElement;
            results.Add(($"OpenCV ximgproc SLIC (region {region}, 10 iterations, superpixels only)", r.GetProperty("total_s").GetDouble(),
                Math.Max(o.PeakMiB, r.GetProperty("peak_rss_mib").GetDouble()),
                $"{r.GetProperty("superpixels").GetInt32():N0} superpixels; read {r.GetProperty("read_s").GetDouble():F1} s, SLIC {r.GetProperty("slic_s").GetDouble():F1} s in-process ({o.Wall:F1} s with process start)"));
        }

        var pub = results.FirstOrDefault(r => r.Method.StartsWith("published"));
        foreach (var (method, wall, peakMiB, note) in results)
        {
            string ratio = pub.Method is null ? "–" : method == pub.Method ? "(reference)" : $"{pub.Wall / wall:F2}× its speed, {peakMiB / pub.PeakMiB:F2}× its peak RSS";
            rows.Add($"| {size}² {bits}-bit | {method} | {wall:F1} | {mp / wall:F2} | {mp / wall / cores:F2} | {peakMiB:F0} | {ratio} | {note} |");
        }
    }
    Console.WriteLine();
    Console.WriteLine($"Side by side on generated colony images (grey, {segments:N0} superpixels: spacing {spacing} px), {cores} cores; ActorSeg and the published pipeline whole command wall time, OpenCV read + SLIC timed in its process:");
    Console.WriteLine("| image | method | wall s | MP/s | MP/s per core | peak RSS MiB | against the published pipeline | notes |");
    Console.WriteLine("|---|---|---|---|---|---|---|---|");
    foreach (var r in rows) Console.WriteLine(r);
}

/// <summary>Installs the Debian packages that are missing (apt-get as root, else sudo -n), saying what it does; null when
/// they are all there afterwards, else why not.</summary>
string? EnsureDebianPackages(params string[] packages)
{
    bool Installed(string pkg)
    {
        var r = RunProcess("dpkg-query", ["-W", "-f=${Status}", pkg]);
        return r.Exit == 0 && r.Stdout.Contains("install ok installed");
    }
    var missing = packages.Where(p => !Installed(p)).ToArray();
    if (missing.Length == 0) return null;
    bool root = Environment.UserName == "root" || RunProcess("id", ["-u"]).Stdout.Trim() == "0";
    string file = root ? "apt-get" : "sudo";
    string[] prefix = root ? [] : ["-n", "apt-get"];
    if (!root && RunProcess("sh", ["-c", "command -v sudo"]).Exit != 0) return $"{string.Join(", ", missing)} missing, and neither root nor sudo to install them";
    Console.WriteLine($"installing {string.Join(" ", missing)}: {file} {string.Join(" ", prefix)} install -y --no-install-recommends …");
    var env = new[] { "DEBIAN_FRONTEND=noninteractive" };
    var r = RunProcess("env", [.. env, file, .. prefix, "install", "-y", "--no-install-recommends", .. missing]);
    if (r.Exit != 0)
    {
        Console.WriteLine($"apt-get install failed (exit {r.Exit}); running apt-get update and trying again");
        RunProcess("env", [.. env, file, .. prefix, "update"]);
        r = RunProcess("env", [.. env, file, .. prefix, "install", "-y", "--no-install-recommends", .. missing]);
    }
    Console.WriteLine($"  done in {r.Wall:F0} s (exit {r.Exit})");
    var still = missing.Where(p => !Installed(p)).ToArray();
    return still.Length == 0 ? null : $"could not install {string.Join(", ", still)}: {r.Stderr.Trim().Split('\n')[^1]}";
}

// opencv-slic IMAGE REGION: read the image, OpenCV ximgproc SLIC (10 iterations) on it, one JSON line with the times
void OpenCvSlicChild()
{
    string img = args[1]; int region = int.Parse(args[2]);
    var sw = Stopwatch.StartNew();
    using var src = VipsImageSource.Open(img);
    int w = src.Width, h = src.Height, c = src.Channels;
    var data = new ushort[(long)w * h * c];
    src.ReadRegion(0, 0, w, h, data);
    // grey (mean of the channels), 16-bit min-max scaled to 8 bits as ximgproc SLIC takes it
    var bytes = new byte[(long)w * h];
    int lo = int.MaxValue, hi = int.MinValue;
    for (long i = 0; i < bytes.Length; i++) { int s = 0; for (int k = 0; k < c; k++) s += data[i * c + k]; s /= c; lo = Math.Min(lo, s); hi = Math.Max(hi, s); }
    double scale = src.BitDepth > 8 ? 255.0 / Math.Max(1, hi - lo) : 1;
    int off = src.BitDepth > 8 ? lo : 0;
    for (long i = 0; i < bytes.Length; i++) { int s = 0; for (int k = 0; k < c; k++) s += data[i * c + k]; bytes[i] = (byte)Math.Clamp((int)((s / c - off) * scale + 0.5), 0, 255); }
    data = null!;
    double read = sw.Elapsed.TotalSeconds;
    using var mat = OpenCvSharp.Mat.FromPixelData(h, w, OpenCvSharp.MatType.CV_8UC1, bytes);
    using var slic = SuperpixelSLIC.Create(mat, SLICType.SLIC, region, 10f);
    slic.Iterate(10);
    slic.EnforceLabelConnectivity(25);
    int n = slic.GetNumberOfSuperpixels();
    double total = sw.Elapsed.TotalSeconds;
    Console.WriteLine(JsonSerializer.Serialize(new { read_s = read, slic_s = total - read, total_s = total, superpixels = n, peak_rss_mib = ActorSeg.Core.ProcessStats.PeakRssMiB() }));
}
