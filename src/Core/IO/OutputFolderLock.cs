using System.Text.Json;

namespace ActorSeg.Core.IO;

/// <summary>An output folder another ActorSeg run on this or another machine is writing: refused, naming that run.</summary>
public sealed class OutputFolderInUseException(string message) : IOException(message);

/// <summary>
/// One run at a time in an output folder. A one-process command (<c>graph</c>, <c>segment</c>, <c>train</c>, …) takes an
/// exclusive lock on <c>OUT/.actorseg.lock</c> for as long as it writes there, so that a second command given the same
/// folder is refused at once, naming the first, instead of the two replacing each other's files (a graph of one run with
/// the node map of the other). The lock is the kernel's (flock, which NFS v4 carries between machines): it goes with the
/// process, so a run killed by SIGKILL or the OOM killer never leaves a folder locked.
/// <para>
/// Beside it, <c>OUT/.actorseg.run</c> names the holder (process, host, command, start) and the work folders its jobs
/// made. A run that ends, however it ends, deletes it. So one found by the next run that takes the lock is a run that
/// was killed: its work folders (the per-tile results of an embedded journal, which died with it, so no run can resume
/// them; gigabytes on a whole slide) are deleted then, and the deletion logged.
/// </para>
/// </summary>
public sealed class OutputFolderLock : IDisposable
{
    public const string LockFile = ".actorseg.lock", RunFile = ".actorseg.run";

    private sealed record RunRecord(int Pid, string Host, string Command, DateTime StartedUtc, List<string> WorkDirs);

    private readonly FileStream _lock;
    private readonly string _dir;
    private readonly RunRecord _run;
    private readonly bool _created;
    private bool _disposed;

    public string Folder => _dir;

    /// <summary>What a later run found of earlier runs that were killed in this folder: their work folders, deleted.</summary>
    public IReadOnlyList<string> RemovedWorkDirs { get; }

    /// <summary>Work folders an earlier run's record names but that were kept: that run's process cannot be known to be
    /// gone (another host, or still running here on a file system that ignores the lock).</summary>
    public IReadOnlyList<string> KeptWorkDirs { get; private init; } = [];

    /// <summary>The earlier run whose record was found here, in words; null when there was none.</summary>
    public string? EarlierRun { get; private init; }

    /// <summary>Whether the run a record names is known to have ended: a process of this host that no longer exists.</summary>
    private static bool Gone(RunRecord r)
    {
        if (r.Host != Environment.MachineName || r.Pid <= 0) return false;
        if (r.Pid == Environment.ProcessId) return false;
        if (OperatingSystem.IsLinux()) return !Directory.Exists($"/proc/{r.Pid}");
        try { using var p = System.Diagnostics.Process.GetProcessById(r.Pid); return p.HasExited; }
        catch (ArgumentException) { return true; } // no such process
        catch (InvalidOperationException) { return true; }
    }

    private OutputFolderLock(FileStream fs, string dir, RunRecord run, bool created, IReadOnlyList<string> removed)
    {
        _lock = fs; _dir = dir; _run = run; _created = created; RemovedWorkDirs = removed;
    }

