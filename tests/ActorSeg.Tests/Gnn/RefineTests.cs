using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using ActorSeg.Core.Refine;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Gnn;

/// <summary>The boundary refinement's algorithms: features that do not depend on the block, the classifier, the flags and
/// the checks on what a model file or the trainer hands over.</summary>
public class RefineTests(ITestOutputHelper output) : TempDirTest("refine")
{
    private static PixelRefinerSpec RandomSpec(int channels, int classes, int seed, int hidden = 8, double threshold = 0.9)
    {
        var r = new Random(seed);
        float[] R(int n, double scale = 1) => Enumerable.Range(0, n).Select(_ => (float)((r.NextDouble() * 2 - 1) * scale)).ToArray();
        int f = PixelRefinerSpec.FeatureCount(channels, 3, classes);
        return new PixelRefinerSpec
        {
            Channels = channels, Classes = classes, Hidden = hidden, Sigmas = [1, 2, 4], ContextSigma = 3, Threshold = threshold,
            FeatureMean = R(f, 0.1), FeatureStd = R(f).Select(v => 0.5f + Math.Abs(v)).ToArray(),
            W1 = R(f * hidden), B1 = R(hidden, 0.1), W2 = R(hidden * hidden), B2 = R(hidden, 0.1), W3 = R(hidden * classes), B3 = R(classes, 0.1),
        };
    }

