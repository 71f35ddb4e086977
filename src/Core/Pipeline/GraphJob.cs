using ActorSeg.Core.IO;
using System.Runtime.Intrinsics;
using System.Text.Json;
using System.Text.Json.Serialization;
using ActorSeg.Core.Graph;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Pipeline;

public enum MaskMode { Binary, Classes }

public static class MaskModes
{
    /// <summary>A job's mask mode as its spec spells it ("binary" or "classes", any case).</summary>
    public static MaskMode Parse(string mode) =>
        mode.Equals("classes", StringComparison.OrdinalIgnoreCase) ? MaskMode.Classes
        : mode.Equals("binary", StringComparison.OrdinalIgnoreCase) ? MaskMode.Binary
        : throw new ArgumentException($"mask mode must be 'binary' or 'classes' (got '{mode}')");
}

/// <summary>What the user asks for: one image (and optionally its mask) to turn into a graph.</summary>
public sealed record GraphRequest
{
    public required string ImagePath { get; init; }
    public string? MaskPath { get; init; }
    public int Page { get; init; }
    /// <summary>Which image of a file that holds several (a CZI's scene, a LIF's image; <see cref="ImageSources.Open"/>):
    /// −1 the default.</summary>
    public int Series { get; init; } = -1;
    public MaskMode MaskMode { get; init; } = MaskMode.Binary;
    /// <summary>Mask value meaning "unlabelled" (ignored in labels and class histograms).</summary>
    public int? IgnoreValue { get; init; }
    public SlicParameters Slic { get; init; } = new();
    public int TileSize { get; init; } = 2048;
    /// <summary>Halo in pixels; null = <see cref="DefaultHaloSpacings"/> × the seed spacing.</summary>
    public int? Halo { get; init; }
    public int K { get; init; } = 10;
    /// <summary>published: the 11 intensity features per channel; texture: those plus gradient magnitude and local
    /// standard deviation statistics (11 each) and the node's boundary contrast to its neighbours, all in z units of the
    /// image's own statistics; absolute: the texture features in the image's grey levels scaled to 8 bits (the same
    /// units for every image of a collection: a field of background alone keeps its low contrast). The CLI and the cluster
    /// protocol default to the best recipe's, absolute; this record, built from them, keeps texture for code that builds a
    /// request itself.</summary>
    public string Features { get; init; } = "texture";
    /// <summary>Where the tissue is: null = detect it on brightfield whole slides (RGB, read through OpenSlide, or a colour
    /// CZI slide scan with a pyramid, <see cref="GraphJob.IsBrightfieldSlide"/>) and
    /// take the whole image otherwise; "auto" = detect it on any image; "none" = the whole image; else a mask image
    /// (non-zero = tissue). Pixels outside the tissue get no node; tiles without tissue are skipped.</summary>
    public string? Tissue { get; init; }

    /// <summary>Planes derived from each pixel beside the image's channels: the texture planes, with texture features.</summary>
    [JsonIgnore] public int ExtraPlanes => HasTexture(Features) ? TexturePlanes.Count : 0;

    public const double DefaultHaloSpacings = 10.0;
    public static readonly string[] FeatureSets = ["published", "texture", "absolute"];

    /// <summary>Whether a feature set has the texture planes' statistics and the contrast feature (texture, absolute).</summary>
    public static bool HasTexture(string features) => features is "texture" or "absolute";

    /// <summary>The prefix of every feature name of the absolute feature set (its names differ from texture's, so a model
    /// of one is never applied to graphs of the other).</summary>
    public const string AbsolutePrefix = "abs_";

    /// <summary>The boundary-contrast feature's name: in z units (texture), and in absolute units.</summary>
    public const string Contrast = "contrast", AbsoluteContrast = AbsolutePrefix + Contrast;
    /// <summary>The largest halo a job may ask for (pixels): a region's coordinates stay far from overflowing.</summary>
    public const int MaxHalo = 1 << 20;

    /// <summary>The feature set a graph's (or a model's) feature names come from.</summary>
    public static string FeatureSetOf(IReadOnlyCollection<string> names) =>
        names.Contains(AbsoluteContrast) ? "absolute" : names.Contains(Contrast) ? "texture" : "published";

