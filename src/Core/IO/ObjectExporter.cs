using System.Diagnostics;
using System.IO.Compression;
using System.Text.Json;
using NetTopologySuite.Geometries;
using NetTopologySuite.Operation.OverlayNG;
using NetTopologySuite.Simplify;
using ActorSeg.Core.Imaging;
using Vips = NetVips;

namespace ActorSeg.Core.IO;

/// <summary>How <see cref="ObjectExporter"/> writes objects.</summary>
/// <param name="BlockSize">the mask is read in blocks of this many pixels a side (memory is bounded by a block, not the image)</param>
/// <param name="Simplify">0: exact pixel-edge polygons; else a topology-preserving simplification with this tolerance in level-0 pixels (areas then approximate)</param>
/// <param name="MicronsPerPixelX">µm per level-0 pixel (null: unknown, no <c>area_um2</c>)</param>
/// <param name="DownsampleX">level-0 pixels per mask pixel: coordinates are written in level-0 pixels</param>
public sealed record ObjectExportOptions(int BlockSize = 2048, double Simplify = 0, double? MicronsPerPixelX = null, double? MicronsPerPixelY = null,
    double DownsampleX = 1, double DownsampleY = 1);

/// <summary>What an export wrote: the number of features, the mask pixels per class they cover, how many were joined across blocks.</summary>
public sealed record ObjectExportResult(long Objects, long[] PixelsPerClass, long JoinedAcrossBlocks, double Seconds);

/// <summary>
/// Writes a class-id mask as GeoJSON objects for QuPath: one Feature per 4-connected region of a class (class 0,
/// background, is not exported), a Polygon with its holes in level-0 pixel coordinates. The boundary follows pixel
/// edges (crack following), so the polygon's area is the region's pixel count exactly; diagonal neighbours of the
/// same region meet at single vertices, so every polygon is OGC-valid (rings touch at points only).
///
/// The mask is read block by block; a region that touches no block seam is written as soon as its block is done
/// (streamed through a <see cref="Utf8JsonWriter"/>); pieces of regions that cross seams are kept until every block
/// they may extend into has been read, then joined exactly (NetTopologySuite OverlayNG on integer coordinates) and
/// written. Memory is bounded by a block and the regions open across the current block row, not by the image.
/// </summary>
public static class ObjectExporter
{
    private static readonly int[] DX = [0, 1, 0, -1], DY = [-1, 0, 1, 0]; // N, E, S, W (image coordinates, y down)
    private static readonly GeometryFactory Factory = new(new PrecisionModel(1.0));

    /// <summary>The file name for a format ("geojson" or "geojson.gz"), or null for "none"; an exception names a bad value.</summary>
    public static string? FileName(string? format) => Validate(format) is { } why ? throw new ArgumentException(why) :
        (format ?? "geojson").ToLowerInvariant() switch { "none" => null, var f => "objects." + f };

    /// <summary>Null when <paramref name="format"/> is usable ("geojson", "geojson.gz", "none"; null means "geojson"), else why not.</summary>
    public static string? Validate(string? format) =>
        format is null || format.ToLowerInvariant() is "geojson" or "geojson.gz" or "none" ? null : $"objects format '{format}' is not one of geojson, geojson.gz, none";

    /// <summary>Null when a simplification tolerance is usable (0 = off, at most 1000 px), else why not.</summary>
    public static string? ValidateSimplify(double px) =>
        double.IsFinite(px) && px >= 0 && px <= 1000 ? null : $"--simplify {px}: a tolerance in level-0 pixels from 0 (off) to 1000";