    /// <summary>An image with structure (gradients, spots) and a node map of irregular blocks, with probabilities.</summary>
    private static (ushort[] Raw, uint[] Ids, float[] Probs, int Nodes) Scene(int w, int h, int channels, int classes, int seed)
    {
        var r = new Random(seed);
        var raw = new ushort[w * h * channels];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < channels; c++)
                    raw[(y * w + x) * channels + c] = (ushort)(1000 + 20 * x + 7 * y * (c + 1) + r.Next(300) + ((x / 13 + y / 11) % 3 == 0 ? 4000 : 0));
        var ids = new uint[w * h];
        int cols = (w + 9) / 10;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                ids[y * w + x] = (uint)(((y + (x % 7)) / 10) * cols + (x + (y % 5)) / 10);
        int nodes = (int)ids.Max() + 1;
        ids[5 * w + 5] = GraphOutputs.NoNode; // a glass pixel
        var probs = new float[nodes * classes];
        for (int v = 0; v < nodes; v++)
        {
            float sum = 0;
            for (int k = 0; k < classes; k++) sum += probs[v * classes + k] = (float)r.NextDouble() + 0.01f;
            for (int k = 0; k < classes; k++) probs[v * classes + k] /= sum;
        }
        return (raw, ids, probs, nodes);
    }

    private static float[] FeaturesOf(PixelRefiner refiner, PixelRect core, int w, int h, int channels, ushort[] raw, uint[] ids, float[] probs, double[] mean, double[] std)
    {
        var region = core.Grow(refiner.Halo, w, h);
        var rr = new ushort[region.Pixels * channels]; var ri = new uint[region.Pixels];
        for (int y = 0; y < region.H; y++)
        {
            raw.AsSpan(((region.Y + y) * w + region.X) * channels, region.W * channels).CopyTo(rr.AsSpan(y * region.W * channels));
            ids.AsSpan((region.Y + y) * w + region.X, region.W).CopyTo(ri.AsSpan(y * region.W));
        }
        var f = new float[core.Pixels * refiner.Features];
        refiner.ComputeFeatures(region, core, w, h, rr, ri, probs, mean, std, f);
        return f;
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(3, 4)]
    public void Features_AreBitIdentical_WhateverBlockComputesThem(int channels, int classes)
    {
        int w = 150, h = 120;
        var (raw, ids, probs, _) = Scene(w, h, channels, classes, 7);
        var refiner = new PixelRefiner(RandomSpec(channels, classes, 3));
        double[] mean = Enumerable.Repeat(3000.0, channels).ToArray(), std = Enumerable.Repeat(1500.0, channels).ToArray();
        int F = refiner.Features;
        var whole = FeaturesOf(refiner, new PixelRect(0, 0, w, h), w, h, channels, raw, ids, probs, mean, std);
        // blocks of several sizes, touching the image's borders and not: every pixel's features are the whole image's, bit for bit
        foreach (int size in new[] { 16, 37, 64 })
            foreach (var core in RefineBlocks.Blocks(w, h, size))
            {
                var part = FeaturesOf(refiner, core, w, h, channels, raw, ids, probs, mean, std);
                for (int y = 0; y < core.H; y++)
                    for (int x = 0; x < core.W; x++)
                    {
                        var a = part.AsSpan((y * core.W + x) * F, F);
                        var b = whole.AsSpan(((core.Y + y) * w + core.X + x) * F, F);
                        if (!a.SequenceEqual(b)) Assert.Fail($"block {size} at {core}: pixel ({core.X + x}, {core.Y + y}) has other features than in the whole image");
                    }
            }
        // the features move with the image: a bright spot raises the smoothed values around it
        Assert.Contains(whole, v => v != 0);
    }

    [Fact]
    public void Classify_IsTheMlp_AndItsProbability()
    {
        var spec = RandomSpec(2, 3, 11, hidden: 5);
        var refiner = new PixelRefiner(spec);
        var r = new Random(2);
        var scratch = new float[refiner.ScratchLength];
        for (int t = 0; t < 50; t++)
        {
            var x = Enumerable.Range(0, refiner.Features).Select(_ => (float)(r.NextDouble() * 4 - 2)).ToArray();
            // the textbook computation in double
            double[] Dense(double[] input, float[] wt, float[] b, int nOut, bool relu) =>
                Enumerable.Range(0, nOut).Select(j => { double s = b[j]; for (int i = 0; i < input.Length; i++) s += input[i] * wt[i * nOut + j]; return relu ? Math.Max(0, s) : s; }).ToArray();
            var xn = x.Select((v, i) => (double)(v - spec.FeatureMean[i]) / spec.FeatureStd[i]).ToArray();
            var o = Dense(Dense(Dense(xn, spec.W1, spec.B1, 5, true), spec.W2, spec.B2, 5, true), spec.W3, spec.B3, 3, false);
            int best = Array.IndexOf(o, o.Max());
            double p = 1 / o.Sum(v => Math.Exp(v - o[best]));
            var (c, q) = refiner.Classify(x, scratch);
            Assert.Equal(best, c);
            Assert.Equal(p, q, 4);
        }
    }

    [Theory]
    [InlineData(1, 2, 32, 1000)]
    [InlineData(3, 5, 13, 37)]   // hidden units not a multiple of four, pixels not a multiple of a vector
    [InlineData(2, 3, 5, 3)]
    public void ClassifyMany_IsClassify_BitForBit(int channels, int classes, int hidden, int pixels)
    {
        var refiner = new PixelRefiner(RandomSpec(channels, classes, 7, hidden));
        int F = refiner.Features;
        var r = new Random(hidden);
        var x = Enumerable.Range(0, pixels * F).Select(i => i % 11 == 0 ? 0f : (float)(r.NextDouble() * 6 - 3)).ToArray();
        var cls = new byte[pixels]; var prob = new float[pixels];
        refiner.ClassifyMany(x, cls, prob);
        var scratch = new float[refiner.ScratchLength];
        for (int i = 0; i < pixels; i++)
        {
            var (c, p) = refiner.Classify(x.AsSpan(i * F, F), scratch);
            Assert.Equal(c, cls[i]);
            Assert.Equal(BitConverter.SingleToInt32Bits(p), BitConverter.SingleToInt32Bits(prob[i]));
        }
    }

    [Fact]
    public void Flags_MarkNodesNextToAnotherClass_AndUnsureOnes()
    {
        // 0 - 1 - 2 - 3 in a row; 4 alone; classes 0 0 1 1 0; node 4 unsure
        byte[] cls = [0, 0, 1, 1, 0];
        float[] probs = [0.99f, 0.01f, 0.95f, 0.05f, 0.02f, 0.98f, 0.05f, 0.95f, 0.6f, 0.4f];
        long[] rag = [0, 1, 2, 1, 2, 3]; // sources 0 1 2, targets 1 2 3
        var f = PixelRefiner.Flags(cls, probs, 2, rag, 0.9);
        Assert.Equal(new[] { false, true, true, false, true }, f);
        // node 3 has probability 0.95, not under the threshold; at 0.96 it is unsure
        Assert.True(PixelRefiner.Flags(cls, probs, 2, rag, 0.96)[3]);
        Assert.Throws<InvalidDataException>(() => PixelRefiner.Flags(cls, probs, 2, [0, 9], 0.9));
        // a class refined whole: every node called it, sure and among its own
        Assert.Equal(new[] { true, true, true, false, true }, PixelRefiner.Flags(cls, probs, 2, rag, 0.9, [0]));
        var spec = RandomSpec(1, 2, 1) with { RefineClasses = [1] };
        Assert.Equal(new[] { false, true, true, true, true }, PixelRefiner.Flags(spec, cls, probs, rag));
    }

    /// <summary>A graph as the refinement's trainer sees it, from its nodes' classes, probabilities and class histograms.</summary>
    private static ActorSeg.GpuTrainer.RefineInput Input(byte[] classes, float[] probs, long[] rag, long[] hist, int histClasses, bool withMask = true) => new()
    {
        GraphPath = "g/graph.npz", ImagePath = "image.tif", Page = 0, NodeMapPath = "g/nodes.tif", Mean = [0], Std = [1],
        Classes = classes, Probs = probs, RagEdges = rag, Area = hist.Chunk(histClasses).Select(r => r.Sum()).ToArray(),
        ClassHist = withMask ? hist : null, HistClasses = withMask ? histClasses : 0, SeedSpacing = 10, Channels = 1,
    };

    [Fact]
    public void AClassWhoseSureNodesHideAThinClass_IsRefinedWhole_AndOnlyThen()
    {
        string[] names = ["background", "cell", "fibre"];
        // nodes 0-3 called background and sure, each with 10 fibre pixels running through it; 4-5 plain background;
        // 6 a cell; 7 a node called fibre holding fibre pixels of its own. Region adjacency: 0-1-2-3 and 4-5, no two
        // neighbours of different classes, so the boundary rule flags nothing
        byte[] cls = [0, 0, 0, 0, 0, 0, 1, 2];
        float[] Sure(byte[] c, params int[] unsure) => c.SelectMany((k, v) => Enumerable.Range(0, 3).Select(j => j == k ? (unsure.Contains(v) ? 0.6f : 0.98f) : 0.01f)).ToArray();
        long[] rag = [0, 1, 2, 4, 1, 2, 3, 5];
        long[] Hist(int fibreInNode7) => [90, 0, 10, 90, 0, 10, 90, 0, 10, 90, 0, 10, 100, 0, 0, 100, 0, 0, 0, 100, 0, 0, 0, fibreInNode7];
        var o = new ActorSeg.GpuTrainer.RefineOptions();

        // 40 fibre pixels in sure background nodes of 60 in all: background is refined whole, and the log says why
        var whole = ActorSeg.GpuTrainer.RefinerTrainer.ClassesToRefineWhole([Input(cls, Sure(cls), rag, Hist(20), 3)], o, names, out var why);
        foreach (var line in why) output.WriteLine(line);
        Assert.Equal(new[] { 0 }, whole);
        Assert.Contains(why, l => l.Contains("every node called background") && l.Contains("66.7 % of fibre's pixels"));
        Assert.Contains(why, l => l.Contains("fibre 66.7 %") && l.Contains("cell 0.0 %"));

        // the same fibre pixels in nodes the boundary rule flags already (unsure): nothing more to refine
        Assert.Empty(ActorSeg.GpuTrainer.RefinerTrainer.ClassesToRefineWhole([Input(cls, Sure(cls, 0, 1, 2, 3), rag, Hist(20), 3)], o, names, out _));
        // 40 of 440 fibre pixels lost (9 %), under the 10 % that counts
        Assert.Empty(ActorSeg.GpuTrainer.RefinerTrainer.ClassesToRefineWhole([Input(cls, Sure(cls), rag, Hist(400), 3)], o, names, out _));
        // turned off
        Assert.Empty(ActorSeg.GpuTrainer.RefinerTrainer.ClassesToRefineWhole([Input(cls, Sure(cls), rag, Hist(20), 3)], o with { LostShare = 1 }, names, out _));
        // a graph without a mask histogram says nothing
        Assert.Empty(ActorSeg.GpuTrainer.RefinerTrainer.ClassesToRefineWhole([Input(cls, Sure(cls), rag, Hist(20), 3, withMask: false)], o, names, out var none));
        Assert.Empty(none);
        // background's sure nodes hold 66.7 % of the fibre: not enough when 70 % is asked for
        Assert.Empty(ActorSeg.GpuTrainer.RefinerTrainer.ClassesToRefineWhole([Input(cls, Sure(cls), rag, Hist(20), 3)], o with { HoldShare = 0.7 }, names, out _));
    }

    [Fact]
    public void Spec_Validate_RefusesWhatTrainingCannotMake()
    {
        var good = RandomSpec(1, 2, 1);
        good.Validate("x");
        var bad = new (string Why, PixelRefinerSpec Spec)[]
        {
            ("W1", good with { W1 = good.W1[..^1] }),
            ("finite", good with { B2 = good.B2.Select((v, i) => i == 0 ? float.NaN : v).ToArray() }),
            ("standard deviation", good with { FeatureStd = good.FeatureStd.Select(_ => 0f).ToArray() }),
            ("scales", good with { Sigmas = [1, 1000] }),
            ("threshold", good with { Threshold = 1.5 }),
            ("classes", good with { Classes = 1 }),
            ("refined whole", good with { RefineClasses = [2] }),
            ("refined whole", good with { RefineClasses = [1, 1] }),
        };
        foreach (var (why, spec) in bad)
        {
            var e = Assert.Throws<InvalidDataException>(() => spec.Validate("model.bin"));
            Assert.StartsWith("model.bin:", e.Message);
            Assert.Contains(why, e.Message);
        }
    }

    [Fact]
    public void RefineFile_RoundTrips_AndRefusesDamage_NamingTheFile()
    {
        var spec = RandomSpec(2, 3, 5);
        var path = Path.Combine(_dir, RefineFile.FileName);
        bool[] flags = [true, false, true, true];
        RefineFile.Write(path, spec, [1, 2], [3, 4], flags);
        var (refiner, mean, std, back) = RefineFile.Read(path, 4, 3, 2);
        Assert.Equal(flags, back);
        Assert.Equal(new double[] { 1, 2 }, mean);
        Assert.Equal(new double[] { 3, 4 }, std);
        Assert.Equal(spec.W3, refiner.Spec.W3);

        void Refused(string because, Action act)
        {
            var e = Assert.Throws<InputFileException>(act);
            Assert.Contains(path, e.Message);
            Assert.Contains(because, e.Message);
        }
        Refused("flags for 4 nodes", () => RefineFile.Read(path, 5, 3, 2));
        Refused("3 classes", () => RefineFile.Read(path, 4, 2, 2));
        Refused("channels", () => RefineFile.Read(path, 4, 3, 1));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^1]);
        Refused("flag bytes", () => RefineFile.Read(path, 4, 3, 2));
        bytes[^1] = 7;
        File.WriteAllBytes(path, bytes);
        Refused("flag 7", () => RefineFile.Read(path, 4, 3, 2));
        File.WriteAllBytes(path, bytes[..10]);
        Refused("header", () => RefineFile.Read(path, 4, 3, 2));
    }

    [Fact]
    public void ANodeMapNamingANodeTheGraphDoesNotHave_FailsNamingTheMap_BlockOrBand()
    {
        int w = 120, h = 90;
        var (raw, ids, probs, nodes) = Scene(w, h, 1, 2, 5);
        ids[37 * w + 61] = (uint)nodes + 5; // a damaged or foreign node map
        var mapPath = Path.Combine(_dir, "bad-nodes.tif");
        var bytes = new byte[ids.Length * 4];
        Buffer.BlockCopy(ids, 0, bytes, 0, bytes.Length);
        using (var img = Vips.Image.NewFromMemory(bytes, w, h, 1, Vips.Enums.BandFormat.Uint)) img.Tiffsave(mapPath, tile: true, tileWidth: 64, tileHeight: 64);
        var cls = new byte[nodes]; var flags = Enumerable.Repeat(true, nodes).ToArray();
        var refiner = new PixelRefiner(RandomSpec(1, 2, 3));
        using var src = new ArrayImageSource(w, h, 1, raw);
        using var map = new NodeMapReader(mapPath);
        var rb = new RefineBlocks(refiner, src, map, [3000], [1500], cls, probs, flags);
        var e = Assert.Throws<InputFileException>(() => rb.Paint(new PixelRect(0, 0, w, h), new byte[w * h], new byte[w * h]));
        Assert.Contains(mapPath, e.Message);
        Assert.Contains($"node id {nodes + 5}", e.Message);
        Assert.Equal(0, rb.RefinedPixels); // nothing classified in a block whose map it could not trust
        var band = Enumerable.Range(0, 2).Select(_ => new byte[64 * 64]).ToArray();
        var agg = Assert.ThrowsAny<Exception>(() => rb.PaintBand(0, 64, 64, band, null));
        // the band's blocks run in parallel, and every block whose read region holds the bad pixel may fail before the
        // others are stopped: one error or several, each names the map
        var inner = agg is AggregateException a ? a.Flatten().InnerExceptions : [agg];
        Assert.NotEmpty(inner);
        Assert.All(inner, x => { Assert.IsType<InputFileException>(x); Assert.Contains(mapPath, x.Message); });
        // a block whose core is clean but whose halo holds the bad id (its context reads it): the same error, every time
        Assert.True(refiner.Halo >= 3, "the bad pixel (x = 61) must lie in the halo of the block from x = 64");
        var halo = Assert.Throws<InputFileException>(() => rb.FlaggedFeatures(new PixelRect(64, 0, w - 64, h)));
        Assert.Contains(mapPath, halo.Message);
        Assert.Contains($"node id {nodes + 5}", halo.Message);
    }

    [Fact]
    public void Paint_IsTheSame_WhateverTheBlockSize()
    {
        int w = 203, h = 170, channels = 1, classes = 2;
        var (raw, ids, probs, nodes) = Scene(w, h, channels, classes, 9);
        var mapPath = Path.Combine(_dir, "nodes.tif");
        var bytes = new byte[ids.Length * 4];
        Buffer.BlockCopy(ids, 0, bytes, 0, bytes.Length);
        using (var img = Vips.Image.NewFromMemory(bytes, w, h, 1, Vips.Enums.BandFormat.Uint)) img.Tiffsave(mapPath, tile: true, tileWidth: 64, tileHeight: 64);
        var cls = Enumerable.Range(0, nodes).Select(v => probs[v * 2 + 1] > 0.5f ? (byte)1 : (byte)0).ToArray();
        var flags = Enumerable.Range(0, nodes).Select(v => v % 3 != 0).ToArray();
        var refiner = new PixelRefiner(RandomSpec(channels, classes, 4, hidden: 16));
        byte[] PaintAll(int block, out long refined)
        {
            using var src = new ArrayImageSource(w, h, channels, raw);
            using var map = new NodeMapReader(mapPath);
            var rb = new RefineBlocks(refiner, src, map, [3000], [1500], cls, probs, flags);
            var outCls = new byte[w * h];
            foreach (var core in RefineBlocks.Blocks(w, h, block))
            {
                var c = new byte[core.Pixels]; var p = new byte[core.Pixels];
                rb.Paint(core, c, p);
                for (int y = 0; y < core.H; y++) c.AsSpan(y * core.W, core.W).CopyTo(outCls.AsSpan((core.Y + y) * w + core.X));
            }
            refined = rb.RefinedPixels;
            return outCls;
        }
        var whole = PaintAll(1024, out long n1);
        var tiled = PaintAll(50, out long n2);
        Assert.Equal(whole, tiled);
        Assert.Equal(n1, n2);
        // only flagged nodes' pixels went through the classifier, and the others keep their node's class
        long flaggedPixels = ids.LongCount(id => id != GraphOutputs.NoNode && flags[id]);
        Assert.Equal(flaggedPixels, n1);
        for (int i = 0; i < ids.Length; i++)
            if (ids[i] == GraphOutputs.NoNode) Assert.Equal(0, whole[i]);
            else if (!flags[ids[i]]) Assert.Equal(cls[ids[i]], whole[i]);
        output.WriteLine($"{n1} of {w * h} pixels refined; {Enumerable.Range(0, ids.Length).Count(i => ids[i] != GraphOutputs.NoNode && whole[i] != cls[ids[i]])} changed");
    }
}

