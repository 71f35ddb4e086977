using System.Diagnostics;
using ActorSeg.Core.Imaging;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cli;

/// <summary>A segmentation that fails, or is killed, after it has written its graph leaves the folder's earlier results
/// whole: never a new graph beside an old mask and an old segment.json.</summary>
public class SegmentFailureTests(ITestOutputHelper output) : TempDirTest("segfail")
{
    private static SortedDictionary<string, string> Snapshot(string dir) => TestPaths.FileHashes(dir);

    private static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(TestPaths.CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    /// <summary>Waits until the running job has set the earlier results aside and written its own graph (or its process ended).</summary>
    private static bool WaitForNewGraph(Process p, string outDir)
    {
        bool Aside() => Directory.Exists(outDir) && Directory.GetDirectories(outDir, ".previous-*").Any(d => !d.EndsWith(".partial", StringComparison.Ordinal));
        var until = DateTime.UtcNow.AddMinutes(3);
        while (!Aside()) { if (p.HasExited || DateTime.UtcNow > until) return false; Thread.Sleep(1); }
        while (!File.Exists(Path.Combine(outDir, "graph", "graph.json"))) { if (p.HasExited || DateTime.UtcNow > until) return false; Thread.Sleep(1); }
        return true;
    }

    [Fact]
    public void ASegmentationThatFailsOrIsKilledAfterItsGraph_LeavesTheEarlierResultsWhole()
    {
        string imgs = Path.Combine(_dir, "images"), masks = Path.Combine(_dir, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        foreach (int s in new[] { 1, 2, 3 })
            SyntheticMicroscopy.Generate(new SyntheticSpec(320, 320, SyntheticKind.Colonies, 8, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        var model = Path.Combine(_dir, "model");
        var tr = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--out", model, "--segments", "300", "--epochs", "15", "--patience", "5", "--val-frac", "0.34", "--no-refine");
        Assert.True(tr.ExitCode == 0, tr.Stderr);
        var bestModel = Path.Combine(model, "best.model");
        var held = Path.Combine(_dir, "held.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(1400, 1400, SyntheticKind.Colonies, 8, 1, 7), held, Path.Combine(_dir, "held_mask.tif"));
        var outDir = Path.Combine(_dir, "seg");
        var first = TestPaths.RunCli("segment", held, "--model", bestModel, "--out", outDir);
        Assert.True(first.ExitCode == 0, first.Stderr);
        var before = Snapshot(outDir);
        Assert.Contains("segment.json", before.Keys);
        Assert.Contains(Path.Combine("graph", "graph.npz"), before.Keys);

        // 1. the image goes once the new graph is written: the painting fails, and the earlier results are back, byte for
        // byte, with nothing of the failed job left. (Tried again where the job finished before the image could go.)
        var copy = Path.Combine(_dir, "copy.tif");
        for (int attempt = 1; ; attempt++)
        {
            File.Copy(held, copy, overwrite: true);
            using var p = Start("segment", copy, "--model", bestModel, "--out", outDir);
            var err = p.StandardError.ReadToEndAsync();
            if (WaitForNewGraph(p, outDir)) File.Delete(copy);
            p.WaitForExit();
            output.WriteLine(err.Result);
            if (p.ExitCode == 0 && attempt < 3)
            {
                // too late: this machine finished the job first; the folder is put back as it was and the step tried again
                Assert.True(TestPaths.RunCli("segment", held, "--model", bestModel, "--out", outDir).ExitCode == 0);
                before = Snapshot(outDir);
                continue;
            }
            Assert.Equal(1, p.ExitCode);
            Assert.Contains("file not found", err.Result);
            Assert.Contains("are back in place", err.Result);
            break;
        }
        Assert.Equal(before, Snapshot(outDir));
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));

        // 2. killed outright after its graph (no handler runs): the next job in the folder puts the earlier results back
        // before anything else; failing in its turn (a tissue mask that cannot be read), it leaves them as they were
        for (int attempt = 1; ; attempt++)
        {
            using var p = Start("segment", held, "--model", bestModel, "--out", outDir);
            bool wrote = WaitForNewGraph(p, outDir);
            if (wrote) p.Kill();
            p.WaitForExit();
            if (!wrote && attempt < 3)
            {
                Assert.True(TestPaths.RunCli("segment", held, "--model", bestModel, "--out", outDir).ExitCode == 0);
                before = Snapshot(outDir);
                continue;
            }
            Assert.True(wrote, "the job ended before it could be killed");
            break;
        }
        Assert.Single(Directory.GetDirectories(outDir, ".previous-*"));
        Assert.NotEqual(before, Snapshot(outDir)); // the killed job's graph, beside the earlier files set aside
        var badTissue = Path.Combine(_dir, "tissue.tif");
        File.WriteAllBytes(badTissue, File.ReadAllBytes(held).AsSpan(0, 5000).ToArray());
        var next = TestPaths.RunCli("segment", held, "--model", bestModel, "--out", outDir, "--tissue", badTissue);
        output.WriteLine(next.Stderr);
        Assert.Equal(1, next.ExitCode);
        Assert.Contains("stopped in", next.Stderr);
        Assert.Contains(badTissue, next.Stderr);
        Assert.Equal(before, Snapshot(outDir));
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));

        // 3. a job that succeeds replaces them, and leaves no folder of the earlier ones
        var ok = TestPaths.RunCli("segment", held, "--model", bestModel, "--out", outDir, "--spacing", "12");
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        Assert.NotEqual(before[Path.Combine("graph", "graph.npz")], Snapshot(outDir)[Path.Combine("graph", "graph.npz")]);
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));
    }
}
