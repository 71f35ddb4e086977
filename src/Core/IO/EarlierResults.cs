namespace ActorSeg.Core.IO;

/// <summary>
/// What an earlier run left in a job's output folder, kept whole until the job that replaces it has succeeded. A graph
/// or segmentation job writes its files one step at a time (the graph at the stitch, the node classes at the
/// classification, the mask at the painting); without this, a job that failed after its graph was written left a new
/// graph beside the old mask and the old segment.json, which then described files they did not belong to.
/// <list type="bullet">
/// <item><see cref="SetAside"/>, when the job starts (before its work folder is made): the files this kind of job
/// writes, where the folder holds them, are moved into <c>OUT/.previous-JOB</c> (renames in one folder, no copy), file
/// by file (a file of the user's beside them, in OUT or in OUT/graph, stays where it is).</item>
/// <item><see cref="Commit"/>, when the job has succeeded (its last file written, before its end is journaled): the
/// set-aside files are deleted.</item>
/// <item><see cref="Restore"/>, when it failed or its run stopped: what the job wrote of its own is removed (or kept in
/// <c>OUT/.failed-JOB</c> when asked), and the earlier files are moved back.</item>
/// </list>
/// Every step can be interrupted (SIGKILL, a lost node) and taken up again: the set-aside folder is made under a
/// <c>.partial</c> name and renamed when complete, and a restore renames it to <c>.restoring-JOB</c> once the failed run's
/// files are out of the way. A folder of another job found when a job starts is that job's unfinished business (only one
/// job writes a folder at a time): it is restored first, so the earlier results are the last complete ones. Such a folder
/// is taken for a job's only when its list's first line says so: a user's folder that happens to be called
/// <c>.previous-x</c> or <c>.discard-x</c> is left alone.
/// </summary>
public static class EarlierResults
{
    public const string PreviousPrefix = ".previous-", RestoringPrefix = ".restoring-", FailedPrefix = ".failed-", DiscardPrefix = ".discard-";
    private const string PartialSuffix = ".partial", NamesFile = ".names", Header = "actorseg-earlier-results ";

    /// <summary>The files a graph job writes in its folder (the completion marker first), and the node classes of an
    /// earlier segmentation there, which would not belong to the new graph.</summary>
    public static readonly string[] Graph =
        [GraphOutputs.SummaryFile, GraphOutputs.GraphFile, GraphOutputs.NodeMapFile, GraphOutputs.NodeMapOmeFile, GraphOutputs.TissueFile,
         AssignmentPaths.ClassesFile, AssignmentPaths.ProbsFile, AssignmentPaths.ProbsNpyFile, Refine.RefineFile.FileName, ClassTable.FileName];

