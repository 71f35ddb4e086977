using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.IO;

/// <summary>Whole slides through OpenSlide: an Aperio-style SVS made by `actorseg generate --format svs`, read by level.</summary>
public class SlideTests(ITestOutputHelper output) : TempDirTest("slide")
{

    private string? Svs(int w = 1500, int h = 1100)
    {
        if (!OpenSlideSource.Available) { output.WriteLine("SKIPPED: libopenslide0 is not installed (./run.sh installs it)"); return null; }
        var r = TestPaths.RunCli("generate", "--out", _dir, "--name", "slide", "--width", w.ToString(), "--height", h.ToString(), "--format", "svs", "--kind", "nuclei", "--seed", "4");
        Assert.True(r.ExitCode == 0, r.Stderr);
        return Path.Combine(_dir, "slide.svs");
    }

    [Fact]
    public void AGeneratedSvs_IsAnAperioSlide_WithItsLevelsAndPixelSize()
    {
        if (Svs() is not { } svs) return;
        Assert.Equal("aperio", OpenSlideSource.DetectVendor(svs));
        using var s = OpenSlideSource.Open(svs);
        Assert.Equal((1500, 1100), (s.Width, s.Height));
        Assert.True(s.Levels.Count >= 3, $"{s.Levels.Count} levels");
        Assert.Equal(0.499, s.MppX!.Value, 6);
        Assert.Equal(2, s.LevelFor(2.0));
        using var l1 = OpenSlideSource.Open(svs, 1);
        Assert.Equal(0.998, l1.MppX!.Value, 6);
        var info = TestPaths.RunCli("info", svs);
        Assert.Equal(0, info.ExitCode);
        Assert.Contains("vendor: aperio", info.Stdout);
        Assert.Contains("level 0 pixels: read through libvips", info.Stdout);
        Assert.Contains("1: 750 x 550, downsample 2", info.Stdout);
        Assert.Contains("aperio.MPP = 0.499", info.Stdout);
    }

