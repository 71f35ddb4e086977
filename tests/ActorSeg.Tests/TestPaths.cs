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

    /// <summary>Runs the real command-line program as a separate process.</summary>
    public static CliResult RunCli(params string[] args) => RunCliWith(new Dictionary<string, string>(), args);

    /// <summary>Runs the real command-line program with these environment variables set for it.</summary>
    public static CliResult RunCliWith(IReadOnlyDictionary<string, string> env, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "actorseg.dll");
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
