using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Cli;

/// <summary>`actorseg batch` through the real program: slides fail alone, finished slides are skipped, a report is written.</summary>
public class BatchTests(ITestOutputHelper output) : TempDirTest("batch")
{

    private string Model()
    {
        string imgs = Path.Combine(_dir, "tr", "images"), masks = Path.Combine(_dir, "tr", "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 2; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(512, 512, SyntheticKind.Colonies, 16, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        var r = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--segments", "1000", "--epochs", "25", "--val-frac", "0.5", "--no-refine", "--out", Path.Combine(_dir, "model"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        return Path.Combine(_dir, "model", "best.model");
    }

    [Fact]
    public void ABatchManifest_ChoosesTheImagesOfALif_ByItsSeriesColumn()
    {
        var model = Model();
        var d = Directory.CreateDirectory(Path.Combine(_dir, "lif")).FullName;
        // two colony fields, each with its mask, as the two images of one LIF project (the second at 0.25 µm per pixel)
        var images = new List<ActorSeg.Tests.IO.LifImage>();
        foreach (var (name, w, h, seed, um) in new[] { ("a", 400, 300, 21, 0.5), ("b", 520, 380, 22, 0.25) })
        {
            string tif = Path.Combine(d, $"{name}.tif");
            SyntheticMicroscopy.Generate(new SyntheticSpec(w, h, SyntheticKind.Colonies, 16, 1, seed), tif, Path.Combine(d, $"{name}_mask.tif"));
            var px = new ushort[w * h];
            using (var src = ImageSources.Open(tif)) src.ReadRegion(0, 0, w, h, px);
            images.Add(ActorSeg.Tests.IO.LifWriter.OneChannel(name, w, h, um, px, 16));
        }
        ActorSeg.Tests.IO.LifWriter.Write(Path.Combine(d, "project.lif"), images);
        var manifest = Path.Combine(_dir, "series.csv");
        File.WriteAllText(manifest, "image,mask,series\n" +
            "lif/project.lif,lif/a_mask.tif,0\n" +
            "lif/project.lif,lif/b_mask.tif,1\n" +
            "lif/project.lif,,7\n" +          // an image the project does not hold
            "lif/project.lif,lif/b_mask.tif,1\n"); // listed twice
        var outDir = Path.Combine(_dir, "out-series");
        var r = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", model, "--tile-size", "256");
        output.WriteLine(r.Stderr);
        Assert.Equal(1, r.ExitCode);
        var rows = Summary(outDir);
        Assert.Equal(["project_s0", "project_s1", "project_s1", "project_s7"], rows.Select(x => x[0]).Order(StringComparer.Ordinal));
        string[] Row(string name, string status) => Assert.Single(rows, x => x[0] == name && x[4] == status);
        Row("project_s0", "done");
        var s1 = Row("project_s1", "done");
        Assert.Contains("holds 2 image(s) (series 0..1); series 7 does not exist", Row("project_s7", "failed")[5]);
        Assert.Contains("series 1: duplicate slide", Row("project_s1", "rejected")[5]);
        // image 1's own size and pixel size in its mask, and its colonies found against its own mask
        using (var mask = Vips.Image.NewFromFile(Path.Combine(outDir, "slides", "project_s1", "mask.tif")))
        {
            Assert.Equal((520, 380), (mask.Width, mask.Height));
            Assert.Equal(4000.0, mask.Xres, 1); // 0.25 µm per pixel, in pixels per millimetre
        }
        Assert.True(double.Parse(s1[8], System.Globalization.CultureInfo.InvariantCulture) > 0.8, string.Join(',', s1));
        Assert.Equal("0.25", s1[13]);
        foreach (var f in new[] { "overlay.png", "objects.geojson", "metrics.json" })
            Assert.True(File.Exists(Path.Combine(outDir, "slides", "project_s1", f)), f);
    }

    [Fact]
    public void ABatch_RunsEverySlideAlone_KeepsThePixelSize_SkipsFinishedSlides_AndReports()
    {
        var model = Model();
        var slides = Path.Combine(_dir, "slides");
        Directory.CreateDirectory(slides);
        for (int s = 11; s <= 12; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(700, 600, SyntheticKind.Colonies, 16, 1, s), Path.Combine(slides, $"s{s}.tif"), Path.Combine(slides, $"s{s}_mask.tif"));
        // a slide with a pixel size (0.5 µm = 2000 px/mm), which the mask must carry over
        using (var im = Vips.Image.NewFromFile(Path.Combine(slides, "s12.tif")))
        using (var withRes = im.Copy(xres: 2000.0, yres: 2000.0))
            withRes.Tiffsave(Path.Combine(slides, "s12res.tif"), tile: true, resunit: Vips.Enums.ForeignTiffResunit.Cm);
        File.WriteAllBytes(Path.Combine(slides, "broken.tif"), new byte[3000]);
        // names a spreadsheet or a naive CSV reader would trip on: a comma, and a formula
        File.Copy(Path.Combine(slides, "s12.tif"), Path.Combine(slides, "s, quoted.tif"));
        File.Copy(Path.Combine(slides, "s12.tif"), Path.Combine(slides, "=1+1.tif"));
        var manifest = Path.Combine(_dir, "batch.csv");
        File.WriteAllText(manifest, "# a comment, then the header in another order\n" +
            "Split,Image,Mask\n" +
            "test,slides/s11.tif,slides/s11_mask.tif\n" +
            "test,slides/s12res.tif,\n" +
            "test,slides/broken.tif,\n" +
            "\n" +
            "test,slides/missing.tif,\n" +
            "test,slides/s11.tif,\n" +
            "test,\"slides/s, quoted.tif\",\n" +
            "\"te\"\"st\",slides/=1+1.tif,\n");
        var outDir = Path.Combine(_dir, "out");
        var r = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", model, "--tile-size", "256");
        output.WriteLine(r.Stderr);
        Assert.Equal(1, r.ExitCode); // some slides failed: scripts must see it
        var rows = Summary(outDir);
        string Status(string name, int nth = 0) => rows.Where(x => x[0] == name).ElementAt(nth)[4];
        Assert.Equal("done", Status("s, quoted"));
        Assert.Equal("done", Status("'=1+1")); // escaped: a spreadsheet shows it as text
        Assert.Equal("te\"st", rows.First(x => x[0] == "'=1+1")[3]);
        Assert.DoesNotContain(File.ReadAllLines(Path.Combine(outDir, "summary.csv")), l => l.StartsWith('='));
        Assert.Equal("done", Status("s11"));
        Assert.Equal("done", Status("s12res"));
        Assert.Equal("failed", Status("broken"));
        Assert.Equal("rejected", Status("missing"));
        Assert.Equal("rejected", Status("s11", 1)); // the duplicate
        Assert.Contains(rows, x => x[0] == "broken" && string.Join(',', x).Contains("broken.tif"));
        // the masked slide is measured; every finished slide has its outputs
        var s11 = rows.First(x => x[0] == "s11");
        Assert.True(double.Parse(s11[8], System.Globalization.CultureInfo.InvariantCulture) > 0.8, string.Join(',', s11));
        foreach (var f in new[] { "mask.tif", "overlay.png", "graph/graph.npz", "metrics.json", "slide.json" })
            Assert.True(File.Exists(Path.Combine(outDir, "slides", "s11", f)), f);
        using (var mask = Vips.Image.NewFromFile(Path.Combine(outDir, "slides", "s12res", "mask.tif")))
        {
            Assert.Equal((700, 600), (mask.Width, mask.Height));
            Assert.Equal(2000.0, mask.Xres, 1);
            Assert.Equal(2000.0, mask.Yres, 1);
        }
        var html = File.ReadAllText(Path.Combine(outDir, "report.html"));
        Assert.Contains("s11", html);
        Assert.Contains("data:image/png;base64,", html);
        Assert.Contains("<svg", html); // the training curves
        Assert.Contains("duplicate slide", html);

        // run again: finished slides are skipped, not redone
        var stamp = File.GetLastWriteTimeUtc(Path.Combine(outDir, "slides", "s11", "mask.tif"));
        var again = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", model, "--tile-size", "256");
        Assert.Equal(1, again.ExitCode);
        rows = Summary(outDir);
        Assert.Equal("skipped", Status("s11"));
        Assert.Equal("skipped", Status("s12res"));
        Assert.Equal("failed", Status("broken"));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(Path.Combine(outDir, "slides", "s11", "mask.tif")));

        // a changed parameter is not skipped; nor is a mask whose contents changed (its time kept)
        var changed = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", model, "--tile-size", "320");
        Assert.Equal(1, changed.ExitCode);
        rows = Summary(outDir);
        Assert.Equal("done", Status("s11"));
        Assert.Equal("done", Status("s12res"));
        var maskPath = Path.Combine(slides, "s11_mask.tif");
        var time = File.GetLastWriteTimeUtc(maskPath);
        using (var m = Vips.Image.NewFromFile(maskPath, access: Vips.Enums.Access.Sequential))
        using (var flipped = m.Cast(Vips.Enums.BandFormat.Uchar).Equal(0).Ifthenelse(1, 0).Cast(Vips.Enums.BandFormat.Uchar))
            flipped.Tiffsave(maskPath + ".new.tif");
        File.Move(maskPath + ".new.tif", maskPath, overwrite: true);
        File.SetLastWriteTimeUtc(maskPath, time);
        var remasked = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", model, "--tile-size", "320");
        Assert.Equal(1, remasked.ExitCode);
        rows = Summary(outDir);
        Assert.Equal("done", Status("s11"));
        Assert.Equal("skipped", Status("s12res"));

        // a result whose graph read the image otherwise than this build does (an older reader that took one channel of a
        // hyperstack, or a pixel size a thousand times off) is done again, and the log says why; graph.json records both.
        // An older graph.json without the pixel size is not compared on it; one that is gone is done again.
        System.Text.Json.Nodes.JsonNode Json(string slide) => System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "slides", slide, "graph", "graph.json")))!;
        void Save(string slide, System.Text.Json.Nodes.JsonNode j) => File.WriteAllText(Path.Combine(outDir, "slides", slide, "graph", "graph.json"), j.ToJsonString());
        var s12 = Json("s12res");
        Assert.Equal(0.5, s12["image"]!["micronsPerPixel"]![0]!.GetValue<double>(), 6);
        s12["image"]!["channels"] = 2;
        Save("s12res", s12);
        var s11json = Json("s11");
        Assert.Null(s11json["image"]!["micronsPerPixel"]); // s11.tif states no pixel size
        s11json["image"]!.AsObject().Remove("micronsPerPixel");
        Save("s11", s11json);
        var reread = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", model, "--tile-size", "320");
        Assert.Equal(1, reread.ExitCode);
        rows = Summary(outDir);
        Assert.Equal("done", Status("s12res"));
        Assert.Equal("skipped", Status("s11"));
        Assert.Contains("Slide s12res is done again, though an earlier run finished it from the same inputs: its result read the image as 700x600, 2 channel(s), 16-bit; it reads as 700x600, 1 channel(s), 16-bit now", reread.Stderr);
        s12 = Json("s12res");
        s12["image"]!["micronsPerPixel"] = new System.Text.Json.Nodes.JsonArray(500.0, 500.0);
        Save("s12res", s12);
        var s11summary = Path.Combine(outDir, "slides", "s11", "graph", "graph.json");
        File.Delete(s11summary);
        reread = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", model, "--tile-size", "320");
        rows = Summary(outDir);
        Assert.Equal("done", Status("s12res"));
        Assert.Equal("done", Status("s11"));
        Assert.Contains("its result took the pixels as 500 x 500 µm; the image says 0.5 x 0.5 µm now", reread.Stderr);
        Assert.Contains($"Slide s11 is done again, though an earlier run finished it from the same inputs: its graph summary {s11summary} is gone", reread.Stderr);
    }

    /// <summary>summary.csv's rows, read by a CSV parser (fields may be quoted).</summary>
    /// <summary>
    /// A model of five classes measures its slides against their masks read as class ids (its masks were), by default;
    /// <c>--mask-mode binary</c> reads them as foreground and background; a masks folder that is not there is named.
    /// </summary>
    [Fact]
    public void AMultiClassModel_MeasuresItsSlidesAgainstClassIds_AndAMasksFolderThatIsNotThereIsNamed()
    {
        string imgs = Path.Combine(_dir, "mc", "images"), masks = Path.Combine(_dir, "mc", "masks");
        string slides = Path.Combine(_dir, "mc", "slides"), slideMasks = Path.Combine(_dir, "mc", "slide-masks");
        foreach (var d in new[] { imgs, masks, slides, slideMasks }) Directory.CreateDirectory(d);
        for (int s = 1; s <= 2; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(600, 600, SyntheticKind.Cells, 16, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        var held = SyntheticMicroscopy.Generate(new SyntheticSpec(600, 600, SyntheticKind.Cells, 16, 1, 9), Path.Combine(slides, "held.tif"), Path.Combine(slideMasks, "held.tif"));
        var model = Path.Combine(_dir, "mc", "model");
        var tr = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--mask-mode", "classes", "--segments", "400", "--epochs", "20", "--patience", "5",
            "--val-frac", "0.5", "--no-refine", "--out", model);
        Assert.True(tr.ExitCode == 0, tr.Stderr);

        long[] TruthPixels(string outDir)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "slides", "held", "metrics.json")));
            var root = doc.RootElement;
            int k = root.GetProperty("Classes").GetInt32();
            var cm = root.GetProperty("Confusion").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            Assert.Equal(k * k, cm.Length);
            return Enumerable.Range(0, k).Select(t => cm.Skip(t * k).Take(k).Sum()).ToArray(); // the truth's pixels per class
        }
        var r = TestPaths.RunCli("batch", slides, "--masks", slideMasks, "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "mc-out"), "--tile-size", "320");
        output.WriteLine(r.Stderr);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("Masks read as class ids", r.Stderr);
        Assert.Equal(held.ClassPixels!, TruthPixels(Path.Combine(_dir, "mc-out")));
        var row = Assert.Single(Summary(Path.Combine(_dir, "mc-out")));
        Assert.Equal("done", row[4]);

        // read as binary on request: every class but the background is foreground
        r = TestPaths.RunCli("batch", slides, "--masks", slideMasks, "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "mc-binary"), "--tile-size", "320", "--mask-mode", "binary");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var binary = TruthPixels(Path.Combine(_dir, "mc-binary"));
        Assert.Equal(held.ClassPixels![0], binary[0]);
        Assert.Equal(held.ClassPixels.Skip(1).Sum(), binary[1]);
        Assert.All(binary.Skip(2), n => Assert.Equal(0, n));

        // a masks folder that is not there: named, before any slide runs
        var missing = Path.Combine(_dir, "mc", "no-such-masks");
        r = TestPaths.RunCli("batch", slides, "--masks", missing, "--model", Path.Combine(model, "best.model"), "--out", Path.Combine(_dir, "mc-missing"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"--masks {missing}: no such folder", r.Stderr);
        Assert.False(Directory.Exists(Path.Combine(_dir, "mc-missing", "slides")));
    }

    private static List<string[]> Summary(string outDir)
    {
        using var p = new Microsoft.VisualBasic.FileIO.TextFieldParser(Path.Combine(outDir, "summary.csv")) { Delimiters = [","], HasFieldsEnclosedInQuotes = true };
        var rows = new List<string[]>();
        while (!p.EndOfData) rows.Add(p.ReadFields()!);
        Assert.Equal(ActorSeg.Cli.BatchCommand.SummaryColumns, rows[0]);
        return rows.Skip(1).ToList();
    }

    [Fact]
    public void AManifestThatIsNotCsv_FailsNamingTheFileAndLine_AndAQuotedOneIsRead()
    {
        var good = Path.Combine(_dir, "good.csv");
        File.WriteAllText(good, "# slides\nimage,mask\n\"a, b.tif\",\"m \"\"1\"\".tif\"\n\nc.tif,\n");
        Assert.Equal([("a, b.tif", (string?)"m \"1\".tif", (string?)null, (int?)null), ("c.tif", null, null, null)], ActorSeg.Cli.BatchInput.ReadManifest(good));
        var open = Path.Combine(_dir, "open.csv");
        File.WriteAllText(open, "image\na.tif\n\"b.tif\" trailing\n");
        var e = Assert.Throws<InvalidDataException>(() => ActorSeg.Cli.BatchInput.ReadManifest(open));
        Assert.Contains(open, e.Message);
        Assert.Contains("line 3", e.Message);
        var noImage = Path.Combine(_dir, "noimage.csv");
        File.WriteAllText(noImage, "mask,split\nm.tif,test\n");
        Assert.Contains("'image' column", Assert.Throws<InvalidDataException>(() => ActorSeg.Cli.BatchInput.ReadManifest(noImage)).Message);
        var empty = Path.Combine(_dir, "empty.csv");
        File.WriteAllText(empty, "# nothing\n\n");
        Assert.Contains("empty", Assert.Throws<InvalidDataException>(() => ActorSeg.Cli.BatchInput.ReadManifest(empty)).Message);
        // a NUL in a path (before: "Null character in path.", naming neither the manifest nor the line)
        var nul = Path.Combine(_dir, "nul.csv");
        File.WriteAllText(nul, "image\na.tif\nb.tif\0\n");
        var en = Assert.Throws<InvalidDataException>(() => ActorSeg.Cli.BatchInput.Load(nul, null));
        Assert.Contains(nul, en.Message);
        Assert.Contains("line 3", en.Message);
        Assert.Contains("NUL", en.Message);
        // a folder listed as an image or a mask is rejected as a folder, not "not found", and the other rows run
        Directory.CreateDirectory(Path.Combine(_dir, "afolder"));
        File.WriteAllBytes(Path.Combine(_dir, "real.tif"), [1]);
        var folders = Path.Combine(_dir, "folders.csv");
        File.WriteAllText(folders, "image,mask\nafolder\nreal.tif,afolder\n");
        var (slides, rejected) = ActorSeg.Cli.BatchInput.Load(folders, null);
        Assert.Empty(slides);
        Assert.Equal(2, rejected.Count);
        Assert.All(rejected, r => Assert.Contains(": a folder, not a", r.Reason));
    }

    [Fact]
    public void ABatchWithABadModel_FailsBeforeAnyWork()
    {
        var slides = Path.Combine(_dir, "slides");
        Directory.CreateDirectory(slides);
        SyntheticMicroscopy.Generate(new SyntheticSpec(300, 300, SyntheticKind.Colonies, 16, 1, 3), Path.Combine(slides, "a.tif"), Path.Combine(_dir, "a_mask.tif"));
        var bad = Path.Combine(_dir, "bad.model");
        File.WriteAllText(bad, "not a model");
        var r = TestPaths.RunCli("batch", slides, "--out", Path.Combine(_dir, "out"), "--model", bad);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("bad.model", r.Stderr);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out", "slides")));
    }
}