    [Fact]
    public void SlidePixels_MatchTheImageTheyWereMadeFrom_WithinJpegLoss()
    {
        if (!OpenSlideSource.Available) { output.WriteLine("SKIPPED: libopenslide0 is not installed"); return; }
        var rgb = Path.Combine(_dir, "rgb.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(900, 700, SyntheticKind.Nuclei, 8, 3, 2), rgb, Path.Combine(_dir, "m.tif"));
        var svs = Path.Combine(_dir, "rgb.svs");
        SlideWriter.WriteSvs(rgb, svs);
        using var slide = ImageSources.Open(svs);
        using var plain = VipsImageSource.Open(rgb);
        Assert.IsType<OpenSlideSource>(slide);
        var a = new ushort[300 * 200 * 3]; var b = new ushort[a.Length];
        slide.ReadRegion(411, 333, 300, 200, a);
        plain.ReadRegion(411, 333, 300, 200, b);
        double mad = a.Zip(b, (x, y) => Math.Abs(x - y)).Average();
        Assert.True(mad < 4, $"mean absolute difference {mad:F2} grey levels");
        // a region at level 1 is the level-0 region shrunk: its corner maps through the downsample
        using var l1 = OpenSlideSource.Open(svs, 1);
        var c = new ushort[100 * 100 * 3];
        l1.ReadRegion(200, 150, 100, 100, c);
        using var shrunk = Vips.Image.NewFromFile(rgb).Shrink(2, 2).Crop(200, 150, 100, 100);
        var d = shrunk.WriteToMemory<byte>();
        Assert.True(c.Zip(d, (x, y) => Math.Abs(x - y)).Average() < 8);
    }

    [Fact]
    public void AnAperioJpegSlide_IsReadThroughItsTiffPage_WithOpenSlidesSamples_AtEveryLevel()
    {
        if (Svs(1700, 1300) is not { } svs) return;
        var rng = new Random(3);
        for (int level = 0; level < 3; level++)
        {
            using var direct = OpenSlideSource.Open(svs, level);
            using var plain = OpenSlideSource.Open(svs, level, direct: false);
            Assert.Equal("libvips", direct.DirectReader);
            Assert.Equal("openslide", plain.DirectReader);
            Assert.Equal((plain.Width, plain.Height), (direct.Width, direct.Height));
            // regions of every shape, the image's edges included: the same samples through either reader
            for (int k = 0; k < 12; k++)
            {
                int w = rng.Next(1, Math.Min(700, direct.Width) + 1), h = rng.Next(1, Math.Min(500, direct.Height) + 1);
                int x = k == 0 ? 0 : direct.Width - w - (k == 1 ? 0 : rng.Next(0, direct.Width - w + 1));
                int y = k == 0 ? 0 : direct.Height - h - (k == 1 ? 0 : rng.Next(0, direct.Height - h + 1));
                var a = new ushort[w * h * 3]; var b = new ushort[a.Length];
                direct.ReadRegion(x, y, w, h, a);
                plain.ReadRegion(x, y, w, h, b);
                Assert.True(a.AsSpan().SequenceEqual(b), $"level {level}: region ({x},{y}) {w}x{h} differs");
            }
        }
        // the whole command gives the same graph through either reader
        var viaTiff = TestPaths.RunCli("graph", svs, "--out", Path.Combine(_dir, "via-tiff"), "--tile-size", "512", "--spacing", "20");
        Assert.True(viaTiff.ExitCode == 0, viaTiff.Stderr);
        var viaOpenSlide = TestPaths.RunCliWith(new Dictionary<string, string> { ["ACTORSEG_SLIDE_READER"] = "openslide" },
            "graph", svs, "--out", Path.Combine(_dir, "via-openslide"), "--tile-size", "512", "--spacing", "20");
        Assert.True(viaOpenSlide.ExitCode == 0, viaOpenSlide.Stderr);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "via-openslide", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "via-tiff", "graph.npz")));
    }

    [Fact]
    public void AnAperioSlideWithAMissingTile_IsLeftToOpenSlide()
    {
        if (Svs(1500, 1100) is not { } svs) return;
        // zero the byte count of level 0's second tile: libtiff would fail or read nothing there, OpenSlide shows background
        var dir = TiffPageLayout.TryRead(svs, 0)!;
        Assert.True(dir.Tiled);
        var counts = dir.All(325)!;
        Assert.True(counts.Length > 2);
        var bytes = File.ReadAllBytes(svs);
        long at = CountsAt(bytes, 0);
        Assert.True(at > 0, "level 0's TileByteCounts not found");
        int size = dir.BigTiff ? 8 : 4;
        Array.Clear(bytes, (int)(at + size), size);
        var damaged = Path.Combine(_dir, "missing-tile.svs");
        File.WriteAllBytes(damaged, bytes);
        Assert.Equal(0, TiffPageLayout.TryRead(damaged, 0)!.All(325)![1]);
        using var s = OpenSlideSource.Open(damaged);
        Assert.Equal("openslide", s.DirectReader);
        using var whole = OpenSlideSource.Open(svs);
        Assert.Equal("libvips", whole.DirectReader);
        // OpenSlide shows the missing tile as background and the rest as it is
        var a = new ushort[512 * 256 * 3];
        s.ReadRegion(0, 0, 512, 256, a);
        var b = new ushort[a.Length];
        whole.ReadRegion(0, 0, 512, 256, b);
        var tile = (int)dir.One(322, 0);
        Assert.True(tile is > 0 and < 512);
        for (int y = 0; y < 256; y++)
            for (int x = 0; x < 512; x++)
                for (int c = 0; c < 3; c++)
                {
                    int i = (y * 512 + x) * 3 + c;
                    if (x >= tile && x < 2 * tile && y < Math.Min(256, (int)dir.One(323, 0))) Assert.Equal(255, a[i]);
                    else Assert.Equal(b[i], a[i]);
                }
    }

    /// <summary>The file offset of the TileByteCounts array of the first page (little-endian classic or BigTIFF).</summary>
    private static long CountsAt(byte[] b, int page)
    {
        bool big = b[2] == 43;
        long ifd = big ? BitConverter.ToInt64(b, 8) : BitConverter.ToUInt32(b, 4);
        long n = big ? BitConverter.ToInt64(b, (int)ifd) : BitConverter.ToUInt16(b, (int)ifd);
        int entry = big ? 20 : 12, head = big ? 8 : 2;
        for (long i = 0; i < n; i++)
        {
            int e = (int)(ifd + head + i * entry);
            if (BitConverter.ToUInt16(b, e) == 325)
                return big ? BitConverter.ToInt64(b, e + 12) : BitConverter.ToUInt32(b, e + 8);
        }
        return -1;
    }

    [Fact]
    public void ABatchOfSlides_RecordsTheLevelAndPixelSize_AndAChangedLevelIsNotSkipped()
    {
        if (Svs() is not { } svs) return;
        var folder = Path.Combine(_dir, "slides");
        Directory.CreateDirectory(folder);
        File.Move(svs, Path.Combine(folder, "a.svs"));
        string Run(params string[] extra)
        {
            var r = TestPaths.RunCli(["batch", folder, "--out", Path.Combine(_dir, "batch"), "--tile-size", "1024", .. extra]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            var rows = File.ReadAllLines(Path.Combine(_dir, "batch", "summary.csv"));
            Assert.EndsWith("level,um_per_pixel,tissue_fraction,tiles_skipped,warnings", rows[0]);
            return rows[1];
        }
        var first = Run("--mpp", "1");
        Assert.StartsWith("a,", first); Assert.Contains(",done,", first); Assert.EndsWith(",1,0.998,1,0,", first); // a slide with no glass: all tissue, no tile skipped
        Assert.Contains(",skipped,", Run("--mpp", "1"));
        var level0 = Run("--level", "0");
        Assert.Contains(",done,", level0); Assert.EndsWith(",0,0.499,1,0,", level0);
    }

    [Fact]
    public void TheGraphOfASlideLevel_IsTheSameTiledOrWhole_AndBrokenSlidesFailNamingTheFile()
    {
        if (Svs() is not { } svs) return;
        var tiled = TestPaths.RunCli("graph", svs, "--level", "1", "--out", Path.Combine(_dir, "tiled"), "--tile-size", "256", "--spacing", "20", "--workers", "2");
        Assert.True(tiled.ExitCode == 0, tiled.Stderr);
        var whole = TestPaths.RunCli("graph", svs, "--level", "1", "--out", Path.Combine(_dir, "whole"), "--tile-size", "4096", "--spacing", "20", "--workers", "1");
        Assert.True(whole.ExitCode == 0, whole.Stderr);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "whole", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "tiled", "graph.npz")));
        var byMpp = TestPaths.RunCli("graph", svs, "--mpp", "1.0", "--out", Path.Combine(_dir, "mpp"), "--tile-size", "4096", "--spacing", "20");
        Assert.True(byMpp.ExitCode == 0, byMpp.Stderr);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "whole", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "mpp", "graph.npz")));
        var tooDeep = TestPaths.RunCli("graph", svs, "--level", "9", "--out", Path.Combine(_dir, "deep"));
        Assert.Equal(1, tooDeep.ExitCode);
        Assert.Contains("level 9 requested", tooDeep.Stderr);

        var bytes = File.ReadAllBytes(svs);
        var truncated = Path.Combine(_dir, "truncated.svs");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 3)]);
        var wrongMagic = Path.Combine(_dir, "magic.svs");
        var copy = (byte[])bytes.Clone(); copy[0] = (byte)'X'; copy[1] = (byte)'Y';
        File.WriteAllBytes(wrongMagic, copy);
        foreach (var bad in new[] { truncated, wrongMagic })
        {
            var r = TestPaths.RunCli("graph", bad, "--out", Path.Combine(_dir, "out-" + Path.GetFileNameWithoutExtension(bad)), "--tile-size", "512");
            Assert.Equal(1, r.ExitCode);
            Assert.Contains(bad, r.Stderr);
            Assert.False(File.Exists(Path.Combine(_dir, "out-" + Path.GetFileNameWithoutExtension(bad), "graph.npz")));
        }
    }
}

