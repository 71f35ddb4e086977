using System.Runtime.InteropServices;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>A named pipe given as a model or an array file is refused at once, naming it: opening one to read would wait
/// for a writer for ever.</summary>
public partial class NamedPipeInputTests() : TempDirTest("fifo")
{
    [LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int MkFifo(string path, uint mode);

    private string Fifo(string name)
    {
        var p = Path.Combine(_dir, name);
        Assert.Equal(0, MkFifo(p, 0x1B6)); // 0666
        return p;
    }

    /// <summary>Whether the task ended (in any state) within 30 s.</summary>
    private static bool Ended(Task t) => t.ContinueWith(_ => { }, TaskScheduler.Default).Wait(TimeSpan.FromSeconds(30));

    [Fact]
    public void ANamedPipeNamedLikeACziOrALif_IsNoneOfThem_WithoutWaiting()
    {
        // the content checks that every image open, pixel size and pyramid question goes through first
        foreach (var name in new[] { "slide.czi", "stack.lif" })
        {
            var p = Fifo(name);
            var probe = Task.Run(() => (ActorSeg.Core.Imaging.CziSource.IsCzi(p), ActorSeg.Core.Imaging.LifSource.IsLif(p), ActorSeg.Core.Imaging.ImageSources.PyramidLevels(p).Length));
            Assert.True(Ended(probe), $"{name}: the format check waited on the pipe");
            Assert.Equal((false, false, 0), probe.Result);
        }
    }

    [Fact]
    public void AModelThatIsANamedPipe_IsRefusedWithoutWaiting()
    {
        var p = Fifo("best.model");
        var read = Task.Run(() => ModelFile.Load(p));
        Assert.True(Ended(read), "the load waited on the pipe");
        var e = Assert.IsType<InvalidDataException>(read.Exception!.InnerException);
        Assert.Contains(p, e.Message);
        Assert.Contains("not a regular file", e.Message);
    }

    [Fact]
    public void AnArrayFileThatIsANamedPipe_IsRefusedWithoutWaiting()
    {
        foreach (var (name, read) in new (string, Action<string>)[] { ("graph.npz", p => NpzReader.Read(p)), ("x.npy", p => NpyFile.Read(p)) })
        {
            var p = Fifo(name);
            var t = Task.Run(() => read(p));
            Assert.True(Ended(t), $"{name}: the read waited on the pipe");
            var e = Assert.IsType<InvalidDataException>(t.Exception!.InnerException);
            Assert.Contains(p, e.Message);
        }
    }
}
