using ActorSeg.Core.Imaging;
using ActorSeg.Core.Superpixels;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.IO;

/// <summary>The statistics pass read in parallel (blocks, one source and one integer histogram per thread, merged by
/// addition) gives exactly the histograms of one sequential pass, and so the same mean and standard deviation bits.</summary>
public class ParallelStatisticsTests(ITestOutputHelper output) : TempDirTest("stats")
{
    private static void AssertSameBits(long[][] want, long[][] got, string what)
    {
        Assert.Equal(want.Length, got.Length);
        for (int c = 0; c < want.Length; c++) Assert.True(want[c].AsSpan().SequenceEqual(got[c]), $"{what}: channel {c} histogram differs");
        var a = ImageStatistics.FromHistograms(want);
        var b = ImageStatistics.FromHistograms(got);
        Assert.Equal(a.Mean.Select(BitConverter.DoubleToInt64Bits), b.Mean.Select(BitConverter.DoubleToInt64Bits));
        Assert.Equal(a.Std.Select(BitConverter.DoubleToInt64Bits), b.Std.Select(BitConverter.DoubleToInt64Bits));
        Assert.Equal(a.Min, b.Min);
        Assert.Equal(a.Max, b.Max);
    }

    [Theory]
    [InlineData(8, 1)]
    [InlineData(8, 3)]
    [InlineData(16, 1)]
    [InlineData(16, 3)]
    public void ParallelHistograms_EqualTheSequentialPass_BitForBit(int bits, int channels)
    {
        // 1200 rows: three bands of 512 rows, the last one partial; values over the whole range of the depth
        int w = 700, h = 1200;
        var rnd = new Random(bits * 10 + channels);
        int n = w * h * channels;
        byte[] bytes;
        if (bits == 8) { bytes = new byte[n]; rnd.NextBytes(bytes); }
        else
        {
            var v = new ushort[n];
            for (int i = 0; i < n; i++) v[i] = (ushort)(i % 5 == 0 ? rnd.Next(65536) : 20000 + rnd.Next(3000)); // skewed: the variance matters
            bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()).ToArray();
        }
        var path = Path.Combine(_dir, $"img-{bits}-{channels}.tif");
        using (var img = Vips.Image.NewFromMemory(bytes, w, h, channels, bits == 8 ? Vips.Enums.BandFormat.Uchar : Vips.Enums.BandFormat.Ushort))
            img.Tiffsave(path, tile: true, tileWidth: 256, tileHeight: 256, compression: Vips.Enums.ForeignTiffCompression.Deflate);
        using var src = VipsImageSource.Open(path);
        var vips = src.Histograms();                       // libvips' own pass (what the statistics were before)
        var sequential = ImageSources.Histograms(src);     // one thread, block by block
        AssertSameBits(vips, sequential, "sequential blocks vs libvips");
        foreach (int threads in new[] { 2, 3, 8 })
            AssertSameBits(sequential, ImageSources.Histograms(src, path, 0, threads), $"{threads} threads");
    }

    [Fact]
    public void TheStatisticsPass_ReportsItsProgress_AndStopsWhenCancelled()
    {
        int w = 600, h = 2100; // five bands of 512 rows
        var path = Path.Combine(_dir, "progress.tif");
        using (var img = (Vips.Image.Black(w, h) + 7).Cast(Vips.Enums.BandFormat.Uchar))
            img.Tiffsave(path, tile: true, tileWidth: 256, tileHeight: 256);
        using var src = VipsImageSource.Open(path);
        var said = new List<string>();
        var progress = new SyncProgress(m => { lock (said) said.Add(m); });
        var hist = ImageSources.Histograms(src, () => ImageSources.Open(path), 2, progress, default, TimeSpan.Zero);
        Assert.Equal((long)w * h, hist[0][7]);
        lock (said)
        {
            output.WriteLine(string.Join("\n", said));
            Assert.NotEmpty(said);
            Assert.True(said.Count <= 4, $"{said.Count} reports for 5 blocks (none after the last)");
            Assert.All(said, m => Assert.Matches(@"^statistics pass: \d+% of 1 megapixels read \(\d+ s\)$", m));
        }
        // a cancelled pass stops before reading on, whatever the threads
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => ImageSources.Histograms(src, () => ImageSources.Open(path), 2, null, cts.Token));
        Assert.ThrowsAny<OperationCanceledException>(() => ImageSources.Histograms(src, null, 1, null, cts.Token));
    }

    /// <summary>Reports at once on the reporting thread (Progress&lt;T&gt; posts them to the thread pool).</summary>
    private sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }

    [Fact]
    public void ParallelHistograms_OfAWholeSlide_EqualTheSequentialPass()
    {
        if (!OpenSlideSource.Available) { output.WriteLine("SKIPPED: libopenslide0 is not installed"); return; }
        var rgb = Path.Combine(_dir, "rgb.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(900, 1100, SyntheticKind.Nuclei, 8, 3, 2), rgb, Path.Combine(_dir, "m.tif"));
        var svs = Path.Combine(_dir, "rgb.svs");
        SlideWriter.WriteSvs(rgb, svs);
        using var slide = ImageSources.Open(svs);
        Assert.IsType<OpenSlideSource>(slide);
        var sequential = ImageSources.Histograms(slide);
        Assert.Equal(900L * 1100, sequential[0].Sum());
        AssertSameBits(sequential, ImageSources.Histograms(slide, svs, 0, 3), "3 OpenSlide handles");
    }

    [Fact]
    public void Blocks_CoverTheImageOnce_AndSplitVeryWideImagesIntoColumns()
    {
        foreach (var (w, h) in new[] { (1, 1), (700, 1200), (8192, 8192), (20000, 1030) })
        {
            var blocks = ImageSources.HistogramBlocks(w, h, 3);
            Assert.Equal((long)w * h, blocks.Sum(b => (long)b.W * b.H));
            Assert.All(blocks, b => Assert.True(b.X >= 0 && b.Y >= 0 && b.X + b.W <= w && b.Y + b.H <= h && b.Y % 512 == 0 && b.X % 512 == 0));
            Assert.All(blocks, b => Assert.True((long)b.W * b.H <= 1 << 22));
            Assert.Equal(blocks.Count, blocks.Distinct().Count());
        }
        Assert.Equal(16, ImageSources.HistogramBlocks(8192, 8192, 1).Count); // whole rows of an 8192-wide image
        Assert.True(ImageSources.HistogramBlocks(20000, 512, 1).Count > 1);
    }

    private string WriteImage(string name, int w, int h, int seed)
    {
        var bytes = new byte[w * h];
        new Random(seed).NextBytes(bytes);
        var path = Path.Combine(_dir, name);
        using var img = Vips.Image.NewFromMemory(bytes, w, h, 1, Vips.Enums.BandFormat.Uchar);
        img.Tiffsave(path, tile: true, tileWidth: 256, tileHeight: 256, compression: Vips.Enums.ForeignTiffCompression.Deflate);
        return path;
    }

    [Fact]
    public void APrefetchedPass_IsTheJobsOwnPass_TakenOnce()
    {
        var path = WriteImage("pre.tif", 600, 700, 1);
        using var src = VipsImageSource.Open(path);
        HistogramPrefetch.Start(path, 0);
        var got = HistogramPrefetch.Take(path, 0, src);
        Assert.NotNull(got);
        AssertSameBits(ImageSources.Histograms(src), got!, "prefetched vs the job's pass");
        Assert.Null(HistogramPrefetch.Take(path, 0, src)); // taken once: a second job reads the file itself
        Assert.Null(HistogramPrefetch.Take(WriteImage("other.tif", 600, 700, 2), 0, src)); // never started for that file
    }

    [Fact]
    public void APrefetchedPass_OfAFileRewrittenSince_IsDropped()
    {
        var path = WriteImage("rewritten.tif", 600, 700, 3);
        HistogramPrefetch.Start(path, 0);
        Thread.Sleep(20);
        File.Delete(path);
        WriteImage("rewritten.tif", 600, 700, 4);                 // same size and layout, other pixels
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddSeconds(5));
        using var src = VipsImageSource.Open(path);
        Assert.Null(HistogramPrefetch.Take(path, 0, src));
    }

    [Fact]
    public void APrefetchedPass_ThatFailed_IsDropped_AndTheJobReportsTheFile()
    {
        var path = WriteImage("broken.tif", 600, 700, 5);
        var good = File.ReadAllBytes(path);
        File.WriteAllBytes(path, good.AsSpan(0, good.Length / 3).ToArray()); // truncated: its tiles cannot be read
        HistogramPrefetch.Start(path, 0);
        using (var other = VipsImageSource.Open(WriteImage("fine.tif", 600, 700, 7)))
            Assert.Null(HistogramPrefetch.Take(path, 0, other)); // the failed pass hands nothing over
        var e = Assert.ThrowsAny<Exception>(() =>
        {
            using var src = VipsImageSource.Open(path);
            ImageSources.Histograms(src, path, 0);
        });
        Assert.Contains("broken.tif", e.Message);
    }

    [Fact]
    public void PrefetchedHistograms_ThatDoNotDescribeTheImage_AreRefused()
    {
        var path = WriteImage("shape.tif", 600, 700, 6);
        using var src = VipsImageSource.Open(path);
        var h = ImageSources.Histograms(src);
        Assert.True(HistogramPrefetch.Describes(h, src));
        var missing = new[] { (long[])h[0].Clone() }; missing[0][7]--;
        Assert.False(HistogramPrefetch.Describes(missing, src));              // a pixel short
        Assert.False(HistogramPrefetch.Describes([h[0], h[0]], src));          // another channel count
        Assert.False(HistogramPrefetch.Describes([h[0][..128]], src));         // fewer bins than the depth has
    }
}
