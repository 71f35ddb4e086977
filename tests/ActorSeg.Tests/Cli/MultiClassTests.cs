using System.Text.Json;
using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Cli;

/// <summary>
/// The multi-class check (issue #14): generated cells (background, cytoplasm, nucleus, a thin membrane class and a rare
/// mitotic class) through the GNN and the UNet baseline with <c>--mask-mode classes</c>, per-class metrics computed,
/// printed and written. Behaviour only: no accuracy threshold.
/// </summary>
public class MultiClassTests(ITestOutputHelper output) : TempDirTest("multiclass")
{
    private static readonly string[] Names = ["background", "cytoplasm", "nucleus", "membrane", "mitotic"];

    [Fact]
    public void Cells_GnnAndUNet_TrainAndEvaluatePerClass()
    {
        string imgs = Path.Combine(_dir, "train", "images"), masks = Path.Combine(_dir, "train", "masks");
        string himgs = Path.Combine(_dir, "held", "images"), hmasks = Path.Combine(_dir, "held", "masks");
        foreach (var d in new[] { imgs, masks, himgs, hmasks }) Directory.CreateDirectory(d);
        for (int s = 1; s <= 3; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(800, 800, SyntheticKind.Cells, 16, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        // a held-out field with every class, the rare one included (the first such seed from 9; deterministic)
        SyntheticResult held = null!;
        for (int seed = 9; seed < 40; seed++)
        {
            held = SyntheticMicroscopy.Generate(new SyntheticSpec(800, 800, SyntheticKind.Cells, 16, 1, seed), Path.Combine(himgs, "held.tif"), Path.Combine(hmasks, "held.tif"));
            if (held.ClassPixels![4] > 0) break;
        }
        Assert.True(held.ClassPixels![4] > 0, "no seed in 9..39 gives an 800² field with a mitotic cell");

        // the thin class is in the held-out mask at its proportion (a line 3 px wide along every cell outline)
        double membrane = (double)held.ClassPixels![3] / (800 * 800);
        output.WriteLine($"held-out classes: {string.Join(", ", held.ClassPixels.Select((p, c) => $"{Names[c]} {100.0 * p / (800 * 800):F2} %"))}");
        Assert.InRange(membrane, 0.01, 0.05);
        Assert.True(held.ClassPixels[1] > 0 && held.ClassPixels[2] > 0);

        // the GNN, five named classes
        var model = Path.Combine(_dir, "gnn");
        var tr = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--mask-mode", "classes", "--classes", SyntheticMicroscopy.CellClasses,
            "--segments", "1600", "--epochs", "40", "--patience", "10", "--val-frac", "0.34", "--no-refine", "--out", model);
        output.WriteLine(tr.Stderr);
        Assert.True(tr.ExitCode == 0, tr.Stderr);
        var g = TestPaths.RunCli("graph", Path.Combine(himgs, "held.tif"), "--mask", Path.Combine(hmasks, "held.tif"), "--mask-mode", "classes",
            "--segments", "1600", "--no-node-map", "--out", Path.Combine(_dir, "held-graph"));
        Assert.True(g.ExitCode == 0, g.Stderr);
        var ev = TestPaths.RunCli("evaluate", "--model", Path.Combine(model, "best.model"), "--graphs", Path.Combine(_dir, "held-graph"), "--out", Path.Combine(_dir, "gnn-eval"));
        output.WriteLine(ev.Stdout);
        Assert.True(ev.ExitCode == 0, ev.Stderr);
        CheckPerClass(Path.Combine(_dir, "gnn-eval", "metrics.json"), ev.Stdout, held.ClassPixels, exactTruth: true);

        // the UNet baseline on the same images, with the same mask mode (a few steps: behaviour, not accuracy)
        var unet = Path.Combine(_dir, "unet");
        var ut = TestPaths.RunCli("unet-train", "--images", imgs, "--masks", masks, "--mask-mode", "classes", "--classes", SyntheticMicroscopy.CellClasses,
            "--patch", "64", "--base", "8", "--depth", "2", "--epochs", "2", "--steps", "4", "--val-frac", "0.34", "--out", unet);
        output.WriteLine(ut.Stderr);
        Assert.True(ut.ExitCode == 0, ut.Stderr);
        Assert.Contains("5 classes", ut.Stderr);
        var ue = TestPaths.RunCli("unet-evaluate", "--model", Path.Combine(unet, "best.unet"), "--images", himgs, "--masks", hmasks, "--mask-mode", "classes", "--out", Path.Combine(_dir, "unet-eval"));
        output.WriteLine(ue.Stdout);
        Assert.True(ue.ExitCode == 0, ue.Stderr);
        CheckPerClass(Path.Combine(_dir, "unet-eval", "metrics.json"), ue.Stdout, held.ClassPixels, exactTruth: true);
        // without --mask-mode, the model's own (classes): the same figures
        var ue2 = TestPaths.RunCli("unet-evaluate", "--model", Path.Combine(unet, "best.unet"), "--images", himgs, "--masks", hmasks);
        Assert.True(ue2.ExitCode == 0, ue2.Stderr);
        Assert.Equal(ue.Stdout.Split('\n')[1], ue2.Stdout.Split('\n')[1]);

        // the GNN segments the held-out image into the five classes, with its probability map
        var seg = Path.Combine(_dir, "seg");
        var sr = TestPaths.RunCli("segment", Path.Combine(himgs, "held.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg);
        Assert.True(sr.ExitCode == 0, sr.Stderr);
        using var mask = Vips.Image.NewFromFile(Path.Combine(seg, "mask.tif"));
        Assert.All(mask.WriteToMemory<byte>(), v => Assert.True(v < 5));
        using var prob = Vips.Image.NewFromFile(Path.Combine(seg, "prob.tif"));
        Assert.Equal((800, 800), (prob.Width, prob.Height));
        // a winning class of five has probability > 1/5: every pixel (all tissue here) is above 51
        Assert.True(prob.Min() >= 51, $"min {prob.Min()}");
    }

    /// <summary>metrics.json has a row per class, named, with the truth's pixels and F1/IoU/precision/recall in [0, 1]; the printed table names every class.</summary>
    private static void CheckPerClass(string metricsPath, string stdout, long[] truthPixels, bool exactTruth)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(metricsPath));
        var rows = doc.RootElement.GetProperty("perClass").EnumerateArray().ToArray();
        Assert.Equal(5, rows.Length);
        for (int c = 0; c < 5; c++)
        {
            Assert.Equal(Names[c], rows[c].GetProperty("Name").GetString());
            if (exactTruth) Assert.Equal(truthPixels[c], rows[c].GetProperty("TruePixels").GetInt64());
            foreach (var k in new[] { "F1", "IoU", "Precision", "Recall" }) Assert.InRange(rows[c].GetProperty(k).GetDouble(), 0, 1);
        }
        Assert.Equal(truthPixels.Sum(), rows.Sum(r => r.GetProperty("PredictedPixels").GetInt64()));
        var overall = doc.RootElement.GetProperty("overall");
        Assert.Equal(5, overall.GetProperty("Classes").GetInt32());
        Assert.Equal(25, overall.GetProperty("Confusion").GetArrayLength());
        foreach (var n in Names) Assert.Contains(n, stdout);
    }
}
