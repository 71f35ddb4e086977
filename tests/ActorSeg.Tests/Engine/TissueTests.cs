using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Engine;

/// <summary>Tissue detection and what the engine does with it: glass gets no node, glass-only tiles are skipped, and
/// the result where there is tissue is the same tiled or whole.</summary>
public class TissueTests(ITestOutputHelper output) : TempDirTest("tissue")
{
    private static TissueMap RandomMap(int w, int h, int seed)
    {
        var rnd = new Random(seed);
        var (mw, mh) = (Math.Max(1, w / rnd.Next(3, 12)), Math.Max(1, h / rnd.Next(3, 12)));
        var cells = new byte[mw * mh];
        // blobs of tissue, plus a glass-only band so that some tiles have none
        for (int b = 0; b < 4; b++)
        {
            double cx = rnd.NextDouble() * mw, cy = rnd.NextDouble() * mh * 0.6, r = 1 + rnd.NextDouble() * mw / 3;
            for (int y = 0; y < mh; y++)
                for (int x = 0; x < mw; x++)
                    if ((x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r && y < mh * 0.7) cells[y * mw + x] = 1;
        }
        cells[0] = 1; // never all glass
        return new TissueMap(mw, mh, w, h, cells);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void TheMapsGeometry_AgreesWithEveryPixel(int seed)
    {
        var rnd = new Random(seed);
        int w = rnd.Next(50, 400), h = rnd.Next(50, 400);
        var m = RandomMap(w, h, seed);
        long count = 0;
        var runs = new List<int>();
        for (int y = 0; y < h; y++)
        {
            runs.Clear();
            int x0 = rnd.Next(0, w), x1 = rnd.Next(x0, w + 1);
            m.RowRuns(y, x0, x1, runs);
            var inRun = new bool[w];
            for (int r = 0; r < runs.Count; r += 2) for (int x = runs[r]; x < runs[r + 1]; x++) inRun[x] = true;
            for (int x = 0; x < w; x++)
            {
                bool t = m[m.CellX(x), m.CellY(y)];
                if (t) count++;
                Assert.Equal(t && x >= x0 && x < x1, inRun[x]);
                Assert.True(m.FirstX(m.CellX(x)) <= x && x < m.FirstX(m.CellX(x) + 1));
            }
        }
        Assert.Equal(count, m.TissuePixels());
        for (int i = 0; i < 50; i++)
        {
            int x = rnd.Next(w), y = rnd.Next(h), rw = rnd.Next(1, w - x + 1), rh = rnd.Next(1, h - y + 1);
            bool any = false;
            for (int yy = y; yy < y + rh; yy++) for (int xx = x; xx < x + rw; xx++) any |= m[m.CellX(xx), m.CellY(yy)];
            Assert.Equal(any, m.Any(new PixelRect(x, y, rw, rh)));
        }
        var path = Path.Combine(_dir, $"t{seed}.map");
        m.Save(path);
        var back = TissueMap.Load(path);
        Assert.Equal(m.Cells.ToArray(), back.Cells.ToArray());
        File.WriteAllBytes(path, File.ReadAllBytes(path)[..30]);
        Assert.Contains(path, Assert.Throws<InvalidDataException>(() => TissueMap.Load(path)).Message);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void WithTissue_TheTiledGraphEqualsTheWholeImageGraph_AndGlassHasNoNode(int seed)
    {
        var rnd = new Random(seed * 31);
        int w = rnd.Next(120, 300), h = rnd.Next(120, 300);
        int channels = seed % 2 == 0 ? 3 : 1;
        var (img, mask) = EngineHarness.Blobs(w, h, seed, channels, 8);
        var slic = new SlicParameters { Spacing = 6 + rnd.NextDouble() * 8 };
        var tissue = RandomMap(w, h, seed);
        int tile = new[] { 32, 50, 64 }[rnd.Next(3)];
        using var whole = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = 4096, Halo = 0 }, tissue);
        using var tiled = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = tile, Halo = Math.Max(w, h) }, tissue);
        var c = SeamTests.Compare(whole, tiled);
        output.WriteLine($"{w}x{h}x{channels} tile {tile}, tissue {tissue.Fraction:P1}, {tiled.Job.Tissue!.TilesSkipped}/{tiled.Job.Plan.Count} tiles skipped: {c}");
        SeamTests.AssertIdentical(whole, tiled, c);
        Assert.True(tiled.Job.Tissue.TilesSkipped > 0, "the glass band leaves some tiles without tissue");
        // glass pixels, and only they, have no node; node areas add up to the tissue
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                Assert.Equal(!tissue[tissue.CellX(x), tissue.CellY(y)], tiled.NodeMap[y * w + x] < 0);
        Assert.Equal(tissue.TissuePixels(), tiled.Graph.Area.Sum(a => (long)a));
        // and the graph of the tissue is smaller than the graph of the whole image
        using var all = EngineHarness.Run(img, mask, new GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = slic, TileSize = tile, Halo = Math.Max(w, h) });
        Assert.True(all.Graph.NodeCount > tiled.Graph.NodeCount);
    }

    private string Rgb(string name, int w, int h, Func<int, int, (byte R, byte G, byte B)> px)
    {
        var data = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                var (r, g, b) = px(x, y);
                int i = (y * w + x) * 3;
                data[i] = r; data[i + 1] = g; data[i + 2] = b;
            }
        var path = Path.Combine(_dir, name);
        using var im = Vips.Image.NewFromMemory(data, w, h, 3, Vips.Enums.BandFormat.Uchar);
        im.Tiffsave(path);
        return path;
    }

    [Fact]
    public void TheDetector_FindsStainedTissueOnGlass_AndNothingOnBareGlass_AndEverythingOnAFullSlide()
    {
        var rnd = new Random(5);
        byte N(int v) => (byte)Math.Clamp(v + rnd.Next(-3, 4), 0, 255);
        (byte, byte, byte) Glass() => (N(238), N(239), N(243));
        (byte, byte, byte) Stain(int x, int y) { int d = (x * 7 + y * 3) % 60; return (N(200 - d), N(120 - d), N(190 - d)); }
        // a disc of tissue covering about 28 % of the image, on glass
        int w = 400, h = 300;
        var half = Rgb("disc.tif", w, h, (x, y) => (x - 200) * (x - 200) + (y - 150) * (y - 150) < 130 * 130 ? Stain(x, y) : Glass());
        var m = TissueDetector.Detect(half, 0, w, h);
        double expect = Math.PI * 130 * 130 / (w * h);
        output.WriteLine($"disc: tissue {m.Fraction:P1}, expected {expect:P1}");
        Assert.InRange(m.Fraction, expect - 0.02, expect + 0.02);
        Assert.False(m[0, 0]);
        Assert.True(m[m.CellX(200), m.CellY(150)]);
        var glass = Rgb("glass.tif", w, h, (_, _) => Glass());
        Assert.True(TissueDetector.Detect(glass, 0, w, h).Fraction < 0.01, "bare glass has no tissue");
        var full = Rgb("full.tif", w, h, Stain);
        Assert.Equal(1.0, TissueDetector.Detect(full, 0, w, h).Fraction);
        // a small hole inside the tissue is filled; a hole the size of the disc's half is not
        var holed = Rgb("holed.tif", w, h, (x, y) => x > 20 && x < 380 && y > 20 && y < 280 && !(Math.Abs(x - 100) < 3 && Math.Abs(y - 100) < 3) && !(x > 200 && y > 150) ? Stain(x, y) : Glass());
        var hm = TissueDetector.Detect(holed, 0, w, h);
        Assert.True(hm[hm.CellX(100), hm.CellY(100)], "a pinhole is filled");
        Assert.False(hm[hm.CellX(300), hm.CellY(220)], "a large gap stays glass");
    }

    [Fact]
    public void ATissueMaskFile_IsResampledToTheImage_AndOneOfOtherProportionsFailsNamingIt()
    {
        var data = new byte[100 * 50];
        for (int y = 0; y < 50; y++) for (int x = 0; x < 50; x++) data[y * 100 + x] = 255; // the left half
        var path = Path.Combine(_dir, "tissue.png");
        using (var im = Vips.Image.NewFromMemory(data, 100, 50, 1, Vips.Enums.BandFormat.Uchar)) im.Pngsave(path);
        var m = TissueDetector.FromFile(path, 1000, 500);
        Assert.Equal(0.5, m.Fraction, 2);
        Assert.True(m[m.CellX(100), m.CellY(250)]);
        Assert.False(m[m.CellX(900), m.CellY(250)]);
        var e = Assert.Throws<InputFileException>(() => TissueDetector.FromFile(path, 1000, 1000));
        Assert.Contains(path, e.Message);
        Assert.Contains("proportions", e.Message);
    }
}