public class SlidePaintTests(ITestOutputHelper output) : TempDirTest("slidepaint")
{

    [Fact]
    public void AMaskPaintedFromASlideLevel_CarriesThatLevelsPixelSize_AndItsOverlayIsReadFromThePyramid()
    {
        if (!OpenSlideSource.Available) { output.WriteLine("SKIPPED: libopenslide0 is not installed"); return; }
        var r = TestPaths.RunCli("generate", "--out", _dir, "--name", "s", "--width", "1400", "--height", "1000", "--format", "svs", "--seed", "3");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var svs = Path.Combine(_dir, "s.svs");
        var g = TestPaths.RunCli("graph", svs, "--level", "1", "--out", Path.Combine(_dir, "g"), "--tile-size", "4096", "--spacing", "20");
        Assert.True(g.ExitCode == 0, g.Stderr);
        int nodes = (int)ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g", "graph.npz"))["area"].Shape[0];
        var classes = Enumerable.Range(0, nodes).Select(i => (byte)(i % 2)).ToArray();
        string mask = Path.Combine(_dir, "mask.tif"), png = Path.Combine(_dir, "overlay.png");
        ActorSeg.Core.IO.MaskPainter.Paint(Path.Combine(_dir, "g", "nodes.tif"), classes, mask, sourceImage: svs);
        ActorSeg.Core.IO.MaskPainter.Overlay(svs, mask, png);
        using var m = Vips.Image.NewFromFile(mask);
        Assert.Equal((700, 500), (m.Width, m.Height));
        Assert.Equal(1000.0 / 0.998, m.Xres, 1); // pixels per millimetre at level 1 (0.998 µm/px)
        using var o = Vips.Image.NewFromFile(png);
        Assert.Equal((700, 500), (o.Width, o.Height));

        // the OME-TIFF beside it, read back as napari and QuPath would (tifffile): pyramid levels, pixel size, classes
        var ome = Path.Combine(_dir, "mask.ome.tif");
        Assert.True(File.Exists(ome));
        if (!File.Exists("/usr/bin/python3")) { output.WriteLine("SKIPPED: /usr/bin/python3 with tifffile is not available"); return; }
        var psi = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("""
            import sys, tifffile, numpy, xml.etree.ElementTree as ET
            t = tifffile.TiffFile(sys.argv[1])
            s = t.series[0]
            ns = {'o': 'http://www.openmicroscopy.org/Schemas/OME/2016-06'}
            root = ET.fromstring(t.ome_metadata)
            px = root.find('o:Image/o:Pixels', ns)
            ms = root.findall('o:StructuredAnnotations/o:MapAnnotation/o:Value/o:M', ns)
            full = s.levels[0].asarray()
            print(t.is_ome, len(s.levels), s.levels[0].shape, s.levels[1].shape, px.get('PhysicalSizeX'), px.get('PhysicalSizeXUnit'),
                  '|'.join(m.text for m in ms), int(full.max()), int((full == 1).sum()))
            """);
        psi.ArgumentList.Add(ome);
        using var py = System.Diagnostics.Process.Start(psi)!;
        string so = py.StandardOutput.ReadToEnd(), se = py.StandardError.ReadToEnd();
        py.WaitForExit();
        if (se.Contains("No module named 'tifffile'")) { output.WriteLine("SKIPPED: python3-tifffile is not installed"); return; }
        Assert.True(py.ExitCode == 0, se);
        var f = so.Trim().Split(' ');
        Assert.Equal("True", f[0]);
        Assert.True(int.Parse(f[1]) >= 2, so);                      // a SubIFD pyramid
        Assert.Equal("(500,", f[2]); Assert.Equal("700)", f[3]);
        Assert.Equal(0.998, double.Parse(f[6], System.Globalization.CultureInfo.InvariantCulture), 6);
        Assert.Equal("µm", f[7]);
        Assert.Contains("background", so); Assert.Contains("class 1 #ff2828", so);
        using var mt = Vips.Image.NewFromFile(mask);
        long ones = mt.WriteToMemory<byte>().LongCount(b => b == 1);
        Assert.Equal(ones.ToString(), f[^1]);                       // the same pixels as mask.tif
    }
}

