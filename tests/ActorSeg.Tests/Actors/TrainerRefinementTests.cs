using Akka.TestKit.Xunit2;
using ActorSeg.Core.Imaging;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using Xunit;

namespace ActorSeg.Tests.Actors;

/// <summary>
/// Graphs on which the boundary refinement has nothing to learn (one class everywhere, every node sure): the coarse
/// model is trained and kept, the reason recorded in train.json, by `actorseg train` and by a cluster's trainer alike.
/// </summary>
public class TrainerRefinementTests : TestKit, IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("trainref");
    void IDisposable.Dispose() { Shutdown(); try { Directory.Delete(_dir, true); } catch { } }

    /// <summary>Three generated fields, each with a mask that is background everywhere, as graphs with their node maps.</summary>
    private string[] OneClassGraphs()
    {
        var graphs = new List<string>();
        for (int s = 1; s <= 3; s++)
        {
            string img = Path.Combine(_dir, $"f{s}.tif"), mask = Path.Combine(_dir, $"f{s}_mask.tif"), generated = Path.Combine(_dir, $"f{s}_generated_mask.tif");
            SyntheticMicroscopy.Generate(new SyntheticSpec(192, 160, SyntheticKind.Colonies, 16, 1, s), img, generated);
            using (var w = new TiledTiffWriter(mask, 192, 160, 1, TiffSampleType.UInt8, tileSize: 64))
            {
                for (int ty = 0; ty < 3; ty++)
                    for (int tx = 0; tx < 3; tx++) w.WriteTile<byte>(tx, ty, new byte[w.SamplesPerTile]);
                w.Complete();
            }
            var g = Path.Combine(_dir, $"g{s}");
            var r = TestPaths.RunCli("graph", img, "--mask", mask, "--spacing", "12", "--out", g);
            Assert.True(r.ExitCode == 0, r.Stderr);
            graphs.Add(Path.Combine(g, "graph.npz"));
        }
        return [.. graphs];
    }

    private static void AssertCoarseKept(string outDir)
    {
        var (spec, model) = ModelFile.Load(Path.Combine(outDir, "best.model"));
        model.Dispose();
        Assert.Null(spec.Refiner);
        var summary = File.ReadAllText(Path.Combine(outDir, "train.json"));
        Assert.Contains("\"skipped\": \"no pixel to refine in the training graphs", summary);
    }

    [Fact]
    public void GraphsWithNothingToRefine_KeepTheCoarseModel_InTheCommandAndOnACluster()
    {
        var graphs = OneClassGraphs();

        // the command: a warning, exit 0, the coarse model
        var cli = Path.Combine(_dir, "cli-model");
        var r = TestPaths.RunCli(["train", "--graphs", .. graphs, "--epochs", "20", "--out", cli]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("No boundary refinement: no pixel to refine", r.Stderr);
        // masks of one class make a model that only ever predicts it: said as it trains
        Assert.Contains("Every labelled node of these 3 graph(s) is of class 0: the model will only ever predict that class", r.Stderr);
        AssertCoarseKept(cli);
        // --refine asks for the refinement: then it is an error
        var strict = TestPaths.RunCli(["train", "--graphs", .. graphs, "--epochs", "20", "--refine", "--out", Path.Combine(_dir, "strict")]);
        Assert.Equal(1, strict.ExitCode);
        Assert.Contains("no pixel to refine", strict.Stderr);

        // a cluster's trainer: the model is ready, with the same summary
        var coordinator = CreateTestProbe();
        var trainer = Sys.ActorOf(TrainerActor.Props(coordinator.Ref, "cpu", null, s => s.Equals(coordinator.Ref)));
        coordinator.FishForMessage(m => m is TrainerReady, TimeSpan.FromSeconds(10));
        var onCluster = Path.Combine(_dir, "cluster-model");
        coordinator.Send(trainer, new TrainModel("t1", new TrainJobSpec(graphs, onCluster, MaxEpochs: 20), 1));
        var ready = coordinator.FishForMessage<ModelReady>(_ => true, TimeSpan.FromSeconds(120));
        Assert.Equal(Path.Combine(onCluster, "best.model"), ready.BestModel.Path);
        AssertCoarseKept(onCluster);
        // a job that asks for no refinement gets none, and its summary says none was tried
        var coarseOnly = Path.Combine(_dir, "cluster-coarse");
        coordinator.Send(trainer, new TrainModel("t0", new TrainJobSpec(graphs, coarseOnly, MaxEpochs: 5, NoRefine: true), 1));
        coordinator.FishForMessage<ModelReady>(m => m.JobId == "t0", TimeSpan.FromSeconds(120));
        var (coarseSpec, coarseModel) = ModelFile.Load(Path.Combine(coarseOnly, "best.model"));
        coarseModel.Dispose();
        Assert.Null(coarseSpec.Refiner);
        Assert.Contains("\"refiner\": null", File.ReadAllText(Path.Combine(coarseOnly, "train.json")));
        // and settings out of range that reached a trainer anyway (the coordinator refuses them) fail there, naming them
        coordinator.Send(trainer, new TrainModel("t-bad", new TrainJobSpec(graphs, Path.Combine(_dir, "bad-settings"), RefineWhole: 2), 1));
        Assert.Contains("whole-class share must be in (0, 1] (got 2)", coordinator.FishForMessage<TrainFailed>(f => f.JobId == "t-bad", TimeSpan.FromSeconds(30)).Error);
        coordinator.FishForMessage(m => m is TrainerReady, TimeSpan.FromSeconds(10));

        // a training the coordinator gives up on (past its deadline; the next attempt trains in the same folder elsewhere)
        // stops at once and writes nothing more there; before, the trainer ignored the order and trained to its end
        var abandoned = Path.Combine(_dir, "abandoned");
        coordinator.Send(trainer, new TrainModel("t2", new TrainJobSpec(graphs, abandoned, MaxEpochs: 100000, Patience: 100000), 1));
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!(Directory.Exists(abandoned) && Directory.GetFiles(abandoned, ".best.model*.training", SearchOption.AllDirectories).Length > 0))
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(60), "the training wrote no checkpoint in 60 s");
            Thread.Sleep(20);
        }
        // the folder is held while it trains: a one-process run started there now is refused
        Assert.False(LockHeldElsewhere.FreeForAnotherProcess(abandoned));
        coordinator.Send(trainer, new AbandonWork("t2", -1, 1));
        var failed = coordinator.FishForMessage<TrainFailed>(f => f.JobId == "t2", TimeSpan.FromSeconds(30));
        Assert.Equal(1, failed.Attempt);
        Assert.False(failed.Permanent);
        // no checkpoint, model, curves or summary: the folder it made goes with its lock
        Assert.False(Directory.Exists(abandoned), string.Join(", ", Directory.Exists(abandoned) ? Directory.GetFileSystemEntries(abandoned) : []));
        coordinator.FishForMessage(m => m is TrainerReady, TimeSpan.FromSeconds(10)); // and it takes work again

        // a model folder a one-process run of another process holds: refused at once, naming that run
        var busy = Path.Combine(_dir, "busy-model");
        using var held = new LockHeldElsewhere(busy, "train");
        coordinator.Send(trainer, new TrainModel("t3", new TrainJobSpec(graphs, busy), 1));
        var refused = coordinator.FishForMessage<TrainFailed>(f => f.JobId == "t3", TimeSpan.FromSeconds(30));
        Assert.True(refused.Permanent);
        Assert.Contains($"output folder {busy} is in use by another ActorSeg run ('train', process 4242 on login-1", refused.Error);
        Assert.False(File.Exists(Path.Combine(busy, "best.model")));
    }
}