    /// <summary>The files a segmentation job writes in its folder (the completion marker first), its graph's in graph/
    /// file by file.</summary>
    public static readonly string[] Segmentation =
        ["segment.json", .. Graph.Select(n => "graph/" + n), AssignmentPaths.MaskFile, "mask.ome.tif", AssignmentPaths.ProbabilityMapFile,
         AssignmentPaths.OverlayFile, "objects.geojson", "objects.geojson.gz"];

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
        if (Names(done, jobId) is not null) return new([], done, true, []);
        if (Directory.Exists(done)) throw new UnsafePathException($"{done} is in the way: a folder of that name that is not this job's earlier results (move it elsewhere)");
        var others = RestoreOthers(outDir, jobId);
        var names = segments ? Segmentation : Graph;
        var partial = Partial(outDir, jobId);
        if (Names(partial, jobId) is null)
        {
            // a partial folder without its list was made by a run stopped at once: nothing was moved into it
            SafePaths.CreatePrivateDirectory(partial, mayExist: true, "folder for the earlier results", parentWhat: "output folder");
            // its first line says whose folder it is: only such a folder is ever taken for a job's earlier results
            SafePaths.WriteAllText(Path.Combine(partial, NamesFile), Header + jobId + "\n" + string.Join('\n', names), "list of the earlier results");
        }
        var moved = new List<string>();
        foreach (var n in names)
        {
            var from = Path.Combine(outDir, n);
            if (!Present(from)) { if (Present(Path.Combine(partial, n))) moved.Add(n); continue; } // moved by an interrupted run
            MoveInto(from, Path.Combine(partial, n));
            moved.Add(n);
        }
        Directory.Move(partial, done);
        SafePaths.FlushDirectory(outDir);
        return new(moved.ToArray(), done, false, others);
    }

    /// <summary>The job succeeded: its set-aside earlier results are deleted, and what a stopped attempt of one of its
    /// steps left half-written beside its results. Returns whether there was a folder.</summary>
    public static bool Commit(string outDir, string jobId)
    {
        var done = Folder(outDir, jobId);
        if (Names(done, jobId) is not { } names) return false;
        RemovePartials(outDir, names);
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
    /// <c>OUT/.failed-JOB</c> with <paramref name="keepFailed"/>), with what its steps left half-written, and the earlier
    /// results are moved back. Null when the job set nothing aside (it never started, or it succeeded). Safe to call
    /// again after an interruption.
    /// </summary>
    public static Restored? Restore(string outDir, string jobId, bool keepFailed)
    {
        string done = Folder(outDir, jobId), partial = Partial(outDir, jobId), restoring = Restoring(outDir, jobId), failed = FailedFolder(outDir, jobId);
        var doneNames = Names(done, jobId);
        var names = doneNames ?? Names(restoring, jobId);
        if (names is null)
        {
            if (Names(partial, jobId) is not { } partialNames) return null;
            // stopped while it was setting aside: nothing of its own was written yet, the moved files go back
            var back = MoveBack(outDir, partial, partialNames, null);
            TryDelete(partial);
            return new(back, null);
        }
        if (doneNames is not null)
        {
            foreach (var n in names)
            {
                var mine = Path.Combine(outDir, n);
                if (!Present(mine)) continue;
                if (!Directory.Exists(failed)) SafePaths.CreatePrivateDirectory(failed, mayExist: true, "folder for the failed run's files", parentWhat: "output folder");
                var to = Path.Combine(failed, n);
                if (Present(to)) Delete(to);
                MoveInto(mine, to);
            }
            Directory.Move(done, restoring);
            SafePaths.FlushDirectory(outDir);
        }
        var restored = MoveBack(outDir, restoring, names, failed);
        RemovePartials(outDir, names);
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

    /// <summary>What a put-back did, in words for the log ("the earlier results in OUT (names) are back in place", and
    /// where the failed job's files are kept); null when nothing came back or was kept.</summary>
    public static string? Say(string outDir, Restored? r)
    {
        if (r is null || r.Names.Length == 0 && r.FailedKeptIn is null) return null;
        var back = r.Names.Length > 0 ? $"the earlier results in {outDir} ({string.Join(", ", r.Names)}) are back in place" : null;
        var kept = r.FailedKeptIn is { } k ? $"what the failed job wrote is kept in {k} (--keep-work)" : null;
        return string.Join("; ", new[] { back, kept }.OfType<string>());
    }

    /// <summary>Why a put-back did not happen, in words for the log, with what happens next.</summary>
    public static string NotPutBack(string outDir, string jobId, Exception e) =>
        $"the earlier results set aside in {Folder(outDir, jobId)} could not be put back ({e.Message}); the next job in {outDir} puts them back first";

    /// <summary><see cref="Restore"/> for a run that stops: (what it did, null) or (null, why it could not), in words.</summary>
    public static (string? Said, string? Error) PutBack(string outDir, string jobId, bool keepFailed)
    {
        try { return (Say(outDir, Restore(outDir, jobId, keepFailed)), null); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return (null, NotPutBack(outDir, jobId, e)); }
    }

    /// <summary>Another job's set-aside or restoring folder in <paramref name="outDir"/>: that job stopped before it ended
    /// (killed with its journal, or its restore failed). Restored, and old discard folders deleted; folders whose list
    /// does not name them as such are left alone.</summary>
    private static string[] RestoreOthers(string outDir, string jobId)
    {
        if (!Directory.Exists(outDir)) return [];
        var restored = new List<string>();
        foreach (var d in Directory.EnumerateDirectories(outDir, ".*"))
        {
            var name = Path.GetFileName(d);
            if (name.StartsWith(DiscardPrefix, StringComparison.Ordinal))
            {
                if (ReadHeader(d) is { } owner && name.StartsWith($"{DiscardPrefix}{owner}-", StringComparison.Ordinal)) TryDelete(d);
                continue;
            }
            string? other = name.StartsWith(PreviousPrefix, StringComparison.Ordinal) ? name[PreviousPrefix.Length..]
                : name.StartsWith(RestoringPrefix, StringComparison.Ordinal) ? name[RestoringPrefix.Length..] : null;
            if (other is null) continue;
            if (other.EndsWith(PartialSuffix, StringComparison.Ordinal)) other = other[..^PartialSuffix.Length];
            if (other == jobId || AssignmentPaths.InvalidJobId(other) is not null || ReadHeader(d) != other) continue;
            if (Restore(outDir, other, keepFailed: false) is not null) restored.Add(other);
        }
        return restored.ToArray();
    }

    /// <summary>Moves the listed entries of <paramref name="from"/> back into the output folder; an entry whose name is
    /// taken there moves that one into <paramref name="displaced"/> first (or deletes it without one).</summary>
    private static string[] MoveBack(string outDir, string from, string[] names, string? displaced)
    {
        var back = new List<string>();
        foreach (var n in names.Order(StringComparer.Ordinal))
        {
            var src = Path.Combine(from, n);
            if (!Present(src)) continue;
            var to = Path.Combine(outDir, n);
            if (Present(to))
            {
                if (displaced is null) Delete(to);
                else
                {
                    if (!Directory.Exists(displaced)) SafePaths.CreatePrivateDirectory(displaced, mayExist: true, "folder for the failed run's files", parentWhat: "output folder");
                    var aside = Path.Combine(displaced, n);
                    if (Present(aside)) Delete(aside);
                    MoveInto(to, aside);
                }
            }
            MoveInto(src, to);
            back.Add(n);
        }
        return back.ToArray();
    }

    /// <summary>Every name a list may hold: what the two kinds of job write, nothing else.</summary>
    private static readonly HashSet<string> Known = [.. Graph, .. Segmentation];

    /// <summary>The names a set-aside folder lists when its first line says it is job <paramref name="jobId"/>'s; null for
    /// any other folder (missing, of another job, or a user's that happens to have the name), and for a list naming
    /// anything but the results jobs write (a planted <c>../../elsewhere</c> would have files moved out of the folder).</summary>
    private static string[]? Names(string folder, string jobId)
    {
        if (!Directory.Exists(folder) || ReadHeader(folder) != jobId) return null;
        try
        {
            var names = File.ReadAllLines(Path.Combine(folder, NamesFile)).Skip(1).Where(l => l.Length > 0).ToArray();
            return names.All(Known.Contains) ? names : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The job a set-aside folder's list names in its first line, or null.</summary>
    private static string? ReadHeader(string folder)
    {
        try
        {
            var list = Path.Combine(folder, NamesFile);
            if (!File.Exists(list)) return null;
            using var r = new StreamReader(list);
            return r.ReadLine() is { } first && first.StartsWith(Header, StringComparison.Ordinal) ? first[Header.Length..] : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>Files a stopped step left half-written beside the listed results (<c>mask.tif.GUID.partial.tif</c>,
    /// <c>.objects.geojson.GUID.partial</c>): a result's name and a dot, or a dot and a result's name and a dot, with
    /// ".partial" further on.</summary>
    private static void RemovePartials(string outDir, IEnumerable<string> names)
    {
        foreach (var group in names.GroupBy(n => Path.GetDirectoryName(Path.Combine(outDir, n))!))
        {
            if (!Directory.Exists(group.Key)) continue;
            var results = group.Select(Path.GetFileName).OfType<string>().ToArray();
            foreach (var f in Directory.EnumerateFiles(group.Key))
            {
                var name = Path.GetFileName(f);
                if (!name.Contains(".partial", StringComparison.Ordinal)) continue;
                if (results.Any(r => name.StartsWith(r + ".", StringComparison.Ordinal) || name.StartsWith("." + r + ".", StringComparison.Ordinal)))
                    try { File.Delete(f); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }
    }

    /// <summary>A file, a folder or a link (a dangling one included) at <paramref name="path"/>.</summary>
    private static bool Present(string path) => File.Exists(path) || Directory.Exists(path) || new FileInfo(path).LinkTarget is not null;

    private static bool IsRealDirectory(string path) => new DirectoryInfo(path) is { Exists: true, LinkTarget: null };

    /// <summary>A rename (a link is moved as itself, never followed), into a folder made where it is missing.</summary>
    private static void MoveInto(string from, string to)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(to)!);
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