public class SlideSegmentTests(ITestOutputHelper output) : TempDirTest("slideseg")
{

    [Fact]
    public void ASlideIsSegmentedAtTheLevelAskedFor_IntoAMaskAndAnOmeTiffAtThatPixelSize()
    {
        if (!OpenSlideSource.Available) { output.WriteLine("SKIPPED: libopenslide0 is not installed"); return; }
        string imgs = Path.Combine(_dir, "images"), masks = Path.Combine(_dir, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 2; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(512, 512, SyntheticKind.Nuclei, 8, 3, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        var model = Path.Combine(_dir, "model");
        var tr = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--segments", "600", "--edges", "rag", "--epochs", "15", "--val-frac", "0.5",
            "--classes", "background,nucleus:#ff00ff", "--out", model);
        Assert.True(tr.ExitCode == 0, tr.Stderr);
        var gen = TestPaths.RunCli("generate", "--out", _dir, "--name", "slide", "--width", "1600", "--height", "1200", "--kind", "nuclei", "--format", "svs", "--seed", "9");
        Assert.True(gen.ExitCode == 0, gen.Stderr);
        var seg = Path.Combine(_dir, "seg");
        var sr = TestPaths.RunCli("segment", Path.Combine(_dir, "slide.svs"), "--model", Path.Combine(model, "best.model"), "--mpp", "1", "--out", seg, "--tile-size", "512",
            "--objects", "geojson.gz");
        Assert.True(sr.ExitCode == 0, sr.Stderr);
        using var mask = Vips.Image.NewFromFile(Path.Combine(seg, "mask.tif"));
        Assert.Equal((800, 600), (mask.Width, mask.Height)); // level 1
        using var ome = Vips.Image.NewFromFile(Path.Combine(seg, "mask.ome.tif"));
        var xml = (string)ome.Get("image-description");
        Assert.Contains("PhysicalSizeX=\"0.998\"", xml);
        Assert.Contains("nucleus #ff00ff", xml);
        Assert.True(File.Exists(Path.Combine(seg, "overlay.png")));
        var px = mask.WriteToMemory<byte>();
        Assert.True(px.Any(b => b == 1), "some nuclei are found");
        // the objects are in level-0 pixels (level 1 is downsampled 2×), with the area in µm² of the slide's 0.499 µm pixels
        Assert.False(File.Exists(Path.Combine(seg, "objects.geojson")));
        using var gz = new System.IO.Compression.GZipStream(File.OpenRead(Path.Combine(seg, "objects.geojson.gz")), System.IO.Compression.CompressionMode.Decompress);
        var opts = new System.Text.Json.JsonSerializerOptions();
        opts.Converters.Add(new NetTopologySuite.IO.Converters.GeoJsonConverterFactory());
        var fc = System.Text.Json.JsonSerializer.Deserialize<NetTopologySuite.Features.FeatureCollection>(gz, opts)!;
        Assert.Equal(px.LongCount(b => b == 1) * 4.0, fc.Sum(f => f.Geometry.Area));
        var all = fc.Select(f => f.Geometry.EnvelopeInternal).Aggregate((a, b) => { var e = new NetTopologySuite.Geometries.Envelope(a); e.ExpandToInclude(b); return e; });
        Assert.True(all.MaxX <= 1600 && all.MaxY <= 1200 && all.MaxX > 800, $"objects span {all}");
        Assert.All(fc, f => Assert.Equal(f.Geometry.Area * 0.499 * 0.499, Convert.ToDouble(f.Attributes["area_um2"]), 3));

        // a brightfield slide that is 60 % glass: the tissue is detected by default, glass-only tiles are skipped, glass is class 0
        var gl = TestPaths.RunCli("generate", "--out", _dir, "--name", "glass", "--width", "1600", "--height", "1200", "--kind", "nuclei", "--format", "svs", "--glass", "0.6", "--seed", "3");
        Assert.True(gl.ExitCode == 0, gl.Stderr);
        var segG = Path.Combine(_dir, "seg-glass");
        var sg = TestPaths.RunCli("segment", Path.Combine(_dir, "glass.svs"), "--model", Path.Combine(model, "best.model"), "--out", segG, "--tile-size", "256");
        Assert.True(sg.ExitCode == 0, sg.Stderr);
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(segG, "segment.json"))))
        {
            double tf = doc.RootElement.GetProperty("tissueFraction").GetDouble();
            int skipped = doc.RootElement.GetProperty("tilesSkipped").GetInt32();
            output.WriteLine($"glass slide: tissue {tf:P1}, {skipped} of 35 tiles skipped");
            Assert.InRange(tf, 0.3, 0.5);
            Assert.True(skipped > 0, "some tiles are glass only");
        }
        Assert.True(File.Exists(Path.Combine(segG, "graph", "tissue.png")));
        using (var tissue = Vips.Image.NewFromFile(Path.Combine(segG, "graph", "tissue.png")))
        using (var gm = Vips.Image.NewFromFile(Path.Combine(segG, "mask.tif")))
        using (var nodes = Vips.Image.NewFromFile(Path.Combine(segG, "graph", "nodes.tif")))
        {
            var t = tissue.WriteToMemory<byte>(); var m = gm.WriteToMemory<byte>(); var n = nodes.WriteToMemory<uint>();
            int tw = tissue.Width, th = tissue.Height;
            long glassPx = 0;
            for (int y = 0; y < gm.Height; y++)
                for (int x = 0; x < gm.Width; x++)
                {
                    bool isTissue = t[(int)((long)y * th / gm.Height) * tw + (int)((long)x * tw / gm.Width)] != 0;
                    int i = y * gm.Width + x;
                    Assert.Equal(!isTissue, n[i] == uint.MaxValue); // glass, and only glass, has no node
                    if (!isTissue) { glassPx++; Assert.Equal(0, m[i]); }
                }
            Assert.InRange(glassPx / (double)m.Length, 0.5, 0.7);
        }
        // --tissue none takes the whole slide: more nodes, none skipped
        var segN = Path.Combine(_dir, "seg-none");
        var sn = TestPaths.RunCli("segment", Path.Combine(_dir, "glass.svs"), "--model", Path.Combine(model, "best.model"), "--out", segN, "--tile-size", "256", "--tissue", "none");
        Assert.True(sn.ExitCode == 0, sn.Stderr);
        int Nodes(string dir) { using var d = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "segment.json"))); return d.RootElement.GetProperty("nodes").GetInt32(); }
        Assert.True(Nodes(segN) > Nodes(segG) * 3 / 2, $"{Nodes(segN)} nodes without tissue detection, {Nodes(segG)} with");
        Assert.False(File.Exists(Path.Combine(segN, "graph", "tissue.png")));
        // a tissue mask with no tissue at all fails, saying so
        var empty = Path.Combine(_dir, "empty-tissue.png");
        using (var z = Vips.Image.Black(160, 120)) z.Cast(Vips.Enums.BandFormat.Uchar).Pngsave(empty);
        var se = TestPaths.RunCli("segment", Path.Combine(_dir, "glass.svs"), "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "seg-empty"), "--tissue", empty);
        Assert.Equal(1, se.ExitCode);
        Assert.Contains("no tissue found", se.Stdout + se.Stderr);
        // and a batch over the slide reports its tissue in summary.csv
        var slides = Path.Combine(_dir, "slides");
        Directory.CreateDirectory(slides);
        File.Copy(Path.Combine(_dir, "glass.svs"), Path.Combine(slides, "glass.svs"));
        var bo = Path.Combine(_dir, "batch");
        var br = TestPaths.RunCli("batch", slides, "--out", bo, "--model", Path.Combine(model, "best.model"), "--tile-size", "256");
        Assert.True(br.ExitCode == 0, br.Stderr);
        var rows = File.ReadAllLines(Path.Combine(bo, "summary.csv"));
        var header = rows[0].Split(',');
        var row = rows[1].Split(',');
        double btf = double.Parse(row[Array.IndexOf(header, "tissue_fraction")], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(btf, 0.3, 0.5);
        Assert.True(int.Parse(row[Array.IndexOf(header, "tiles_skipped")]) > 0);

        // the same model on a slide whose tiles are JPEG 2000 (Aperio's YCbCr compression 33003)
        if (!SlideWriter.Jp2kAvailable) { output.WriteLine("SKIPPED (JPEG 2000 part): opj_compress is not installed (libopenjp2-tools)"); return; }
        var j2k = TestPaths.RunCli("generate", "--out", _dir, "--name", "j2k", "--width", "1600", "--height", "1200", "--kind", "nuclei", "--format", "svs",
            "--compression", "jp2k-ycbcr", "--seed", "9");
        Assert.True(j2k.ExitCode == 0, j2k.Stderr);
        var seg2 = Path.Combine(_dir, "seg-j2k");
        var sr2 = TestPaths.RunCli("segment", Path.Combine(_dir, "j2k.svs"), "--model", Path.Combine(model, "best.model"), "--level", "1", "--out", seg2, "--tile-size", "512");
        Assert.True(sr2.ExitCode == 0, sr2.Stderr);
        using var mask2 = Vips.Image.NewFromFile(Path.Combine(seg2, "mask.tif"));
        Assert.Equal((800, 600), (mask2.Width, mask2.Height));
        var m1 = mask.WriteToMemory<byte>(); var m2 = mask2.WriteToMemory<byte>();
        double agree = m1.Zip(m2, (x, y) => x == y ? 1.0 : 0.0).Average();
        output.WriteLine($"JPEG and JPEG 2000 slides of the same image: masks agree on {agree:P1} of pixels");
        Assert.True(agree > 0.9, $"the masks of the JPEG and the JPEG 2000 slide agree on {agree:P1} of pixels");
    }
}