    /// <summary>The grey level of one unit of the absolute features: 2^(bits − 8), a 16-bit image's values in 8-bit units.</summary>
    public static double AbsoluteUnit(int bitDepth) => Math.Pow(2, Math.Max(0, bitDepth - 8));
}

/// <summary>
/// Everything a tile worker needs about a job, written once by the coordinator as a manifest file in the work
/// directory; tile messages carry only a reference to it.
/// </summary>
public sealed record GraphJobManifest
{
    public required string JobId { get; init; }
    public required string ImageId { get; init; }
    public required GraphRequest Request { get; init; }
    public required int Width { get; init; }
    public required int Height { get; init; }
    public required int Channels { get; init; }
    public required int BitDepth { get; init; }
    public required double[] Mean { get; init; }
    public required double[] Std { get; init; }
    public required int[] Min { get; init; }
    public required int[] Max { get; init; }
    public required int SeedNx { get; init; }
    public required int SeedNy { get; init; }
    public required int Halo { get; init; }
    public required long MinSize { get; init; }
    public required string WorkDir { get; init; }
    /// <summary>The tissue found at prepare time (its map is <see cref="TissuePath"/>), or null: the whole image.</summary>
    public TissueInfo? Tissue { get; init; }

    [JsonIgnore] public ImageStatistics Stats => new(Mean, Std, Min, Max, (long)Width * Height);
    [JsonIgnore] public SeedGrid Grid => new(Width, Height, SeedNx, SeedNy);
    [JsonIgnore] public TilePlan Plan => TilePlan.Create(Width, Height, Request.TileSize, Halo);

    public string ResultPath(int tileId) => Path.Combine(WorkDir, $"tile-{tileId:D6}.apg");
    public string LabelsPath(int tileId) => Path.Combine(WorkDir, $"tile-{tileId:D6}.labels");
    public string ManifestPath => Path.Combine(WorkDir, "job.json");
    public string TissuePath => Path.Combine(WorkDir, "tissue.map");

    private TissueMap? _tissueMap;
    /// <summary>The tissue map (loaded once from the work folder and checked against the job), or null.</summary>
    [JsonIgnore]
    public TissueMap? TissueMap
    {
        get
        {
            if (Tissue is null) return null;
            if (_tissueMap is not null) return _tissueMap;
            var m = Imaging.TissueMap.Load(TissuePath);
            if (m.ImageWidth != Width || m.ImageHeight != Height || m.Width != Tissue.MapWidth || m.Height != Tissue.MapHeight)
                throw new InvalidDataException($"{TissuePath}: tissue map of {m.Width}x{m.Height} cells for {m.ImageWidth}x{m.ImageHeight}, not this job's");
            return _tissueMap = m;
        }
        init => _tissueMap = value;
    }

    [JsonIgnore] public bool Texture => GraphRequest.HasTexture(Request.Features);
    [JsonIgnore] public bool Absolute => Request.Features == "absolute";
    [JsonIgnore] public int ExtraPlanes => Request.ExtraPlanes;

    /// <summary>The units of every value plane: raw channels in z units of the image statistics (absolute features: divided
    /// by <see cref="GraphRequest.AbsoluteUnit"/>), texture planes by their fixed scale.</summary>
    [JsonIgnore]
    public PlaneNorms Norms
    {
        get
        {
            var st = Stats;
            double unit = GraphRequest.AbsoluteUnit(BitDepth);
            var mean = (Absolute ? new double[Channels] : st.Mean).Concat(Enumerable.Repeat(0.0, ExtraPlanes)).ToArray();
            var inv = Enumerable.Range(0, Channels).Select(c => Absolute ? 1.0 / unit : st.InvStd(c)).Concat(Enumerable.Repeat(1.0 / TexturePlanes.Scale, ExtraPlanes)).ToArray();
            return new PlaneNorms(mean, inv);
        }
    }

    [JsonIgnore]
    public string[] PlaneFeatureNames => Prefixed(NodeFeatures.Names(Channels, Texture ? TexturePlanes.Prefixes : []), Request.Features);

    /// <summary>The units of the texture planes: the channels' summed standard deviation (texture) or unit (absolute).</summary>
    [JsonIgnore]
    public double TextureSigma => Absolute ? Channels * GraphRequest.AbsoluteUnit(BitDepth) : Stats.Std.Sum();