/// <summary>train → evaluate → segment with the boundary refinement, through the real program, on generated cells
/// (a thin membrane class): behaviour, not accuracy.</summary>
public class RefineCliTests(ITestOutputHelper output) : TempDirTest("refine-cli")
{
    [Fact]
    public void TrainRefines_EvaluateAndSegmentApplyIt_TheMaskIsTheWholeImagePainting()
    {
        string imgs = Path.Combine(_dir, "images"), masks = Path.Combine(_dir, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 3; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(440, 440, SyntheticKind.Cells, 16, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        SyntheticMicroscopy.Generate(new SyntheticSpec(600, 500, SyntheticKind.Cells, 16, 1, 9), Path.Combine(_dir, "held.tif"), Path.Combine(_dir, "held_mask.tif"));
        var model = Path.Combine(_dir, "model");
        var tr = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--mask-mode", "classes", "--segments", "300", "--epochs", "30", "--patience", "8", "--val-frac", "0.34", "--out", model);
        output.WriteLine(tr.Stderr);
        Assert.True(tr.ExitCode == 0, tr.Stderr);
        Assert.Contains("boundary refinement written", tr.Stderr);
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "train.json"))))
            Assert.True(doc.RootElement.GetProperty("refiner").GetProperty("TrainingPixels").GetInt64() > 0);

        // evaluate: the refined mask against the truth, beside the coarse figures
        var g = TestPaths.RunCli("graph", Path.Combine(_dir, "held.tif"), "--mask", Path.Combine(_dir, "held_mask.tif"), "--mask-mode", "classes", "--segments", "480", "--out", Path.Combine(_dir, "held-graph"));
        Assert.True(g.ExitCode == 0, g.Stderr);
        var ev = TestPaths.RunCli("evaluate", "--model", Path.Combine(model, "best.model"), "--graphs", Path.Combine(_dir, "held-graph"), "--out", Path.Combine(_dir, "eval"));
        output.WriteLine(ev.Stdout);
        Assert.True(ev.ExitCode == 0, ev.Stderr);
        Assert.Contains("coarse (before refinement)", ev.Stdout);
        Assert.Matches(@"refined [1-9][0-9,]* \(", ev.Stdout);
        var coarseOnly = TestPaths.RunCli("evaluate", "--model", Path.Combine(model, "best.model"), "--graphs", Path.Combine(_dir, "held-graph"), "--no-refine");
        Assert.DoesNotContain("coarse (before refinement)", coarseOnly.Stdout);
        // the coarse line of the refined run is the --no-refine run's figure
        string Acc(string line) => System.Text.RegularExpressions.Regex.Match(line, @"pixel accuracy ([0-9.]+ %)").Groups[1].Value;
        Assert.Equal(Acc(coarseOnly.Stdout.Split('\n')[1]), Acc(ev.Stdout.Split('\n').First(l => l.StartsWith("coarse"))));

        // segment: the worker paints the refined mask; it is exactly the refinement painted over the whole image at once
        var seg = Path.Combine(_dir, "seg");
        var sr = TestPaths.RunCli("segment", Path.Combine(_dir, "held.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg);
        output.WriteLine(sr.Stderr);
        Assert.True(sr.ExitCode == 0, sr.Stderr);
        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(seg, "segment.json")));
        Assert.True(summary.RootElement.GetProperty("refined").GetBoolean());
        long refinedPixels = summary.RootElement.GetProperty("refinedPixels").GetInt64();
        Assert.True(refinedPixels > 0);
        using var maskImg = Vips.Image.NewFromFile(Path.Combine(seg, "mask.tif"));
        var painted = maskImg.WriteToMemory<byte>();
        var perClass = summary.RootElement.GetProperty("pixelsPerClass").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        for (int c = 0; c < perClass.Length; c++) Assert.Equal(perClass[c], painted.LongCount(v => v == c));

        var gdir = Path.Combine(seg, "graph");
        var classes = File.ReadAllBytes(Path.Combine(gdir, "classes.u8"));
        var probs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(gdir, "probs.f32"))).ToArray();
        var (refiner, mean, std, flags) = RefineFile.Read(Path.Combine(gdir, RefineFile.FileName), classes.Length, probs.Length / classes.Length, 1);
        using (var src = VipsImageSource.Open(Path.Combine(_dir, "held.tif")))
        using (var map = new NodeMapReader(Path.Combine(gdir, "nodes.tif")))
        {
            var whole = new RefineBlocks(refiner, src, map, mean, std, classes, probs, flags);
            var cls = new byte[600 * 500]; var prob = new byte[600 * 500];
            whole.Paint(new PixelRect(0, 0, 600, 500), cls, prob);
            Assert.Equal(cls, painted);
            Assert.Equal(refinedPixels, whole.RefinedPixels);
            // prob.tif: the refined pixels' own probability, the others' their node's
            using var probImg = Vips.Image.NewFromFile(Path.Combine(seg, "prob.tif"));
            Assert.Equal(prob, probImg.WriteToMemory<byte>());
        }
        // the objects' mean probability is that of their pixels, a winning class's of five: above 1/5
        var objects = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(seg, "objects.geojson"))).RootElement.GetProperty("features");
        Assert.True(objects.GetArrayLength() > 0);
        foreach (var o in objects.EnumerateArray()) Assert.InRange(o.GetProperty("properties").GetProperty("mean_probability").GetDouble(), 0.2, 1.0);

        // --no-refine paints the nodes' classes
        var sc = TestPaths.RunCli("segment", Path.Combine(_dir, "held.tif"), "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "seg0"), "--no-refine");
        Assert.True(sc.ExitCode == 0, sc.Stderr);
        using var s0 = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "seg0", "segment.json")));
        Assert.False(s0.RootElement.GetProperty("refined").GetBoolean());
        Assert.False(File.Exists(Path.Combine(_dir, "seg0", "graph", RefineFile.FileName)));

        // graphs without their node maps cannot train a refinement: --refine fails naming the graph, the default warns and skips it
        var bare = TestPaths.RunCli("graph", Path.Combine(imgs, "f1.tif"), "--mask", Path.Combine(masks, "f1.tif"), "--mask-mode", "classes", "--segments", "300", "--no-node-map", "--out", Path.Combine(_dir, "bare"));
        Assert.True(bare.ExitCode == 0, bare.Stderr);
        var must = TestPaths.RunCli("train", "--graphs", Path.Combine(_dir, "bare"), "--refine", "--epochs", "3", "--out", Path.Combine(_dir, "m2"));
        Assert.NotEqual(0, must.ExitCode);
        Assert.Contains("nodes.tif", must.Stderr);
        Assert.Contains(Path.Combine(_dir, "bare"), must.Stderr);
        var skip = TestPaths.RunCli("train", "--graphs", Path.Combine(_dir, "bare"), "--epochs", "3", "--out", Path.Combine(_dir, "m3"));
        Assert.True(skip.ExitCode == 0, skip.Stderr);
        Assert.Contains("No boundary refinement", skip.Stderr);
    }
}

