using System.IO.Compression;
using System.Text.Json;
using ActorSeg.Core.IO;
using NetTopologySuite.Features;
using NetTopologySuite.Geometries;
using NetTopologySuite.IO.Converters;
using Xunit;
using Vips = NetVips;

namespace ActorSeg.Tests.IO;

/// <summary>objects.geojson: exact pixel-edge polygons with holes, joined across blocks, streamed.</summary>
public class ObjectExportTests() : TempDirTest("objects")
{
    private static readonly ClassInfo[] Classes = [new(0, "background", "#000000"), new(1, "colony", "#ff0000"), new(2, "debris", "#00ff00"), new(3, "other", "#0000ff")];

    private string WriteMask(byte[] px, int w, int h, string name = "mask.tif")
    {
        var path = Path.Combine(_dir, name);
        using var img = Vips.Image.NewFromMemory(px, w, h, 1, Vips.Enums.BandFormat.Uchar);
        img.Tiffsave(path, tile: true, tileWidth: 64, tileHeight: 64, compression: Vips.Enums.ForeignTiffCompression.Deflate);
        return path;
    }

    private static FeatureCollection Parse(string path)
    {
        using var fs = File.OpenRead(path);
        using Stream s = path.EndsWith(".gz") ? new GZipStream(fs, CompressionMode.Decompress) : fs;
        var opts = new JsonSerializerOptions();
        opts.Converters.Add(new GeoJsonConverterFactory());
        return JsonSerializer.Deserialize<FeatureCollection>(s, opts)!;
    }

    /// <summary>The 4-connected regions of each class, found by a flood fill (independent of the exporter's union-find).</summary>
    private static List<(int Class, long Pixels)> Regions(byte[] px, int w, int h)
    {
        var seen = new bool[px.Length];
        var result = new List<(int, long)>();
        var stack = new Stack<int>();
        for (int i = 0; i < px.Length; i++)
        {
            if (px[i] == 0 || seen[i]) continue;
            long n = 0;
            stack.Push(i); seen[i] = true;
            while (stack.Count > 0)
            {
                int p = stack.Pop(); n++;
                int x = p % w, y = p / w;
                foreach (var (nx, ny) in new[] { (x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1) })
                    if (nx >= 0 && ny >= 0 && nx < w && ny < h && !seen[ny * w + nx] && px[ny * w + nx] == px[p]) { seen[ny * w + nx] = true; stack.Push(ny * w + nx); }
            }
            result.Add((px[i], n));
        }
        return result;
    }

    private static int ClassOf(IFeature f) => Convert.ToInt32(f.Attributes["class_id"]);

    /// <summary>Every polygon valid, its area its pixel count, one feature per region, the same pixels per class as the mask.</summary>
    private static void CheckExact(FeatureCollection fc, byte[] px, int w, int h, double scale = 1)
    {
        var regions = Regions(px, w, h);
        Assert.Equal(regions.Count, fc.Count);
        foreach (var f in fc)
        {
            Assert.True(f.Geometry.IsValid, $"invalid polygon: {f.Geometry}");
            Assert.IsType<Polygon>(f.Geometry);
            Assert.Equal(Convert.ToDouble(f.Attributes["area_px"]), f.Geometry.Area, 6);
        }
        // the multiset of (class, area) equals the regions'
        var got = fc.Select(f => (ClassOf(f), (long)Math.Round(f.Geometry.Area / (scale * scale)))).OrderBy(t => t).ToList();
        var want = regions.Select(r => (r.Class, r.Pixels)).OrderBy(t => t).ToList();
        Assert.Equal(want, got);
    }