/// <summary>Aperio slides with JPEG 2000 tiles (compressions 33005 and 33003), made here by <see cref="SlideWriter"/> with
/// opj_compress; a generic tiled TIFF; and broken slides, which fail naming the file.</summary>
public class Jp2kSlideTests(ITestOutputHelper output) : TempDirTest("j2kslide")
{
    private bool Skip()
    {
        if (!OpenSlideSource.Available) { output.WriteLine("SKIPPED: libopenslide0 is not installed (./run.sh installs it)"); return true; }
        if (!SlideWriter.Jp2kAvailable) { output.WriteLine("SKIPPED: opj_compress is not installed (Debian's libopenjp2-tools; ./run.sh test installs it)"); return true; }
        return false;
    }

    /// <summary>Runs a Python script with /usr/bin/python3 (tifffile, numpy); null when that is not available.</summary>
    private string? Python(string script, params string[] args)
    {
        if (!File.Exists("/usr/bin/python3")) { output.WriteLine("SKIPPED (python part): /usr/bin/python3 is not available"); return null; }
        var psi = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c"); psi.ArgumentList.Add(script);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var py = System.Diagnostics.Process.Start(psi)!;
        var se = py.StandardError.ReadToEndAsync();
        string so = py.StandardOutput.ReadToEnd();
        py.WaitForExit();
        if (se.Result.Contains("No module named")) { output.WriteLine("SKIPPED (python part): " + se.Result.Trim()); return null; }
        Assert.True(py.ExitCode == 0, se.Result);
        return so.Trim();
    }