    /// <summary>
    /// Exports <paramref name="maskPath"/> (one uint8 band of class ids, e.g. mask.tif) to <paramref name="outPath"/>
    /// (gzip-compressed when it ends in .gz), written under a unique temporary name and published atomically.
    /// </summary>
    /// <param name="nodeMap">nodes.tif (uint32 node ids, 0xFFFFFFFF: no node) for the mean class probability, with <paramref name="probabilities"/></param>
    /// <param name="probabilities">N×C class probabilities of the nodes (row per node)</param>
    /// <param name="probabilityMap">instead of the nodes' probabilities: prob.tif (uint8, the painted class's probability
    /// × 255 per pixel), as a refined mask has it (its pixels' classes are not always their node's)</param>
    public static ObjectExportResult Export(string maskPath, string outPath, IReadOnlyList<ClassInfo>? classes = null, ObjectExportOptions? options = null,
        string? nodeMap = null, float[]? probabilities = null, int probabilityClasses = 0, CancellationToken cancel = default, string? probabilityMap = null)
    {
        var opt = options ?? new ObjectExportOptions();
        if (opt.BlockSize < 16) throw new ArgumentException($"block size {opt.BlockSize} is below 16");
        if (ValidateSimplify(opt.Simplify) is { } bad) throw new ArgumentException(bad);
        var sw = Stopwatch.StartNew();
        using var mask = Vips.Image.NewFromFile(maskPath, access: Vips.Enums.Access.Random, failOn: Vips.Enums.FailOn.Error);
        if (mask.Bands != 1 || mask.Format != Vips.Enums.BandFormat.Uchar) throw new InputFileException(maskPath, "not a class-id mask (expected one uint8 band)");
        Vips.Image? nodes = null;
        bool withProbs = nodeMap is not null && probabilities is not null && probabilityClasses > 0;
        if (withProbs)
        {
            nodes = Vips.Image.NewFromFile(nodeMap!, access: Vips.Enums.Access.Random, failOn: Vips.Enums.FailOn.Error);
            if (nodes.Bands != 1 || nodes.Format != Vips.Enums.BandFormat.Uint) throw new InputFileException(nodeMap!, "not a node-label map (expected one uint32 band)");
            if (nodes.Width != mask.Width || nodes.Height != mask.Height)
                throw new InputFileException(nodeMap!, $"node map is {nodes.Width}x{nodes.Height}, the mask {mask.Width}x{mask.Height}");
            if (probabilities!.Length % probabilityClasses != 0) throw new ArgumentException($"{probabilities.Length} probabilities are not a multiple of {probabilityClasses} classes");
        }
        Vips.Image? probMap = null;
        if (probabilityMap is not null)
        {
            probMap = Vips.Image.NewFromFile(probabilityMap, access: Vips.Enums.Access.Random, failOn: Vips.Enums.FailOn.Error);
            if (probMap.Bands != 1 || probMap.Format != Vips.Enums.BandFormat.Uchar || probMap.Width != mask.Width || probMap.Height != mask.Height)
            { probMap.Dispose(); nodes?.Dispose(); throw new InputFileException(probabilityMap, $"not a probability map of the mask's size {mask.Width}x{mask.Height} (one uint8 band)"); }
        }
        var full = Path.GetFullPath(outPath);
        var tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.partial");
        try
        {
            ObjectExportResult result;
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                using (Stream body = full.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(fs, CompressionLevel.Fastest, leaveOpen: true) : new NonClosing(fs))
                using (var json = new Utf8JsonWriter(body, new JsonWriterOptions { SkipValidation = true }))
                {
                    var w = new Run(mask, nodes, probabilities, probabilityClasses, classes, opt, json, cancel, probMap);
                    result = w.Go(sw);
                }
                fs.Flush(flushToDisk: true);
            }
            SafePaths.Publish(tmp, full, "objects");
            return result with { Seconds = sw.Elapsed.TotalSeconds };
        }
        finally
        {
            nodes?.Dispose();
            probMap?.Dispose();
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    private sealed class NonClosing(Stream inner) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);
    }

    /// <summary>A piece of a region cut by block seams: its rings (shell first, global mask coordinates) and its sums.</summary>
    private sealed class Piece(int cls, long pixels, double probSum, long probPixels, List<int[]> rings)
    {
        public readonly int Class = cls;
        public long Pixels = pixels, ProbPixels = probPixels;
        public double ProbSum = probSum;
        public List<int[]> Rings = rings;
    }

    private sealed class Run(Vips.Image mask, Vips.Image? nodes, float[]? probs, int probClasses, IReadOnlyList<ClassInfo>? classes, ObjectExportOptions opt,
        Utf8JsonWriter json, CancellationToken cancel, Vips.Image? probMap = null)
    {
        private readonly int W = mask.Width, H = mask.Height, B = opt.BlockSize;
        private readonly long[] _pixelsPerClass = new long[256];
        private long _objects, _joined;
        // pieces open across seams: union-find over their ids; each root counts the seam sides still to be read
        private readonly Dictionary<int, int> _parent = [];
        private readonly Dictionary<int, int> _open = [];
        private readonly Dictionary<int, List<int>> _members = [];
        private readonly Dictionary<int, Piece> _pieces = [];
        private int _nextId;
        private readonly ClassInfo[] _table = classes is { Count: > 0 } ? [.. classes] : ClassTable.Default(2);

        public ObjectExportResult Go(Stopwatch sw)
        {
            json.WriteStartObject();
            json.WriteString("type", "FeatureCollection");
            json.WriteStartArray("features");
            int rows = (H + B - 1) / B, cols = (W + B - 1) / B;
            var bottomRow = new int[W]; // piece ids along the last row of the previous block row (-1: none)
            Array.Fill(bottomRow, -1);
            var openBottomPrev = new List<int>[cols]; // pieces of the previous block row still open downwards
            for (int br = 0; br < rows; br++)
            {
                var rightCol = new int[B];
                Array.Fill(rightCol, -1);
                List<int> openRightPrev = [];
                var openBottomNow = new List<int>[cols];
                for (int bc = 0; bc < cols; bc++)
                {
                    cancel.ThrowIfCancellationRequested();
                    (openRightPrev, openBottomNow[bc]) = Block(bc * B, br * B, Math.Min(B, W - bc * B), Math.Min(B, H - br * B),
                        bottomRow, rightCol, openRightPrev, openBottomPrev[bc] ?? []);
                    if (json.BytesPending > 1 << 16) json.Flush();
                }
                openBottomPrev = openBottomNow;
            }
            if (_pieces.Count > 0) throw new InvalidOperationException($"{_pieces.Count} region pieces were left open after the last block");
            json.WriteEndArray();
            json.WriteEndObject();
            json.Flush();
            return new ObjectExportResult(_objects, _pixelsPerClass, _joined, sw.Elapsed.TotalSeconds);
        }

        private int Find(int a)
        {
            while (_parent[a] != a) { var p = _parent[_parent[a]]; _parent[a] = p; a = p; }
            return a;
        }

        private void Union(int a, int b)
        {
            a = Find(a); b = Find(b);
            if (a == b) return;
            if (_members[a].Count < _members[b].Count) (a, b) = (b, a);
            _parent[b] = a;
            _members[a].AddRange(_members[b]);
            _members.Remove(b);
            _open[a] += _open[b];
            _open.Remove(b);
        }

        /// <summary>One block: label, trace, write what is finished, join what crosses the left and top seams.</summary>
        private (List<int> OpenRight, List<int> OpenBottom) Block(int x0, int y0, int bw, int bh, int[] bottomRow, int[] rightCol, List<int> openRightPrev, List<int> openBottomPrev)
        {
            // the block with a one-pixel apron, to see the class across each seam
            int ax0 = Math.Max(0, x0 - 1), ay0 = Math.Max(0, y0 - 1), ax1 = Math.Min(W, x0 + bw + 1), ay1 = Math.Min(H, y0 + bh + 1);
            int aw = ax1 - ax0, ah = ay1 - ay0, ox = x0 - ax0, oy = y0 - ay0;
            byte[] apron;
            using (var crop = mask.Crop(ax0, ay0, aw, ah)) apron = crop.WriteToMemory<byte>();
            uint[]? ids = null;
            if (nodes is not null && probMap is null) using (var crop = nodes.Crop(x0, y0, bw, bh)) ids = crop.WriteToMemory<uint>();
            byte[]? pixelProb = null;
            if (probMap is not null) using (var crop = probMap.Crop(x0, y0, bw, bh)) pixelProb = crop.WriteToMemory<byte>();
            byte At(int x, int y) => apron[(y + oy) * aw + x + ox]; // block coordinates, -1..bw / -1..bh where the apron has them

            // 4-connected labelling, two passes with union-find over provisional labels
            var lab = new int[bw * bh];
            var uf = new List<int>();
            int F(int a) { while (uf[a] != a) { uf[a] = uf[uf[a]]; a = uf[a]; } return a; }
            for (int y = 0; y < bh; y++)
                for (int x = 0; x < bw; x++)
                {
                    int i = y * bw + x;
                    byte c = At(x, y);
                    if (c == 0) { lab[i] = -1; continue; }
                    int l = x > 0 && At(x - 1, y) == c ? lab[i - 1] : -1, u = y > 0 && At(x, y - 1) == c ? lab[i - bw] : -1;
                    if (l < 0 && u < 0) { lab[i] = uf.Count; uf.Add(uf.Count); }
                    else if (l >= 0 && u >= 0)
                    {
                        lab[i] = l;
                        int rl = F(l), ru = F(u);
                        if (rl != ru) uf[Math.Max(rl, ru)] = Math.Min(rl, ru);
                    }
                    else lab[i] = Math.Max(l, u);
                }
            var compact = new int[uf.Count];
            int n = 0;
            for (int a = 0; a < uf.Count; a++) compact[a] = F(a) == a ? n++ : -1;
            var cls = new byte[n];
            var count = new long[n];
            var probSum = new double[n];
            var probPixels = new long[n];
            var flags = new byte[n]; // 1 left, 2 top, 4 open right, 8 open bottom
            for (int y = 0; y < bh; y++)
                for (int x = 0; x < bw; x++)
                {
                    int i = y * bw + x;
                    if (lab[i] < 0) continue;
                    int r = lab[i] = compact[F(lab[i])];
                    byte c = At(x, y);
                    cls[r] = c;
                    count[r]++;
                    if (pixelProb is not null) { probSum[r] += pixelProb[i] / 255.0; probPixels[r]++; }
                    else if (ids is not null)
                    {
                        uint id = ids[i];
                        if (id != uint.MaxValue && (long)(id + 1) * probClasses <= probs!.Length && c < probClasses) { probSum[r] += probs[(long)id * probClasses + c]; probPixels[r]++; }
                    }
                    if (x == 0 && x0 > 0 && At(-1, y) == c) flags[r] |= 1;
                    if (y == 0 && y0 > 0 && At(x, -1) == c) flags[r] |= 2;
                    if (x == bw - 1 && x0 + bw < W && At(bw, y) == c) flags[r] |= 4;
                    if (y == bh - 1 && y0 + bh < H && At(x, bh) == c) flags[r] |= 8;
                }
            var rings = Trace(lab, bw, bh, n, x0, y0);
            for (int r = 0; r < n; r++) _pixelsPerClass[cls[r]] += count[r];

            // finished regions are written now; pieces crossing a seam get an id
            var gid = new int[n];
            List<int> openRight = [], openBottom = [];
            for (int r = 0; r < n; r++)
            {
                if (flags[r] == 0) { WriteFeature(cls[r], count[r], probSum[r], probPixels[r], rings[r]!); gid[r] = -1; continue; }
                int g = gid[r] = _nextId++;
                _parent[g] = g;
                _members[g] = [g];
                _open[g] = ((flags[r] & 4) != 0 ? 1 : 0) + ((flags[r] & 8) != 0 ? 1 : 0);
                _pieces[g] = new Piece(cls[r], count[r], probSum[r], probPixels[r], rings[r]!);
                if ((flags[r] & 4) != 0) openRight.Add(g);
                if ((flags[r] & 8) != 0) openBottom.Add(g);
            }
            var touched = new HashSet<int>();
            // the left seam: join with the previous block's last column, then that side of those pieces is read
            if (x0 > 0)
            {
                for (int y = 0; y < bh; y++)
                    if (lab[y * bw] is var r && r >= 0 && At(-1, y) == cls[r]) Union(gid[r], rightCol[y]);
                foreach (var g in openRightPrev) { _open[Find(g)]--; touched.Add(g); }
            }
            if (y0 > 0)
            {
                for (int x = 0; x < bw; x++)
                    if (lab[x] is var r && r >= 0 && At(x, -1) == cls[r]) Union(gid[r], bottomRow[x0 + x]);
                foreach (var g in openBottomPrev) { _open[Find(g)]--; touched.Add(g); }
            }
            for (int r = 0; r < n; r++) if (gid[r] >= 0) touched.Add(gid[r]);
            // what this block leaves for its right and bottom neighbours
            for (int y = 0; y < bh; y++) rightCol[y] = lab[y * bw + bw - 1] is var r && r >= 0 ? gid[r] : -1;
            for (int x = 0; x < bw; x++) bottomRow[x0 + x] = lab[(bh - 1) * bw + x] is var r && r >= 0 ? gid[r] : -1;
            // groups with no seam left to read are complete
            foreach (var root in touched.Select(Find).Distinct().ToList())
                if (_open[root] == 0) Flush(root);
            return (openRight, openBottom);
        }

        /// <summary>Joins a complete group of pieces into one polygon and writes it.</summary>
        private void Flush(int root)
        {
            var members = _members[root];
            var parts = members.Select(m => _pieces[m]).ToList();
            foreach (var m in members) { _pieces.Remove(m); _parent.Remove(m); }
            _members.Remove(root);
            _open.Remove(root);
            long pixels = parts.Sum(p => p.Pixels), probPixels = parts.Sum(p => p.ProbPixels);
            double probSum = parts.Sum(p => p.ProbSum);
            _joined += parts.Count > 1 ? 1 : 0;
            if (parts.Count == 1) { WriteFeature(parts[0].Class, pixels, probSum, probPixels, parts[0].Rings); return; }
            var polys = parts.Select(p => ToPolygon(p.Rings)).ToArray();
            var union = UnaryUnionNG.Union((Geometry)Factory.CreateGeometryCollection(polys), Factory.PrecisionModel);
            if (union is not Polygon poly)
                throw new InvalidOperationException($"a region of class {parts[0].Class} joined across blocks is a {union.GeometryType}, not one polygon");
            var rings = new List<int[]> { Ints(poly.Shell, shell: true) };
            foreach (var h in poly.Holes) rings.Add(Ints(h, shell: false));
            WriteFeature(parts[0].Class, pixels, probSum, probPixels, rings);
        }

        /// <summary>A ring of the joined polygon as the trace would give it: integer vertices, turning ones only, shell with negative signed area.</summary>
        private static int[] Ints(LineString ring, bool shell)
        {
            var cs = ring.Coordinates;
            var pts = new List<int>(2 * cs.Length);
            for (int i = 0; i < cs.Length - 1; i++) { pts.Add((int)Math.Round(cs[i].X)); pts.Add((int)Math.Round(cs[i].Y)); }
            var r = DropCollinear(pts);
            if (SignedArea2(r) < 0 != shell)
                for (int i = 0, j = r.Length / 2 - 1; i < j; i++, j--) { (r[2 * i], r[2 * j]) = (r[2 * j], r[2 * i]); (r[2 * i + 1], r[2 * j + 1]) = (r[2 * j + 1], r[2 * i + 1]); }
            return r;
        }

        private static Polygon ToPolygon(List<int[]> rings)
        {
            LinearRing Ring(int[] r)
            {
                var cs = new Coordinate[r.Length / 2 + 1];
                for (int i = 0; i < r.Length / 2; i++) cs[i] = new Coordinate(r[2 * i], r[2 * i + 1]);
                cs[^1] = cs[0].Copy();
                return Factory.CreateLinearRing(cs);
            }
            return Factory.CreatePolygon(Ring(rings[0]), rings.Skip(1).Select(Ring).ToArray());
        }

        /// <summary>
        /// Crack following over the whole block: every pixel edge between a region and anything else (another region,
        /// background, or beyond the block) is walked once, with the region on the left; at each vertex the walk turns
        /// right when the pixel ahead-right is in the region, goes straight when the pixel ahead-left is, else turns
        /// left. Only turning vertices are kept. Returns per region its rings (shell first), in mask coordinates.
        /// </summary>
        private static List<int[]>?[] Trace(int[] lab, int bw, int bh, int n, int x0, int y0)
        {
            var rings = new List<int[]>?[n];
            var seen = new byte[bw * bh]; // bit s: the edge on side s (N, E, S, W) of the pixel was walked
            bool In(int px, int py, int r) => px >= 0 && py >= 0 && px < bw && py < bh && lab[py * bw + px] == r;
            // the pixel in quadrant (qx, qy) ∈ {-1, 1}² of vertex (vx, vy)
            static int Px(int vx, int qx) => qx > 0 ? vx : vx - 1;
            var pts = new List<int>();
            for (int y = 0; y < bh; y++)
                for (int x = 0; x < bw; x++)
                {
                    int r = lab[y * bw + x];
                    if (r < 0) continue;
                    for (int s = 0; s < 4; s++)
                    {
                        if ((seen[y * bw + x] & (1 << s)) != 0 || In(x + DX[s], y + DY[s], r)) continue;
                        // walk direction d0 has this side on its right: d0 = left(s); the start vertex follows from the pixel's quadrant
                        int d0 = (s + 3) & 3, qx0 = DX[d0] + DX[(d0 + 3) & 3], qy0 = DY[d0] + DY[(d0 + 3) & 3];
                        int sx = qx0 > 0 ? x : x + 1, sy = qy0 > 0 ? y : y + 1;
                        int vx = sx, vy = sy, d = d0;
                        pts.Clear();
                        long twiceArea = 0;
                        do
                        {
                            int dl = (d + 3) & 3, dr = (d + 1) & 3;
                            int px = Px(vx, DX[d] + DX[dl]), py = Px(vy, DY[d] + DY[dl]);
                            seen[py * bw + px] |= (byte)(1 << dr);
                            twiceArea += (long)vx * (vy + DY[d]) - (long)(vx + DX[d]) * vy;
                            vx += DX[d]; vy += DY[d];
                            int nd;
                            if (In(Px(vx, DX[d] + DX[dr]), Px(vy, DY[d] + DY[dr]), r)) nd = dr;
                            else if (In(Px(vx, DX[d] + DX[dl]), Px(vy, DY[d] + DY[dl]), r)) nd = d;
                            else nd = dl;
                            if (nd != d) { pts.Add(vx + x0); pts.Add(vy + y0); }
                            d = nd;
                        } while (vx != sx || vy != sy || d != d0);
                        var ring = pts.ToArray();
                        var list = rings[r] ??= [];
                        // region on the left in y-down coordinates: the shell has negative signed area, holes positive
                        if (twiceArea < 0) list.Insert(0, ring); else list.Add(ring);
                    }
                }
            for (int r = 0; r < n; r++)
                if (rings[r] is not { Count: > 0 } l || SignedArea2(l[0]) >= 0 || l.Skip(1).Any(h => SignedArea2(h) < 0))
                    throw new InvalidOperationException($"region {r} of the block at ({x0}, {y0}) does not have exactly one outer boundary");
            return rings;
        }

        private static long SignedArea2(int[] r)
        {
            long a = 0;
            int m = r.Length / 2;
            for (int i = 0; i < m; i++)
            {
                int j = (i + 1) % m;
                a += (long)r[2 * i] * r[2 * j + 1] - (long)r[2 * j] * r[2 * i + 1];
            }
            return a;
        }

        /// <summary>Removes vertices where the ring goes straight on (left by joins along block seams).</summary>
        private static int[] DropCollinear(List<int> p)
        {
            int m = p.Count / 2;
            var keep = new List<int>(p.Count);
            for (int i = 0; i < m; i++)
            {
                int a = (i + m - 1) % m, b = (i + 1) % m;
                long ux = p[2 * i] - p[2 * a], uy = p[2 * i + 1] - p[2 * a + 1], vx = p[2 * b] - p[2 * i], vy = p[2 * b + 1] - p[2 * i + 1];
                if (ux * vy - uy * vx == 0 && ux * vx + uy * vy > 0) continue;
                keep.Add(p[2 * i]); keep.Add(p[2 * i + 1]);
            }
            return [.. keep];
        }

        private void WriteFeature(int cls, long pixels, double probSum, long probPixels, List<int[]> rings)
        {
            _objects++;
            double sx = opt.DownsampleX, sy = opt.DownsampleY;
            json.WriteStartObject();
            json.WriteString("type", "Feature");
            json.WriteString("id", Guid.NewGuid().ToString());
            json.WriteStartObject("geometry");
            if (opt.Simplify > 0)
            {
                var simple = TopologyPreservingSimplifier.Simplify(ToPolygon(rings), opt.Simplify / ((sx + sy) / 2));
                WriteGeometry(simple, sx, sy);
            }
            else
            {
                json.WriteString("type", "Polygon");
                json.WriteStartArray("coordinates");
                foreach (var r in rings) WriteRing(r, sx, sy);
                json.WriteEndArray();
            }
            json.WriteEndObject();
            json.WriteStartObject("properties");
            json.WriteString("objectType", "detection");
            var info = cls < _table.Length ? _table[cls] : new ClassInfo(cls, $"class {cls}", ClassTable.Default(cls + 1)[cls].Color);
            json.WriteStartObject("classification");
            json.WriteString("name", info.Name);
            json.WriteStartArray("color");
            foreach (var v in ClassTable.Rgb(info.Color)) json.WriteNumberValue((int)v);
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteNumber("class_id", cls);
            json.WriteNumber("area_px", pixels * sx * sy);
            if (opt.MicronsPerPixelX is { } mx && opt.MicronsPerPixelY is { } my) json.WriteNumber("area_um2", pixels * sx * sy * mx * my);
            if (probPixels > 0) json.WriteNumber("mean_probability", Math.Round(probSum / probPixels, 6));
            json.WriteEndObject();
            json.WriteEndObject();
        }

        /// <summary>A ring as GeoJSON: closed, and with RFC 7946's orientation in the numbers (shell counter-clockwise, holes clockwise).</summary>
        private void WriteRing(int[] r, double sx, double sy)
        {
            json.WriteStartArray();
            int m = r.Length / 2;
            for (int k = 0; k <= m; k++)
            {
                int i = (m - k) % m; // reversed: the trace runs shells clockwise
                json.WriteStartArray();
                json.WriteNumberValue(r[2 * i] * sx);
                json.WriteNumberValue(r[2 * i + 1] * sy);
                json.WriteEndArray();
            }
            json.WriteEndArray();
        }

        private void WriteGeometry(Geometry g, double sx, double sy)
        {
            void Ring(LineString ring, bool shell)
            {
                var cs = ring.Coordinates;
                bool ccw = NetTopologySuite.Algorithm.Orientation.IsCCW(ring.CoordinateSequence);
                json.WriteStartArray();
                for (int k = 0; k < cs.Length; k++)
                {
                    var c = cs[ccw == shell ? k : cs.Length - 1 - k];
                    json.WriteStartArray(); json.WriteNumberValue(c.X * sx); json.WriteNumberValue(c.Y * sy); json.WriteEndArray();
                }
                json.WriteEndArray();
            }
            void Poly(Polygon p)
            {
                json.WriteStartArray();
                Ring(p.Shell, true);
                foreach (var h in p.Holes) Ring(h, false);
                json.WriteEndArray();
            }
            if (g is Polygon one) { json.WriteString("type", "Polygon"); json.WritePropertyName("coordinates"); Poly(one); }
            else if (g is MultiPolygon many)
            {
                json.WriteString("type", "MultiPolygon");
                json.WriteStartArray("coordinates");
                foreach (var p in many.Geometries.Cast<Polygon>()) Poly(p);
                json.WriteEndArray();
            }
            else throw new InvalidOperationException($"simplification gave a {g.GeometryType}");
        }
    }
}
