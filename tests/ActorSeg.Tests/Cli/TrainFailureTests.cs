using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cli;

/// <summary>A <c>train</c> run that fails, wherever it fails, leaves the model folder it was given as it was: the earlier
/// model, its refinement, its summary and its training graphs.</summary>
public class TrainFailureTests(ITestOutputHelper output) : TempDirTest("trainfail")
{
    private static SortedDictionary<string, string> Snapshot(string dir) => TestPaths.FileHashes(dir);

    private string Fields(string name, params int[] seeds)
    {
        string imgs = Path.Combine(_dir, name, "images"), masks = Path.Combine(_dir, name, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        foreach (int s in seeds)
            SyntheticMicroscopy.Generate(new SyntheticSpec(320, 320, SyntheticKind.Colonies, 8, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        return Path.Combine(_dir, name);
    }

    [Fact]
    public void AFailedRun_LeavesTheEarlierModelAndItsGraphs()
    {
        var first = Fields("first", 1, 2, 3);
        var model = Path.Combine(_dir, "model");
        string[] quick = ["--segments", "300", "--epochs", "15", "--patience", "5", "--val-frac", "0.34"];
        var ok = TestPaths.RunCli(["train", "--images", Path.Combine(first, "images"), "--masks", Path.Combine(first, "masks"), "--out", model, .. quick]);
        output.WriteLine(ok.Stderr);
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        using (var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "train.json"))))
        {
            // the summary names the files where they lie, not where the run staged them
            Assert.Equal(Path.Combine(model, "best.model"), summary.RootElement.GetProperty("result").GetProperty("BestModel").GetString());
            Assert.Equal(System.Text.Json.JsonValueKind.Object, summary.RootElement.GetProperty("refiner").ValueKind);
        }
        var before = Snapshot(model);
        Assert.Contains(Path.Combine("graphs", "f1", "graph.npz"), before.Keys);
        void Unchanged(string what)
        {
            Assert.Equal(before, Snapshot(model));
            Assert.Empty(Directory.GetDirectories(model, ".*")); // no staging folder left behind
            output.WriteLine($"{what}: the model folder is unchanged");
        }

        // 1. the GNN trains, then its refinement fails on a damaged node map: nothing of the run is published
        var nodeMap = Path.Combine(model, "graphs", "f1", "nodes.tif");
        var good = File.ReadAllBytes(nodeMap);
        var damaged = (byte[])good.Clone();
        for (int i = 16; i < damaged.Length; i++) damaged[i] = (byte)(i * 31);
        File.WriteAllBytes(nodeMap, damaged);
        before = Snapshot(model);
        var refineFails = TestPaths.RunCli(["train", "--graphs", Path.Combine(model, "graphs"), "--out", model, .. quick]);
        output.WriteLine(refineFails.Stderr);
        Assert.Equal(1, refineFails.ExitCode);
        Assert.Contains("nodes.tif", refineFails.Stderr);
        Unchanged("refinement failed");
        File.WriteAllBytes(nodeMap, good);
        before = Snapshot(model);

        // 2. a new image set whose second image is not an image: the graph of the first is built, then the run fails
        var second = Fields("second", 4, 5);
        File.WriteAllText(Path.Combine(second, "images", "f5.tif"), "not an image");
        var buildFails = TestPaths.RunCli(["train", "--images", Path.Combine(second, "images"), "--masks", Path.Combine(second, "masks"), "--out", model, .. quick]);
        Assert.Equal(1, buildFails.ExitCode);
        Assert.Contains("f5.tif", buildFails.Stderr);
        Unchanged("a graph failed to build");

        // 3. every graph built and swapped in, then the training refuses a graph without labels given beside them: the
        // earlier graphs come back
        var third = Fields("third", 6, 7);
        var unlabelled = Path.Combine(_dir, "unlabelled");
        Assert.Equal(0, TestPaths.RunCli("graph", Path.Combine(third, "images", "f6.tif"), "--segments", "300", "--out", unlabelled).ExitCode);
        var trainFails = TestPaths.RunCli(["train", "--images", Path.Combine(third, "images"), "--masks", Path.Combine(third, "masks"), "--graphs", unlabelled, "--out", model, .. quick]);
        Assert.Equal(1, trainFails.ExitCode);
        Assert.Contains("graph has no labels", trainFails.Stderr);
        Unchanged("the training failed after the graphs were built");

        // 4. two images of one base name would build one graph folder twice: refused before anything is built
        var twice = Fields("twice", 8);
        File.Copy(Path.Combine(twice, "images", "f8.tif"), Path.Combine(twice, "images", "f8.tiff"));
        var collide = TestPaths.RunCli(["train", "--images", Path.Combine(twice, "images"), "--masks", Path.Combine(twice, "masks"), "--out", model, .. quick]);
        Assert.Equal(1, collide.ExitCode);
        Assert.Contains("f8.tif and f8.tiff share the base name 'f8'", collide.Stderr);
        Unchanged("two images of one base name");

        // 5. contradictory options are refused as the command line is read (usage: exit 2)
        var contradict = TestPaths.RunCli(["train", "--graphs", Path.Combine(model, "graphs"), "--out", model, "--refine", "--no-refine"]);
        Assert.Equal(2, contradict.ExitCode);
        Assert.Contains("--refine and --no-refine contradict each other", contradict.Stderr);
        Unchanged("contradictory options");

        // 6. --graphs from the folder the new graphs would replace: refused before anything is built
        var overlap = TestPaths.RunCli(["train", "--images", Path.Combine(third, "images"), "--masks", Path.Combine(third, "masks"), "--graphs", Path.Combine(model, "graphs", "f1"), "--out", model, .. quick]);
        Assert.Equal(1, overlap.ExitCode);
        Assert.Contains("which the graphs built from --images replace", overlap.Stderr);
        Unchanged("--graphs inside the graphs folder --images replaces");

        // and a run that succeeds replaces the model and the graphs together
        var again = TestPaths.RunCli(["train", "--images", Path.Combine(third, "images"), "--masks", Path.Combine(third, "masks"), "--out", model, .. quick]);
        Assert.True(again.ExitCode == 0, again.Stderr);
        var after = Snapshot(model);
        Assert.Contains(Path.Combine("graphs", "f6", "graph.npz"), after.Keys);
        Assert.DoesNotContain(Path.Combine("graphs", "f1", "graph.npz"), after.Keys);
        Assert.NotEqual(before[Path.Combine("best.model")], after["best.model"]);
        Assert.Empty(Directory.GetDirectories(model, ".*"));

        // an image replaced after its graph was built is read again by the refinement: said, naming both
        File.SetLastWriteTimeUtc(Path.Combine(third, "images", "f6.tif"), new DateTime(2020, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        var changed = TestPaths.RunCli("evaluate", "-m", Path.Combine(model, "best.model"), "-g", Path.Combine(model, "graphs"));
        Assert.True(changed.ExitCode == 0, changed.Stderr);
        Assert.Contains($"{Path.Combine(model, "graphs", "f6", "graph.npz")}: its image {Path.Combine(third, "images", "f6.tif")} has changed since the graph was built from it", changed.Stderr);
        Assert.DoesNotContain("f7.tif has changed", changed.Stderr);

        // refine needs the model's own training graphs: one gone is named, before anything is read or trained
        Directory.Move(Path.Combine(model, "graphs", "f7"), Path.Combine(_dir, "f7-moved"));
        var gone = TestPaths.RunCli("refine", "-m", Path.Combine(model, "best.model"), "-o", Path.Combine(_dir, "refined.model"));
        Assert.Equal(1, gone.ExitCode);
        Assert.Contains($"its training graph {Path.Combine(model, "graphs", "f7", "graph.npz")} is not there any more", gone.Stderr);
        Assert.False(File.Exists(Path.Combine(_dir, "refined.model")));
    }

    [Fact]
    public void GraphsWhoseMasksWereReadInDifferentModes_AreRefused()
    {
        // class 1 of a binary mask is "not background"; class 1 of a mask of class ids is whatever the ids say
        var f = Fields("modes", 9);
        string img = Path.Combine(f, "images", "f9.tif"), mask = Path.Combine(f, "masks", "f9.tif");
        string binary = Path.Combine(_dir, "g-binary"), classes = Path.Combine(_dir, "g-classes");
        Assert.Equal(0, TestPaths.RunCli("graph", img, "--mask", mask, "--segments", "300", "--out", binary).ExitCode);
        var c = TestPaths.RunCli("graph", img, "--mask", mask, "--mask-mode", "classes", "--segments", "300", "--out", classes);
        Assert.True(c.ExitCode == 0, c.Stderr);
        var r = TestPaths.RunCli("train", "--graphs", binary, classes, "--out", Path.Combine(_dir, "mixed"), "--epochs", "5", "--no-refine");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{Path.Combine(classes, "graph.npz")} was built with its mask read as classes, {Path.Combine(binary, "graph.npz")} with its mask read as binary", r.Stderr);
        Assert.False(File.Exists(Path.Combine(_dir, "mixed", "best.model")));
    }
}
