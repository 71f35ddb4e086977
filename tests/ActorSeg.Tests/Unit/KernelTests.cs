using ActorSeg.Core.Graph;
using ActorSeg.Core.Superpixels;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>The hand-tuned kernels against plain reference implementations of what they must compute.</summary>
public class KernelTests
{
    /// <summary>The texture planes (running integer sums) equal the textbook computation: every 5×5 window summed
    /// afresh, central differences, the image border clamped; grey and RGB, tiles inside, on and across borders.</summary>
    [Theory]
    [InlineData(1, 0, 0, 37, 29, 3)]
    [InlineData(1, 5, 7, 20, 11, 4)]
    [InlineData(3, 40, 30, 24, 26, 5)]   // the core reaches the image's right and bottom border
    [InlineData(3, 0, 12, 64, 9, 6)]
    [InlineData(1, 2, 3, 61, 50, 7)]     // several vectors and a tail per row
    [InlineData(1, 30, 20, 3, 2, 8)]     // narrower than one vector
    public void TexturePlanes_EqualTheTextbookComputation(int channels, int cx, int cy, int cw, int ch, int seed)
    {
        const int W = 64, H = 56;
        var rng = new Random(seed);
        var raw = new ushort[W * H * channels];
        for (int i = 0; i < raw.Length; i++) raw[i] = (ushort)(rng.Next(4) == 0 ? rng.Next(65536) : 30000 + rng.Next(200));
        var core = new PixelRect(cx, cy, Math.Min(cw, W - cx), Math.Min(ch, H - cy));
        var read = new PixelRect(0, 0, W, H);
        var stats = new ImageStatistics(Enumerable.Repeat(31000.0, channels).ToArray(), Enumerable.Repeat(900.0, channels).ToArray(),
            new int[channels], Enumerable.Repeat(65535, channels).ToArray(), W * H);
        var got = new ushort[core.W * core.H * TexturePlanes.Count];
        TexturePlanes.Compute(raw, channels, read, core, W, H, stats.Std.Sum(), got);

        double inv = TexturePlanes.Scale / (900.0 * channels);
        long V(int x, int y)
        {
            x = Math.Clamp(x, 0, W - 1); y = Math.Clamp(y, 0, H - 1);
            long v = 0;
            for (int c = 0; c < channels; c++) v += raw[(y * W + x) * channels + c];
            return v;
        }
        for (int y = 0; y < core.H; y++)
            for (int x = 0; x < core.W; x++)
            {
                int gx = core.X + x, gy = core.Y + y;
                long s = 0, s2 = 0;
                for (int j = -2; j <= 2; j++)
                    for (int i = -2; i <= 2; i++) { long v = V(gx + i, gy + j); s += v; s2 += v * v; }
                long dx = V(gx + 1, gy) - V(gx - 1, gy), dy = V(gx, gy + 1) - V(gx, gy - 1);
                double g = Math.Sqrt((double)(dx * dx + dy * dy)) * 0.5;
                double sd = Math.Sqrt(Math.Max(0, (double)(25 * s2 - s * s))) / 25;
                int o = (y * core.W + x) * TexturePlanes.Count;
                Assert.Equal((ushort)Math.Min(65535, Math.Round(g * inv)), got[o]);
                Assert.Equal((ushort)Math.Min(65535, Math.Round(sd * inv)), got[o + 1]);
            }
    }

