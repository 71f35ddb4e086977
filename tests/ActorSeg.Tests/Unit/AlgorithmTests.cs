using ActorSeg.Core.Graph;
using ActorSeg.Core.Superpixels;
using Xunit;

namespace ActorSeg.Tests.Unit;

public class AlgorithmTests
{
    [Theory]
    [InlineData(1, 10, 255)]      // short: insertion sort
    [InlineData(2, 5000, 255)]    // 8-bit: one counting pass
    [InlineData(3, 5000, 65535)]  // 16-bit: two passes
    [InlineData(4, 3000, 700)]    // low and high bytes both vary a little
    [InlineData(5, 3000, 0)]      // all equal
    public void ValueSort_SortsExactlyLikeArraySort(int seed, int n, int max)
    {
        var rnd = new Random(seed);
        var a = Enumerable.Range(0, n).Select(_ => (ushort)rnd.Next(0, max + 1)).ToArray();
        if (seed == 4) for (int i = 0; i < n; i++) a[i] = (ushort)(0x1200 + rnd.Next(0, 3) * 256 + rnd.Next(0, 3));
        var expect = (ushort[])a.Clone();
        Array.Sort(expect);
        ValueSort.Sort(a, new ushort[n]);
        Assert.Equal(expect, a);
    }

    [Fact]
    public void NodeFeatures_MatchNumpyLinearQuantiles()
    {
        // numpy: v = [1, 2, 4, 7, 11]; mean 5, std (ddof 0) sqrt(13.2); quantile(0.1) = 1.4, (0.5) = 4, (0.9) = 9.4
        ushort[] v = [1, 2, 4, 7, 11];
        var f = new float[11];
        NodeFeatures.Compute(v, 0, 1, f);
        Assert.Equal(5f, f[0], 5);
        Assert.Equal((float)Math.Sqrt(13.2), f[1], 5);
        Assert.Equal(1.4f, f[2], 5);
        Assert.Equal(4f, f[6], 5);
        Assert.Equal(9.4f, f[10], 5);
        // z-scoring with mean 3, std 2
        NodeFeatures.Compute(v, 3, 0.5, f);
        Assert.Equal(1f, f[0], 5);
        Assert.Equal((float)(Math.Sqrt(13.2) / 2), f[1], 5);
    }

    [Theory]
    [InlineData(1, 5, 65535)]      // short: sorted
    [InlineData(2, 49, 65535)]     // just above the short limit
    [InlineData(3, 5000, 255)]     // one high byte
    [InlineData(4, 3000, 700)]     // a few high bytes
    [InlineData(5, 3000, 0)]       // all equal
    [InlineData(6, 20000, 65535)]  // a range wide for the count: sorted
    [InlineData(7, 40000, 65535)]  // the whole 16-bit range in one histogram
    public void NodeFeatures_UnsortedEqualSortedExactly(int seed, int n, int max)
    {
        var rnd = new Random(seed);
        var a = Enumerable.Range(0, n).Select(_ => (ushort)rnd.Next(0, max + 1)).ToArray();
        var sorted = (ushort[])a.Clone();
        Array.Sort(sorted);
        var expect = new float[11]; var got = new float[11];
        NodeFeatures.Compute(sorted, 321.5, 0.01, expect);
        var counts = new int[NodeFeatures.CountsLength];
        NodeFeatures.ComputeUnsorted(a, 321.5, 0.01, got, counts, new ushort[n]);
        Assert.All(counts, k => Assert.Equal(0, k));
        Assert.Equal(expect, got);
    }

    [Fact]
    public void NodeFeatures_DependOnlyOnTheMultiset()
    {
        var rnd = new Random(3);
        var a = Enumerable.Range(0, 1000).Select(_ => (ushort)rnd.Next(65536)).ToArray();
        var parts = new[] { a[..300], a[300..301], a[301..] };
        var merged = parts.SelectMany(p => p).ToArray();
        Array.Sort(a); Array.Sort(merged);
        var f1 = new float[11]; var f2 = new float[11];
        NodeFeatures.Compute(a, 1234.5, 0.001, f1);
        NodeFeatures.Compute(merged, 1234.5, 0.001, f2);
        Assert.Equal(f1, f2);
    }

