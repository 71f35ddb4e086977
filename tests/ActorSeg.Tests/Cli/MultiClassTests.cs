using System.Text.Json;
using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Cli;

/// <summary>
/// The multi-class check (issue #14): generated cells (background, cytoplasm, nucleus, a thin membrane class along the
/// cells' outlines, a rare mitotic class, and fibres: a thin class that runs through background and cells alike) through
/// the GNN with its refinement and the UNet baseline with <c>--mask-mode classes</c>, per-class metrics computed, printed
/// and written. Behaviour: the one comparison is the fibres' F1 with and without the class refined whole.
/// </summary>
public class MultiClassTests(ITestOutputHelper output) : TempDirTest("multiclass")
{
    private static readonly string[] Names = ["background", "cytoplasm", "nucleus", "membrane", "mitotic", "fibre"];

    [Fact]
    public void CellsAndFibres_GnnAndUNet_TrainAndEvaluatePerClass_FibresFoundByRefiningBackgroundWhole()
    {
        string imgs = Path.Combine(_dir, "train", "images"), masks = Path.Combine(_dir, "train", "masks");
        string himgs = Path.Combine(_dir, "held", "images"), hmasks = Path.Combine(_dir, "held", "masks");
        foreach (var d in new[] { imgs, masks, himgs, hmasks }) Directory.CreateDirectory(d);
        for (int s = 1; s <= 3; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(800, 800, SyntheticKind.Cells, 16, 1, s, Fibres: true), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        // a held-out field with every class, the rare one included (the first such seed from 9; deterministic)
        SyntheticResult held = null!;
        for (int seed = 9; seed < 40; seed++)
        {
            held = SyntheticMicroscopy.Generate(new SyntheticSpec(800, 800, SyntheticKind.Cells, 16, 1, seed, Fibres: true), Path.Combine(himgs, "held.tif"), Path.Combine(hmasks, "held.tif"));
            if (held.ClassPixels![4] > 0) break;
        }
        Assert.True(held.ClassPixels![4] > 0, "no seed in 9..39 gives an 800² field with a mitotic cell");

        // the thin class is in the held-out mask at its proportion (a line 3 px wide along every cell outline)
        double membrane = (double)held.ClassPixels![3] / (800 * 800);
        output.WriteLine($"held-out classes: {string.Join(", ", held.ClassPixels.Select((p, c) => $"{Names[c]} {100.0 * p / (800 * 800):F2} %"))}");
        Assert.InRange(membrane, 0.01, 0.05);
        Assert.True(held.ClassPixels[1] > 0 && held.ClassPixels[2] > 0 && held.ClassPixels[5] > 0);

        // the GNN, six named classes, with its refinement. The fibres run through the inside of background superpixels,
        // which are sure and agree with their neighbours: the trainer finds that background's sure nodes hide them and
        // refines every background node
        var model = Path.Combine(_dir, "gnn");
        var tr = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--mask-mode", "classes", "--classes", SyntheticMicroscopy.FibreClasses,
            "--segments", "1600", "--epochs", "40", "--patience", "10", "--val-frac", "0.34", "--out", model);
        output.WriteLine(tr.Stderr);
        Assert.True(tr.ExitCode == 0, tr.Stderr);
        Assert.Contains("every node called background is refined", tr.Stderr);
        using (var train = JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "train.json"))))
            Assert.Contains(0, train.RootElement.GetProperty("refiner").GetProperty("refineClasses").EnumerateArray().Select(e => e.GetInt32()));
        var g = TestPaths.RunCli("graph", Path.Combine(himgs, "held.tif"), "--mask", Path.Combine(hmasks, "held.tif"), "--mask-mode", "classes",
            "--segments", "1600", "--out", Path.Combine(_dir, "held-graph"));
        Assert.True(g.ExitCode == 0, g.Stderr);
        var ev = TestPaths.RunCli("evaluate", "--model", Path.Combine(model, "best.model"), "--graphs", Path.Combine(_dir, "held-graph"), "--out", Path.Combine(_dir, "gnn-eval"));
        output.WriteLine(ev.Stdout);
        Assert.True(ev.ExitCode == 0, ev.Stderr);
        CheckPerClass(Path.Combine(_dir, "gnn-eval", "metrics.json"), ev.Stdout, held.ClassPixels, exactTruth: true);
        // the same model refined by the boundary rule alone (--refine-whole 1) finds fewer of the fibres
        var boundary = Path.Combine(_dir, "boundary.model");
        var rb = TestPaths.RunCli("refine", "--model", Path.Combine(model, "best.model"), "--refine-whole", "1", "--out", boundary);
        Assert.True(rb.ExitCode == 0, rb.Stderr);
        Assert.DoesNotContain("every node called", rb.Stderr);
        var eb = TestPaths.RunCli("evaluate", "--model", boundary, "--graphs", Path.Combine(_dir, "held-graph"), "--out", Path.Combine(_dir, "boundary-eval"));
        Assert.True(eb.ExitCode == 0, eb.Stderr);
        double FibreF1(string dir)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, dir, "metrics.json")));
            return doc.RootElement.GetProperty("perClass")[5].GetProperty("F1").GetDouble();
        }
        output.WriteLine($"fibre F1: {FibreF1("gnn-eval"):F3} with background refined whole, {FibreF1("boundary-eval"):F3} by the boundary rule alone");
        Assert.True(FibreF1("gnn-eval") > FibreF1("boundary-eval") + 0.03, $"fibre F1 {FibreF1("gnn-eval"):F3} refined whole against {FibreF1("boundary-eval"):F3}");
        Assert.Contains("--refine-whole must be a number in (0, 1] (got 0)", TestPaths.RunCli("refine", "--model", Path.Combine(model, "best.model"), "--refine-whole", "0", "--out", boundary).Stderr);

        // the UNet baseline on the same images, with the same mask mode (a few steps: behaviour, not accuracy)
        var unet = Path.Combine(_dir, "unet");
        var ut = TestPaths.RunCli("unet-train", "--images", imgs, "--masks", masks, "--mask-mode", "classes", "--classes", SyntheticMicroscopy.FibreClasses,
            "--patch", "64", "--base", "8", "--depth", "2", "--epochs", "2", "--steps", "4", "--val-frac", "0.34", "--out", unet);
        output.WriteLine(ut.Stderr);
        Assert.True(ut.ExitCode == 0, ut.Stderr);
        Assert.Contains("6 classes", ut.Stderr);
        var ue = TestPaths.RunCli("unet-evaluate", "--model", Path.Combine(unet, "best.unet"), "--images", himgs, "--masks", hmasks, "--mask-mode", "classes", "--out", Path.Combine(_dir, "unet-eval"));
        output.WriteLine(ue.Stdout);
        Assert.True(ue.ExitCode == 0, ue.Stderr);
        CheckPerClass(Path.Combine(_dir, "unet-eval", "metrics.json"), ue.Stdout, held.ClassPixels, exactTruth: true);
        // without --mask-mode, the model's own (classes): the same figures
        var ue2 = TestPaths.RunCli("unet-evaluate", "--model", Path.Combine(unet, "best.unet"), "--images", himgs, "--masks", hmasks);
        Assert.True(ue2.ExitCode == 0, ue2.Stderr);
        Assert.Equal(ue.Stdout.Split('\n')[1], ue2.Stdout.Split('\n')[1]);

        // the GNN segments the held-out image into the six classes, with its probability map
        var seg = Path.Combine(_dir, "seg");
        var sr = TestPaths.RunCli("segment", Path.Combine(himgs, "held.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg);
        Assert.True(sr.ExitCode == 0, sr.Stderr);
        using var mask = Vips.Image.NewFromFile(Path.Combine(seg, "mask.tif"));
        Assert.All(mask.WriteToMemory<byte>(), v => Assert.True(v < 6));
        using var prob = Vips.Image.NewFromFile(Path.Combine(seg, "prob.tif"));
        Assert.Equal((800, 800), (prob.Width, prob.Height));
        // a winning class of six has probability > 1/6: every pixel (all tissue here) is at 42 or above
        Assert.True(prob.Min() >= 42, $"min {prob.Min()}");
    }

    /// <summary>metrics.json has a row per class, named, with the truth's pixels and F1/IoU/precision/recall in [0, 1]; the printed table names every class.</summary>
    private static void CheckPerClass(string metricsPath, string stdout, long[] truthPixels, bool exactTruth)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(metricsPath));
        var rows = doc.RootElement.GetProperty("perClass").EnumerateArray().ToArray();
        Assert.Equal(6, rows.Length);
        for (int c = 0; c < 6; c++)
        {
            Assert.Equal(Names[c], rows[c].GetProperty("Name").GetString());
            if (exactTruth) Assert.Equal(truthPixels[c], rows[c].GetProperty("TruePixels").GetInt64());
            foreach (var k in new[] { "F1", "IoU", "Precision", "Recall" }) Assert.InRange(rows[c].GetProperty(k).GetDouble(), 0, 1);
        }
        Assert.Equal(truthPixels.Sum(), rows.Sum(r => r.GetProperty("PredictedPixels").GetInt64()));
        var overall = doc.RootElement.GetProperty("overall");
        Assert.Equal(6, overall.GetProperty("Classes").GetInt32());
        Assert.Equal(36, overall.GetProperty("Confusion").GetArrayLength());
        foreach (var n in Names) Assert.Contains(n, stdout);
    }
}