    /// <summary>SLIC's core labels written in place at the front of its own label buffer (what a tile worker does, to
    /// save a core-sized buffer) equal the labels written to a separate array, for a core deep inside its read region;
    /// a buffer overlapping the labels anywhere but at their start is refused.</summary>
    [Fact]
    public void SlicCoreLabels_InPlaceAtTheFrontOfTheLabelBuffer_EqualThoseInASeparateArray()
    {
        const int W = 300, H = 260;
        var rng = new Random(9);
        var raw = new ushort[W * H];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) raw[y * W + x] = (ushort)(((x / 37 + y / 29) % 3) * 9000 + rng.Next(2000));
        var read = new PixelRect(20, 30, 250, 210); var core = new PixelRect(70, 80, 140, 110);
        var region = new ushort[read.W * read.H];
        for (int y = 0; y < read.H; y++) raw.AsSpan((read.Y + y) * W + read.X, read.W).CopyTo(region.AsSpan(y * read.W));
        var p = new SlicParameters { Spacing = 15 };
        var grid = SeedGrid.For(W, H, p);
        long[] hist = new long[65536];
        foreach (var v in raw) hist[v]++;
        var stats = ImageStatistics.FromHistograms([hist]);
        int rn = read.W * read.H, cn = core.W * core.H;
        var separate = new int[cn];
        SlicRegion.Run(region, 1, read, core, grid, stats, p, separate, new ActorSeg.Core.Pipeline.TileScratch());
        var scratch = new ActorSeg.Core.Pipeline.TileScratch();
        var inPlace = scratch.Seeds(rn, cn);
        SlicRegion.Run(region, 1, read, core, grid, stats, p, inPlace, scratch);
        Assert.Equal(separate, inPlace.ToArray());
        Assert.True(separate.Distinct().Count() > 20);
        bool refused = false;
        try { SlicRegion.Run(region, 1, read, core, grid, stats, p, scratch.Seeds(rn, cn + 1)[1..], scratch); }
        catch (ArgumentException) { refused = true; }
        Assert.True(refused, "core labels overlapping the label buffer at an offset must be refused");
    }

    /// <summary>A run's sum is the same fixed-order sum (sixteen lanes, then halves folded) at every length and offset,
    /// and within rounding of the exact sum.</summary>
    [Fact]
    public void RunSum_FollowsItsFixedOrder()
    {
        var rng = new Random(11);
        var plane = new float[300];
        for (int i = 0; i < plane.Length; i++) plane[i] = (float)(rng.NextDouble() * 8 - 4) * (rng.Next(3) == 0 ? 1e-3f : 1f);
        for (int start = 0; start < 40; start += 3)
            for (int len = 1; start + len <= plane.Length; len += 7)
            {
                var lane = new double[16];
                for (int i = 0; i < len; i++) lane[i % 16] += plane[start + i];
                for (int w = 8; w >= 1; w >>= 1)
                    for (int k = 0; k < w; k++) lane[k] += lane[k + w];
                Assert.Equal(lane[0], SlicRegion.RunSum(plane, start, len));
            }
        // at the very end of the array (no whole vector to load past the run)
        Assert.Equal(plane[^5..].Sum(v => (double)v), SlicRegion.RunSum(plane, plane.Length - 5, 5), 12);
    }

    /// <summary>A binary mask maps every non-zero sample to 1 and zero to 0, whole vectors and tails alike (16-bit
    /// samples whose low byte is zero included); an ignored value maps to "unlabelled".</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(32)]
    [InlineData(100)]
    public void MapMask_Binary_MarksEveryNonZeroSample(int n)
    {
        var rng = new Random(n);
        ushort[] picks = [0, 0, 1, 255, 256, 512, 65280, 65535];
        var raw = new ushort[n];
        for (int i = 0; i < n; i++) raw[i] = picks[rng.Next(picks.Length)];
        var classes = new byte[n];
        ActorSeg.Core.Pipeline.GraphJob.MapMask(raw, classes, ActorSeg.Core.Pipeline.MaskMode.Binary, null, "mask.tif");
        for (int i = 0; i < n; i++) Assert.Equal(raw[i] != 0 ? 1 : 0, classes[i]);
        ActorSeg.Core.Pipeline.GraphJob.MapMask(raw, classes, ActorSeg.Core.Pipeline.MaskMode.Binary, 255, "mask.tif");
        for (int i = 0; i < n; i++) Assert.Equal(raw[i] == 255 ? FragmentBuilder.Unlabelled : raw[i] != 0 ? 1 : 0, classes[i]);
    }
}

/// <summary>The stitch reads the next tile while it merges the current one: when the merge fails (a damaged tile),
/// the stitch fails and no read is left running behind it (into the job's clean-up or its retry).</summary>
public class StitchPrefetchTests
{
    /// <summary>A 300 × 260 blob image cut into 64 px tiles, every tile's result written.</summary>
    private static ActorSeg.Tests.Engine.EngineRun TilesDone()
    {
        var (img, mask) = ActorSeg.Tests.Engine.EngineHarness.Blobs(300, 260, seed: 5);
        var req = new ActorSeg.Core.Pipeline.GraphRequest { ImagePath = "blobs", TileSize = 64, Slic = new SlicParameters { Spacing = 12 } };
        return ActorSeg.Tests.Engine.EngineHarness.Run(img, mask, req);
    }

