namespace ActorSeg.Core.IO;

/// <summary>
/// What an earlier run left in a job's output folder, kept whole until the job that replaces it has succeeded. A graph
/// or segmentation job writes its files one step at a time (the graph at the stitch, the node classes at the
/// classification, the mask at the painting); without this, a job that failed after its graph was written left a new
/// graph beside the old mask and the old segment.json, which then described files they did not belong to.
/// <list type="bullet">
/// <item><see cref="SetAside"/>, when the job starts (before its work folder is made): the files this kind of job
/// writes, where the folder holds them, are moved into <c>OUT/.previous-JOB</c> (renames in one folder, no copy).</item>
/// <item><see cref="Commit"/>, when the job has succeeded (its last file written, before its end is journaled): the
/// set-aside files are deleted.</item>
/// <item><see cref="Restore"/>, when it failed or its run stopped: what the job wrote of its own is removed (or kept in
/// <c>OUT/.failed-JOB</c> when asked), and the earlier files are moved back.</item>
/// </list>
/// Every step can be interrupted (SIGKILL, a lost node) and taken up again: the set-aside folder is made under a
/// <c>.partial</c> name and renamed when complete, and a restore renames it to <c>.restoring-JOB</c> once the failed run's
/// files are out of the way. A folder of another job found when a job starts is that job's unfinished business (only one
/// job writes a folder at a time): it is restored first, so the earlier results are the last complete ones.
/// </summary>
public static class EarlierResults
{
    public const string PreviousPrefix = ".previous-", RestoringPrefix = ".restoring-", FailedPrefix = ".failed-", DiscardPrefix = ".discard-";
    private const string PartialSuffix = ".partial", NamesFile = ".names";

    /// <summary>The files and folders a segmentation job writes in its folder (the completion marker first).</summary>
    public static readonly string[] Segmentation =
        ["segment.json", "graph", AssignmentPaths.MaskFile, "mask.ome.tif", AssignmentPaths.ProbabilityMapFile, AssignmentPaths.OverlayFile, "objects.geojson", "objects.geojson.gz"];

    /// <summary>The files a graph job writes in its folder (the completion marker first), and the node classes of an
    /// earlier segmentation there, which would not belong to the new graph.</summary>
    public static readonly string[] Graph =
        [GraphOutputs.SummaryFile, GraphOutputs.GraphFile, GraphOutputs.NodeMapFile, GraphOutputs.NodeMapOmeFile, GraphOutputs.TissueFile,
         AssignmentPaths.ClassesFile, AssignmentPaths.ProbsFile, AssignmentPaths.ProbsNpyFile, Refine.RefineFile.FileName, ClassTable.FileName];

    public static string Folder(string outDir, string jobId) => Path.Combine(outDir, PreviousPrefix + jobId);
    public static string FailedFolder(string outDir, string jobId) => Path.Combine(outDir, FailedPrefix + jobId);
    private static string Partial(string outDir, string jobId) => Folder(outDir, jobId) + PartialSuffix;
    private static string Restoring(string outDir, string jobId) => Path.Combine(outDir, RestoringPrefix + jobId);

    /// <summary>What <see cref="SetAside"/> did: the names it moved (none where the folder held none), the folder they are
    /// in, and the other jobs' leftovers it restored first.</summary>
    public sealed record Aside(string[] Moved, string Folder, bool Already, string[] RestoredOthers);

    /// <summary>
    /// Moves the earlier results out of the way of job <paramref name="jobId"/>. Idempotent: a job that prepares again
    /// (resumed, re-planned) finds its set-aside folder and moves nothing, so its own new files are never taken for old
    /// ones. The folder is made even when there is nothing to move: it marks the step done.
    /// </summary>
    public static Aside SetAside(string outDir, string jobId, bool segments)
    {
        if (AssignmentPaths.InvalidJobId(jobId) is { } bad) throw new ArgumentException(bad);
        var done = Folder(outDir, jobId);
        if (Directory.Exists(done)) return new([], done, true, []);
        var others = RestoreOthers(outDir, jobId);
        var names = segments ? Segmentation : Graph;
        var partial = Partial(outDir, jobId);
        var namesFile = Path.Combine(partial, NamesFile);
        if (!Directory.Exists(partial) || !File.Exists(namesFile))
        {
            // a partial folder without its list was made by a run stopped at once: nothing was moved into it
            SafePaths.CreatePrivateDirectory(partial, mayExist: true, "folder for the earlier results", parentWhat: "output folder");
            SafePaths.WriteAllText(namesFile, string.Join('\n', names), "list of the earlier results");
        }
        var moved = new List<string>();
        foreach (var n in names)
        {
            var from = Path.Combine(outDir, n);
            if (!Present(from)) { if (Present(Path.Combine(partial, n))) moved.Add(n); continue; } // moved by an interrupted run
            Move(from, Path.Combine(partial, n));
            moved.Add(n);
        }
        Directory.Move(partial, done);
        SafePaths.FlushDirectory(outDir);
        return new(moved.ToArray(), done, false, others);
    }

    /// <summary>The job succeeded: its set-aside earlier results are deleted. Returns whether there was a folder.</summary>
    public static bool Commit(string outDir, string jobId)
    {
        var done = Folder(outDir, jobId);
        if (!Directory.Exists(done)) return false;
        // renamed first (one step: from here on nothing would restore it), then deleted
        var discard = Path.Combine(outDir, $"{DiscardPrefix}{jobId}-{Guid.NewGuid():N}");
        Directory.Move(done, discard);
        SafePaths.FlushDirectory(outDir);
        TryDelete(discard);
        return true;
    }

