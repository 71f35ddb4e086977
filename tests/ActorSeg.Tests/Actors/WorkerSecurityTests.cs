using Akka.TestKit.Xunit2;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using ActorSeg.TileWorker;
using Xunit;

namespace ActorSeg.Tests.Actors;

/// <summary>Workers and trainers act for the coordinator only, and only on their job's own paths.</summary>
public class WorkerSecurityTests : TestKit, IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("wsec");
    void IDisposable.Dispose() { Shutdown(); try { Directory.Delete(_dir, true); } catch { } }

    [Fact]
    public void WorkFromAnyoneButTheCoordinator_IsIgnored_AndWorkNamingOtherPaths_IsRefused()
    {
        var coordinator = CreateTestProbe();
        var stranger = CreateTestProbe();
        var worker = Sys.ActorOf(TileWorkerActor.Props(coordinator.Ref, null, s => s.Equals(coordinator.Ref)));
        var trainer = Sys.ActorOf(TrainerActor.Props(coordinator.Ref, "cpu", null, s => s.Equals(coordinator.Ref)));
        coordinator.FishForMessage(m => m is RequestWork, TimeSpan.FromSeconds(5));
        var victim = Path.Combine(_dir, "victim");
        Directory.CreateDirectory(victim);
        var r = new ResultRef(Path.Combine(victim, "x"), 1, "0");
        var paint = new PaintAssignment("j", "a", "/etc/hostname", r, r, Path.Combine(victim, "mask.tif"), Path.Combine(victim, "overlay.png"), 1, victim);

        stranger.Send(worker, paint);
        stranger.Send(trainer, new TrainModel("j", new TrainJobSpec([Path.Combine(victim, "g.npz")], victim), 1));
        stranger.ExpectNoMsg(TimeSpan.FromMilliseconds(500)); // no answer to an outsider

        // the coordinator itself naming a file outside the job's folder is refused, permanently, with the reason
        coordinator.Send(worker, paint with { MaskPath = "/tmp/elsewhere.tif" });
        var failed = coordinator.FishForMessage<PaintFailed>(_ => true, TimeSpan.FromSeconds(5));
        Assert.True(failed.Permanent);
        Assert.Contains("writes only", failed.Error);
        coordinator.Send(trainer, new ClassifyNodes("j", "a", r, "/m", "/tmp/classes.u8", "cpu", 1, victim));
        var cf = coordinator.FishForMessage<ClassifyFailed>(_ => true, TimeSpan.FromSeconds(5));
        Assert.True(cf.Permanent);
        Assert.Empty(Directory.EnumerateFileSystemEntries(victim));
        Assert.False(File.Exists("/tmp/elsewhere.tif"));
    }
}
