using ActorSeg.Core.IO;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>An earlier run's results stay whole until the job replacing them has succeeded, whatever step is interrupted.</summary>
public class EarlierResultsTests : TempDirTest
{
    public EarlierResultsTests() : base("earlier") { }

    private string Folder(string name)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        return d;
    }

    /// <summary>An earlier segmentation's files (and a user's own file, which no job writes).</summary>
    private static void WriteEarlier(string outDir, string tag)
    {
        Directory.CreateDirectory(Path.Combine(outDir, "graph"));
        foreach (var f in new[] { "graph/graph.npz", "graph/graph.json", "graph/classes.u8", "mask.tif", "overlay.png", "segment.json" })
            File.WriteAllText(Path.Combine(outDir, f), $"{tag}:{f}");
    }

    /// <summary>Every file under the folder (relative path → content), the dot-folders of the mechanism included.</summary>
    private static SortedDictionary<string, string> Contents(string dir) =>
        new(Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).ToDictionary(f => Path.GetRelativePath(dir, f), File.ReadAllText), StringComparer.Ordinal);

    [Fact]
    public void AFailedJob_PutsTheEarlierResultsBack_AndRemovesItsOwn()
    {
        var outDir = Folder("seg");
        WriteEarlier(outDir, "old");
        File.WriteAllText(Path.Combine(outDir, "notes.txt"), "mine");

        Directory.CreateDirectory(Path.Combine(outDir, "graph", "analysis"));
        File.WriteAllText(Path.Combine(outDir, "graph", "analysis", "r.csv"), "mine");
        File.WriteAllText(Path.Combine(outDir, "graph", "notes.txt"), "mine");
        var before = Contents(outDir);

        var aside = EarlierResults.SetAside(outDir, "job1", segments: true);
        Assert.Equal(["segment.json", "graph/graph.json", "graph/graph.npz", "graph/classes.u8", "mask.tif", "overlay.png"], aside.Moved);
        Assert.False(File.Exists(Path.Combine(outDir, "graph", "graph.npz")));
        Assert.True(File.Exists(Path.Combine(outDir, "graph", "notes.txt"))); // the user's files in graph/ stay
        Assert.True(File.Exists(Path.Combine(outDir, "notes.txt"))); // not a job's file: left where it is
        // set aside again (the job prepares again after a restart): nothing moves, its own new files are not taken for old ones
        Directory.CreateDirectory(Path.Combine(outDir, "graph"));
        File.WriteAllText(Path.Combine(outDir, "graph", "graph.npz"), "new");
        Assert.True(EarlierResults.SetAside(outDir, "job1", segments: true) is { Already: true, Moved.Length: 0 });
        Assert.Equal("new", File.ReadAllText(Path.Combine(outDir, "graph", "graph.npz")));

        // and what a stopped painter left half-written beside the mask
        File.WriteAllText(Path.Combine(outDir, "mask.tif.0f3a.flat.tif.77b1.partial"), "half");
        File.WriteAllText(Path.Combine(outDir, ".objects.geojson.0f3a.partial"), "half");
        // the job fails after its graph: the new graph goes, the earlier files come back, nothing else is left
        var r = EarlierResults.Restore(outDir, "job1", keepFailed: false);
        Assert.NotNull(r);
        Assert.Equal(["graph/classes.u8", "graph/graph.json", "graph/graph.npz", "mask.tif", "overlay.png", "segment.json"], r!.Names);
        Assert.Null(r.FailedKeptIn);
        Assert.Equal(before, Contents(outDir));
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));
        // and again (a restart after the restore): nothing to do
        Assert.Null(EarlierResults.Restore(outDir, "job1", keepFailed: false));
        Assert.Equal(before, Contents(outDir));
    }

    [Fact]
    public void ASucceededJob_DeletesTheEarlierResults_AndAFailedOnesFilesCanBeKept()
    {
        var outDir = Folder("seg");
        WriteEarlier(outDir, "old");
        EarlierResults.SetAside(outDir, "job1", segments: true);
        WriteEarlier(outDir, "new");
        Assert.True(EarlierResults.Commit(outDir, "job1"));
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));
        Assert.All(Contents(outDir).Values, v => Assert.StartsWith("new:", v));
        // nothing set aside any more: a restore (a late failure report) changes nothing
        Assert.Null(EarlierResults.Restore(outDir, "job1", keepFailed: false));
        Assert.All(Contents(outDir).Values, v => Assert.StartsWith("new:", v));

        // --keep-work: a failed job's files are kept beside the restored ones, for a person to look at
        EarlierResults.SetAside(outDir, "job2", segments: true);
        File.WriteAllText(Path.Combine(outDir, "segment.json"), "failed");
        var r = EarlierResults.Restore(outDir, "job2", keepFailed: true)!;
        Assert.Equal(EarlierResults.FailedFolder(outDir, "job2"), r.FailedKeptIn);
        Assert.Equal($"the earlier results in {outDir} ({string.Join(", ", r.Names)}) are back in place; what the failed job wrote is kept in {r.FailedKeptIn} (--keep-work)",
            EarlierResults.Say(outDir, r));
        Assert.Null(EarlierResults.Say(outDir, null));
        Assert.Equal("failed", File.ReadAllText(Path.Combine(r.FailedKeptIn!, "segment.json")));
        Assert.Equal("new:segment.json", File.ReadAllText(Path.Combine(outDir, "segment.json")));
    }

    [Fact]
    public void AJobKilledOutright_IsPutRightByTheNextJobInTheFolder()
    {
        var outDir = Folder("seg");
        WriteEarlier(outDir, "old");
        var before = Contents(outDir);
        EarlierResults.SetAside(outDir, "killed", segments: true);
        // the killed job had written its graph and its summary, never its mask
        Directory.CreateDirectory(Path.Combine(outDir, "graph"));
        File.WriteAllText(Path.Combine(outDir, "graph", "graph.npz"), "partial");
        File.WriteAllText(Path.Combine(outDir, "segment.json"), "partial");

        // the next job puts the killed job's earlier results back before setting them aside for itself
        var aside = EarlierResults.SetAside(outDir, "next", segments: true);
        Assert.Equal(["killed"], aside.RestoredOthers);
        Assert.Equal(["segment.json", "graph/graph.json", "graph/graph.npz", "graph/classes.u8", "mask.tif", "overlay.png"], aside.Moved);
        // it fails in turn: the folder holds the last complete results, not the killed job's partial ones
        EarlierResults.Restore(outDir, "next", keepFailed: false);
        Assert.Equal(before, Contents(outDir));
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));
    }

    [Fact]
    public void EveryStep_InterruptedAndTakenUpAgain_EndsWithTheEarlierResultsWhole()
    {
        // a set-aside stopped half-way (some files moved into the partial folder), then the job restored
        var outDir = Folder("partial");
        WriteEarlier(outDir, "old");
        var before = Contents(outDir);
        var partial = EarlierResults.Folder(outDir, "job1") + ".partial";
        Directory.CreateDirectory(partial);
        File.WriteAllText(Path.Combine(partial, ".names"), "actorseg-earlier-results job1\n" + string.Join('\n', EarlierResults.Segmentation));
        File.Move(Path.Combine(outDir, "segment.json"), Path.Combine(partial, "segment.json"));
        Assert.Equal(["segment.json"], EarlierResults.Restore(outDir, "job1", keepFailed: false)!.Names);
        Assert.Equal(before, Contents(outDir));
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));
        // the same, taken up by the job's own second prepare: it finishes moving
        Directory.CreateDirectory(partial);
        File.WriteAllText(Path.Combine(partial, ".names"), "actorseg-earlier-results job1\n" + string.Join('\n', EarlierResults.Segmentation));
        File.Move(Path.Combine(outDir, "segment.json"), Path.Combine(partial, "segment.json"));
        Assert.Equal(["segment.json", "graph/graph.json", "graph/graph.npz", "graph/classes.u8", "mask.tif", "overlay.png"], EarlierResults.SetAside(outDir, "job1", segments: true).Moved);
        Assert.Equal([".previous-job1", "graph"], Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        // a restore stopped after the failed run's files were moved out and the folder renamed, before all came back
        Directory.Delete(outDir, true);
        outDir = Folder("restoring");
        WriteEarlier(outDir, "old");
        before = Contents(outDir);
        EarlierResults.SetAside(outDir, "job2", segments: true);
        var restoring = Path.Combine(outDir, ".restoring-job2");
        Directory.Move(EarlierResults.Folder(outDir, "job2"), restoring);
        File.Move(Path.Combine(restoring, "mask.tif"), Path.Combine(outDir, "mask.tif"));
        Assert.NotNull(EarlierResults.Restore(outDir, "job2", keepFailed: false));
        Assert.Equal(before, Contents(outDir));
        Assert.Empty(Directory.GetDirectories(outDir, ".*"));
    }

    [Fact]
    public void AnOrderOfAJobThatHasEnded_PublishesNothing_InItsOwnFlowOrTheTasksItStarts()
    {
        var outDir = Folder("seg");
        WriteEarlier(outDir, "old");
        EarlierResults.SetAside(outDir, "j", segments: true);
        var r = new ActorSeg.Messages.ResultRef("/r", 1, "0");
        var paint = new ActorSeg.Messages.PaintAssignment("j", "i", "/img.tif", r, r, Path.Combine(outDir, "mask.tif"), Path.Combine(outDir, "overlay.png"), 1, outDir, Guarded: true);
        var classify = new ActorSeg.Messages.ClassifyNodes("j", "i", r, "/m", Path.Combine(outDir, "graph", "classes.u8"), "cpu", 1, Path.Combine(outDir, "graph"), Guarded: true);
        Assert.Null(AssignmentPaths.StillRunning(paint with { Guarded = false })); // (an order of a job from before 2026-12-08)
        var paintGuard = AssignmentPaths.StillRunning(paint)!;
        var classifyGuard = AssignmentPaths.StillRunning(classify)!;
        Assert.Null(paintGuard());
        Assert.Null(classifyGuard());
        var mask = Path.Combine(outDir, "mask.tif");
        using (SafePaths.GuardPublishing(paintGuard)) SafePaths.WriteAllText(mask, "new"); // the job runs: written
        Assert.Equal("new", File.ReadAllText(mask));

        // given up on at its deadline, the job fails and its earlier results come back; the painter then wakes up
        EarlierResults.Restore(outDir, "j", keepFailed: false);
        Assert.Equal("old:mask.tif", File.ReadAllText(mask));
        Assert.Contains("job j has ended", paintGuard());
        Assert.Contains("job j has ended", classifyGuard());
        using (SafePaths.GuardPublishing(paintGuard))
        {
            var e = Assert.Throws<PublishRefusedException>(() => SafePaths.WriteAllText(mask, "late"));
            Assert.StartsWith($"{mask} not written: job j has ended", e.Message);
            Assert.True(ActorSeg.Core.FailurePolicy.IsPermanent(e));
            // a file made under another name and moved into place (libvips' savers), from a task the flow started
            var tmp = mask + ".partial.tif";
            File.WriteAllText(tmp, "late");
            Assert.Throws<PublishRefusedException>(() => Task.Run(() => SafePaths.Publish(tmp, mask, "mask")).GetAwaiter().GetResult());
            Assert.False(File.Exists(tmp));
        }
        Assert.Equal("old:mask.tif", File.ReadAllText(mask));
        Assert.Empty(Directory.GetFiles(outDir, "*partial*"));
        Assert.Empty(Directory.GetFiles(outDir, ".*"));
        // outside the scope, nothing is asked
        SafePaths.WriteAllText(Path.Combine(_dir, "free.txt"), "x");
    }

    [Fact]
    public void AUsersFoldersNamedLikeTheMechanisms_AreLeftAlone()
    {
        // a folder of the user's called .previous-old (no list of ours in it) is no stopped job's: before, a failing run
        // took it for one and deleted every earlier result in its place
        var outDir = Folder("seg");
        WriteEarlier(outDir, "old");
        foreach (var (dir, file) in new[] { (".previous-old", "p.txt"), (".restoring-mine", "readme.txt"), (".discard-mine", "d.txt"), (".previous-x.partial", "q.txt") })
        {
            Directory.CreateDirectory(Path.Combine(outDir, dir));
            File.WriteAllText(Path.Combine(outDir, dir, file), "mine");
        }
        var before = Contents(outDir);
        var aside = EarlierResults.SetAside(outDir, "j", segments: true);
        Assert.Empty(aside.RestoredOthers);
        EarlierResults.Restore(outDir, "j", keepFailed: false);
        Assert.Equal(before, Contents(outDir));
        EarlierResults.SetAside(outDir, "k", segments: true);
        WriteEarlier(outDir, "new");
        EarlierResults.Commit(outDir, "k");
        Assert.Equal(["mine", "mine", "mine", "mine"], Contents(outDir).Where(kv => kv.Key.StartsWith('.')).Select(kv => kv.Value));
        // a list that names anything but the results jobs write is no job's either: nothing is moved out of the folder
        var planted = Path.Combine(outDir, ".previous-p");
        Directory.CreateDirectory(Path.Combine(planted, "graph"));
        File.WriteAllText(Path.Combine(planted, ".names"), "actorseg-earlier-results p\n../victim.txt\nsegment.json");
        File.WriteAllText(Path.Combine(_dir, "victim.txt"), "safe");
        var snapshot = Contents(outDir);
        Assert.Empty(EarlierResults.SetAside(outDir, "q", segments: true).RestoredOthers);
        Assert.Null(EarlierResults.Restore(outDir, "p", keepFailed: false));
        EarlierResults.Restore(outDir, "q", keepFailed: false);
        Assert.Equal(snapshot, Contents(outDir));
        Assert.Equal("safe", File.ReadAllText(Path.Combine(_dir, "victim.txt")));
        // and a folder in the way of this job's own is refused, not taken
        Directory.CreateDirectory(EarlierResults.Folder(outDir, "m"));
        Assert.Throws<UnsafePathException>(() => EarlierResults.SetAside(outDir, "m", segments: true));
    }

    [Fact]
    public void AGraphJob_SetsAsideTheGraphFiles_AndStaleNodeClasses_NotOtherFiles()
    {
        var outDir = Folder("graph");
        foreach (var f in new[] { "graph.npz", "graph.json", "nodes.tif", "classes.u8", "probs.f32", "mask.tif", "image.tif" })
            File.WriteAllText(Path.Combine(outDir, f), f);
        var aside = EarlierResults.SetAside(outDir, "g1", segments: false);
        Assert.Equal(["graph.json", "graph.npz", "nodes.tif", "classes.u8", "probs.f32"], aside.Moved);
        Assert.True(File.Exists(Path.Combine(outDir, "mask.tif")) && File.Exists(Path.Combine(outDir, "image.tif")));
        // a link where a result was is moved as the link, never followed
        File.CreateSymbolicLink(Path.Combine(outDir, "nodes.ome.tif"), Path.Combine(outDir, "image.tif"));
        EarlierResults.Restore(outDir, "g1", keepFailed: false);
        Assert.Equal("image.tif", File.ReadAllText(Path.Combine(outDir, "image.tif")));
        Assert.False(File.Exists(Path.Combine(outDir, "nodes.ome.tif")));
        Assert.Equal("graph.npz", File.ReadAllText(Path.Combine(outDir, "graph.npz")));
        Assert.Throws<ArgumentException>(() => EarlierResults.SetAside(outDir, "../x", segments: false));
    }
}