    /// <summary>The name of the boundary-contrast feature of this job's graphs.</summary>
    [JsonIgnore]
    public string ContrastName => Absolute ? GraphRequest.AbsoluteContrast : GraphRequest.Contrast;

    private static string[] Prefixed(string[] names, string features) =>
        features == "absolute" ? names.Select(n => GraphRequest.AbsolutePrefix + n).ToArray() : names;

    /// <summary>The feature names a graph of an image of <paramref name="channels"/> channels has with the feature set
    /// <paramref name="features"/> (texture adds the texture planes' statistics and the contrast feature): what a model
    /// trained on such graphs lists, so a mismatch can be refused before the graph is built.</summary>
    public static string[] FeatureNamesFor(int channels, string features) => GraphRequest.HasTexture(features)
        ? Prefixed([.. NodeFeatures.Names(channels, TexturePlanes.Prefixes), GraphRequest.Contrast], features)
        : NodeFeatures.Names(channels, []);

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    public void Save()
    {
        SafePaths.EnsureDirectory(WorkDir, "work folder");
        if (Tissue is not null) (_tissueMap ?? throw new InvalidOperationException("a job with tissue but no tissue map")).Save(TissuePath);
        SafePaths.WriteAllText(ManifestPath, JsonSerializer.Serialize(this, Json), "job manifest");
    }

    public static GraphJobManifest Load(string path)
    {
        try { return JsonSerializer.Deserialize<GraphJobManifest>(File.ReadAllText(path), Json) ?? throw new InvalidDataException("empty manifest"); }
        catch (Exception e) when (e is JsonException or InvalidDataException) { throw new InvalidDataException($"{path}: bad job manifest: {e.Message}", e); }
    }
}

/// <summary>The tissue of a job: how it was found, the fraction of the image it covers, and the tiles with none.</summary>
public sealed record TissueInfo(string Source, double Fraction, int TilesSkipped, int Tiles, int MapWidth, int MapHeight);

/// <summary>The plain (actor-free) steps of building a graph: prepare, process a tile, stitch and write.</summary>
public static class GraphJob
{
    /// <summary>What is wrong with the request's own settings (<see cref="CheckRequest"/>), or null: a coordinator refuses
    /// such a job as it admits it, before any folder is made.</summary>
    public static string? RequestProblem(GraphRequest req)
    {
        try { CheckRequest(req); return null; }
        catch (ArgumentException e) { return e.Message; }
    }

    /// <summary>The request's own limits, which need no image: SLIC's parameters, k, the feature set, the halo.</summary>
    private static void CheckRequest(GraphRequest req)
    {
        req.Slic.Validate();
        if (req.K < 1 || req.K > 100) throw new ArgumentException($"k must be in [1, 100] (got {req.K})");
        if (!GraphRequest.FeatureSets.Contains(req.Features)) throw new ArgumentException($"features must be one of {string.Join(", ", GraphRequest.FeatureSets)} (got '{req.Features}')");
        if (req.Halo is < 0 or > GraphRequest.MaxHalo) throw new ArgumentException($"halo must be in [0, {GraphRequest.MaxHalo:N0}] pixels (got {req.Halo})");
        if (req.Series < -1) throw new ArgumentException($"series must be an image's index, 0 or more (got {req.Series})");
        // masks are read as 0..65535: any other value could never mark a pixel unlabelled, silently
        if (req.IgnoreValue is < 0 or > 65535) throw new ArgumentException($"ignore value must be a mask value in [0, 65535] (got {req.IgnoreValue})");
    }

    /// <summary>Whether the tissue is found by default (<c>--tissue auto</c>): a colour whole slide that OpenSlide reads, or a
    /// Zeiss slide scan (a colour camera's BGR CZI with a pyramid); fluorescence images and plain fields take every pixel.</summary>
    public static bool IsBrightfieldSlide(string path, IRegionSource img) =>
        img.Channels >= 3 && (ImageSources.IsSlide(path) || img is CziSource { PixelType: "Bgr24" or "Bgr48", Levels.Count: > 1 });

