using System.Diagnostics;
using System.Text.Json;
using ActorSeg.Core.Graph;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using Vips = NetVips;

namespace ActorSeg.Core.IO;

/// <summary>
/// Writes a job's outputs: <c>graph.npz</c> (numpy arrays, PyTorch Geometric names), <c>nodes.tif</c> (tiled BigTIFF of
/// node ids, for painting segmentations back), <c>nodes.ome.tif</c> (the same node map as a pyramidal OME-TIFF for QuPath,
/// napari and Fiji) and <c>graph.json</c> (a readable summary, written last).
/// Everything is first written in the job's work directory and moved into place only when all of it is complete.
/// </summary>
public static class GraphOutputs
{
    public const string GraphFile = "graph.npz", NodeMapFile = "nodes.tif", NodeMapOmeFile = "nodes.ome.tif", SummaryFile = "graph.json", TissueFile = "tissue.png";
    /// <summary>The node id of pixels that belong to no node (glass outside the tissue) in nodes.tif.</summary>
    public const uint NoNode = uint.MaxValue;

    public sealed record Summary(int Nodes, int AdjacencyEdges, int KnnEdges, double StitchSeconds, double WriteSeconds);

    public static string WorkDir(string outDir, string jobId) => AssignmentPaths.WorkDir(outDir, jobId);

    /// <summary>Where a job's graph goes: its output folder, or <c>OUT/graph</c> when it segments (a model is given).</summary>
    public static string GraphDir(Messages.GraphJobSpec spec) => spec.ModelPath is null ? spec.OutDir : Path.Combine(spec.OutDir, "graph");

    /// <summary>A job's work folder, in its graph folder (<see cref="GraphDir"/>).</summary>
    public static string WorkDir(Messages.GraphJobSpec spec, string jobId) => WorkDir(GraphDir(spec), jobId);

