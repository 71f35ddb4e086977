using System.Text.Json;
using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>
/// <c>--series N</c>: the Nth image of a file that holds several (a Leica LIF project's images, a Zeiss CZI's scenes),
/// through the readers, <c>info</c> and a whole <c>graph</c> job; a series the file does not hold, or one asked of a
/// file of one image, is refused naming the file.
/// </summary>
public class SeriesTests() : TempDirTest("series")
{
    private static ushort[] Samples(int w, int h, int seed) =>
        [.. Enumerable.Range(0, w * h).Select(i => (ushort)((i % w * 13 + i / w * 29 + seed * 1000 + (i * seed) % 17 * 40) % 4096))];

    private static LifImage LifOne(string name, int w, int h, double um, ushort[] samples) => LifWriter.OneChannel(name, w, h, um, samples);

    [Fact]
    public void ALifsImageN_IsReadWithItsOwnSizeAndPixelSize_AndOneItDoesNotHoldIsRefused()
    {
        var a = Samples(90, 70, 1); var b = Samples(120, 50, 2); var c = Samples(40, 30, 3);
        var lif = Path.Combine(_dir, "project.lif");
        LifWriter.Write(lif, [LifOne("first", 90, 70, 0.5, a), LifOne("second", 120, 50, 0.25, b), LifOne("third", 40, 30, 1, c)]);
        using (var warned = new InputWarnings())
        using (var src = ImageSources.Open(lif, 0, 1))
        {
            Assert.Equal((120, 50, 1), (src.Width, src.Height, src.Channels));
            var got = new ushort[120 * 50];
            src.ReadRegion(0, 0, 120, 50, got);
            Assert.Equal(b, got);
            Assert.DoesNotContain(warned.All, m => m.Contains("images; the first")); // asked for: no warning
        }
        using (var warned = new InputWarnings())
        using (var src = ImageSources.Open(lif)) // the default: the first, with a warning that says how to choose
        {
            Assert.Equal((90, 70), (src.Width, src.Height));
            Assert.Contains(warned.All, m => m.StartsWith(lif) && m.Contains("3 images; the first (project/first) is read (--series N"));
        }
        Assert.Equal(0.25, PixelSize.MicronsPerPixel(lif, 0, 1)!.Value.X, 9);
        Assert.Equal(1.0, PixelSize.MicronsPerPixel(lif, 0, 2)!.Value.X, 9);
        Assert.Equal(0.5, PixelSize.MicronsPerPixel(lif)!.Value.X, 9);
        var e = Assert.Throws<InputFileException>(() => ImageSources.Open(lif, 0, 3));
        Assert.Equal($"{lif}: holds 3 image(s) (series 0..2); series 3 does not exist (actorseg info lists them)", e.Message);

        var info = TestPaths.RunCli("info", lif, "--series", "2");
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("image 2 of its 3 image(s)", info.Stdout);
        Assert.Contains("size: 40 x 30, 1 channel(s)", info.Stdout);
        Assert.Contains("microns per pixel: 1 x 1", info.Stdout);
        Assert.Contains("images (--series N reads image N):\n  0: project/first, 90 x 70\n  1: project/second, 120 x 50\n  2: project/third, 40 x 30", info.Stdout.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void ACzisSceneN_IsReadAlone_WhetherItsScenesLieTogetherOrFarApart()
    {
        // a plate's three positions, S indices 0, 1 and 5 (the series count them in order, whatever the indices)
        var g0 = Samples(100, 80, 1); var g1 = Samples(60, 40, 2); var g5 = Samples(70, 50, 3);
        var plate = Path.Combine(_dir, "plate.czi");
        CziWriter.Write(plate, CziWriter.Gray16, [new CziBlock(0, 0, 100, 80, g0, S: 0), new CziBlock(20000, 0, 60, 40, g1, S: 1),
            new CziBlock(40000, 9000, 70, 50, g5, S: 5)], 0.4e-6);
        foreach (var (series, w, h, expected) in new[] { (1, 60, 40, g1), (2, 70, 50, g5), (0, 100, 80, g0) })
        {
            using var warned = new InputWarnings();
            using var src = ImageSources.Open(plate, 0, series);
            Assert.Equal((w, h), (src.Width, src.Height));
            var got = new ushort[w * h];
            src.ReadRegion(0, 0, w, h, got);
            Assert.Equal(expected, got);
            Assert.DoesNotContain(warned.All, m => m.Contains("scenes far apart"));
        }
        var e = Assert.Throws<InputFileException>(() => ImageSources.Open(plate, 0, 3));
        Assert.Equal($"{plate}: holds 3 scene(s) (series 0..2); series 3 does not exist (actorseg info lists them)", e.Message);
        // sections of one slide, read together by default: one alone when asked
        var s0 = Samples(100, 80, 4); var s1 = Samples(100, 80, 5);
        var slide = Path.Combine(_dir, "sections.czi");
        CziWriter.Write(slide, CziWriter.Gray16, [new CziBlock(1000, 500, 100, 80, s0, S: 0), new CziBlock(1150, 520, 100, 80, s1, S: 1)]);
        using (var together = ImageSources.Open(slide)) Assert.Equal((250, 100), (together.Width, together.Height));
        using (var alone = ImageSources.Open(slide, 0, 1))
        {
            Assert.Equal((100, 80), (alone.Width, alone.Height));
            var got = new ushort[100 * 80];
            alone.ReadRegion(0, 0, 100, 80, got);
            Assert.Equal(s1, got);
        }
        var info = TestPaths.RunCli("info", plate, "--series", "1");
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("scenes in the file: 3 (scene 1 read)", info.Stdout);
        Assert.Contains("scenes (--series N reads scene N alone):\n  0: S=0, 100 x 80\n  1: S=1, 60 x 40\n  2: S=5, 70 x 50", info.Stdout.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void ABatchFolder_WithAllSeries_TakesEveryImageOfEveryCziAndLif_AsASlide()
    {
        var folder = Directory.CreateDirectory(Path.Combine(_dir, "plates")).FullName;
        CziWriter.Write(Path.Combine(folder, "plate.czi"), CziWriter.Gray16, [new CziBlock(0, 0, 10, 8, Samples(10, 8, 1), S: 0),
            new CziBlock(20000, 0, 10, 8, Samples(10, 8, 2), S: 1), new CziBlock(40000, 0, 10, 8, Samples(10, 8, 3), S: 2)]);
        LifWriter.Write(Path.Combine(folder, "project.lif"), [LifOne("a", 12, 9, 0.5, Samples(12, 9, 4)), LifOne("b", 14, 9, 0.5, Samples(14, 9, 5))]);
        using (var img = NetVips.Image.Black(16, 12)) img.Tiffsave(Path.Combine(folder, "one.tif"));
        var masks = Directory.CreateDirectory(Path.Combine(_dir, "masks")).FullName;
        using (var m = NetVips.Image.Black(10, 8)) m.Tiffsave(Path.Combine(masks, "plate_s1.tif"));

        var (slides, rejected) = ActorSeg.Cli.BatchInput.Load(folder, masks, allSeries: true);
        Assert.Empty(rejected);
        Assert.Equal(["one", "plate_s0", "plate_s1", "plate_s2", "project_s0", "project_s1"], slides.Select(x => x.Name).Order(StringComparer.Ordinal));
        Assert.Equal([null, 0, 1, 2, 0, 1], slides.OrderBy(x => x.Name, StringComparer.Ordinal).Select(x => x.Series));
        Assert.Equal(Path.Combine(masks, "plate_s1.tif"), slides.Single(x => x.Name == "plate_s1").Mask);
        // without it, each file's default image
        var (plain, _) = ActorSeg.Cli.BatchInput.Load(folder, null);
        Assert.Equal(["one", "plate", "project"], plain.Select(x => x.Name).Order(StringComparer.Ordinal));
        Assert.All(plain, x => Assert.Null(x.Series));
        // a manifest names its series itself: --all-series with one is refused, not silently ignored
        var csv = Path.Combine(_dir, "slides.csv");
        File.WriteAllText(csv, $"image\n{Path.Combine(folder, "plate.czi")}\n");
        Assert.Contains("series' column", Assert.Throws<ArgumentException>(() => ActorSeg.Cli.BatchInput.Load(csv, null, allSeries: true)).Message);
        var r = TestPaths.RunCli("batch", csv, "--all-series", "--out", Path.Combine(_dir, "b-csv"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains($"--all-series is for a folder or a glob; the manifest {csv}", r.Stderr);
        Assert.False(Directory.Exists(Path.Combine(_dir, "b-csv")));
    }

    [Fact]
    public void ASeriesOfAFileOfOneImage_IsRefused_ButSeries0IsThatImage()
    {
        var tif = Path.Combine(_dir, "one.tif");
        using (var img = NetVips.Image.Black(32, 24)) img.Tiffsave(tif);
        using (var zero = ImageSources.Open(tif, 0, 0)) Assert.Equal((32, 24), (zero.Width, zero.Height));
        var e = Assert.Throws<InputFileException>(() => ImageSources.Open(tif, 0, 1));
        Assert.StartsWith($"{tif}: series 1: only Zeiss CZI files (their scenes) and Leica LIF files (their images) hold several images", e.Message);
        var r = TestPaths.RunCli("graph", tif, "--series", "1", "--out", Path.Combine(_dir, "g-one"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("series 1: only Zeiss CZI files", r.Stderr);
    }

    [Fact]
    public void AGraphJob_ReadsTheSeriesItWasGiven_AndRecordsIt()
    {
        var lif = Path.Combine(_dir, "two.lif");
        LifWriter.Write(lif, [LifOne("small", 64, 48, 0.5, Samples(64, 48, 6)), LifOne("large", 300, 260, 0.25, Samples(300, 260, 7))]);
        var r = TestPaths.RunCli("graph", lif, "--series", "1", "--out", Path.Combine(_dir, "g"), "--spacing", "10", "--tile-size", "128");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("300x260x1 16-bit", r.Stderr);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "g", "graph.json")));
        var image = doc.RootElement.GetProperty("image");
        Assert.Equal(1, image.GetProperty("series").GetInt32());
        Assert.Equal(300, image.GetProperty("width").GetInt32());
        Assert.Equal(0.25, image.GetProperty("micronsPerPixel")[0].GetDouble(), 9);
        // the tiles were read from image 1 by the workers too: the same graph as the one-image file of its samples
        var alone = Path.Combine(_dir, "large.lif");
        LifWriter.Write(alone, [LifOne("large", 300, 260, 0.25, Samples(300, 260, 7))]);
        var r2 = TestPaths.RunCli("graph", alone, "--out", Path.Combine(_dir, "g2"), "--spacing", "10", "--tile-size", "128");
        Assert.True(r2.ExitCode == 0, r2.Stderr);
        GraphFiles.AssertSameGraph(Path.Combine(_dir, "g2", "graph.npz"), Path.Combine(_dir, "g", "graph.npz"));
    }
}