    /// <summary>First cheap pass: open and validate the inputs, gather global statistics, plan seeds and tiles.</summary>
    /// <param name="progress">the statistics pass's progress, for a person following a long prepare</param>
    /// <param name="ct">stops the statistics pass between blocks</param>
    public static GraphJobManifest Prepare(string jobId, GraphRequest req, string workDir, IProgress<string>? progress = null, CancellationToken ct = default)
    {
        CheckRequest(req); // before the image is opened and its statistics gathered
        using var img = ImageSources.Open(req.ImagePath, req.Page, req.Series);
        if (req.MaskPath is { } mp)
        {
            using var mask = VipsImageSource.Open(mp, 0, firstBandOnly: true);
            if (mask.Width != img.Width || mask.Height != img.Height)
                throw new InputFileException(mp, $"mask is {mask.Width}x{mask.Height} but image {req.ImagePath} is {img.Width}x{img.Height}");
        }
        var stats = ImageStatistics.FromHistograms(HistogramPrefetch.Take(req.ImagePath, req.Page, img, progress, ct, req.Series) ?? ImageSources.Histograms(img, req.ImagePath, req.Page, 0, progress, ct, req.Series));
        // a 32-bit or floating-point image is read spread over 0..65535: its constant value is said in its own units
        if (stats.IsConstant && img is VipsImageSource { ScaledRange: { } range })
            throw new InputFileException(req.ImagePath, $"image is constant (every finite sample = {string.Join(",", range.Select(r => r.Min.ToString("G6", System.Globalization.CultureInfo.InvariantCulture)))}): there is nothing to segment");
        string mode = req.Tissue ?? (IsBrightfieldSlide(req.ImagePath, img) ? "auto" : "none");
        TissueMap? tissue = null; string? source = null;
        if (mode == "auto") { tissue = TissueDetector.Detect(req.ImagePath, req.Page, img.Width, img.Height, req.Series); source = "detected"; }
        else if (mode != "none") { tissue = TissueDetector.FromFile(mode, img.Width, img.Height); source = Path.GetFullPath(mode); }
        return Prepare(jobId, req, workDir, img.Width, img.Height, img.Channels, img.BitDepth, stats, tissue, source);
    }

    public static GraphJobManifest Prepare(string jobId, GraphRequest req, string workDir, int width, int height, int channels, int bitDepth, ImageStatistics stats,
        TissueMap? tissue = null, string? tissueSource = null)
    {
        CheckRequest(req);
        if (stats.IsConstant)
            throw new InputFileException(req.ImagePath, $"image is constant (every pixel = {string.Join(",", stats.Min)}): there is nothing to segment");
        var grid = SeedGrid.For(width, height, req.Slic);
        if (req.Slic.Segments is { } n && grid.S < 2)
            throw new ArgumentException($"segments {n} on a {width}x{height} image give a seed spacing of {grid.S:0.##} px; the spacing must be >= 2 pixels (ask for at most {(long)width * height / 4} segments)");
        int minHalo = (int)Math.Ceiling(Math.Max(grid.Sx, grid.Sy)) + 1;
        int halo = HaloFor(req, grid);
        if (halo < minHalo && !(req.TileSize >= width && req.TileSize >= height))
            throw new ArgumentException($"halo {halo} is smaller than one seed spacing ({minHalo} px): tiles could not agree");
        long minSize = (long)(req.Slic.MinSizeFactor * ((double)width * height / grid.Count));
        TissueInfo? info = null;
        if (tissue is not null)
        {
            if (tissue.ImageWidth != width || tissue.ImageHeight != height) throw new ArgumentException($"a tissue map for {tissue.ImageWidth}x{tissue.ImageHeight} given for a {width}x{height} image");
            var plan = TilePlan.Create(width, height, req.TileSize, halo);
            int skipped = plan.Tiles().Count(t => !tissue.Any(t.Core));
            info = new TissueInfo(tissueSource ?? "given", tissue.Fraction, skipped, plan.Count, tissue.Width, tissue.Height);
            if (skipped == plan.Count)
                throw new InputFileException(req.Tissue is { } f && f != "auto" ? f : req.ImagePath,
                    $"no tissue found in {req.ImagePath} ({(tissueSource == "detected" ? "detected" : "given by the tissue mask")}): nothing to segment; use --tissue none to take the whole image");
        }
        return new GraphJobManifest
        {
            JobId = jobId, ImageId = Path.GetFileNameWithoutExtension(req.ImagePath), Request = req,
            Width = width, Height = height, Channels = channels, BitDepth = bitDepth,
            Mean = stats.Mean, Std = stats.Std, Min = stats.Min, Max = stats.Max,
            SeedNx = grid.Nx, SeedNy = grid.Ny, Halo = halo, MinSize = minSize, WorkDir = workDir,
            Tissue = info, TissueMap = tissue,
        };
    }

