using System.Diagnostics;
using ActorSeg.Core.IO;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cli;

/// <summary>
/// The real program and its output folder: a second run given a folder in use is refused before it writes anything; a
/// run stopped with Ctrl-C or SIGTERM leaves no work folder; one killed outright has its work folder deleted by the next
/// run there. (The tests stop runs with SIGTERM, which the program takes as it takes Ctrl-C's SIGINT: a shell without job
/// control starts background commands with SIGINT ignored, and every process under them inherits that.)
/// </summary>
public class OutputFolderTests(ITestOutputHelper output) : TempDirTest("outfolder")
{
    private (string Image, string Mask) Generate(int w, int h)
    {
        var r = TestPaths.RunCli("generate", "--out", _dir, "--name", $"img{w}", "--width", $"{w}", "--height", $"{h}", "--bits", "8", "--seed", "3");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return (lines[0].Trim(), lines[1].Trim());
    }

    [Fact]
    public void AGraphIntoAFolderInUse_IsRefused_AndWritesNothingThere()
    {
        var (img, mask) = Generate(300, 200);
        var outDir = Path.Combine(_dir, "busy");
        using (OutputFolderLock.Acquire(outDir, "segment"))
        {
            File.WriteAllText(Path.Combine(outDir, "graph.json"), "earlier");
            var r = TestPaths.RunCli("graph", img, "--mask", mask, "--out", outDir, "--tile-size", "256", "--spacing", "12");
            output.WriteLine(r.Stderr);
            Assert.Equal(1, r.ExitCode);
            Assert.Contains($"output folder {outDir} is in use by another ActorSeg run ('segment', process {Environment.ProcessId}", r.Stderr);
            Assert.DoesNotContain("   at ", r.Stderr);
            Assert.Equal("earlier", File.ReadAllText(Path.Combine(outDir, "graph.json")));
            Assert.False(File.Exists(Path.Combine(outDir, "graph.npz")));
            Assert.Empty(Directory.GetDirectories(outDir));
        }
        // free again: the same command runs
        var ok = TestPaths.RunCli("graph", img, "--mask", mask, "--out", outDir, "--tile-size", "256", "--spacing", "12");
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "graph.npz")));
    }

    /// <summary>Starts a graph of many small tiles and returns once its work folder exists (the job is past its prepare).</summary>
    private Process StartGraph(string img, string outDir) =>
        Start(outDir, "graph", img, "--out", outDir, "--tile-size", "128", "--spacing", "8", "--workers", "1");

    private static string[] WorkDirs(string outDir) =>
        Directory.Exists(outDir) ? Directory.GetDirectories(outDir, ".work-*", SearchOption.AllDirectories) : [];

    /// <summary>Starts the program and returns once one work folder under <paramref name="outDir"/> holds a few tiles.</summary>
    private Process Start(string outDir, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(TestPaths.CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { };
        p.ErrorDataReceived += (_, e) => { if (e.Data is { } l) lock (output) output.WriteLine(l); };
        p.BeginOutputReadLine(); p.BeginErrorReadLine();
        var sw = Stopwatch.StartNew();
        while (!(WorkDirs(outDir) is [var w] && Directory.GetFiles(w, "tile-*").Length >= 4))
        {
            Assert.False(p.HasExited, "the run ended before it could be stopped");
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(60), "no work folder with tiles after 60 s");
            Thread.Sleep(10);
        }
        return p;
    }

    /// <summary>Stops a run as Kubernetes, systemd or Ctrl-C do: SIGTERM, handled as SIGINT is.</summary>
    private static void Interrupt(Process p)
    {
        using (var kill = Process.Start("kill", ["-TERM", $"{p.Id}"])) kill.WaitForExit();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), "still running 60 s after SIGTERM");
        Assert.NotEqual(0, p.ExitCode);
    }

    [Fact]
    public void ABatchStopped_LeavesNoWorkFolder()
    {
        var (img, _) = Generate(2400, 2400);
        var src = Path.Combine(_dir, "slides");
        Directory.CreateDirectory(src);
        File.Copy(img, Path.Combine(src, "a.tif"));
        var outDir = Path.Combine(_dir, "batch");
        // an earlier batch's results in the folder (other settings: the slide is not skipped as done)
        var first = TestPaths.RunCli("batch", src, "--out", outDir, "--tile-size", "512", "--spacing", "16");
        Assert.True(first.ExitCode == 0, first.Stderr);
        var slide = Path.Combine(outDir, "slides", "a");
        var before = TestPaths.FileHashes(slide);
        Assert.Contains("graph.npz", before.Keys);
        using var p = Start(outDir, "batch", src, "--out", outDir, "--tile-size", "128", "--spacing", "8", "--workers", "1");
        Interrupt(p);
        Assert.Empty(WorkDirs(outDir));
        // the slide it was working on holds the earlier results again, not half of each run
        Assert.Equal(before, TestPaths.FileHashes(slide));
        Assert.Empty(Directory.GetDirectories(slide, ".*"));
    }

    [Fact]
    public void AGraphStopped_LeavesNoWorkFolder()
    {
        var (img, _) = Generate(2400, 2400);
        var outDir = Path.Combine(_dir, "stopped");
        using var p = StartGraph(img, outDir);
        Interrupt(p);
        // the run made the folder and ended before its first output: nothing of it is left, not even the folder
        Assert.False(Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any(e => Path.GetFileName(e) != OutputFolderLock.LockFile),
            string.Join(", ", Directory.Exists(outDir) ? Directory.EnumerateFileSystemEntries(outDir) : []));
    }

    [Fact]
    public void AGraphKilledOutright_HasItsWorkFolderDeletedByTheNextRunThere()
    {
        var (img, mask) = Generate(2400, 2400);
        var outDir = Path.Combine(_dir, "killed");
        string work;
        using (var p = StartGraph(img, outDir))
        {
            work = Directory.GetDirectories(outDir, ".work-*").Single();
            p.Kill(); // SIGKILL: no handler runs
            p.WaitForExit();
        }
        Assert.True(Directory.Exists(work));
        var (small, smallMask) = Generate(300, 200);
        var r = TestPaths.RunCli("graph", small, "--mask", smallMask, "--out", outDir, "--tile-size", "256", "--spacing", "12");
        output.WriteLine(r.Stderr);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains($"Deleted {work}: the work folder of an earlier run in {outDir} that was killed before its end", r.Stderr);
        Assert.False(Directory.Exists(work));
        Assert.Empty(Directory.GetDirectories(outDir, ".work-*"));
        Assert.False(File.Exists(Path.Combine(outDir, OutputFolderLock.RunFile)));
        _ = mask;
    }
}