    /// <summary>
    /// Creates <paramref name="outDir"/> where it is missing and takes its lock for <paramref name="command"/>.
    /// </summary>
    /// <exception cref="OutputFolderInUseException">another run holds it (the message names the folder and that run)</exception>
    /// <exception cref="OutputFolderException">the folder cannot be made (a file of that name, no permission)</exception>
    public static OutputFolderLock Acquire(string outDir, string command)
    {
        // the folder's real path (a link along it, such as /data -> /mnt/data, is followed once, here), so that every
        // way of naming one folder takes the same lock
        var dir = SafePaths.Canonical(Path.GetFullPath(outDir), "output folder");
        bool created = !Directory.Exists(dir);
        SafePaths.EnsureDirectory(dir, "output folder");
        var lockPath = Path.Combine(dir, LockFile);
        // a link planted at the lock's name is never followed (the lock file is only ever opened, never written)
        if (new FileInfo(lockPath).LinkTarget is not null)
            throw new UnsafePathException($"{lockPath} is a symbolic link: refused");
        FileStream fs;
        try { fs = TryLock(lockPath, FileMode.OpenOrCreate) ?? throw InUse(dir, Holder(dir)); }
        catch (UnauthorizedAccessException e)
        {
            throw new OutputFolderException($"output folder {dir}: its lock {LockFile} cannot be opened: {e.Message}", e);
        }
        try
        {
            // a run record left here is a run that was killed (a run that ends deletes its own): nothing can resume its
            // jobs, whose journal lived in its memory, so their work folders go. Only when that process is known to be
            // gone (this host, no such process): on a file system that ignores locks (some FUSE and NFS mounts without
            // locking, where .NET skips the lock silently) the record may be a live run's, whose work must stay
            // a run of another process in a folder holding this one, or in a folder just inside it, would write where this
            // one does (a graph into OUT/graph while a segmentation of OUT runs replaces the node map it paints from)
            if (NestedRun(dir) is { } nested) throw new OutputFolderInUseException(nested);
            var removed = new List<string>();
            var kept = new List<string>();
            var left = Read(dir);
            bool gone = left is not null && Gone(left);
            foreach (var w in left?.WorkDirs ?? [])
            {
                // the record is a file anyone who can write the folder could have written: only a real work folder within
                // this one (links resolved) is deleted, or named, on its word
                string real;
                try { real = SafePaths.RealPath(Path.GetFullPath(w)); }
                catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException) { continue; }
                if (!IsWorkDirIn(dir, real) || !Directory.Exists(real)) continue;
                if (!gone) { kept.Add(real); continue; }
                GraphOutputs.CleanWork(real);
                removed.Add(real);
            }
            var run = new RunRecord(Environment.ProcessId, Environment.MachineName, command, DateTime.UtcNow, []);
            var held = new OutputFolderLock(fs, dir, run, created, removed)
            {
                KeptWorkDirs = kept,
                EarlierRun = left is null ? null : Describe(left),
            };
            held.Save();
            lock (Held) Held[dir] = held;
            return held;
        }
        catch
        {
            // (its record could not be written: a full disk) a folder this call made goes again, as a run's own would
            if (created && OnlyTheLockLeft(dir))
                try { File.Delete(lockPath); Directory.Delete(dir); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            fs.Dispose();
            throw;
        }
    }

    /// <summary>The folders this process holds, by real path (a one-process command, or jobs of a cluster node).</summary>
    private static readonly Dictionary<string, OutputFolderLock> Held = new(StringComparer.Ordinal);