    /// <summary>Maps raw mask values to classes (255 = unlabelled).</summary>
    public static void MapMask(ReadOnlySpan<ushort> raw, Span<byte> classes, MaskMode mode, int? ignore, string maskPath)
    {
        int i = 0;
        if (mode == MaskMode.Binary && ignore is null && Vector256.IsHardwareAccelerated)
        {
            // the common case, 32 samples at a time: 1 where the sample is non-zero
            var one = Vector256.Create((byte)1);
            for (; i + 32 <= raw.Length; i += 32)
            {
                var nz = Vector256.Narrow(Vector256.GreaterThan(Vector256.Create(raw.Slice(i, 16)), Vector256<ushort>.Zero),
                                          Vector256.GreaterThan(Vector256.Create(raw.Slice(i + 16, 16)), Vector256<ushort>.Zero));
                (nz & one).CopyTo(classes.Slice(i, 32));
            }
        }
        for (; i < raw.Length; i++)
        {
            int v = raw[i];
            if (ignore is { } ig && v == ig) { classes[i] = FragmentBuilder.Unlabelled; continue; }
            if (mode == MaskMode.Binary) classes[i] = v > 0 ? (byte)1 : (byte)0;
            else
            {
                if (v >= FragmentBuilder.Unlabelled)
                    throw new InputFileException(maskPath, $"mask value {v} is not a class id (class ids must be 0..254; use --ignore-value for an 'unlabelled' value)" +
                        (v == 65535 ? "; 65535 is also how a coloured pixel of an RGB mask reads, and a negative, larger than 65535 or NaN sample of " +
                                      "a 32-bit or floating-point mask: classes mode needs class ids, as grey values or a palette's indices" : ""));
                classes[i] = (byte)v;
            }
        }
    }

    public sealed record TileOutcome(int TileId, int Fragments, int Groups, int Open, int Shipped, long Pixels, double Seconds,
        double ReadSeconds = 0, double SlicSeconds = 0, double FragmentSeconds = 0, double WriteSeconds = 0, bool Skipped = false, double TextureSeconds = 0);

