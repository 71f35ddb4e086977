using System.Diagnostics;
using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Imaging;

public sealed class SyntheticMicroscopyTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = TestPaths.NewTempDir("synth");

    public SyntheticMicroscopyTests(ITestOutputHelper output)
    {
        _out = output;
    }

    public void Dispose() { try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } }

    [Theory]
    [InlineData(SyntheticKind.Nuclei, 16, 1)]
    [InlineData(SyntheticKind.Colonies, 8, 3)]
    [InlineData(SyntheticKind.Cells, 16, 1)]
    public void SameSpec_DifferentThreadCounts_IdenticalBytes(SyntheticKind kind, int bits, int channels)
    {
        var spec = new SyntheticSpec(1100, 900, kind, bits, channels, Seed: 7, TileSize: 128);
        string img1 = P("a.tif"), msk1 = P("a-mask.tif"), img2 = P("b.tif"), msk2 = P("b-mask.tif");
        var r1 = SyntheticMicroscopy.Generate(spec, img1, msk1, maxDegreeOfParallelism: 1);
        var r2 = SyntheticMicroscopy.Generate(spec, img2, msk2, maxDegreeOfParallelism: 4);
        Assert.Equal(File.ReadAllBytes(img1), File.ReadAllBytes(img2));
        Assert.Equal(File.ReadAllBytes(msk1), File.ReadAllBytes(msk2));
        Assert.Equal(r1.ForegroundPixels, r2.ForegroundPixels);
        Assert.Equal(r1.ObjectCount, r2.ObjectCount);

        // A different seed gives a different image.
        SyntheticMicroscopy.Generate(spec with { Seed = 8 }, P("c.tif"), null);
        Assert.NotEqual(File.ReadAllBytes(img1), File.ReadAllBytes(P("c.tif")));
    }

    [Theory]
    [InlineData(SyntheticKind.Nuclei, 16, 1, 1000, 700)]
    [InlineData(SyntheticKind.Nuclei, 8, 3, 600, 500)]
    [InlineData(SyntheticKind.Colonies, 16, 1, 2500, 2100)]
    [InlineData(SyntheticKind.Colonies, 8, 1, 256, 256)]
    [InlineData(SyntheticKind.Colonies, 16, 3, 700, 333)]
    public void Image_And_Mask_Agree_And_Objects_Are_Distinguishable(SyntheticKind kind, int bits, int channels, int width, int height)
    {
        var spec = new SyntheticSpec(width, height, kind, bits, channels, Seed: 3);
        string img = P("img.tif"), msk = P("mask.tif");
        var result = SyntheticMicroscopy.Generate(spec, img, msk);
        _out.WriteLine($"{kind} {width}x{height} {bits}-bit x{channels}: {result.ObjectCount} objects, foreground {result.ForegroundFraction:P1}");

        using var image = NetVips.Image.NewFromFile(img);
        using var mask = NetVips.Image.NewFromFile(msk);
        Assert.Equal(width, image.Width);
        Assert.Equal(height, image.Height);
        Assert.Equal(channels, image.Bands);
        Assert.Equal(width, mask.Width);
        Assert.Equal(height, mask.Height);
        Assert.Equal(1, mask.Bands);
        Assert.Equal(bits == 8 ? NetVips.Enums.BandFormat.Uchar : NetVips.Enums.BandFormat.Ushort, image.Format);
        Assert.Equal(NetVips.Enums.BandFormat.Uchar, mask.Format);

        byte[] m = mask.WriteToMemory<byte>();
        Assert.All(m, v => Assert.True(v <= 1));
        long fg = m.LongCount(v => v == 1);
        Assert.Equal(result.ForegroundPixels, fg);
        Assert.True(result.ObjectCount >= 1);
        Assert.InRange(result.ForegroundFraction, kind == SyntheticKind.Colonies && width < 1000 ? 0.05 : 0.15, 0.55);

        // Grey value per pixel (mean over channels).
        double[] grey = new double[(long)width * height];
        if (bits == 8)
        {
            byte[] px = image.WriteToMemory<byte>();
            for (int i = 0; i < grey.Length; i++)
            {
                double s = 0;
                for (int c = 0; c < channels; c++)
                {
                    s += px[(i * channels) + c];
                }

                grey[i] = s / channels;
            }
        }
        else
        {
            ushort[] px = image.WriteToMemory<ushort>();
            for (int i = 0; i < grey.Length; i++)
            {
                double s = 0;
                for (int c = 0; c < channels; c++)
                {
                    s += px[(i * channels) + c];
                }

                grey[i] = s / channels;
            }
        }

        if (kind == SyntheticKind.Nuclei)
        {
            double inside = Mean(grey, m, 1), outside = Mean(grey, m, 0);
            _out.WriteLine($"mean inside {inside:F1}, outside {outside:F1}");
            Assert.True(inside > 3 * outside, $"inside {inside} should be far brighter than outside {outside}");
        }
        else
        {
            // Local variance (3x3) well inside / well outside colonies (away from the halo), and means.
            (double vin, double vout, double min, double mout) = LocalStats(grey, m, width, height);
            _out.WriteLine($"local variance inside {vin:F1}, outside {vout:F1}; mean inside {min:F1}, outside {mout:F1}");
            Assert.True(vin > 4 * vout, $"texture variance inside {vin} should exceed outside {vout}");
            Assert.InRange(min / mout, 0.8, 1.25);
        }
    }

    [Fact]
    public void Cancellation_LeavesNoFiles()
    {
        using var cts = new CancellationTokenSource();
        var spec = new SyntheticSpec(4096, 4096, SyntheticKind.Nuclei, TileSize: 256);
        var progress = new SyncProgress(p =>
        {
            if (p > 0.05)
            {
                cts.Cancel();
            }
        });
        Assert.ThrowsAny<OperationCanceledException>(() => SyntheticMicroscopy.Generate(spec, P("x.tif"), P("x-mask.tif"), progress, cts.Token));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void Generate4096_BoundedMemory()
    {
        var spec = new SyntheticSpec(4096, 4096, SyntheticKind.Colonies, Seed: 11);
        GC.Collect();
        using var proc = Process.GetCurrentProcess();
        proc.Refresh();
        long rssBefore = proc.WorkingSet64;
        long managedBefore = GC.GetTotalMemory(forceFullCollection: true);
        long peakRss = rssBefore;
        var progress = new SyncProgress(_ =>
        {
            proc.Refresh();
            peakRss = Math.Max(peakRss, proc.WorkingSet64);
        });
        var r = SyntheticMicroscopy.Generate(spec, P("big.tif"), P("big-mask.tif"), progress);
        long managedAfter = GC.GetTotalMemory(forceFullCollection: false);
        _out.WriteLine(
            $"4096x4096 colonies: {r.Elapsed.TotalSeconds:F2} s, {r.MegapixelsPerSecond:F1} MP/s, {r.ObjectCount} colonies, fg {r.ForegroundFraction:P1}; " +
            $"RSS before {rssBefore / 1e6:F0} MB, peak {peakRss / 1e6:F0} MB (+{(peakRss - rssBefore) / 1e6:F0} MB); managed heap +{(managedAfter - managedBefore) / 1e6:F1} MB");
        Assert.True(new FileInfo(P("big.tif")).Length > 0);
        Assert.True(peakRss - rssBefore < 500_000_000, "memory growth must stay well below 500 MB");
    }

    [Theory]
    [InlineData(SyntheticKind.Colonies)]
    [InlineData(SyntheticKind.Nuclei)]
    public void Throughput8192(SyntheticKind kind)
    {
        var spec = new SyntheticSpec(8192, 8192, kind, Seed: 5);
        var r = SyntheticMicroscopy.Generate(spec, P("t.tif"), P("t-mask.tif"));
        _out.WriteLine(
            $"8192x8192 {kind} 16-bit + mask, {Environment.ProcessorCount} threads: {r.Elapsed.TotalSeconds:F2} s = {r.MegapixelsPerSecond:F1} MP/s; " +
            $"{r.ObjectCount} objects, fg {r.ForegroundFraction:P1}; image {new FileInfo(P("t.tif")).Length / 1e6:F0} MB, mask {new FileInfo(P("t-mask.tif")).Length / 1e6:F1} MB");
    }

    [Fact]
    public void InvalidSpec_Throws()
    {
        Assert.Throws<ArgumentException>(() => SyntheticMicroscopy.Generate(new SyntheticSpec(0, 10), P("e.tif"), null));
        Assert.Throws<ArgumentException>(() => SyntheticMicroscopy.Generate(new SyntheticSpec(10, 10, BitDepth: 12), P("e.tif"), null));
        Assert.Throws<ArgumentException>(() => SyntheticMicroscopy.Generate(new SyntheticSpec(10, 10, Channels: 2), P("e.tif"), null));
        Assert.Throws<ArgumentException>(() => SyntheticMicroscopy.Generate(new SyntheticSpec(10, 10, TileSize: 100), P("e.tif"), null));
        Assert.Empty(Directory.GetFiles(_dir));
    }

    private static double Mean(double[] grey, byte[] mask, byte label)
    {
        double s = 0;
        long n = 0;
        for (int i = 0; i < grey.Length; i++)
        {
            if (mask[i] == label)
            {
                s += grey[i];
                n++;
            }
        }

        return s / Math.Max(1, n);
    }

    /// <summary>Mean 3x3 local variance and mean intensity at pixels whose 9x9 neighbourhood is all-in or all-out.</summary>
    private static (double VarIn, double VarOut, double MeanIn, double MeanOut) LocalStats(double[] g, byte[] m, int w, int h)
    {
        double vin = 0, vout = 0, min = 0, mout = 0;
        long nin = 0, nout = 0;
        for (int y = 4; y < h - 4; y += 2)
        {
            for (int x = 4; x < w - 4; x += 2)
            {
                int sum = 0;
                for (int dy = -4; dy <= 4; dy++)
                {
                    for (int dx = -4; dx <= 4; dx++)
                    {
                        sum += m[((y + dy) * w) + x + dx];
                    }
                }

                if (sum != 0 && sum != 81)
                {
                    continue;
                }

                double s = 0, s2 = 0;
                for (int dy = -1; dy <= 1; dy++)
                {
                    for (int dx = -1; dx <= 1; dx++)
                    {
                        double v = g[((y + dy) * w) + x + dx];
                        s += v;
                        s2 += v * v;
                    }
                }

                double var = (s2 / 9) - ((s / 9) * (s / 9));
                if (sum == 81)
                {
                    vin += var;
                    min += g[(y * w) + x];
                    nin++;
                }
                else
                {
                    vout += var;
                    mout += g[(y * w) + x];
                    nout++;
                }
            }
        }

        Assert.True(nin > 0 && nout > 0, "need pixels well inside and well outside objects");
        return (vin / nin, vout / nout, min / nin, mout / nout);
    }

    /// <summary>
    /// The cells kind: an exact five-class mask whose proportions are what the kind promises (a thin membrane line of a
    /// few percent, a rare mitotic class under one percent), the same whatever the tile size, and classes that differ in
    /// the image the way the kind says.
    /// </summary>
    [Fact]
    public void Cells_FiveClasses_ThinMembrane_RareMitotic_ExactMask()
    {
        const int W = 2000, H = 1600;
        var spec = new SyntheticSpec(W, H, SyntheticKind.Cells, 16, 1, Seed: 5);
        var r = SyntheticMicroscopy.Generate(spec, P("cells.tif"), P("cells-mask.tif"));
        using var maskImg = NetVips.Image.NewFromFile(P("cells-mask.tif"));
        var m = maskImg.WriteToMemory<byte>();
        var counts = new long[256];
        foreach (var v in m) counts[v]++;
        Assert.Equal(0, counts.Skip(5).Sum()); // class ids 0..4 only
        Assert.Equal(counts.Take(5).ToArray(), r.ClassPixels);
        Assert.Equal(m.LongLength - counts[0], r.ForegroundPixels);
        double F(int c) => (double)counts[c] / m.Length;
        _out.WriteLine(string.Join(", ", Enumerable.Range(0, 5).Select(c => $"{c}: {F(c):P2}")));
        Assert.InRange(F(0), 0.5, 0.85);
        Assert.InRange(F(1), 0.1, 0.35);
        Assert.InRange(F(2), 0.02, 0.10);
        Assert.InRange(F(3), 0.015, 0.04);   // the thin class: a few percent of the pixels
        Assert.InRange(F(4), 0.0005, 0.01);  // the rare class: present, under one percent
        Assert.True(F(4) < F(3) && F(3) < F(2), "mitotic rarer than membrane, membrane rarer than nucleus");

        // the membrane is a line MembraneWidth px wide along the outline: no membrane pixel has a 5×5 block of membrane
        // around it, and every one has background within MembraneWidth + 1 px (Chebyshev)
        int thick = 0, farFromOutside = 0, nucleusNearOutside = 0;
        int reach = (int)SyntheticMicroscopy.MembraneWidth + 1;
        for (int y = 5; y < H - 5; y++)
            for (int x = 5; x < W - 5; x++)
            {
                byte c = m[y * W + x];
                if (c == 3)
                {
                    bool all = true;
                    for (int dy = -2; dy <= 2 && all; dy++) for (int dx = -2; dx <= 2 && all; dx++) all = m[(y + dy) * W + x + dx] == 3;
                    if (all) thick++;
                    bool bg = false;
                    for (int dy = -reach; dy <= reach && !bg; dy++) for (int dx = -reach; dx <= reach && !bg; dx++) bg = m[(y + dy) * W + x + dx] == 0;
                    if (!bg) farFromOutside++;
                }
                else if (c is 2 or 4)
                {
                    // nuclei lie well inside their cell, clear of the membrane
                    for (int dy = -3; dy <= 3; dy++) for (int dx = -3; dx <= 3; dx++) if (m[(y + dy) * W + x + dx] is 0 or 3) { nucleusNearOutside++; dy = dx = 4; }
                }
            }
        Assert.Equal(0, thick);
        Assert.True(farFromOutside <= counts[3] / 1000, $"{farFromOutside} membrane pixels are not at a cell's outline");
        Assert.Equal(0, nucleusNearOutside);

        // the classes differ in the image: background darkest, then cytoplasm, nucleus; mitotic nuclei brightest
        using var img = NetVips.Image.NewFromFile(P("cells.tif"));
        var px = img.WriteToMemory<ushort>();
        var mean = new double[5];
        for (int i = 0; i < px.Length; i++) mean[m[i]] += px[i];
        for (int c = 0; c < 5; c++) mean[c] /= counts[c];
        _out.WriteLine("means " + string.Join(", ", mean.Select(v => v.ToString("F0"))));
        Assert.True(mean[0] < mean[1] && mean[1] < mean[2] && mean[2] < mean[4] && mean[1] < mean[3], string.Join(", ", mean));

        // the mask does not depend on the tiling
        SyntheticMicroscopy.Generate(spec with { TileSize = 512 }, P("cells2.tif"), P("cells2-mask.tif"));
        using var mask2 = NetVips.Image.NewFromFile(P("cells2-mask.tif"));
        Assert.Equal(m, mask2.WriteToMemory<byte>());
    }

    /// <summary>
    /// Cells with fibres: the cells' mask wherever there is no fibre, and a sixth class of straight lines
    /// <see cref="SyntheticMicroscopy.FibreWidth"/> px wide that run through background and cells alike, brighter than
    /// the background they cross, the same whatever the tile size.
    /// </summary>
    [Fact]
    public void Fibres_AThinSixthClass_ThroughBackgroundAndCells_ExactMask()
    {
        const int W = 1200, H = 1000;
        var spec = new SyntheticSpec(W, H, SyntheticKind.Cells, 16, 1, Seed: 5, Fibres: true);
        var r = SyntheticMicroscopy.Generate(spec, P("f.tif"), P("f-mask.tif"));
        SyntheticMicroscopy.Generate(spec with { Fibres = false }, P("c.tif"), P("c-mask.tif"));
        using var fm = NetVips.Image.NewFromFile(P("f-mask.tif"));
        using var cm = NetVips.Image.NewFromFile(P("c-mask.tif"));
        var m = fm.WriteToMemory<byte>(); var cells = cm.WriteToMemory<byte>();
        var counts = new long[256];
        foreach (var v in m) counts[v]++;
        Assert.Equal(0, counts.Skip(6).Sum());
        Assert.Equal(counts.Take(6).ToArray(), r.ClassPixels);
        double fibre = (double)counts[5] / m.Length;
        _out.WriteLine($"fibre {fibre:P2}");
        Assert.InRange(fibre, 0.008, 0.04);

        // elsewhere the cells' own mask; the fibres cross background and cytoplasm both
        var under = new long[5];
        int thick = 0;
        for (int i = 0; i < m.Length; i++)
        {
            if (m[i] != 5) { Assert.Equal(cells[i], m[i]); continue; }
            under[cells[i]]++;
            int x = i % W, y = i / W;
            if (x < 2 || y < 2 || x >= W - 2 || y >= H - 2) continue;
            bool all = true;
            for (int dy = -2; dy <= 2 && all; dy++) for (int dx = -2; dx <= 2 && all; dx++) all = m[i + (dy * W) + dx] == 5;
            if (all) thick++;
        }
        _out.WriteLine("fibre pixels over " + string.Join(", ", under.Select((n, c) => $"{c}: {n}")));
        Assert.True(under[0] > counts[5] / 4 && under[1] > counts[5] / 20, "fibres run through background and cells");
        Assert.True(thick <= counts[5] / 200, $"{thick} fibre pixels have a 5×5 block of fibre around them: not a thin line");

        // brighter than the background they cross
        using var img = NetVips.Image.NewFromFile(P("f.tif"));
        var px = img.WriteToMemory<ushort>();
        double fibreMean = 0, bgMean = 0;
        for (int i = 0; i < px.Length; i++) { if (m[i] == 5 && cells[i] == 0) fibreMean += px[i]; else if (m[i] == 0) bgMean += px[i]; }
        fibreMean /= under[0]; bgMean /= counts[0];
        Assert.True(fibreMean > 2 * bgMean, $"fibre over background {fibreMean:F0}, background {bgMean:F0}");

        // the same whatever the tiling
        SyntheticMicroscopy.Generate(spec with { TileSize = 512 }, P("f2.tif"), P("f2-mask.tif"));
        using var fm2 = NetVips.Image.NewFromFile(P("f2-mask.tif"));
        Assert.Equal(m, fm2.WriteToMemory<byte>());
        Assert.Throws<ArgumentException>(() => SyntheticMicroscopy.Generate(spec with { Kind = SyntheticKind.Nuclei }, P("n.tif"), null));
    }

    private string P(string name) => Path.Combine(_dir, name);

    /// <summary>IProgress that calls back synchronously (Progress&lt;T&gt; posts to the thread pool).</summary>
    private sealed class SyncProgress(Action<double> onReport) : IProgress<double>
    {
        public void Report(double value) => onReport(value);
    }
}