    [Fact]
    public void ARingWithAHole_AndDiagonalPixels_AreValidPolygonsWithTheirPixelArea()
    {
        int w = 40, h = 30;
        var px = new byte[w * h];
        // a square ring of class 1 (10..29 × 5..24) with a hole, and inside the hole an island of class 2
        for (int y = 5; y < 25; y++) for (int x = 10; x < 30; x++) px[y * w + x] = 1;
        for (int y = 9; y < 21; y++) for (int x = 14; x < 26; x++) px[y * w + x] = 0;
        for (int y = 12; y < 18; y++) for (int x = 17; x < 23; x++) px[y * w + x] = 2;
        // a hole of two pixels touching diagonally (two holes meeting at a vertex) in the ring's wall
        px[6 * w + 12] = 0; px[7 * w + 13] = 0;
        // a hole touching the shell at a vertex: the pixel (11, 22) and the outside meet at (10, 23)... make a notch from the border
        px[23 * w + 10] = 0; px[22 * w + 11] = 0;
        // a staircase of class 3 pixels touching only diagonally: separate regions
        for (int i = 0; i < 4; i++) px[(i + 1) * w + 33 + i] = 3;
        // a class-1 region whose two halves meet only diagonally through the same region elsewhere (a saddle)
        px[27 * w + 2] = 1; px[27 * w + 3] = 1; px[28 * w + 3] = 1; px[28 * w + 4] = 1; px[26 * w + 2] = 1;
        var mask = WriteMask(px, w, h);
        var outPath = Path.Combine(_dir, "objects.geojson");
        var r = ObjectExporter.Export(mask, outPath, Classes, new ObjectExportOptions(BlockSize: 64, MicronsPerPixelX: 0.5, MicronsPerPixelY: 0.5));
        var fc = Parse(outPath);
        CheckExact(fc, px, w, h);
        Assert.Equal(fc.Count, r.Objects);
        var ring = fc.Single(f => ClassOf(f) == 1 && f.Geometry.Area > 100);
        var poly = (Polygon)ring.Geometry;
        Assert.Equal(4, poly.NumInteriorRings); // the big hole, the two meeting at a vertex, the one touching the shell at a vertex
        Assert.Equal(new Envelope(10, 30, 5, 25), poly.EnvelopeInternal);
        Assert.Equal(poly.Area * 0.25, Convert.ToDouble(ring.Attributes["area_um2"]), 6);
        Assert.Equal(4, fc.Count(f => ClassOf(f) == 3));
        // QuPath's properties
        Assert.Equal("detection", ring.Attributes["objectType"]);
        var json = JsonDocument.Parse(File.ReadAllText(outPath)).RootElement;
        Assert.Equal("FeatureCollection", json.GetProperty("type").GetString());
        var f0 = json.GetProperty("features").EnumerateArray().First(f => f.GetProperty("properties").GetProperty("classification").GetProperty("name").GetString() == "colony");
        Assert.True(Guid.TryParse(f0.GetProperty("id").GetString(), out _));
        Assert.Equal([255, 0, 0], f0.GetProperty("properties").GetProperty("classification").GetProperty("color").EnumerateArray().Select(e => e.GetInt32()));
        // RFC 7946 orientation (in the numbers): shells counter-clockwise, holes clockwise
        foreach (var f in fc)
        {
            var p = (Polygon)f.Geometry;
            Assert.True(NetTopologySuite.Algorithm.Orientation.IsCCW(p.Shell.CoordinateSequence));
            Assert.All(p.Holes, hole => Assert.False(NetTopologySuite.Algorithm.Orientation.IsCCW(hole.CoordinateSequence)));
        }
    }