    [Theory]
    [InlineData(SvsCompression.Jp2kRgb)]
    [InlineData(SvsCompression.Jp2kYcbcr)]
    public void AJpeg2000Slide_IsAnAperioSlide_WhosePixelsComeBackFromItsSource(SvsCompression compression)
    {
        if (Skip()) return;
        var rgb = Path.Combine(_dir, "rgb.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(900, 700, SyntheticKind.Nuclei, 8, 3, 2), rgb, Path.Combine(_dir, "m.tif"));
        var svs = Path.Combine(_dir, "rgb.svs");
        SlideWriter.WriteSvs(rgb, svs, compression: compression);
        Assert.Empty(Directory.GetFiles(_dir, "*.partial*"));

        Assert.Equal("aperio", OpenSlideSource.DetectVendor(svs));
        using var slide = ImageSources.Open(svs);
        var s = Assert.IsType<OpenSlideSource>(slide);
        Assert.Equal(new[] { (900L, 700L, 1.0), (450L, 350L, 2.0), (225L, 175L, 4.0) }, s.Levels);
        Assert.Equal(0.499, s.MppX!.Value, 6);
        Assert.Equal("20", s.Properties["aperio.AppMag"]);
        using var l1 = OpenSlideSource.Open(svs, 1);
        Assert.Equal(0.998, l1.MppX!.Value, 6);

        // every level's tiles are JPEG 2000 under Aperio's compression tag, as tifffile (and so QuPath's readers) see them
        if (Python("""
            import sys, tifffile
            t = tifffile.TiffFile(sys.argv[1])
            print(t.is_svs, ' '.join(f'{int(p.compression)}/{int(p.photometric)}/{p.shape[1]}x{p.shape[0]}' for p in t.pages))
            """, svs) is { } tf)
        {
            string tag = compression == SvsCompression.Jp2kRgb ? "33005/2" : "33003/6";
            Assert.Equal($"True {tag}/900x700 {tag}/450x350 {tag}/225x175", tf);
        }

        // level 0 against the source, whole; level 1 against libvips' 2×2 box shrink of it
        using var plain = VipsImageSource.Open(rgb);
        var a = new ushort[900 * 700 * 3]; var b = new ushort[a.Length];
        s.ReadRegion(0, 0, 900, 700, a);
        plain.ReadRegion(0, 0, 900, 700, b);
        var c = new ushort[450 * 350 * 3];
        l1.ReadRegion(0, 0, 450, 350, c);
        using var shrunk = Vips.Image.NewFromFile(rgb).Shrink(2, 2);
        var d = shrunk.WriteToMemory<byte>();
        double mad0 = a.Zip(b, (x, y) => Math.Abs(x - y)).Average(), mad1 = c.Zip(d, (x, y) => Math.Abs(x - y)).Average();
        int max0 = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        output.WriteLine($"{compression}: level 0 mean |difference| {mad0:F3}, max {max0}; level 1 mean {mad1:F3}; {new FileInfo(svs).Length} bytes");
        if (compression == SvsCompression.Jp2kRgb)
        {
            Assert.Equal(b, a);                                  // lossless: the very pixels
            Assert.Equal(d.Select(v => (ushort)v).ToArray(), c);
        }
        else
        {
            // lossless codestreams of YCbCr 4:2:2: only the colour conversion and the halved chroma differ
            Assert.True(mad0 < 2.0, $"level 0 mean |difference| {mad0:F3}");
            Assert.True(mad1 < 2.0, $"level 1 mean |difference| {mad1:F3}");
        }
    }

    [Fact]
    public void TheCliWritesAJpeg2000Slide_InfoDescribesIt_ItsGraphIsTheSourceImagesGraph_AndTheNodeMapIsAnOmeTiffPyramid()
    {
        if (Skip()) return;
        var gen = TestPaths.RunCli("generate", "--out", _dir, "--name", "slide", "--width", "1200", "--height", "900", "--kind", "nuclei", "--seed", "5",
            "--format", "svs", "--compression", "jp2k");
        Assert.True(gen.ExitCode == 0, gen.Stderr);
        var plainGen = TestPaths.RunCli("generate", "--out", _dir, "--name", "plain", "--width", "1200", "--height", "900", "--kind", "nuclei", "--seed", "5",
            "--bits", "8", "--channels", "3");
        Assert.True(plainGen.ExitCode == 0, plainGen.Stderr);
        string svs = Path.Combine(_dir, "slide.svs"), plain = Path.Combine(_dir, "plain.tif");
        Assert.Equal(2, TestPaths.RunCli("generate", "--out", _dir, "--compression", "jp2k").ExitCode); // only for svs

        var info = TestPaths.RunCli("info", svs);
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("vendor: aperio", info.Stdout);
        Assert.Contains("0: 1200 x 900, downsample 1, 0.499 µm/px", info.Stdout);
        Assert.Contains("1: 600 x 450, downsample 2, 0.998 µm/px", info.Stdout);
        Assert.Contains("J2K", info.Stdout);
        Assert.Contains("level 0 pixels: read through OpenSlide", info.Stdout); // libvips here has no JPEG 2000

        // lossless tiles: the slide's level 0 is the generated image, so its graph is the same, byte for byte
        var gs = TestPaths.RunCli("graph", svs, "--level", "0", "--out", Path.Combine(_dir, "gs"), "--tile-size", "512", "--spacing", "20", "--workers", "2");
        Assert.True(gs.ExitCode == 0, gs.Stderr);
        var gp = TestPaths.RunCli("graph", plain, "--out", Path.Combine(_dir, "gp"), "--tile-size", "512", "--spacing", "20", "--workers", "2");
        Assert.True(gp.ExitCode == 0, gp.Stderr);
        GraphFiles.AssertSameGraph(Path.Combine(_dir, "gp", "graph.npz"), Path.Combine(_dir, "gs", "graph.npz")); // (the slide's records its 0.499 µm)
        Assert.Contains("\"nodeMapOme\": \"nodes.ome.tif\"", File.ReadAllText(Path.Combine(_dir, "gs", "graph.json")));

        // nodes.ome.tif read back as napari and QuPath users' tools do: a SubIFD pyramid of uint32 node ids whose level 0 is
        // nodes.tif and whose coarser levels hold, at every pixel, one of the ids of its 2×2 block; the pixel size in µm
        const string script = """
            import sys, tifffile, numpy, xml.etree.ElementTree as ET
            t = tifffile.TiffFile(sys.argv[1])
            s = t.series[0]
            px = ET.fromstring(t.ome_metadata).find('o:Image/o:Pixels', {'o': 'http://www.openmicroscopy.org/Schemas/OME/2016-06'})
            full, half = s.levels[0].asarray(), s.levels[1].asarray()
            h, w = half.shape
            blocks = numpy.pad(full, ((0, 2 * h - full.shape[0]), (0, 2 * w - full.shape[1])), mode='edge').reshape(h, 2, w, 2)
            member = (blocks == half[:, None, :, None]).any(axis=(1, 3)).all()
            print(t.is_ome, len(s.levels), full.dtype, px.get('Type'), px.get('PhysicalSizeX'), px.get('PhysicalSizeY'), px.get('PhysicalSizeXUnit'),
                  f'{full.shape[1]}x{full.shape[0]}', f'{w}x{h}', bool((full == tifffile.imread(sys.argv[2])).all()), bool(member), int(full.max()))
            """;
        int nodes = (int)ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "gs", "graph.npz"))["area"].Shape[0];
        if (Python(script, Path.Combine(_dir, "gs", "nodes.ome.tif"), Path.Combine(_dir, "gs", "nodes.tif")) is { } so)
        {
            output.WriteLine(so);
            var f = so.Split(' ');
            Assert.Equal("True", f[0]);
            Assert.True(int.Parse(f[1]) >= 3, so);                  // 1200x900 → 600x450 → 300x225 (→ …)
            Assert.Equal(new[] { "uint32", "uint32", "0.499", "0.499", "µm", "1200x900", "600x450", "True", "True" }, f[2..11]);
            Assert.Equal(nodes - 1, int.Parse(f[11]));               // the ids are the graph's nodes
        }
        // an image that states no pixel size: OME-XML without one
        if (Python(script, Path.Combine(_dir, "gp", "nodes.ome.tif"), Path.Combine(_dir, "gp", "nodes.tif")) is { } sp)
            Assert.Equal(new[] { "None", "None", "None" }, sp.Split(' ')[4..7]);
    }

    [Fact]
    public void AGenericTiledTiff_IsReadByLibvips_AndBrokenSlidesFailNamingTheFile_ThroughInfoAndGraph()
    {
        if (Skip()) return;
        var rgb = Path.Combine(_dir, "rgb.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(700, 500, SyntheticKind.Nuclei, 8, 3, 3), rgb, Path.Combine(_dir, "m.tif"));

        // a generic tiled pyramidal TIFF (no vendor description): OpenSlide calls it generic-tiff, ActorSeg reads it with libvips
        var generic = Path.Combine(_dir, "generic.tif");
        using (var img = Vips.Image.NewFromFile(rgb)) img.Tiffsave(generic, tile: true, tileWidth: 128, tileHeight: 128, pyramid: true, compression: Vips.Enums.ForeignTiffCompression.Deflate);
        Assert.Equal("generic-tiff", OpenSlideSource.DetectVendor(generic));
        Assert.False(ImageSources.IsSlide(generic));
        using (var g = ImageSources.Open(generic)) Assert.IsType<VipsImageSource>(g);
        var gi = TestPaths.RunCli("info", generic);
        Assert.True(gi.ExitCode == 0, gi.Stderr);
        Assert.Contains("size: 700 x 500, 3 channel(s), 8-bit", gi.Stdout);

        var svs = Path.Combine(_dir, "rgb.svs");
        SlideWriter.WriteSvs(rgb, svs, compression: SvsCompression.Jp2kYcbcr);
        var bytes = File.ReadAllBytes(svs);
        string Bad(string name, byte[] content) { var p = Path.Combine(_dir, name); File.WriteAllBytes(p, content); return p; }
        var head = Bad("head.svs", bytes[..(bytes.Length / 3)]);                  // the directories are lost
        var tail = Bad("tail.svs", bytes[..(bytes.Length * 97 / 100)]);           // the first directory is whole, the chain is cut
        var magic = (byte[])bytes.Clone(); magic[0] = (byte)'X'; magic[1] = (byte)'Y';
        var wrongMagic = Bad("magic.svs", magic);
        foreach (var bad in new[] { head, tail, wrongMagic })
        {
            var info = TestPaths.RunCli("info", bad);
            Assert.True(info.ExitCode == 1, $"info {bad}: exit {info.ExitCode}\n{info.Stdout}{info.Stderr}");
            Assert.Contains(bad, info.Stderr);
            var outDir = Path.Combine(_dir, "out-" + Path.GetFileNameWithoutExtension(bad));
            var r = TestPaths.RunCli("graph", bad, "--out", outDir, "--tile-size", "512");
            Assert.True(r.ExitCode == 1, $"graph {bad}: exit {r.ExitCode}\n{r.Stderr}");
            Assert.Contains(bad, r.Stderr);
            Assert.False(File.Exists(Path.Combine(outDir, "graph.npz")));
        }
        Assert.Contains("an Aperio slide that OpenSlide cannot open", Assert.Throws<InputFileException>(() => ImageSources.Open(tail)).Message);
    }
}