    private static StitchSettings Settings(ActorSeg.Core.Pipeline.GraphJobManifest job) =>
        new(job.Width, job.Height, job.Channels, job.Stats, job.MinSize, job.Grid.S, job.Request.K, true)
        {
            Norms = job.Norms, PlaneFeatureNames = job.PlaneFeatureNames, ContrastFeature = job.Texture,
        };

    [Fact]
    public void AFailingMerge_StopsTheStitch_AndLeavesNoReadRunning()
    {
        using var run = TilesDone(); // tiles written, and a stitch that succeeds
        var (job, settings) = (run.Job, Settings(run.Job));
        int valueReads = 0, running = 0;
        TileResult Load(int id, bool withValues)
        {
            if (!withValues) return TileResult.ReadFile(job.ResultPath(id), false);
            Interlocked.Increment(ref running);
            try
            {
                var r = TileResult.ReadFile(job.ResultPath(id), true);
                if (Interlocked.Increment(ref valueReads) == 1) r.Values = []; // damaged: its merge fails
                else Thread.Sleep(300); // a slow disk: this read is still running when the merge before it fails
                return r;
            }
            finally { Interlocked.Decrement(ref running); }
        }
        Assert.ThrowsAny<ArgumentException>(() => new Stitcher(job.Plan, settings, Load).Run());
        Assert.True(valueReads >= 2, "the next tile's read had started");
        Assert.Equal(0, Volatile.Read(ref running)); // and had ended when the stitch returned
    }

    /// <summary>The partial graphs are read on every core: with two damaged tiles, the stitch fails naming the first in
    /// order, whichever read failed first (the later one fails at once, the earlier one after a while).</summary>
    [Fact]
    public void DamagedTiles_FailTheStitch_NamingTheFirstInOrder()
    {
        using var run = TilesDone();
        var (job, settings) = (run.Job, Settings(run.Job));
        Assert.True(job.Plan.Count > 6);
        TileResult Load(int id, bool withValues)
        {
            if (id == 2) { Thread.Sleep(200); throw new InvalidDataException("tile 2: damaged"); }
            if (id == 5) throw new InvalidDataException("tile 5: damaged");
            return TileResult.ReadFile(job.ResultPath(id), withValues);
        }
        var e = Assert.Throws<InvalidDataException>(() => new Stitcher(job.Plan, settings, Load).Run());
        Assert.Equal("tile 2: damaged", e.Message);
    }
}

/// <summary>A UNet model file that is not one fails naming the file and the problem, whether only its spec or the whole
/// model is read.</summary>
public class UNetModelFileTests
{
    [Fact]
    public void ABadModelFile_FailsNamingTheFile()
    {
        var dir = Directory.CreateTempSubdirectory("actorseg-unet-file-").FullName;
        try
        {
            var missing = Path.Combine(dir, "none.model");
            Assert.Throws<FileNotFoundException>(() => ActorSeg.GpuTrainer.UNetRunner.ReadSpec(missing));
            var garbage = Path.Combine(dir, "garbage.model");
            File.WriteAllText(garbage, "this is not a model");
            var e = Assert.Throws<InvalidDataException>(() => ActorSeg.GpuTrainer.UNetRunner.ReadSpec(garbage));
            Assert.Contains(garbage, e.Message);
            var truncated = Path.Combine(dir, "truncated.model");
            File.WriteAllBytes(truncated, System.Text.Encoding.ASCII.GetBytes("ACTORSEG-UNET-MODEL\n").Concat(new byte[] { 40, 0, 0, 0, (byte)'{' }).ToArray());
            foreach (var read in new Action[] { () => ActorSeg.GpuTrainer.UNetRunner.ReadSpec(truncated),
                         () => ActorSeg.GpuTrainer.UNetRunner.Load(truncated, TorchSharp.torch.CPU) })
            {
                var t = Assert.Throws<InvalidDataException>(read);
                Assert.Contains(truncated, t.Message);
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