    [Theory]
    [InlineData(1, 50, 3, 1)]
    [InlineData(2, 500, 10, 1)]
    [InlineData(3, 2000, 10, 1)]
    [InlineData(4, 7, 10, 1)]
    [InlineData(5, 3000, 10, -1)] // whole tens: many coincident points and equal distances
    public void Knn_EqualsBruteForce(int seed, int n, int k, int digits)
    {
        var rnd = new Random(seed);
        double Round(double v) => digits >= 0 ? Math.Round(v, digits) : Math.Round(v / 10) * 10; // rounding makes ties
        var xs = Enumerable.Range(0, n).Select(_ => Round(rnd.NextDouble() * 300)).ToArray();
        var ys = Enumerable.Range(0, n).Select(_ => Round(rnd.NextDouble() * 100)).ToArray();
        var (nb, dd, counts) = Knn.Query(xs, ys, k);
        int kk = Math.Min(k, n - 1);
        for (int i = 0; i < n; i++)
        {
            var expect = Enumerable.Range(0, n).Where(j => j != i)
                .Select(j => (j, d: Math.Sqrt((xs[j] - xs[i]) * (xs[j] - xs[i]) + (ys[j] - ys[i]) * (ys[j] - ys[i]))))
                .OrderBy(t => t.d).ThenBy(t => t.j).Take(kk).ToArray();
            Assert.Equal(kk, counts[i]);
            Assert.Equal(expect.Select(e => e.j), nb.AsSpan(i * kk, kk).ToArray());
            Assert.Equal(expect.Select(e => e.d), dd.AsSpan(i * kk, kk).ToArray());
        }
    }

    [Fact]
    public void PublishedEdges_AreEachNodesNeighboursItselfAndReverseNeighbours_SortedAndUnique()
    {
        // the textbook construction against the parallel one, on points with many ties
        var rnd = new Random(6);
        int n = 1500;
        var xs = Enumerable.Range(0, n).Select(_ => Math.Round(rnd.NextDouble() * 60)).ToArray();
        var ys = Enumerable.Range(0, n).Select(_ => Math.Round(rnd.NextDouble() * 60)).ToArray();
        var (nb, dd, counts) = Knn.Query(xs, ys, 10);
        var expect = new List<(int S, int D, float Dist)>();
        for (int i = 0; i < n; i++)
        {
            var mine = new Dictionary<int, float> { [i] = 0f };
            for (int t = 0; t < counts[i]; t++) mine.TryAdd(nb[i * 10 + t], (float)dd[i * 10 + t]);
            for (int j = 0; j < n; j++)
                for (int t = 0; t < counts[j]; t++) if (nb[j * 10 + t] == i) mine.TryAdd(j, (float)dd[j * 10 + t]);
            expect.AddRange(mine.OrderBy(p => p.Key).Select(p => (i, p.Key, p.Value)));
        }
        var (src, dst, dist) = Knn.PublishedEdges(xs, ys, 10);
        Assert.Equal(expect.Select(e => e.S), src);
        Assert.Equal(expect.Select(e => e.D), dst);
        Assert.Equal(expect.Select(e => e.Dist), dist);
    }

    [Fact]
    public void PublishedEdges_AreSymmetricWithSelfLoopsAndSorted()
    {
        var rnd = new Random(5);
        var xs = Enumerable.Range(0, 200).Select(_ => rnd.NextDouble() * 100).ToArray();
        var ys = Enumerable.Range(0, 200).Select(_ => rnd.NextDouble() * 100).ToArray();
        var (src, dst, dist) = Knn.PublishedEdges(xs, ys, 10);
        var set = new HashSet<(int, int)>(src.Zip(dst));
        Assert.Equal(src.Length, set.Count); // unique
        foreach (var (s, d) in set) Assert.Contains((d, s), set);
        for (int i = 0; i < 200; i++) Assert.Contains((i, i), set);
        for (int e = 1; e < src.Length; e++) Assert.True((src[e - 1], dst[e - 1]).CompareTo((src[e], dst[e])) < 0);
        for (int e = 0; e < src.Length; e++) if (src[e] == dst[e]) Assert.Equal(0f, dist[e]);
        // every node has at least k+1 edges into it (its k nearest and itself)
        Assert.All(Enumerable.Range(0, 200), i => Assert.True(dst.Count(d => d == i) >= 11));
    }