    /// <summary>What <see cref="Restore"/> did: the earlier names put back, and where the failed run's files were kept (null:
    /// deleted, or none).</summary>
    public sealed record Restored(string[] Names, string? FailedKeptIn);

    /// <summary>
    /// The job failed or its run stopped: what it wrote of the files its kind writes is removed (kept in
    /// <c>OUT/.failed-JOB</c> with <paramref name="keepFailed"/>) and the earlier results are moved back. Null when the job
    /// set nothing aside (it never started, or it succeeded). Safe to call again after an interruption.
    /// </summary>
    public static Restored? Restore(string outDir, string jobId, bool keepFailed)
    {
        string done = Folder(outDir, jobId), partial = Partial(outDir, jobId), restoring = Restoring(outDir, jobId), failed = FailedFolder(outDir, jobId);
        if (!Directory.Exists(done) && !Directory.Exists(restoring))
        {
            if (!Directory.Exists(partial)) return null;
            // stopped while it was setting aside: nothing of its own was written yet, the moved files go back
            var back = MoveBack(outDir, partial, null);
            TryDelete(partial);
            return new(back, null);
        }
        if (Directory.Exists(done))
        {
            var names = Names(done);
            foreach (var n in names)
            {
                var mine = Path.Combine(outDir, n);
                if (!Present(mine)) continue;
                if (!Directory.Exists(failed)) SafePaths.CreatePrivateDirectory(failed, mayExist: true, "folder for the failed run's files", parentWhat: "output folder");
                var to = Path.Combine(failed, n);
                if (Present(to)) Delete(to);
                Move(mine, to);
            }
            Directory.Move(done, restoring);
            SafePaths.FlushDirectory(outDir);
        }
        var restored = MoveBack(outDir, restoring, failed);
        TryDelete(restoring);
        SafePaths.FlushDirectory(outDir);
        string? kept = null;
        if (Directory.Exists(failed))
        {
            if (keepFailed) kept = failed;
            else TryDelete(failed);
        }
        return new(restored, kept);
    }

    /// <summary>Another job's set-aside or restoring folder in <paramref name="outDir"/>: that job stopped before it ended
    /// (killed with its journal, or its restore failed). Restored, and old discard folders deleted.</summary>
    private static string[] RestoreOthers(string outDir, string jobId)
    {
        if (!Directory.Exists(outDir)) return [];
        var restored = new List<string>();
        foreach (var d in Directory.EnumerateDirectories(outDir, ".*"))
        {
            var name = Path.GetFileName(d);
            if (name.StartsWith(DiscardPrefix, StringComparison.Ordinal)) { TryDelete(d); continue; }
            string? other = name.StartsWith(PreviousPrefix, StringComparison.Ordinal) ? name[PreviousPrefix.Length..]
                : name.StartsWith(RestoringPrefix, StringComparison.Ordinal) ? name[RestoringPrefix.Length..] : null;
            if (other is null) continue;
            if (other.EndsWith(PartialSuffix, StringComparison.Ordinal)) other = other[..^PartialSuffix.Length];
            if (other == jobId || AssignmentPaths.InvalidJobId(other) is not null) continue;
            if (Restore(outDir, other, keepFailed: false) is not null) restored.Add(other);
        }
        return restored.ToArray();
    }

    /// <summary>Moves every entry of <paramref name="from"/> (its list file aside) back into the output folder; an entry
    /// whose name is taken there moves that one into <paramref name="displaced"/> first (or deletes it without one).</summary>
    private static string[] MoveBack(string outDir, string from, string? displaced)
    {
        var back = new List<string>();
        foreach (var e in Directory.EnumerateFileSystemEntries(from).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList())
        {
            if (e == NamesFile) continue;
            var to = Path.Combine(outDir, e);
            if (Present(to))
            {
                if (displaced is null) Delete(to);
                else
                {
                    if (!Directory.Exists(displaced)) SafePaths.CreatePrivateDirectory(displaced, mayExist: true, "folder for the failed run's files", parentWhat: "output folder");
                    var aside = Path.Combine(displaced, e);
                    if (Present(aside)) Delete(aside);
                    Move(to, aside);
                }
            }
            Move(Path.Combine(from, e), to);
            back.Add(e);
        }
        return back.ToArray();
    }

    private static string[] Names(string folder)
    {
        var f = Path.Combine(folder, NamesFile);
        return File.Exists(f) ? File.ReadAllText(f).Split('\n', StringSplitOptions.RemoveEmptyEntries) : Segmentation.Union(Graph).ToArray();
    }

    /// <summary>A file, a folder or a link (a dangling one included) at <paramref name="path"/>.</summary>
    private static bool Present(string path) => File.Exists(path) || Directory.Exists(path) || new FileInfo(path).LinkTarget is not null;

    private static bool IsRealDirectory(string path) => new DirectoryInfo(path) is { Exists: true, LinkTarget: null };

    /// <summary>A rename (a link is moved as itself, never followed).</summary>
    private static void Move(string from, string to)
    {
        if (IsRealDirectory(from)) Directory.Move(from, to);
        else File.Move(from, to);
    }

    private static void Delete(string path)
    {
        if (IsRealDirectory(path)) Directory.Delete(path, recursive: true);
        else File.Delete(path);
    }

    private static void TryDelete(string dir)
    {
        try { if (IsRealDirectory(dir)) Directory.Delete(dir, recursive: true); }
        catch (IOException) { } // removed at the next job in this folder (a discard folder), or left for a person to see
        catch (UnauthorizedAccessException) { }
    }
}