    [Fact]
    public void ARegionAcrossFourBlocks_IsOnePolygon_WithItsHoleAcrossTheSeams()
    {
        int w = 128, h = 128;
        var px = new byte[w * h];
        // a disc-like blob centred on the corner where four 64² blocks meet, with a hole across the seams and a ragged edge
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double dx = x - 63.5, dy = y - 64.2, d = Math.Sqrt(dx * dx + dy * dy);
                if (d < 40 + 3 * Math.Sin(x * 0.7) && d > 9) px[y * w + x] = 1;
            }
        // a second region crossing only the vertical seam, and a diagonal pair across the horizontal seam (two regions)
        for (int y = 2; y < 6; y++) for (int x = 60; x < 70; x++) px[y * w + x] = 2;
        px[63 * w + 2] = 3; px[64 * w + 3] = 3;
        var mask = WriteMask(px, w, h);
        var outPath = Path.Combine(_dir, "objects.geojson");
        var r = ObjectExporter.Export(mask, outPath, Classes, new ObjectExportOptions(BlockSize: 64));
        var fc = Parse(outPath);
        CheckExact(fc, px, w, h);
        var blob = (Polygon)fc.Where(f => ClassOf(f) == 1).MaxBy(f => f.Geometry.Area)!.Geometry;
        Assert.Equal(1, blob.NumInteriorRings);
        Assert.True(blob.EnvelopeInternal.MinX < 40 && blob.EnvelopeInternal.MaxX > 90 && blob.EnvelopeInternal.MinY < 40 && blob.EnvelopeInternal.MaxY > 90); // in all four blocks
        Assert.True(r.JoinedAcrossBlocks >= 2);
        // no vertex left where a seam cut a straight edge: every vertex turns
        foreach (var ring in new[] { blob.Shell }.Concat(blob.Holes))
        {
            var c = ring.Coordinates;
            for (int i = 1; i < c.Length - 1; i++)
                Assert.NotEqual(0, (c[i].X - c[i - 1].X) * (c[i + 1].Y - c[i].Y) - (c[i].Y - c[i - 1].Y) * (c[i + 1].X - c[i].X));
        }
        // the same polygons whatever the block size
        var whole = Path.Combine(_dir, "whole.geojson");
        ObjectExporter.Export(mask, whole, Classes, new ObjectExportOptions(BlockSize: 4096));
        var fw = Parse(whole);
        Assert.True(fw.Where(f => ClassOf(f) == 1).MaxBy(f => f.Geometry.Area)!.Geometry.Normalized().EqualsExact(blob.Normalized()));
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(2, 37)]
    [InlineData(3, 64)]
    public void ARandomMask_HasOneValidExactPolygonPerRegion_WhateverTheBlocks(int seed, int block)
    {
        int w = 150, h = 110;
        var rng = new Random(seed);
        var px = new byte[w * h];
        // blobs of a few pixels to tens, three classes, with much diagonal contact
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) px[y * w + x] = (byte)(rng.NextDouble() < 0.45 ? 0 : rng.Next(1, 4));
        for (int k = 0; k < 40; k++)
        {
            int cx = rng.Next(w), cy = rng.Next(h), rad = rng.Next(3, 15);
            byte c = (byte)rng.Next(0, 4);
            for (int y = Math.Max(0, cy - rad); y < Math.Min(h, cy + rad); y++)
                for (int x = Math.Max(0, cx - rad); x < Math.Min(w, cx + rad); x++)
                    if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < rad * rad && rng.NextDouble() < 0.93) px[y * w + x] = c;
        }
        var mask = WriteMask(px, w, h);
        var outPath = Path.Combine(_dir, $"objects-{seed}.geojson");
        var r = ObjectExporter.Export(mask, outPath, Classes, new ObjectExportOptions(BlockSize: block));
        var fc = Parse(outPath);
        CheckExact(fc, px, w, h);
        for (int c = 1; c < 4; c++)
            Assert.Equal(px.LongCount(v => v == c), r.PixelsPerClass[c]);
        // simplified, the same objects stay valid polygons (holes meeting at vertices included)
        var simple = Path.Combine(_dir, $"simple-{seed}.geojson");
        ObjectExporter.Export(mask, simple, Classes, new ObjectExportOptions(BlockSize: block, Simplify: 1.5));
        var fs = Parse(simple);
        Assert.Equal(fc.Count, fs.Count);
        Assert.All(fs, f => Assert.True(f.Geometry.IsValid, $"invalid simplified polygon: {f.Geometry}"));
    }

    [Fact]
    public void Gzip_Simplify_AndLevelZeroScaling()
    {
        int w = 96, h = 80;
        var px = new byte[w * h];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double dx = x - 48, dy = y - 40, d = Math.Sqrt(dx * dx + dy * dy);
                if (d < 30 && d > 8) px[y * w + x] = 1;
            }
        var mask = WriteMask(px, w, h);
        var exact = Path.Combine(_dir, "objects.geojson.gz");
        ObjectExporter.Export(mask, exact, Classes, new ObjectExportOptions(BlockSize: 32, DownsampleX: 2, DownsampleY: 2, MicronsPerPixelX: 0.25, MicronsPerPixelY: 0.25));
        using (var fs = File.OpenRead(exact)) Assert.Equal(0x1f, fs.ReadByte()); // a gzip stream
        var fc = Parse(exact);
        CheckExact(fc, px, w, h, scale: 2);
        var ring = fc.Single();
        Assert.Equal(px.LongCount(v => v == 1) * 4.0, ring.Geometry.Area);
        Assert.Equal(px.LongCount(v => v == 1) * 4 * 0.0625, Convert.ToDouble(ring.Attributes["area_um2"]), 6);
        var xs = Enumerable.Range(0, px.Length).Where(i => px[i] == 1).Select(i => i % w).ToList();
        var ys = Enumerable.Range(0, px.Length).Where(i => px[i] == 1).Select(i => i / w).ToList();
        Assert.Equal(new Envelope(2 * xs.Min(), 2 * (xs.Max() + 1), 2 * ys.Min(), 2 * (ys.Max() + 1)), ring.Geometry.EnvelopeInternal);

        var simple = Path.Combine(_dir, "simple.geojson");
        ObjectExporter.Export(mask, simple, Classes, new ObjectExportOptions(BlockSize: 32, Simplify: 2, DownsampleX: 2, DownsampleY: 2));
        var s = Parse(simple).Single();
        Assert.True(s.Geometry.IsValid);
        Assert.Equal(1, ((Polygon)s.Geometry).NumInteriorRings);
        Assert.True(s.Geometry.NumPoints < ring.Geometry.NumPoints / 2, $"{s.Geometry.NumPoints} vertices simplified, {ring.Geometry.NumPoints} exact");
        Assert.InRange(s.Geometry.Area / ring.Geometry.Area, 0.95, 1.05);
        Assert.Equal(Convert.ToDouble(ring.Attributes["area_px"]), Convert.ToDouble(s.Attributes["area_px"])); // the reported area stays the pixel count
        Assert.False(s.Attributes.Exists("area_um2")); // no pixel size given
    }

    [Fact]
    public void TheMeanProbability_IsPixelWeighted_AndNoNodeIsIgnored()
    {
        int w = 20, h = 10;
        var px = new byte[w * h];
        var ids = new uint[w * h];
        // one class-1 region: 30 pixels of node 0 (p=0.9), 10 pixels of node 1 (p=0.5), 10 pixels of no node
        for (int y = 0; y < 5; y++) for (int x = 0; x < 10; x++) { px[y * w + x] = 1; ids[y * w + x] = x < 6 ? 0u : x < 8 ? 1u : uint.MaxValue; }
        for (int i = 0; i < px.Length; i++) if (px[i] == 0) ids[i] = 2;
        var mask = WriteMask(px, w, h);
        var nodes = Path.Combine(_dir, "nodes.tif");
        using (var img = Vips.Image.NewFromMemory(ids, w, h, 1, Vips.Enums.BandFormat.Uint)) img.Tiffsave(nodes);
        float[] probs = [0.1f, 0.9f, 0.5f, 0.5f, 1f, 0f];
        var outPath = Path.Combine(_dir, "objects.geojson");
        ObjectExporter.Export(mask, outPath, Classes, new ObjectExportOptions(BlockSize: 16), nodes, probs, 2);
        var f = Parse(outPath).Single();
        Assert.Equal((30 * 0.9 + 10 * 0.5) / 40, Convert.ToDouble(f.Attributes["mean_probability"]), 5);
    }

    [Fact]
    public void BadOptions_AreRefusedWithAClearMessage()
    {
        Assert.Contains("geojson.gz", ObjectExporter.Validate("shapefile"));
        Assert.Null(ObjectExporter.Validate("GeoJSON.gz"));
        Assert.Null(ObjectExporter.FileName("none"));
        Assert.Equal("objects.geojson.gz", ObjectExporter.FileName("geojson.gz"));
        Assert.NotNull(ObjectExporter.ValidateSimplify(-1));
        Assert.NotNull(ObjectExporter.ValidateSimplify(double.NaN));
        Assert.Null(ObjectExporter.ValidateSimplify(1.5));
        // the coordinator refuses such a job before recording it, the worker such a paint order
        var spec = new ActorSeg.Messages.GraphJobSpec(Path.Combine(_dir, "a.tif"), null, Path.Combine(_dir, "out"), ModelPath: Path.Combine(_dir, "m.model"));
        var refused = ActorSeg.Coordinator.JobAuthorization.Check("j", spec with { Objects = "shapefile" }, ActorSeg.Coordinator.JobPolicy.Open, []).Refused;
        Assert.Equal(ActorSeg.Messages.RefusalCodes.Invalid, refused?.Code);
        Assert.Contains("shapefile", refused!.Reason);
        Assert.Contains("--simplify -2", ActorSeg.Coordinator.JobAuthorization.Check("j", spec with { Simplify = -2 }, ActorSeg.Coordinator.JobPolicy.Open, []).Refused?.Reason);
        Assert.Null(ActorSeg.Coordinator.JobAuthorization.Check("j", spec with { Objects = "geojson.gz", Simplify = 1 }, ActorSeg.Coordinator.JobPolicy.Open, []).Refused);
        var r = new ActorSeg.Messages.ResultRef(Path.Combine(_dir, "out", "graph", "x"), 1, "0");
        var outDir = Path.Combine(_dir, "out");
        var paint = new ActorSeg.Messages.PaintAssignment("j", "a", spec.ImagePath, r, r, Path.Combine(outDir, "mask.tif"), Path.Combine(outDir, "overlay.png"), 1, outDir, r, "kml");
        Assert.Contains("kml", AssignmentPaths.Check(paint, new DataRoots([])));
        Assert.Contains("not in the job's folder", AssignmentPaths.Check(paint with { Objects = null, Probs = r with { Path = "/etc/passwd" } }, new DataRoots([])));
        Assert.Null(AssignmentPaths.Check(paint with { Objects = "none" }, new DataRoots([])));
    }
}
