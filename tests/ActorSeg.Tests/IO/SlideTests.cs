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
            Assert.EndsWith("level,um_per_pixel", rows[0]);
            return rows[1];
        }
        var first = Run("--mpp", "1");
        Assert.StartsWith("a,", first); Assert.Contains(",done,", first); Assert.EndsWith(",1,0.998", first);
        Assert.Contains(",skipped,", Run("--mpp", "1"));
        var level0 = Run("--level", "0");
        Assert.Contains(",done,", level0); Assert.EndsWith(",0,0.499", level0);
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
    }
}
