using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Cli;

/// <summary>train → evaluate → segment through the real program, on generated colony images.</summary>
public class TrainSegmentTests(ITestOutputHelper output) : TempDirTest("train")
{

    [Fact]
    public void TrainEvaluateSegment_EndToEnd()
    {
        string imgs = Path.Combine(_dir, "images"), masks = Path.Combine(_dir, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 3; s++)
        {
            SyntheticMicroscopy.Generate(new SyntheticSpec(640, 640, SyntheticKind.Colonies, 16, 1, s), Path.Combine(_dir, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
            // training images of 0.5 µm pixels (2000 px/mm), which the model records
            using var im = Vips.Image.NewFromFile(Path.Combine(_dir, $"f{s}.tif"));
            using var withRes = im.Copy(xres: 2000.0, yres: 2000.0);
            withRes.Tiffsave(Path.Combine(imgs, $"f{s}.tif"), tile: true, resunit: Vips.Enums.ForeignTiffResunit.Cm);
        }
        SyntheticMicroscopy.Generate(new SyntheticSpec(700, 600, SyntheticKind.Colonies, 16, 1, 42), Path.Combine(_dir, "held.tif"), Path.Combine(_dir, "held_mask.tif"));

        var model = Path.Combine(_dir, "model");
        var tr = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--segments", "1500", "--edges", "rag", "--epochs", "60", "--patience", "15", "--val-frac", "0.34", "--classes", "background,colony:#00c000", "--out", model);
        output.WriteLine(tr.Stderr);
        Assert.Equal(0, tr.ExitCode);
        foreach (var f in new[] { "best.model", "last.model", "curves.csv", "split.json", "train.json" }) Assert.True(File.Exists(Path.Combine(model, f)), f);

        // the training images' pixel size is kept in the model; an image read at another scale is warned about, not refused
        var (spec, gnn) = ActorSeg.GpuTrainer.ModelFile.Load(Path.Combine(model, "best.model"));
        gnn.Dispose();
        Assert.Equal([0.5, 0.5], spec.MicronsPerPixel!.Select(v => Math.Round(v, 9)));
        // and, its features being absolute (the default), the training images' grey levels: an image at a quarter of their
        // exposure is segmented, with a warning that names it
        Assert.NotNull(spec.GreyLevels);
        using (var held = Vips.Image.NewFromFile(Path.Combine(_dir, "held.tif")))
        using (var dim = (held * 0.25).Cast(held.Format))
            dim.Tiffsave(Path.Combine(_dir, "dim.tif"), tile: true);
        var dimmed = TestPaths.RunCli("segment", Path.Combine(_dir, "dim.tif"), "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "seg-dim"), "--no-refine");
        Assert.True(dimmed.ExitCode == 0, dimmed.Stderr);
        Assert.Contains("grey levels are unlike the model's training images", dimmed.Stderr);
        // and kept in the job's summary, where a person looking at the results (and a batch's report) finds it
        using (var dimSummary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "seg-dim", "segment.json"))))
            Assert.Contains("grey levels are unlike the model's training images", Assert.Single(dimSummary.RootElement.GetProperty("warnings").EnumerateArray()).GetString());
        // the graphs record it themselves: copied into a flat folder without their graph.json, they still give it
        var flat = Directory.CreateDirectory(Path.Combine(_dir, "flat-graphs")).FullName;
        var built = Directory.EnumerateFiles(model, "graph.npz", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal).Take(2).ToArray();
        Assert.Equal(2, built.Length);
        for (int i = 0; i < built.Length; i++) File.Copy(built[i], Path.Combine(flat, $"field{i}.npz"));
        Assert.Equal([0.5, 0.5], ActorSeg.GpuTrainer.Trainer.TrainingPixelSizes(Directory.GetFiles(flat).Select(f => (f, ActorSeg.GpuTrainer.GraphSample.Load(f, "rag").MicronsPerPixel))).Select(v => Math.Round(v, 9)));
        Assert.Null(spec.ScaleMismatch(0.55));
        Assert.Null(spec.ScaleMismatch(null)); // an image that states no pixel size
        Assert.Contains("it is read at 2 µm/px, but the model was trained on images of 0.5 µm/px", spec.ScaleMismatch(2.0));
        using (var held = Vips.Image.NewFromFile(Path.Combine(_dir, "held.tif")))
        using (var coarse = held.Copy(xres: 500.0, yres: 500.0))
        using (var corner = coarse.Crop(0, 0, 256, 256))
            corner.Tiffsave(Path.Combine(_dir, "coarse.tif"), tile: true, resunit: Vips.Enums.ForeignTiffResunit.Cm);
        var warned = TestPaths.RunCli("segment", Path.Combine(_dir, "coarse.tif"), "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "seg-coarse"), "--no-refine");
        Assert.True(warned.ExitCode == 0, warned.Stderr);
        Assert.Contains("it is read at 2 µm/px, but the model was trained on images of 0.5 µm/px", warned.Stderr);
        // a cluster job says it too, before it is sent (here to no coordinator: exit 3 after a second)
        var submitted = TestPaths.RunCli("submit", Path.Combine(_dir, "coarse.tif"), "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "sub-coarse"),
            "--coordinator", "akka.tcp://actorseg@127.0.0.1:1", "--connect-timeout", "1");
        Assert.Equal(3, submitted.ExitCode);
        Assert.Contains("it is read at 2 µm/px, but the model was trained on images of 0.5 µm/px", submitted.Stderr);
        // and a batch, naming the slide, which it still segments
        var slides = Directory.CreateDirectory(Path.Combine(_dir, "batch-in")).FullName;
        File.Copy(Path.Combine(_dir, "coarse.tif"), Path.Combine(slides, "coarse.tif"));
        File.Copy(Path.Combine(_dir, "dim.tif"), Path.Combine(slides, "dim.tif"));
        var batch = TestPaths.RunCli("batch", slides, "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "batch-coarse"));
        Assert.True(batch.ExitCode == 0, batch.Stderr);
        Assert.Contains("Slide coarse: it is read at 2 µm/px, but the model was trained on images of 0.5 µm/px", batch.Stderr);
        Assert.True(File.Exists(Path.Combine(_dir, "batch-coarse", "slides", "coarse", "mask.tif")));
        // the batch's summary names each slide's warning in its own column
        var rows = File.ReadAllLines(Path.Combine(_dir, "batch-coarse", "summary.csv"));
        int col = Array.IndexOf(rows[0].Split(','), "warnings");
        Assert.True(col >= 0, rows[0]);
        Assert.Contains("it is read at 2 µm/px, but the model was trained on images of 0.5 µm/px", rows.Single(r => r.StartsWith("coarse,")));
        Assert.Contains("grey levels are unlike the model's training images", rows.Single(r => r.StartsWith("dim,")));
        Assert.Contains("warning: ", File.ReadAllText(Path.Combine(_dir, "batch-coarse", "report.html")));

        var ev = TestPaths.RunCli("evaluate", "--model", Path.Combine(model, "best.model"), "--graphs", Path.Combine(model, "graphs"), "--out", Path.Combine(_dir, "eval"));
        Assert.Equal(0, ev.ExitCode);
        Assert.Contains("pixel accuracy", ev.Stdout);
        Assert.True(File.Exists(Path.Combine(_dir, "eval", "metrics.json")));

        var seg = Path.Combine(_dir, "seg");
        // the coarse painting (the refined one is RefineCliTests'): every pixel takes its node's class and probability
        var sr = TestPaths.RunCli("segment", Path.Combine(_dir, "held.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg, "--no-refine");
        output.WriteLine(sr.Stderr);
        Assert.Equal(0, sr.ExitCode);
        Assert.DoesNotContain("µm/px, but the model was trained", sr.Stderr); // held.tif states no pixel size
        Assert.DoesNotContain("grey levels", sr.Stderr); // the same exposure as the training images
        Assert.True(File.Exists(Path.Combine(seg, "overlay.png")));
        // the class names given at training reach the classification, and the OME-TIFF mask's description
        var table = ActorSeg.Core.IO.ClassTable.Read(Path.Combine(seg, "graph"));
        Assert.NotNull(table);
        Assert.Equal(new[] { "background", "colony" }, table!.Select(c => c.Name));
        Assert.Equal("#00c000", table[1].Color);
        using (var ome = Vips.Image.NewFromFile(Path.Combine(seg, "mask.ome.tif")))
            Assert.Contains("colony #00c000", (string)ome.Get("image-description"));
        using var mask = Vips.Image.NewFromFile(Path.Combine(seg, "mask.tif"));
        Assert.Equal((700, 600), (mask.Width, mask.Height));
        Assert.True((int)mask.Get("n-pages") >= 2, "mask.tif should be pyramidal");
        var pred = mask.WriteToMemory<byte>();
        using var truthImg = Vips.Image.NewFromFile(Path.Combine(_dir, "held_mask.tif"));
        var truth = truthImg.WriteToMemory<byte>();
        double acc = Enumerable.Zip(pred, truth, (p, t) => (p > 0) == (t > 0)).Count(x => x) / (double)pred.Length;
        output.WriteLine($"held-out pixel accuracy {acc:P1}");
        Assert.True(acc > 0.75, $"held-out pixel accuracy {acc:P1}");

        // the regions as QuPath objects: valid polygons whose areas per class are the mask's pixels per class, with the
        // class name and colour, and the mean probability from the trainer's probs.f32 (N×C float32 beside classes.u8)
        var nodes = new FileInfo(Path.Combine(seg, "graph", "classes.u8")).Length;
        Assert.Equal(nodes * 2 * 4, new FileInfo(Path.Combine(seg, "graph", "probs.f32")).Length);
        var opts = new System.Text.Json.JsonSerializerOptions();
        opts.Converters.Add(new NetTopologySuite.IO.Converters.GeoJsonConverterFactory());
        var fc = System.Text.Json.JsonSerializer.Deserialize<NetTopologySuite.Features.FeatureCollection>(File.ReadAllText(Path.Combine(seg, "objects.geojson")), opts)!;
        Assert.NotEmpty(fc);
        Assert.All(fc, f =>
        {
            Assert.True(f.Geometry.IsValid);
            Assert.Equal(Convert.ToDouble(f.Attributes["area_px"]), f.Geometry.Area);
            Assert.Equal("colony", ((NetTopologySuite.Features.IAttributesTable)f.Attributes["classification"])["name"]);
            Assert.InRange(Convert.ToDouble(f.Attributes["mean_probability"]), 0.5, 1.0);
        });
        Assert.Equal(pred.LongCount(p => p == 1), (long)fc.Sum(f => f.Geometry.Area));
        Assert.Contains("objects written", sr.Stderr);

        // the class probabilities: probs.npy beside graph.npz (N × C, the same values as probs.f32), and prob.tif beside
        // the mask, the painted class's probability × 255 per pixel, the image's size, pyramidal
        var npy = ActorSeg.Core.IO.NpyFile.Read(Path.Combine(seg, "graph", "probs.npy"));
        Assert.Equal(new[] { (int)nodes, 2 }, npy.Shape);
        var probs = npy.AsSpan<float>().ToArray();
        Assert.Equal(File.ReadAllBytes(Path.Combine(seg, "graph", "probs.f32")), System.Runtime.InteropServices.MemoryMarshal.AsBytes(probs.AsSpan()).ToArray());
        var nodeClasses = File.ReadAllBytes(Path.Combine(seg, "graph", "classes.u8"));
        using var probMap = Vips.Image.NewFromFile(Path.Combine(seg, "prob.tif"));
        Assert.Equal((700, 600, Vips.Enums.BandFormat.Uchar), (probMap.Width, probMap.Height, probMap.Format));
        Assert.True((int)probMap.Get("n-pages") >= 2, "prob.tif should be pyramidal");
        var probPx = probMap.WriteToMemory<byte>();
        using var nodeMap = Vips.Image.NewFromFile(Path.Combine(seg, "graph", "nodes.tif"));
        var ids = nodeMap.WriteToMemory<uint>();
        var rnd = new Random(5);
        for (int k = 0; k < 200; k++)
        {
            int i = rnd.Next(ids.Length);
            uint id = ids[i];
            float p = probs[id * 2 + nodeClasses[id]];
            Assert.True(Math.Abs(probPx[i] - p * 255) <= 0.5001, $"pixel {i}: {probPx[i]}, node {id} probability {p}");
            Assert.Equal(nodeClasses[id], pred[i]);
        }
        var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(seg, "segment.json"))).RootElement;
        Assert.Equal(Path.Combine(seg, "prob.tif"), summary.GetProperty("probabilityMap").GetString());
        var meanProb = summary.GetProperty("meanProbabilityPerClass").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(2, meanProb.Length);
        Assert.All(meanProb, m => Assert.InRange(m, 0.5, 1.0));
        Assert.Contains("probability map", sr.Stderr);
        // a bad objects option is a usage error
        Assert.Equal(2, TestPaths.RunCli("segment", Path.Combine(_dir, "held.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg, "--objects", "shapefile").ExitCode);
        Assert.Equal(2, TestPaths.RunCli("segment", Path.Combine(_dir, "held.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg, "--simplify", "-1").ExitCode);

        // a corrupt model fails before any work, with the file named, and leaves no mask
        var bad = Path.Combine(_dir, "bad.model");
        File.WriteAllBytes(bad, new byte[64]);
        var br = TestPaths.RunCli("segment", Path.Combine(_dir, "held.tif"), "--model", bad, "--out", Path.Combine(_dir, "seg2"));
        Assert.Equal(1, br.ExitCode);
        Assert.Contains(bad, br.Stderr);
        Assert.False(File.Exists(Path.Combine(_dir, "seg2", "mask.tif")));
    }
}

public class DemoTests
{
    [Fact]
    public void Demo_RunsTheMainJobEndToEnd()
    {
        var dir = TestPaths.NewTempDir("demo");
        try
        {
            var r = TestPaths.RunCli("demo", "--out", dir, "--size", "1200");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("Demo finished", r.Stderr);
            Assert.Contains("pixel accuracy", r.Stderr);
            foreach (var f in new[] { "graph/graph.npz", "graph/nodes.tif", "model/best.model", "segment/mask.tif", "segment/overlay.png" })
                Assert.True(File.Exists(Path.Combine(dir, f)), f);
        }
        finally { try { Directory.Delete(dir, true); } catch { } }
    }
}
