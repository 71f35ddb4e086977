using System.Text.Json;
using ActorSeg.Core.IO;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>One run at a time in an output folder, and what a killed run left there deleted by the next.</summary>
public class OutputFolderLockTests(Xunit.Abstractions.ITestOutputHelper output) : TempDirTest("outlock")
{
    [Fact]
    public void AFullDisk_IsSaidOfTheFileNotItsTemporaryName_AndAFolderMadeForTheRunGoesAgain()
    {
        // a 64 KiB file system filled up (mounting it needs root: elsewhere the test says it did not run)
        var small = Path.Combine(_dir, "small");
        Directory.CreateDirectory(small);
        if (Environment.UserName != "root" || !Run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small))
        {
            output.WriteLine("SKIPPED: mounting a small tmpfs needs root");
            return;
        }
        try
        {
            using (var fill = new FileStream(Path.Combine(small, "fill"), FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0))
            {
                var block = new byte[4096];
                try { while (true) fill.Write(block); } catch (IOException) { } // unbuffered: nothing left to flush at the end
            }
            var e = Assert.Throws<IOException>(() => ActorSeg.Core.IO.SafePaths.WriteAllText(Path.Combine(small, "graph.json"), new string('x', 100_000), "graph summary"));
            Assert.StartsWith($"graph summary {Path.Combine(small, "graph.json")} cannot be written: ", e.Message);
            Assert.DoesNotContain(".partial", e.Message);
            var outDir = Path.Combine(small, "out");
            e = Assert.ThrowsAny<IOException>(() => OutputFolderLock.Acquire(outDir, "graph"));
            Assert.StartsWith($"run record {Path.Combine(outDir, OutputFolderLock.RunFile)} cannot be written: ", e.Message);
            Assert.False(Directory.Exists(outDir)); // made for the run, left as it was
            Assert.Equal(["fill"], Directory.GetFileSystemEntries(small).Select(Path.GetFileName));
        }
        finally { Run("umount", small); }
    }

    private static bool Run(string file, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = System.Diagnostics.Process.Start(psi)!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }

    [Fact]
    public void ASecondRunInTheSameFolder_IsRefused_NamingTheFirst_UntilTheFirstEnds()
    {
        var dir = Path.Combine(_dir, "out");
        using (var first = OutputFolderLock.Acquire(dir, "graph"))
        {
            // flock is per open file: a second open in this process conflicts as one in another process does
            var e = Assert.Throws<OutputFolderInUseException>(() => OutputFolderLock.Acquire(dir, "segment"));
            Assert.Contains($"output folder {dir} is in use by another ActorSeg run", e.Message);
            Assert.Contains($"'graph', process {Environment.ProcessId}", e.Message);
            // the same folder named through a link is the same lock
            var link = Path.Combine(_dir, "link");
            Directory.CreateSymbolicLink(link, dir);
            Assert.Throws<OutputFolderInUseException>(() => OutputFolderLock.Acquire(link, "train"));
        }
        Assert.False(File.Exists(Path.Combine(dir, OutputFolderLock.RunFile))); // a run that ends leaves no record
        using var again = OutputFolderLock.Acquire(dir, "segment");
        Assert.Empty(again.RemovedWorkDirs);
    }

    [Fact]
    public void ARunInAFolderAboveOrJustInside_AnotherProcesssRunningOne_IsRefused_NamingIt()
    {
        // before: `graph -o O/graph` was accepted while `segment -o O` ran, and the segmentation then failed on its node map
        var outer = Path.Combine(_dir, "seg");
        var inner = Path.Combine(outer, "graph");
        using (new LockHeldElsewhere(outer, "segment", 4242, "login-1"))
        {
            var e = Assert.Throws<OutputFolderInUseException>(() => OutputFolderLock.Acquire(inner, "graph"));
            Assert.StartsWith($"output folder {inner} lies inside {outer}, the output folder of another ActorSeg run ('segment', process 4242 on login-1", e.Message);
            Assert.False(Directory.Exists(inner)); // the folder this refused run made goes again
        }
        Directory.CreateDirectory(inner);
        using (new LockHeldElsewhere(inner, "graph", 4343, "login-2"))
        {
            var e = Assert.Throws<OutputFolderInUseException>(() => OutputFolderLock.Acquire(outer, "segment"));
            Assert.StartsWith($"output folder {outer} holds {inner}, the output folder of another ActorSeg run ('graph', process 4343 on login-2", e.Message);
        }
        // a killed run's record, its lock free, stops nothing; nor does a folder this process holds (a batch and its slides)
        File.WriteAllText(Path.Combine(outer, OutputFolderLock.RunFile), System.Text.Json.JsonSerializer.Serialize(
            new { Pid = 4242, Host = "login-1", Command = "segment", StartedUtc = DateTime.UtcNow, WorkDirs = Array.Empty<string>() }));
        using (OutputFolderLock.Acquire(inner, "graph")) { }
        using var batch = OutputFolderLock.Acquire(outer, "batch");
        using (OutputFolderLock.Acquire(Path.Combine(outer, "slides", "a"), "slide")) { }
    }

    [Fact]
    public void AClusterJob_HoldsItsFolder_UnlessThisProcessHoldsIt_AndWaitsOnlyForItself()
    {
        var dir = Path.Combine(_dir, "job");
        using (var held = OutputFolderLock.HoldForJob(dir, "cluster job j1"))
        {
            Assert.NotNull(held);
            Assert.False(LockHeldElsewhere.FreeForAnotherProcess(dir));
            Assert.Null(OutputFolderLock.HoldForJob(dir, "cluster job j1")); // held here already: nothing more to take
        }
        Assert.True(LockHeldElsewhere.FreeForAnotherProcess(dir));
        // a one-process command of this process holds it: its embedded cluster's job takes nothing
        using (OutputFolderLock.Acquire(dir, "graph"))
            Assert.Null(OutputFolderLock.HoldForJob(dir, "cluster job j2"));

        // another process's run: refused at once, naming it, however long the job would wait for itself
        using (new LockHeldElsewhere(dir, "segment", 1, "node-7"))
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var e = Assert.Throws<OutputFolderInUseException>(() => OutputFolderLock.HoldForJob(dir, "cluster job j3", TimeSpan.FromSeconds(20)));
            Assert.Contains("in use by another ActorSeg run ('segment', process 1 on node-7, since ", e.Message);
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"waited {sw.Elapsed}");
        }
        // an earlier attempt of the same job, still stopping elsewhere: waited for, then held
        var other = new LockHeldElsewhere(dir, "cluster job j4", 1, "node-7");
        var waited = System.Diagnostics.Stopwatch.StartNew();
        var letGo = Task.Delay(700).ContinueWith(_ => other.Dispose());
        using (var mine = OutputFolderLock.HoldForJob(dir, "cluster job j4", TimeSpan.FromSeconds(20)))
        {
            Assert.NotNull(mine);
            Assert.True(waited.Elapsed >= TimeSpan.FromMilliseconds(650), $"held after {waited.Elapsed}, before the other let go");
        }
        letGo.Wait();
        // and not for ever
        using (new LockHeldElsewhere(dir, "cluster job j5", 1, "node-7"))
            Assert.Throws<OutputFolderInUseException>(() => OutputFolderLock.HoldForJob(dir, "cluster job j5", TimeSpan.FromMilliseconds(600)));
    }

    [Fact]
    public void AKilledRunsWorkFolders_AreDeletedByTheNextRun_AndNothingElse()
    {
        var dir = Path.Combine(_dir, "out");
        Directory.CreateDirectory(dir);
        var work = Path.Combine(dir, ".work-20261206-000000-aaaaaa");
        var segWork = Path.Combine(dir, "graph", ".work-20261206-000000-bbbbbb");
        var result = Path.Combine(dir, "keep"); // no work folder: never deleted on a record's word
        var outside = Path.Combine(_dir, ".work-outside");
        foreach (var d in new[] { work, segWork, result, outside })
        {
            Directory.CreateDirectory(d);
            File.WriteAllText(Path.Combine(d, "tile-000000.apg"), "x");
        }
        // what a run killed by SIGKILL leaves: its record, with the work folders its jobs made (and a forged entry or two);
        // its process, of this host, is gone (a number above the kernel's pid_max)
        var record = new { Pid = NoSuchProcess, Host = Environment.MachineName, Command = "graph", StartedUtc = DateTime.UtcNow, WorkDirs = new[] { work, segWork, result, outside, Path.Combine(dir, "..", ".work-outside") } };
        File.WriteAllText(Path.Combine(dir, OutputFolderLock.RunFile), JsonSerializer.Serialize(record));

        using (var next = OutputFolderLock.Acquire(dir, "graph"))
        {
            Assert.Equal(new[] { work, segWork }, next.RemovedWorkDirs);
            Assert.False(Directory.Exists(work));
            Assert.False(Directory.Exists(segWork));
            Assert.True(File.Exists(Path.Combine(result, "tile-000000.apg")));
            Assert.True(File.Exists(Path.Combine(outside, "tile-000000.apg")));
            // this run's own record replaced the dead one's
            Assert.Contains($"\"Pid\":{Environment.ProcessId}", File.ReadAllText(Path.Combine(dir, OutputFolderLock.RunFile)));
        }
        Assert.True(Directory.Exists(dir)); // a folder that was there stays
    }

    private const int NoSuchProcess = 1 << 30;

    [Theory]
    [InlineData("another host")]
    [InlineData("a live process")]
    public void ARecordOfARunThatMayStillBeAlive_DeletesNothing_AndNamesWhatItKept(string whose)
    {
        // a file system that ignores locks (some FUSE and NFS mounts) lets a second run in while the first writes: the
        // first's record is then a live run's, and its work must stay
        var dir = Path.Combine(_dir, "out");
        var work = Path.Combine(dir, ".work-live");
        Directory.CreateDirectory(work);
        var (pid, host) = whose == "another host" ? (NoSuchProcess, "node-9") : (Environment.ProcessId == 1 ? 2 : 1, Environment.MachineName);
        File.WriteAllText(Path.Combine(dir, OutputFolderLock.RunFile),
            JsonSerializer.Serialize(new { Pid = pid, Host = host, Command = "graph", StartedUtc = DateTime.UtcNow, WorkDirs = new[] { work, Path.Combine(_dir, ".work-x") } }));
        using var next = OutputFolderLock.Acquire(dir, "graph");
        Assert.Empty(next.RemovedWorkDirs);
        Assert.Equal(new[] { work }, next.KeptWorkDirs); // the one outside the folder is not even named
        Assert.StartsWith($"'graph', process {pid} on {host}", next.EarlierRun);
        Assert.True(Directory.Exists(work));
    }

    [Fact]
    public void ADamagedRecord_DeletesNothing()
    {
        var dir = Path.Combine(_dir, "out");
        var work = Path.Combine(dir, ".work-j");
        Directory.CreateDirectory(work);
        File.WriteAllText(Path.Combine(dir, OutputFolderLock.RunFile), "{\"WorkDirs\": [\"" + work + "\""); // cut short
        using var next = OutputFolderLock.Acquire(dir, "graph");
        Assert.Empty(next.RemovedWorkDirs);
        Assert.True(Directory.Exists(work));
    }

    [Fact]
    public void ARunStoppedBeforeItsEnd_DeletesItsOwnWorkFolders_AndAFolderItMadeAndLeftEmpty()
    {
        var dir = Path.Combine(_dir, "new", "out");
        using (var run = OutputFolderLock.Acquire(dir, "graph"))
        {
            Assert.True(Directory.Exists(dir));
            var work = Path.Combine(dir, ".work-j1");
            run.AddWorkDir(work);
            Directory.CreateDirectory(work);
            File.WriteAllText(Path.Combine(work, "tile-000001.apg"), "x");
            Assert.Throws<ArgumentException>(() => run.AddWorkDir(Path.Combine(_dir, ".work-j2"))); // not within the folder
            Assert.Throws<ArgumentException>(() => run.AddWorkDir(Path.Combine(dir, "graph")));     // not a work folder
            run.RemoveWorkDirs();
            Assert.False(Directory.Exists(work));
        }
        Assert.False(Directory.Exists(dir)); // made by the run, nothing left in it
        Assert.True(Directory.Exists(Path.Combine(_dir, "new")));
    }

    [Fact]
    public void OutputsStay_AndAFileOrALinkWhereTheLockGoes_IsRefused()
    {
        var dir = Path.Combine(_dir, "out");
        using (var run = OutputFolderLock.Acquire(dir, "graph")) File.WriteAllText(Path.Combine(dir, "graph.json"), "{}");
        Assert.True(File.Exists(Path.Combine(dir, "graph.json")));

        var file = Path.Combine(_dir, "afile");
        File.WriteAllText(file, "x");
        var e = Assert.Throws<OutputFolderException>(() => OutputFolderLock.Acquire(file, "graph"));
        Assert.Contains("a file of that name is there", e.Message);

        var planted = Path.Combine(_dir, "planted");
        Directory.CreateDirectory(planted);
        var victim = Path.Combine(_dir, "victim.txt");
        File.WriteAllText(victim, "precious");
        File.CreateSymbolicLink(Path.Combine(planted, OutputFolderLock.LockFile), victim);
        Assert.Throws<UnsafePathException>(() => OutputFolderLock.Acquire(planted, "graph"));
        Assert.Equal("precious", File.ReadAllText(victim));
    }
}
