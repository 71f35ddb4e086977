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

    [Fact]
    public void ARefinedPaintJob_NamingARefinementOutsideItsFolder_OrAnImageOutsideTheRoots_IsRefusedBeforeAnyRead()
    {
        var coordinator = CreateTestProbe();
        var data = Path.Combine(_dir, "data");
        var job = Path.Combine(data, "out");
        Directory.CreateDirectory(job);
        var roots = new DataRoots([data]);
        var worker = Sys.ActorOf(TileWorkerActor.Props(coordinator.Ref, null, s => s.Equals(coordinator.Ref), roots));
        var trainer = Sys.ActorOf(TrainerActor.Props(coordinator.Ref, "cpu", null, s => s.Equals(coordinator.Ref), roots));
        coordinator.FishForMessage(m => m is RequestWork, TimeSpan.FromSeconds(5));
        var image = Path.Combine(data, "image.tif");
        File.WriteAllText(image, "not read");
        ResultRef In(string name) => new(Path.Combine(job, name), 1, "0");
        var paint = new PaintAssignment("j", "a", image, In("nodes.tif"), In("classes.u8"), Path.Combine(job, AssignmentPaths.MaskFile),
            Path.Combine(job, AssignmentPaths.OverlayFile), 1, job, Probs: In("probs.f32"), Refine: In("refine.bin"));

        PaintFailed Refused(PaintAssignment w)
        {
            coordinator.Send(worker, w);
            var f = coordinator.FishForMessage<PaintFailed>(_ => true, TimeSpan.FromSeconds(5));
            Assert.True(f.Permanent);
            return f;
        }
        // a refinement file from another job's folder (or anywhere else) is never opened
        var elsewhere = Path.Combine(_dir, "other-job");
        Directory.CreateDirectory(elsewhere);
        Assert.Contains("refinement", Refused(paint with { Refine = new ResultRef(Path.Combine(elsewhere, "refine.bin"), 1, "0") }).Error);
        Assert.Contains("refinement", Refused(paint with { Refine = new ResultRef(Path.Combine(job, "..", "..", "other-job", "refine.bin"), 1, "0") }).Error);
        // nor an image outside this node's data roots, through a link either
        Assert.Contains("outside this node's data roots", Refused(paint with { ImagePath = "/etc/hostname" }).Error);
        var link = Path.Combine(data, "link.tif");
        File.CreateSymbolicLink(link, "/etc/hostname");
        Assert.Contains("outside this node's data roots", Refused(paint with { ImagePath = link }).Error);
        // a training job's graphs outside the roots: refused before any training
        coordinator.Send(trainer, new TrainModel("t", new TrainJobSpec(["/etc/graph.npz"], Path.Combine(data, "model")), 1));
        var tf = coordinator.FishForMessage<TrainFailed>(_ => true, TimeSpan.FromSeconds(5));
        Assert.True(tf.Permanent);
        Assert.Contains("outside this node's data roots", tf.Error);
        Assert.False(Directory.Exists(Path.Combine(data, "model")));
        Assert.Equal(["image.tif", "link.tif", "out"], Directory.EnumerateFileSystemEntries(data).Select(Path.GetFileName).Order().ToArray());
        Assert.Empty(Directory.EnumerateFileSystemEntries(job));
    }
}