    public static void CleanWork(string workDir)
    {
        try { if (Directory.Exists(workDir)) Directory.Delete(workDir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<Task, byte> Cleaning = new();

    /// <summary>Deletes a work folder on a thread of its own (a whole slide's takes seconds); <see cref="WaitForCleaning"/>
    /// lets a process that is about to exit finish what it started.</summary>
    public static void CleanWorkInBackground(string workDir)
    {
        var t = Task.Factory.StartNew(() => CleanWork(workDir), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Cleaning.TryAdd(t, 0);
        t.ContinueWith(done => Cleaning.TryRemove(done, out _), TaskScheduler.Default);
    }

    /// <summary>Waits (at most <paramref name="limit"/>) for the work folders being deleted; true when none is left.</summary>
    public static bool WaitForCleaning(TimeSpan limit)
    {
        var pending = Cleaning.Keys.ToArray();
        return pending.Length == 0 || Task.WaitAll(pending, limit);
    }

    /// <summary>Stitches the job's tiles and writes its outputs into <paramref name="outDir"/>; once <paramref name="ct"/> is
    /// cancelled (the coordinator gave up on the step) nothing more is published.</summary>
    public static Summary StitchAndWrite(GraphJobManifest job, string outDir, bool writeNodeMap, IProgress<string>? progress = null, CancellationToken ct = default)
    {
        var sw = Stopwatch.StartNew();
        var um = SourcePixelSize(job); // once: the node maps, graph.npz and graph.json carry it
        var staging = Path.Combine(job.WorkDir, "out");
        Directory.CreateDirectory(staging);
        // the node maps need only the nodes' numbering: they are written (nodes.tif and nodes.ome.tif, band by band) while
        // the stitch goes on to the features and edges and graph.npz is written; everything waits for them before anything
        // is published
        Task? maps = null;
        void StartMaps(int[][] nodeOfGroup)
        {
            if (!writeNodeMap) return;
            maps = Task.Factory.StartNew(() =>
            {
                WriteNodeMaps(job, nodeOfGroup, Path.Combine(staging, NodeMapFile), Path.Combine(staging, NodeMapOmeFile), um, progress);
                progress?.Report($"wrote {NodeMapFile} and {NodeMapOmeFile}");
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        SuperpixelGraph g;
        double stitch;
        try
        {
            (g, _) = GraphJob.Stitch(job, progress, StartMaps);
            ct.ThrowIfCancellationRequested();
            stitch = sw.Elapsed.TotalSeconds;
            sw.Restart();
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true); // what the stitch dropped, before the npz's arrays
            WriteNpz(g, job, Path.Combine(staging, GraphFile), um);
            progress?.Report($"wrote {GraphFile}");
            if (job.TissueMap is { } tissue) tissue.SavePng(Path.Combine(staging, TissueFile));
        }
        finally
        {
            // never leave the node-map writer running into a failed job's clean-up; its own failure is reported below,
            // when the rest succeeded
            try { maps?.Wait(); }
            catch (AggregateException) { }
        }
        maps?.GetAwaiter().GetResult();
        double write = sw.Elapsed.TotalSeconds;
        var summary = new Summary(g.NodeCount, g.RagA.Length, g.EdgeSrc.Length, stitch, write);
        WriteSummary(g, job, summary, Path.Combine(staging, SummaryFile), writeNodeMap, um);
        ct.ThrowIfCancellationRequested();
        // publish: the data files first, the summary (the completion marker) last
        SafePaths.EnsureDirectory(outDir, "output folder");
        var summaryPath = Path.Combine(outDir, SummaryFile);
        if (File.Exists(summaryPath)) File.Delete(summaryPath); // an old summary must never vouch for new files
        SafePaths.Publish(Path.Combine(staging, GraphFile), Path.Combine(outDir, GraphFile));
        if (writeNodeMap)
        {
            SafePaths.Publish(Path.Combine(staging, NodeMapFile), Path.Combine(outDir, NodeMapFile));
            SafePaths.Publish(Path.Combine(staging, NodeMapOmeFile), Path.Combine(outDir, NodeMapOmeFile));
        }
        if (job.Tissue is not null) SafePaths.Publish(Path.Combine(staging, TissueFile), Path.Combine(outDir, TissueFile));
        SafePaths.Publish(Path.Combine(staging, SummaryFile), summaryPath);
        return summary;
    }

    /// <summary>The graph's record of its image's µm per pixel, [x, y] (float64), where the image states it: training reads it
    /// where the graph has left its graph.json behind.</summary>
    public const string PixelSizeArray = "image_microns_per_pixel";

    public static void WriteNpz(SuperpixelGraph g, GraphJobManifest job, string path, (double X, double Y)? micronsPerPixel = null)
    {
        int n = g.NodeCount, F = g.FeatureCount;
        using var npz = new NpzWriter(path);
        npz.Add<float>("x", g.Features, n, F);
        var pos = new float[2 * n];
        for (int i = 0; i < n; i++) { pos[2 * i] = (float)g.CentroidX[i]; pos[2 * i + 1] = (float)g.CentroidY[i]; }
        npz.Add<float>("pos", pos, n, 2);
        npz.Add<long>("area", g.Area.Select(a => (long)a).ToArray(), n);
        npz.Add<int>("bbox", g.BBox, n, 4);
        npz.Add<long>("first_pixel", g.MinLinear, n);

        int e = g.EdgeSrc.Length;
        // one array at a time, each dropped before the next (a gigapixel graph has ~11 M edges)
        WriteAndDrop(npz, "edge_index", () =>
        {
            var ei = new long[2 * (long)e];
            for (int i = 0; i < e; i++) { ei[i] = g.EdgeSrc[i]; ei[e + i] = g.EdgeDst[i]; }
            return ei;
        }, 2, e);
        WriteAndDrop(npz, "edge_weight", () => g.EdgeDist.Select(d => (float)Math.Exp(-d)).ToArray(), e);
        WriteAndDrop(npz, "edge_weight_scaled", () => g.EdgeDist.Select(d => (float)Math.Exp(-d / g.MeanSpacing)).ToArray(), e);
        npz.Add<float>("edge_dist", g.EdgeDist, e);

        int r = g.RagA.Length;
        var rl = new int[2 * r]; var rc = new float[2 * r];
        var ragEi = new long[4 * r]; // row 0: sources, row 1: targets; a→b edges then b→a
        for (int i = 0; i < r; i++)
        {
            ragEi[i] = g.RagA[i]; ragEi[2 * r + i] = g.RagB[i];
            ragEi[r + i] = g.RagB[i]; ragEi[3 * r + i] = g.RagA[i];
            rl[i] = rl[r + i] = g.RagLength[i];
            rc[i] = rc[r + i] = g.RagContrast[i];
        }
        npz.Add<long>("rag_edge_index", ragEi, 2, 2 * r);
        npz.Add<int>("rag_boundary_length", rl, 2 * r);
        npz.Add<float>("rag_contrast", rc, 2 * r);

        if (g.HasLabels)
        {
            npz.Add<long>("y", g.Label.Select(v => (long)v).ToArray(), n);
            npz.Add<long>("class_hist", g.ClassHist.Select(v => (long)v).ToArray(), n, g.NumClasses);
        }
        npz.AddStrings("feature_names", g.FeatureNames);
        npz.Add<long>("image_shape", new long[] { g.Height, g.Width, g.Channels }, 3);
        npz.Add<double>("image_mean", job.Mean, job.Channels);
        npz.Add<double>("image_std", job.Std, job.Channels);
        if (micronsPerPixel is { } um) npz.Add<double>(PixelSizeArray, [um.X, um.Y], 2);
        npz.AddScalar("mean_spacing", g.MeanSpacing);
        npz.AddScalar("seed_spacing", g.SeedSpacing);
        npz.AddScalar("k", (long)g.K);
        npz.Complete();
    }

    private static void WriteAndDrop<T>(NpzWriter npz, string name, Func<T[]> make, params int[] shape) where T : unmanaged
    {
        npz.Add<T>(name, make(), shape);
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: false);
    }

    /// <summary>
    /// Paints the node-label map band by band from the tiles' fragment rasters, never holding the whole image, into
    /// <paramref name="path"/> (nodes.tif: one tiled level) and, when <paramref name="omePath"/> is given, the same map as
    /// OME-TIFF (nodes.ome.tif): the same level-0 tiles (each encoded once, for both files) and a SubIFD pyramid down to
    /// the first level that fits in one tile, each coarser level taking the top-left id of every 2×2 block (so every
    /// pixel stays a real node id), with OME-XML giving the uint32 type and the pixel size in µm when the image states it.
    /// Memory: one band of <paramref name="tiffTile"/> rows per level.
    /// </summary>
    public static void WriteNodeMaps(GraphJobManifest job, int[][] nodeOfGroup, string path, string? omePath = null,
        (double X, double Y)? micronsPerPixel = null, IProgress<string>? progress = null, int tiffTile = 256)
    {
        var plan = job.Plan;
        int W = job.Width, H = job.Height;
        int rows = (H + tiffTile - 1) / tiffTile;
        if ((long)W * tiffTile > Array.MaxLength) throw new InvalidOperationException("image too wide");
        using var flat = new TiledTiffWriter(path, W, H, 1, TiffSampleType.UInt32, tiffTile);
        int levels = 1;
        for (long w = W, h = H; (w > tiffTile || h > tiffTile) && levels < 31; w = (w + 1) / 2, h = (h + 1) / 2) levels++;
        using var ome = omePath is null ? null : new TiledTiffWriter(omePath, W, H, 1, TiffSampleType.UInt32, tiffTile, levels: levels,
            pixelSizeMicrons: micronsPerPixel is { } um && um.X > 0 && Math.Abs(um.X - um.Y) <= 1e-9 * um.X ? um.X : null,
            description: MaskPainter.OmeXml(W, H, micronsPerPixel?.X, micronsPerPixel?.Y, classes: null, pixelType: "uint32", channelName: "node", imageName: "superpixel nodes"));
        // the band being filled at each level (level 0's is painted whole, the coarser ones from the level above)
        int nLevels = ome is null ? 1 : levels;
        var bands = new uint[nLevels][];
        for (int k = 0; k < nLevels; k++) bands[k] = new uint[(ome?.LevelWidth(k) ?? W) * tiffTile];
        var rowsBuf = new int[plan.TileSize * tiffTile];
        for (int br = 0; br < rows; br++)
        {
            int y0 = br * tiffTile, bh = Math.Min(tiffTile, H - y0);
            var band = bands[0];
            Array.Clear(band);
            for (int tr = y0 / plan.TileSize; tr <= (y0 + bh - 1) / plan.TileSize; tr++)
                for (int tc = 0; tc < plan.Cols; tc++)
                {
                    var t = plan.Tile(tr * plan.Cols + tc);
                    int ya = Math.Max(y0, t.Core.Y), yb = Math.Min(y0 + bh, t.Core.Bottom);
                    if (ya >= yb) continue;
                    int nrows = yb - ya;
                    var map = nodeOfGroup[t.Id];
                    GraphJob.ReadLabelRows(job.LabelsPath(t.Id), t.Core.W, t.Core.H, ya - t.Core.Y, nrows, rowsBuf, glass: map.Length == 0);
                    for (int y = 0; y < nrows; y++)
                    {
                        var dst = band.AsSpan((ya - y0 + y) * W + t.Core.X, t.Core.W);
                        var src = rowsBuf.AsSpan(y * t.Core.W, t.Core.W);
                        for (int x = 0; x < src.Length; x++) { int g = src[x]; dst[x] = g < 0 ? NoNode : (uint)map[g]; }
                    }
                }
            EmitBand(0, br, bh);
            if (progress is not null && rows >= 20 && br % (rows / 10) == 0) progress.Report($"node map {100 * (br + 1) / rows}%");
        }
        flat.Complete();
        ome?.Complete();

        // writes band `br` (bh rows) of level k, then hands every other row and column of it to level k + 1, whose band
        // is written in turn once full (or at that level's last row)
        void EmitBand(int k, int br, int bh)
        {
            int lw = ome?.LevelWidth(k) ?? W, across = (lw + tiffTile - 1) / tiffTile;
            var band = bands[k];
            // the band's tiles are encoded on every core, then appended in column order, so that the files' bytes do
            // not depend on which thread finished first
            var encoded = new EncodedTile?[across];
            try
            {
                Parallel.For(0, across, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, () => new uint[tiffTile * tiffTile], (bc, _, buf) =>
                {
                    Array.Clear(buf);
                    int x0 = bc * tiffTile, bw = Math.Min(tiffTile, lw - x0);
                    for (int y = 0; y < bh; y++) band.AsSpan(y * lw + x0, bw).CopyTo(buf.AsSpan(y * tiffTile, bw));
                    encoded[bc] = k == 0 ? flat.EncodeTile<uint>(buf) : ome!.EncodeTile<uint>(buf);
                    return buf;
                }, _ => { });
                for (int bc = 0; bc < across; bc++)
                {
                    if (k == 0) flat.WriteEncodedTile(bc, br, encoded[bc]!);
                    ome?.WriteEncodedTile(k, bc, br, encoded[bc]!);
                }
            }
            finally { foreach (var e in encoded) e?.Dispose(); }
            if (k + 1 >= nLevels) return;
            int nw = ome!.LevelWidth(k + 1), nh = ome.LevelHeight(k + 1);
            var next = bands[k + 1];
            int firstRow = br * tiffTile / 2, nbr = firstRow / tiffTile; // level k+1's rows [firstRow, …) lie in its band nbr
            if (firstRow % tiffTile == 0) Array.Clear(next);
            int lastRow = firstRow;
            for (int y = 0; y < bh; y += 2, lastRow++)
            {
                var src = band.AsSpan(y * lw, lw);
                var dst = next.AsSpan((lastRow - nbr * tiffTile) * nw, nw);
                for (int x = 0; x < nw; x++) dst[x] = src[2 * x];
            }
            if (lastRow % tiffTile == 0 || lastRow == nh) EmitBand(k + 1, nbr, lastRow - nbr * tiffTile);
        }
    }

    /// <summary>What a graph's summary (graph.json) records of the image the graph was read from: the graph file it
    /// describes, the size, channels and depth read, and whether it records a pixel size (graph.json files written before
    /// 2026-12-06 do not) and which (null: the image stated none).</summary>
    public sealed record SummaryImage(string GraphFile, int Width, int Height, int Channels, int BitDepth, bool RecordsPixelSize, (double X, double Y)? MicronsPerPixel);

    /// <summary>The inputs a graph's summary (graph.json) records: the image as read (its page or level, its series, and since
    /// 2026-12-07 the file's size and modification time then), and the mask with how it was read (null: none).</summary>
    public sealed record SummaryInputs(string ImagePath, int Page, int Series, long? Bytes, DateTime? ModifiedUtc, string? MaskPath, MaskMode MaskMode, int? IgnoreValue);

    /// <summary>Reads <see cref="SummaryInputs"/> from a graph.json.</summary>
    /// <exception cref="IOException">it cannot be read</exception>
    /// <exception cref="InvalidDataException">it is missing, or not a graph summary ActorSeg writes (names the file)</exception>
    public static SummaryInputs ReadSummaryInputs(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var img = doc.RootElement.GetProperty("image");
            var image = img.GetProperty("path").GetString();
            if (string.IsNullOrEmpty(image)) throw new InvalidDataException("no image path");
            long? bytes = img.TryGetProperty("bytes", out var by) && by.ValueKind == JsonValueKind.Number ? by.GetInt64() : null;
            DateTime? modified = img.TryGetProperty("modifiedUtc", out var mt) && mt.ValueKind == JsonValueKind.String && mt.TryGetDateTime(out var when) ? when.ToUniversalTime() : null;
            int page = img.TryGetProperty("page", out var pg) ? pg.GetInt32() : 0, series = img.TryGetProperty("series", out var se) ? se.GetInt32() : -1;
            string? mask = null; var mode = MaskMode.Binary; int? ignore = null;
            if (doc.RootElement.TryGetProperty("mask", out var m) && m.ValueKind == JsonValueKind.Object)
            {
                mask = m.GetProperty("path").GetString();
                mode = m.TryGetProperty("mode", out var md) && md.GetString() == "classes" ? MaskMode.Classes : MaskMode.Binary;
                if (m.TryGetProperty("ignoreValue", out var iv) && iv.ValueKind == JsonValueKind.Number) ignore = iv.GetInt32();
            }
            return new SummaryInputs(image, page, series, bytes, modified, mask, mode, ignore);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FileNotFoundException or DirectoryNotFoundException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a graph summary ({e.Message})", e);
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{path}: not a graph summary ({e.Message})", e);
        }
    }

    /// <summary>Reads <see cref="SummaryImage"/> from a graph.json.</summary>
    /// <exception cref="IOException">it cannot be read</exception>
    /// <exception cref="InvalidDataException">it is not a graph summary ActorSeg writes (names the file)</exception>
    public static SummaryImage ReadSummaryImage(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            var img = root.GetProperty("image");
            int Int(string name) => img.GetProperty(name).GetInt32();
            bool records = img.TryGetProperty("micronsPerPixel", out var um);
            (double, double)? mpp = records && um.ValueKind != JsonValueKind.Null ? (um[0].GetDouble(), um[1].GetDouble()) : null;
            return new SummaryImage(root.GetProperty("files").GetProperty("graph").GetString() ?? "", Int("width"), Int("height"), Int("channels"), Int("bitDepth"), records, mpp);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
        {
            throw new InvalidDataException($"{path}: not a graph summary ({e.Message})", e);
        }
    }

    /// <summary>µm per pixel of the level or page the job read, or null when the image does not say (or cannot be asked again).</summary>
    private static (double X, double Y)? SourcePixelSize(GraphJobManifest job)
    {
        try { return PixelSize.MicronsPerPixel(job.Request.ImagePath, job.Request.Page, job.Request.Series); }
        catch (Exception e) when (e is InputFileException or Vips.VipsException or IOException) { return null; }
    }

    private static void WriteSummary(SuperpixelGraph g, GraphJobManifest job, Summary s, string path, bool nodeMap, (double X, double Y)? micronsPerPixel)
    {
        var req = job.Request;
        var doc = new
        {
            format = "actorseg-graph/1",
            job = job.JobId,
            image = new
            {
                path = Path.GetFullPath(req.ImagePath), page = req.Page, series = req.Series, width = job.Width, height = job.Height, channels = job.Channels, bitDepth = job.BitDepth, mean = job.Mean, std = job.Std,
                // µm per pixel of the level read, [x, y], null where the image states none
                micronsPerPixel = micronsPerPixel is { } um ? new[] { um.X, um.Y } : null,
                // the file as it was read: a graph whose image is later replaced by another (a refinement, an evaluation
                // reads the image again) can say so
                bytes = File.Exists(req.ImagePath) ? new FileInfo(req.ImagePath).Length : (long?)null,
                modifiedUtc = File.Exists(req.ImagePath) ? File.GetLastWriteTimeUtc(req.ImagePath) : (DateTime?)null,
            },
            mask = req.MaskPath is null ? null : new { path = Path.GetFullPath(req.MaskPath), mode = req.MaskMode.ToString().ToLowerInvariant(), ignoreValue = req.IgnoreValue, classes = g.NumClasses },
            superpixels = new { method = "slic", seeds = job.Grid.Count, seedSpacing = job.Grid.S, req.Slic.Compactness, req.Slic.Sigma, req.Slic.Iterations, req.Slic.WindowFactor, req.Slic.MinSizeFactor, minSize = job.MinSize },
            tiling = new { tileSize = req.TileSize, halo = job.Halo, tiles = job.Plan.Count, tilesSkipped = job.Tissue?.TilesSkipped ?? 0 },
            tissue = job.Tissue is { } ti ? new { source = ti.Source, fraction = ti.Fraction, tilesSkipped = ti.TilesSkipped, map = TissueFile, cells = new[] { ti.MapWidth, ti.MapHeight } } : null,
            graph = new { nodes = g.NodeCount, features = g.FeatureNames, meanSpacing = g.MeanSpacing, k = g.K, knnEdges = g.EdgeSrc.Length, adjacencyEdges = g.RagA.Length, labelled = g.HasLabels ? g.Label.Count(l => l >= 0) : 0 },
            files = new { graph = GraphFile, nodeMap = nodeMap ? NodeMapFile : null, nodeMapOme = nodeMap ? NodeMapOmeFile : null },
            seconds = new { stitch = s.StitchSeconds, write = s.WriteSeconds },
        };
        SafePaths.WriteAllText(path, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }), "graph summary");
    }
}