    [Fact]
    public void Gaussian_MatchesDirectConvolutionWithReflectBorders()
    {
        int w = 37, h = 23;
        var rnd = new Random(1);
        var src = Enumerable.Range(0, w * h).Select(_ => (float)rnd.NextDouble()).ToArray();
        var k = Gaussian.Kernel(1.0);
        Assert.Equal(9, k.Length);
        Assert.Equal(1.0, k.Sum(), 5);
        var dst = new float[w * h];
        Gaussian.Blur(src, dst, w, h, k);
        int Reflect(int i, int n) { while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1; return i; }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double s = 0;
                for (int j = 0; j < 9; j++) for (int i = 0; i < 9; i++) s += k[j] * k[i] * src[Reflect(y + j - 4, h) * w + Reflect(x + i - 4, w)];
                Assert.Equal(s, dst[y * w + x], 4);
            }
    }

    [Theory]
    [InlineData(1, 37, 23, 1.0)]
    [InlineData(1, 70, 41, 4.0)]
    [InlineData(3, 40, 17, 4.0)]   // radius 16 of 17 rows: reflected once at both ends, the ring just wide enough
    [InlineData(1, 33, 16, 4.0)]   // radius 16 = rows
    [InlineData(1, 9, 15, 4.0)]    // radius past the rows: the whole-plane fallback
    [InlineData(3, 5, 1, 1.0)]
    [InlineData(1, 129, 2, 0.5)]
    [InlineData(1, 20, 20, 0.01)]  // radius 0: no smoothing
    public void Gaussian_OfTheZScoredRaw_IsBitForBitTheBlurOfTheZScoredPlane(int channels, int w, int h, double sigma)
    {
        var rnd = new Random(w * 7 + h * channels);
        var raw = Enumerable.Range(0, w * h * channels).Select(_ => (ushort)rnd.Next(65536)).ToArray();
        var k = Gaussian.Kernel(sigma);
        const float mu = 31234.5f, scale = 0.000731f;
        for (int c = 0; c < channels; c++)
        {
            var z = new float[w * h];
            for (int i = 0; i < w * h; i++) z[i] = (raw[i * channels + c] - mu) * scale;
            var want = new float[w * h];
            Gaussian.Blur(z, want, w, h, k);
            var got = new float[w * h];
            Gaussian.BlurZScored(raw, channels, c, mu, scale, got, w, h, k);
            for (int i = 0; i < w * h; i++) Assert.Equal(BitConverter.SingleToInt32Bits(want[i]), BitConverter.SingleToInt32Bits(got[i]));
        }
    }

    [Theory]
    [InlineData(37, 23, 1.0)]
    [InlineData(70, 41, 4.0)]
    [InlineData(5, 3, 10.25)]   // a kernel far wider than the image: reflected more than once
    [InlineData(1, 9, 2.0)]
    [InlineData(129, 2, 0.5)]
    public void Gaussian_IsBitForBitTheSeparableFloatSum_VerticalThenHorizontal(int w, int h, double sigma)
    {
        // every output is k[0]·s[0] + k[1]·s[1] + … in float, in that order, whichever path (vector, tail, border) computes it
        var rnd = new Random(w * 31 + h);
        var src = Enumerable.Range(0, w * h).Select(_ => (float)(rnd.NextDouble() * 8 - 4)).ToArray();
        var k = Gaussian.Kernel(sigma);
        int r = k.Length / 2;
        var dst = new float[w * h];
        Gaussian.Blur(src, dst, w, h, k);
        int Reflect(int i, int n) { if (n == 1) return 0; while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1; return i; }
        var v = new float[w * h];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                float acc = k[0] * src[Reflect(y - r, h) * w + x];
                for (int j = 1; j < k.Length; j++) acc += k[j] * src[Reflect(y + j - r, h) * w + x];
                v[y * w + x] = acc;
            }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                float acc = k[0] * v[y * w + Reflect(x - r, w)];
                for (int j = 1; j < k.Length; j++) acc += k[j] * v[y * w + Reflect(x + j - r, w)];
                Assert.Equal(BitConverter.SingleToInt32Bits(acc), BitConverter.SingleToInt32Bits(dst[y * w + x]));
            }
    }

    [Fact]
    public void SeedGrid_CoversTheImageAndMatchesTheTargetCount()
    {
        var g = SeedGrid.For(8192, 8192, new SlicParameters());
        Assert.InRange(g.Count, 39000, 41000);
        var g2 = SeedGrid.For(1000, 500, new SlicParameters { Segments = 200 });
        Assert.InRange(g2.Count, 180, 220);
        Assert.Equal(g2.Nx - 1, g2.CellX(999));
        Assert.Equal(0, g2.CellX(0));
    }

    [Fact]
    public void TilePlan_EveryPixelBelongsToExactlyOneCore()
    {
        var plan = TilePlan.Create(1001, 517, 128, 40);
        var owner = new int[1001 * 517];
        foreach (var t in plan.Tiles())
        {
            Assert.True(t.Read.X <= t.Core.X && t.Read.Right >= t.Core.Right && t.Read.Y <= t.Core.Y && t.Read.Bottom >= t.Core.Bottom);
            for (int y = t.Core.Y; y < t.Core.Bottom; y++) for (int x = t.Core.X; x < t.Core.Right; x++) owner[y * 1001 + x]++;
        }
        Assert.All(owner, o => Assert.Equal(1, o));
    }

    [Fact]
    public void TileResult_RoundTripsAndDetectsTruncation()
    {
        var (img, mask) = Engine.EngineHarness.Blobs(90, 70, 2);
        using var run = Engine.EngineHarness.Run(img, mask, new ActorSeg.Core.Pipeline.GraphRequest { ImagePath = "mem", MaskPath = "mem", Slic = new SlicParameters { Spacing = 8 }, TileSize = 40, Halo = 100 });
        var path = run.Job.ResultPath(0);
        var t = TileResult.ReadFile(path);
        var ms = new MemoryStream();
        t.Write(ms);
        Assert.Equal(File.ReadAllBytes(path), ms.ToArray());
        var cut = ms.ToArray()[..(int)(ms.Length / 2)];
        var ex = Assert.Throws<InvalidDataException>(() => TileResult.Read(new MemoryStream(cut), "tile-x.apg"));
        Assert.Contains("tile-x.apg", ex.Message);
    }
}