    /// <summary>Processes one tile: reads its region, runs SLIC, builds its partial graph, writes result and label files.</summary>
    /// <param name="ct">a tile given up on (its worker abandoned it after its deadline) stops between phases and SLIC
    /// iterations, and writes nothing, instead of holding a core until it ends</param>
    public static TileOutcome ProcessTile(GraphJobManifest job, TileSpec tile, IRegionSource image, IRegionSource? mask, TileScratch? scratch = null,
        CancellationToken ct = default)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        scratch ??= new TileScratch();
        int C = job.Channels;
        var read = tile.Read; var core = tile.Core;
        int rn = read.W * read.H, cn = core.W * core.H;
        var tissue = job.TissueMap;
        if (tissue is not null && !tissue.Any(core))
        {
            // nothing but glass: no read, no superpixels, no nodes; an empty label raster stands for "no node anywhere"
            TileResult.Glass(tile, C, C + job.ExtraPlanes).WriteFile(job.ResultPath(tile.Id));
            WriteLabels(job.LabelsPath(tile.Id), [], 0);
            return new TileOutcome(tile.Id, 0, 0, 0, 0, core.Area, sw.Elapsed.TotalSeconds, Skipped: true);
        }
        Reserve(job, scratch, mask is not null);
        var raw = scratch.Raw(rn * C).AsSpan(0, rn * C);
        image.ReadRegion(read.X, read.Y, read.W, read.H, raw);
        Span<byte> classes = [];
        if (mask is not null)
        {
            var mraw = scratch.MaskRaw(cn); // in SLIC's label memory: mapped to classes right away
            mask.ReadRegion(core.X, core.Y, core.W, core.H, mraw);
            classes = scratch.Classes(cn).AsSpan(0, cn);
            MapMask(mraw, classes, job.Request.MaskMode, job.Request.IgnoreValue, job.Request.MaskPath ?? "mask");
        }
        double tRead = sw.Elapsed.TotalSeconds;
        var seeds = scratch.Seeds(rn, cn);
        SlicRegion.Run(raw, C, read, core, job.Grid, job.Stats, job.Request.Slic, seeds, scratch, tissue, ct);
        tissue?.Apply(core, seeds, FragmentBuilder.Glass); // glass takes no part in fragments, groups or nodes
        double tSlic = sw.Elapsed.TotalSeconds;
        var groups = scratch.Groups(cn); // SLIC's planes are done with: the groups take their memory
        Span<ushort> extra = [];
        if (job.Texture)
        {
            extra = scratch.Extra(cn * TexturePlanes.Count).AsSpan(0, cn * TexturePlanes.Count);
            TexturePlanes.Compute(raw, C, read, core, job.Width, job.Height, job.TextureSigma, extra);
        }
        double tTexture = sw.Elapsed.TotalSeconds;
        ct.ThrowIfCancellationRequested();
        var result = FragmentBuilder.Build(tile, job.Width, job.Height, raw, C, seeds, classes, job.Norms, job.MinSize, groups, extra, job.ExtraPlanes, scratch);
        double tFrag = sw.Elapsed.TotalSeconds;
        ct.ThrowIfCancellationRequested();
        result.WriteFile(job.ResultPath(tile.Id));
        WriteLabels(job.LabelsPath(tile.Id), groups, core.W);
        int shipped = result.GFeatureRow.Count(r => r < 0);
        double total = sw.Elapsed.TotalSeconds;
        return new TileOutcome(tile.Id, result.Fragments, result.Groups, result.Open, shipped, core.Area, total, tRead, tSlic - tRead, tFrag - tTexture, total - tFrag,
            TextureSeconds: tTexture - tSlic);
    }

    /// <summary>The halo a request's tiles get on an image with this seed grid: as given, else
    /// <see cref="GraphRequest.DefaultHaloSpacings"/> seed spacings.</summary>
    public static int HaloFor(GraphRequest req, SeedGrid grid) => req.Halo ?? (int)Math.Ceiling(GraphRequest.DefaultHaloSpacings * grid.S);

    /// <summary>The buffers a worker needs for the largest tile of a job (an inner one: its core and its halo on every side).</summary>
    public static TileShape ShapeOf(GraphJobManifest job, bool withMask) => TileShape.For(job.Plan, job.Channels, job.ExtraPlanes, withMask);

    /// <summary>
    /// Sizes a worker's buffers for the job's largest tile before its first tile. Tiles are handed out in raster order,
    /// so a job's first tiles are a corner and edges, whose read regions are smaller: buffers sized for them grew twice
    /// more, each time a new array, and fresh memory is slow to touch (about 11 µs a page on the machines measured). A
    /// later job of another shape sizes them again. A worker's first job takes buffers already touched for its shape
    /// where a one-process command prepared them while it started (<see cref="WarmScratches"/>).
    /// </summary>
    private static void Reserve(GraphJobManifest job, TileScratch s, bool withMask)
    {
        var shape = ShapeOf(job, withMask);
        if (s.ReservedFor is null && WarmScratches.Take(shape) is { } warm) s.Adopt(warm);
        s.Reserve(shape);
    }

    /// <summary>
    /// Writes a tile's group raster, run-length coded: the header "ASLR", width and height (int32), then the byte offset
    /// of each row's runs and of the end (int64, from the start of the runs), then each row as runs of (group id int32,
    /// -1 for glass; length uint16, 1..65,535). A superpixel's stretch of a row is one run, so the rasters take about a
    /// seventh of two bytes a pixel (18.5 MB against 134 MB for a generated 8192² image); written by every worker, read by
    /// the coordinator and deleted with the job's work folder, they are a job's largest temporary files (2.1 GB uncoded on
    /// a gigapixel image). A tile without groups (all
    /// glass) has an empty raster. The reader also takes the earlier two- and four-byte rasters (a job resuming after an
    /// upgrade).
    /// </summary>
    internal static void WriteLabels(string path, ReadOnlySpan<int> groups, int width)
    {
        var tmp = $"{path}.{Guid.NewGuid():N}.partial";
        using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
        {
            if (groups.Length > 0)
            {
                if (width <= 0 || groups.Length % width != 0) throw new ArgumentException($"a label raster of {groups.Length} pixels is not a whole number of rows of {width}");
                int height = groups.Length / width;
                var pool = System.Buffers.ArrayPool<byte>.Shared;
                var offsets = new long[height + 1];
                byte[] runs = pool.Rent(Math.Max(1 << 16, groups.Length / 4));
                try
                {
                    int n = 0;
                    for (int y = 0; y < height; y++)
                    {
                        offsets[y] = n;
                        var row = groups.Slice(y * width, width);
                        for (int x = 0; x < width;)
                        {
                            int v = row[x];
                            int k = row[x..].IndexOfAnyExcept(v);
                            int len = Math.Min(k < 0 ? width - x : k, ushort.MaxValue);
                            if (n + RunBytes > runs.Length) { var bigger = pool.Rent(2 * runs.Length); runs.AsSpan(0, n).CopyTo(bigger); pool.Return(runs); runs = bigger; }
                            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(runs.AsSpan(n), v);
                            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(runs.AsSpan(n + 4), (ushort)len);
                            n += RunBytes; x += len;
                        }
                    }
                    offsets[height] = n;
                    Span<byte> head = stackalloc byte[12];
                    LabelMagic.CopyTo(head);
                    System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(head[4..], width);
                    System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(head[8..], height);
                    fs.Write(head);
                    fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(offsets.AsSpan())); // little-endian hosts only (x64, arm64)
                    fs.Write(runs, 0, n);
                }
                finally { pool.Return(runs); }
            }
        }
        SafePaths.Publish(tmp, path, "tile labels", flush: false); // checked like the tile result (see TileResult.WriteFile)
    }

    private const int RunBytes = 6, LabelHeader = 12;
    private static ReadOnlySpan<byte> LabelMagic => "ASLR"u8;

    /// <summary>Reads rows [y0, y0+rows) of a tile's group raster (run-length coded, see <see cref="WriteLabels"/>, or the
    /// earlier two or four bytes a pixel); a tile with no groups (all glass) has an empty raster and reads as
    /// <see cref="FragmentBuilder.Glass"/> everywhere. Anything inconsistent fails naming the file.</summary>
    public static void ReadLabelRows(string path, int coreW, int coreH, int y0, int rows, Span<int> dest, bool glass = false)
    {
        if (glass)
        {
            if (new FileInfo(path).Length != 0) throw new InvalidDataException($"{path}: a tile without groups has a non-empty label raster");
            dest[..(coreW * rows)].Fill(FragmentBuilder.Glass);
            return;
        }
        if (y0 < 0 || rows < 0 || y0 + rows > coreH) throw new ArgumentOutOfRangeException(nameof(rows), $"rows [{y0}, {y0 + rows}) outside a tile of {coreH} rows");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long area = (long)coreW * coreH;
        Span<byte> head = stackalloc byte[LabelHeader];
        if (fs.Length >= LabelHeader && fs.ReadAtLeast(head, LabelHeader, throwOnEndOfStream: false) == LabelHeader && head[..4].SequenceEqual(LabelMagic))
        {
            ReadRunRows(fs, path, head, coreW, coreH, y0, rows, dest);
            return;
        }
        int size = fs.Length == area * 2 ? 2 : fs.Length == area * 4 ? 4
            : throw new InvalidDataException($"{path}: label raster is {fs.Length} bytes, neither run-length coded (header ASLR) nor {area * 2} or {area * 4} bytes for a {coreW}x{coreH} tile");
        fs.Seek((long)y0 * coreW * size, SeekOrigin.Begin);
        var target = dest[..(coreW * rows)];
        if (size == 4)
        {
            fs.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(target));
            return;
        }
        // two bytes a pixel: read into the upper half of the destination's bytes, then widen from the front (each int
        // written lies at or before the ushorts still to be read)
        var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(target);
        fs.ReadExactly(bytes[(target.Length * 2)..]);
        var narrow = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes[(target.Length * 2)..]);
        for (int i = 0; i < target.Length; i++) { int v = narrow[i]; target[i] = v == ushort.MaxValue ? FragmentBuilder.Glass : v; }
    }

    private static void ReadRunRows(FileStream fs, string path, ReadOnlySpan<byte> head, int coreW, int coreH, int y0, int rows, Span<int> dest)
    {
        int w = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(head[4..]), h = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(head[8..]);
        if (w != coreW || h != coreH) throw new InvalidDataException($"{path}: label raster is {w}x{h}, the tile is {coreW}x{coreH}");
        long dataStart = LabelHeader + 8L * (h + 1);
        if (fs.Length < dataStart) throw new InvalidDataException($"{path}: label raster cut short in its row index ({fs.Length} bytes)");
        var off = new long[rows + 1];
        fs.Seek(LabelHeader + 8L * y0, SeekOrigin.Begin);
        fs.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(off.AsSpan()));
        long dataLen = fs.Length - dataStart;
        for (int r = 0; r <= rows; r++)
            if (off[r] < 0 || off[r] > dataLen || (r > 0 && off[r] < off[r - 1]) || off[r] % RunBytes != 0)
                throw new InvalidDataException($"{path}: label raster's row index is damaged at row {y0 + r}");
        long span = off[rows] - off[0];
        if (span > int.MaxValue) throw new InvalidDataException($"{path}: label raster rows [{y0}, {y0 + rows}) take {span} bytes");
        var pool = System.Buffers.ArrayPool<byte>.Shared;
        byte[] buf = pool.Rent((int)Math.Max(1, span));
        try
        {
            fs.Seek(dataStart + off[0], SeekOrigin.Begin);
            fs.ReadExactly(buf.AsSpan(0, (int)span));
            for (int r = 0; r < rows; r++)
            {
                var row = dest.Slice(r * coreW, coreW);
                int x = 0;
                for (long p = off[r] - off[0]; p < off[r + 1] - off[0]; p += RunBytes)
                {
                    int v = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(buf.AsSpan((int)p));
                    int len = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(buf.AsSpan((int)p + 4));
                    if (v < FragmentBuilder.Glass || len == 0 || x + len > coreW)
                        throw new InvalidDataException($"{path}: label raster row {y0 + r} has a bad run (id {v}, length {len} at column {x} of {coreW})");
                    row.Slice(x, len).Fill(v);
                    x += len;
                }
                if (x != coreW) throw new InvalidDataException($"{path}: label raster row {y0 + r} covers {x} of {coreW} columns");
            }
        }
        finally { pool.Return(buf); }
    }

    /// <summary>Stitches all tiles' partial graphs into the global graph.</summary>
    public static (SuperpixelGraph Graph, int[][] NodeOfGroup) Stitch(GraphJobManifest job, IProgress<string>? progress = null, Action<int[][]>? nodesKnown = null)
    {
        var plan = job.Plan;
        var settings = new StitchSettings(job.Width, job.Height, job.Channels, job.Stats, job.MinSize, job.Grid.S, job.Request.K, job.Request.MaskPath is not null)
        {
            Norms = job.Norms, PlaneFeatureNames = job.PlaneFeatureNames, ContrastFeature = job.Texture, ContrastName = job.ContrastName,
        };
        var st = new Stitcher(plan, settings, (id, withValues) => TileResult.ReadFile(job.ResultPath(id), withValues));
        var g = st.Run(progress, nodesKnown);
        return (g, st.NodeOfGroup);
    }

    /// <summary>The full node-id raster, -1 where there is no node (glass); small images and tests only: W×H ints in memory.</summary>
    public static int[] NodeMap(GraphJobManifest job, int[][] nodeOfGroup)
    {
        var map = new int[job.Width * job.Height];
        var plan = job.Plan;
        foreach (var t in plan.Tiles())
        {
            var buf = new int[t.Core.W * t.Core.H];
            var nf = nodeOfGroup[t.Id];
            ReadLabelRows(job.LabelsPath(t.Id), t.Core.W, t.Core.H, 0, t.Core.H, buf, glass: nf.Length == 0);
            for (int y = 0; y < t.Core.H; y++)
                for (int x = 0; x < t.Core.W; x++)
                {
                    int g = buf[y * t.Core.W + x];
                    map[(t.Core.Y + y) * job.Width + t.Core.X + x] = g < 0 ? -1 : nf[g];
                }
        }
        return map;
    }
}