    /// <summary>
    /// Holds <paramref name="outDir"/> for a job a cluster node runs (the coordinator for a graph or segmentation job, from
    /// before its work folder is made to its end; a trainer for a training), so that a one-process run started in that
    /// folder, on this or another machine of a shared file system, is refused while the job runs, and the job is refused
    /// while such a run holds the folder. Null when this process holds the folder already: the one-process command that
    /// runs the job in its own embedded cluster, which keeps it. The caller disposes what it gets when the job ends.
    /// </summary>
    /// <param name="command">the job in words, recorded for whoever is refused (<c>cluster job JOB</c>)</param>
    /// <param name="waitForSame">how long to wait while the holder is the same job (<paramref name="command"/>): an earlier
    /// attempt of it, given up on and still stopping on another node, or an earlier coordinator of a failover</param>
    /// <exception cref="OutputFolderInUseException">another run holds the folder (the message names it)</exception>
    public static OutputFolderLock? HoldForJob(string outDir, string command, TimeSpan waitForSame = default, CancellationToken ct = default)
    {
        var until = DateTime.UtcNow + waitForSame;
        while (true)
        {
            try
            {
                lock (Held)
                {
                    var dir = SafePaths.Canonical(Path.GetFullPath(outDir), "output folder");
                    if (Held.ContainsKey(dir)) return null;
                    return Acquire(dir, command);
                }
            }
            catch (OutputFolderInUseException) when (DateTime.UtcNow < until && Read(SafePaths.Canonical(Path.GetFullPath(outDir), "output folder"))?.Command == command)
            {
                ct.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(250));
                ct.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>Notes a work folder a job of this run makes here (or under a folder of it), so that a later run deletes it
    /// if this one is killed before its end.</summary>
    public void AddWorkDir(string workDir) => AddWorkDirs([workDir]);

    /// <summary><see cref="AddWorkDir"/> for many (a batch's slides), the record written once.</summary>
    public void AddWorkDirs(IEnumerable<string> workDirs)
    {
        var full = workDirs.Select(w => SafePaths.RealPath(Path.GetFullPath(w))).ToList(); // as the folder: its real path
        if (full.FirstOrDefault(w => !IsWorkDirIn(_dir, w)) is { } bad) throw new ArgumentException($"{bad} is no work folder within {_dir}");
        lock (_run)
        {
            var fresh = full.Where(w => !_run.WorkDirs.Contains(w)).Distinct().ToList();
            if (fresh.Count == 0) return;
            _run.WorkDirs.AddRange(fresh);
            Save();
        }
    }

    /// <summary>Deletes the work folders this run noted (a run that stops before its jobs end: nothing will resume them).</summary>
    public void RemoveWorkDirs()
    {
        lock (_run)
            foreach (var w in _run.WorkDirs)
            {
                // a tile still in flight when its run stopped may write one more file into it: tried again a few times
                for (int attempt = 0; attempt < 5 && Directory.Exists(w); attempt++)
                {
                    if (attempt > 0) Thread.Sleep(200);
                    GraphOutputs.CleanWork(w);
                }
            }
    }

    /// <summary>Ends the run in this folder: its record goes, then the lock. A folder this run made and left empty goes too.</summary>
    public void Dispose() => Dispose([]);

    /// <summary><see cref="Dispose()"/>, where <paramref name="jobsFolders"/> are the folders a job that ended before it
    /// wrote anything else made in this one (its work folder, a segmentation's graph folder holding it, its folder of
    /// earlier results: it failed as it was being prepared): a folder this run made, holding only those and the lock, goes as a folder left empty does (those first,
    /// deleted here while the lock is held; in a folder this run made, there were no earlier results).</summary>
    public void Dispose(string[] jobsFolders)
    {
        if (_disposed) return;
        _disposed = true;
        lock (Held) if (Held.TryGetValue(_dir, out var h) && ReferenceEquals(h, this)) Held.Remove(_dir);
        try { File.Delete(Path.Combine(_dir, RunFile)); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        var own = jobsFolders.Where(f => Path.GetDirectoryName(f) == _dir).ToArray();
        if (_created && own.Length > 0 && OnlyTheLockLeft(_dir, own))
            foreach (var f in own) GraphOutputs.CleanWork(f);
        if (_created && OnlyTheLockLeft(_dir))
        {
            // made by this run and nothing written (a job refused before its first file): the folder goes with the lock,
            // removed while held, so that no other run can have taken it in between
            try { File.Delete(Path.Combine(_dir, LockFile)); Directory.Delete(_dir); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        _lock.Dispose();
    }

    private static bool OnlyTheLockLeft(string dir, string[]? andThese = null)
    {
        try { return Directory.EnumerateFileSystemEntries(dir).All(p => Path.GetFileName(p) == LockFile || andThese?.Contains(p) == true); }
        catch (IOException) { return false; }
    }

    /// <summary>Whether <paramref name="workDir"/> is a job's work folder (<c>.work-JOB</c>) in <paramref name="dir"/> or
    /// in a folder of it: the only kind of path a run record may make a later run delete.</summary>
    private static bool IsWorkDirIn(string dir, string workDir)
    {
        var full = Path.GetFullPath(workDir);
        return Path.GetFileName(full).StartsWith(".work-", StringComparison.Ordinal) && full.Length > dir.Length + 1
               && full.StartsWith(dir.TrimEnd('/') + "/", StringComparison.Ordinal); // GetFullPath has resolved any ..
    }

    private void Save() =>
        SafePaths.WriteAllText(Path.Combine(_dir, RunFile), JsonSerializer.Serialize(_run), "run record");

    private static RunRecord? Read(string dir)
    {
        var path = Path.Combine(dir, RunFile);
        try
        {
            if (!File.Exists(path) || new FileInfo(path).LinkTarget is not null || new FileInfo(path).Length > 1 << 20) return null;
            return JsonSerializer.Deserialize<RunRecord>(File.ReadAllText(path)) is { WorkDirs: not null } r ? r : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            return null; // damaged or unreadable: nothing is deleted on its word
        }
    }

    /// <summary>The refusal of a folder another run holds (<paramref name="holder"/>, that run in words).</summary>
    public static OutputFolderInUseException InUse(string dir, string holder) =>
        new($"output folder {dir} is in use by another ActorSeg run ({holder}): wait for it to end, or give another output folder");

    /// <summary>
    /// Why <paramref name="dir"/> may not be written now: a folder above it, or a folder directly inside it, is the output
    /// folder of a run of another process that is still going (its run record, and its lock held). Folders this process
    /// holds (a batch and its slides, a training and the graphs it builds) are its own business. Null when none.
    /// </summary>
    private static string? NestedRun(string dir)
    {
        IEnumerable<(string Folder, bool Above)> Around()
        {
            for (var a = Path.GetDirectoryName(dir); !string.IsNullOrEmpty(a); a = Path.GetDirectoryName(a)) yield return (a, true);
            IEnumerable<string> children;
            try { children = Directory.EnumerateDirectories(dir).ToList(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { children = []; }
            foreach (var c in children) yield return (c, false);
        }
        foreach (var (folder, above) in Around())
        {
            lock (Held) if (Held.ContainsKey(folder)) continue;
            if (Read(folder) is not { } run) continue; // no run recorded there
            var lockPath = Path.Combine(folder, LockFile);
            FileStream? probe;
            try
            {
                if (!File.Exists(lockPath) || new FileInfo(lockPath).LinkTarget is not null) continue;
                probe = TryLock(lockPath, FileMode.Open);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (probe is not null) { probe.Dispose(); continue; } // a run that was killed: its record is all that is left
            return above
                ? $"output folder {dir} lies inside {folder}, the output folder of another ActorSeg run ({Describe(run)}): wait for it to end, or give another output folder"
                : $"output folder {dir} holds {folder}, the output folder of another ActorSeg run ({Describe(run)}): wait for it to end, or give another output folder";
        }
        return null;
    }

    /// <summary>The run that holds a folder, in words, as far as its record tells.</summary>
    private static string Holder(string dir) => Read(dir) is { } r ? Describe(r) : $"its lock {Path.Combine(dir, LockFile)} is held";

    private static string Describe(RunRecord r) => $"'{r.Command}', process {r.Pid} on {r.Host}, since {r.StartedUtc.ToLocalTime():yyyy-MM-dd HH:mm:ss}";

    /// <summary>The lock file opened with an exclusive lock (FileShare.None is an exclusive flock(2) on Linux, taken
    /// without waiting); null when another open file holds it.</summary>
    private static FileStream? TryLock(string lockPath, FileMode mode)
    {
        try { return new FileStream(lockPath, mode, FileAccess.Read, FileShare.None); }
        catch (IOException e) when (e.HResult == EWouldBlock && e is not FileNotFoundException and not DirectoryNotFoundException) { return null; }
    }

    /// <summary>EWOULDBLOCK (11 on Linux), the HResult .NET gives an IOException when another process holds the flock.</summary>
    private const int EWouldBlock = 11;
}
