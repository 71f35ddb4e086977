using System.Diagnostics;

namespace ActorSeg.Tests;

public static class TestPaths
{
    /// <summary>The team's shared real data (../shared/data beside the checkout), or null where it is absent.</summary>
    public static string? SharedData
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null)
            {
                var candidate = Path.Combine(dir.FullName, "shared", "data");
                if (Directory.Exists(Path.Combine(candidate, "nist-colonies"))) return candidate;
                dir = dir.Parent;
            }
            return null;
        }
    }

    public static string NewTempDir(string tag)
    {
        var d = Path.Combine(Path.GetTempPath(), $"actorseg-{tag}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(d);
        return d;
    }

    public sealed record CliResult(int ExitCode, string Stdout, string Stderr);

    /// <summary>
    /// The program the tests run as a process: the command-line project's own build (src/Cli/bin/CONFIG/net10.0), whose
    /// assemblies are compiled ahead of time (ReadyToRun) as `./run.sh` runs them, where it is the same build as this
    /// folder's copy; else this folder's copy, whose package assemblies are plain IL that every process compiles again
    /// with the full JIT (about 1.3 s of CPU more a process: hundreds of processes in the suite).
    /// </summary>
    public static string CliDll { get; } = FindCli();

    private static string FindCli()
    {
        var here = Path.Combine(AppContext.BaseDirectory, "actorseg.dll");
        // BASE = tests/ActorSeg.Tests/bin/CONFIG/TFM/
        var tfm = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
        var config = tfm.Parent;
        var repo = config?.Parent?.Parent?.Parent?.Parent;
        if (repo is null) return here;
        var cli = Path.Combine(repo.FullName, "src", "Cli", "bin", config!.Name, tfm.Name, "actorseg.dll");
        try
        {
            return File.Exists(cli) && File.ReadAllBytes(cli).AsSpan().SequenceEqual(File.ReadAllBytes(here)) ? cli : here;
        }
        catch (IOException) { return here; }
    }

    /// <summary>Every file under <paramref name="dir"/> (relative path → SHA-256), lock files aside: what a failed run must
    /// leave as it was.</summary>
    public static SortedDictionary<string, string> FileHashes(string dir) =>
        new(Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f) != ActorSeg.Core.IO.OutputFolderLock.LockFile)
            .ToDictionary(f => Path.GetRelativePath(dir, f), f => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))), StringComparer.Ordinal);

    /// <summary>Runs the real command-line program as a separate process.</summary>
    public static CliResult RunCli(params string[] args) => RunCliWith(new Dictionary<string, string>(), args);

    /// <summary>Runs the real command-line program with these environment variables set for it.</summary>
    public static CliResult RunCliWith(IReadOnlyDictionary<string, string> env, params string[] args)
    {
        var dll = CliDll;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (k, v) in env) psi.Environment[k] = v;
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var so = p.StandardOutput.ReadToEndAsync();
        var se = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); throw new TimeoutException("actorseg did not finish in 5 minutes: " + string.Join(' ', args)); }
        return new CliResult(p.ExitCode, so.Result, se.Result);
    }
}

/// <summary>A test class with a temporary folder of its own (<c>_dir</c>), removed when the class is done.</summary>
public abstract class TempDirTest(string tag) : IDisposable
{
    protected readonly string _dir = TestPaths.NewTempDir(tag);

    public virtual void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch { }
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// An output folder's lock held by another process, as a one-process run on another machine of a shared file system
/// holds it: util-linux's flock takes the same flock(2) lock .NET takes for FileShare.None; beside it the run record
/// such a run writes (<paramref name="command"/>, process <paramref name="pid"/> on <paramref name="host"/>).
/// </summary>
public sealed class LockHeldElsewhere : IDisposable
{
    private readonly Process _p = null!;

    public LockHeldElsewhere(string dir, string command, int pid = 4242, string host = "login-1")
    {
        Directory.CreateDirectory(dir);
        // -o: the command (sleep) does not inherit the lock, so it goes the moment flock itself is killed. A holder just
        // let go of may still be exiting: tried for a few seconds
        for (var until = DateTime.UtcNow.AddSeconds(10); ; Thread.Sleep(50))
        {
            var psi = new ProcessStartInfo("flock") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "-n", "-o", Path.Combine(dir, ActorSeg.Core.IO.OutputFolderLock.LockFile), "-c", "echo held; exec sleep 600" }) psi.ArgumentList.Add(a);
            _p = Process.Start(psi)!;
            if (_p.StandardOutput.ReadLine() == "held") break;
            var why = _p.StandardError.ReadToEnd();
            _p.WaitForExit();
            _p.Dispose();
            if (DateTime.UtcNow > until) throw new InvalidOperationException($"flock could not take {dir}'s lock: {why}");
        }
        File.WriteAllText(Path.Combine(dir, ActorSeg.Core.IO.OutputFolderLock.RunFile), System.Text.Json.JsonSerializer.Serialize(
            new { Pid = pid, Host = host, Command = command, StartedUtc = DateTime.UtcNow, WorkDirs = Array.Empty<string>() }));
    }

    /// <summary>Whether a process that is not this one can take <paramref name="dir"/>'s lock now (flock, not waiting).</summary>
    public static bool FreeForAnotherProcess(string dir)
    {
        if (!Directory.Exists(dir)) return true; // (a folder its run made and left empty goes with the lock)
        var psi = new ProcessStartInfo("flock") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-n", Path.Combine(dir, ActorSeg.Core.IO.OutputFolderLock.LockFile), "true" }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        return p.ExitCode == 0;
    }

    public void Dispose()
    {
        try { _p.Kill(entireProcessTree: true); _p.WaitForExit(); }
        catch (InvalidOperationException) { }
        _p.Dispose();
    }
}