public class TinyGraphTrainingTests() : TempDirTest("tiny")
{
    [Fact]
    public void GraphsOfOneOrTwoNodes_Train_AndTheRefinementIsTrainedOrSkippedWithAWarning_NeverACrash()
    {
        // before: two 48² images (a node or two each) left the refinement no validation pixel, its validation loss was
        // NaN every epoch, and `train` died with a NullReferenceException after the model was trained
        var graphs = new List<string>();
        foreach (var seed in new[] { "1", "2" })
        {
            var gen = TestPaths.RunCli("generate", "--out", _dir, "--name", "t" + seed, "--width", "48", "--height", "48", "--bits", "8", "--seed", seed);
            Assert.True(gen.ExitCode == 0, gen.Stderr);
            var g = Path.Combine(_dir, "g" + seed);
            var r = TestPaths.RunCli("graph", Path.Combine(_dir, $"t{seed}.tif"), "--mask", Path.Combine(_dir, $"t{seed}_mask.tif"), "--out", g);
            Assert.True(r.ExitCode == 0, r.Stderr);
            graphs.Add(g);
        }
        var model = Path.Combine(_dir, "m");
        var t = TestPaths.RunCli(["train", "--graphs", .. graphs, "--out", model, "--epochs", "3"]);
        Assert.True(t.ExitCode == 0, t.Stderr);
        Assert.DoesNotContain("internal error", t.Stderr);
        Assert.True(t.Stderr.Contains("boundary refinement written") || t.Stderr.Contains("No boundary refinement"), t.Stderr);
        using (GpuTrainer.ModelFile.Load(Path.Combine(model, "best.model")).Model) { }
        // segment.json counts every class of the model, also one no pixel took (the painter's counts end at the last painted)
        var seg = Path.Combine(_dir, "seg");
        var sr = TestPaths.RunCli("segment", Path.Combine(_dir, "t1.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg);
        Assert.True(sr.ExitCode == 0, sr.Stderr);
        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(seg, "segment.json")));
        Assert.Equal(2, summary.RootElement.GetProperty("pixelsPerClass").GetArrayLength());
        Assert.Equal(48 * 48, summary.RootElement.GetProperty("pixelsPerClass").EnumerateArray().Sum(e => e.GetInt64()));
    }
}
