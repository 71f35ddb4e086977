using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ActorSeg.Tests.Gnn;

[Collection("torch")] // training in TorchSharp on two test threads at once once failed inside BatchNorm (a native race): one at a time
public class GnnTests() : TempDirTest("gnn")
{

    [Fact]
    public void GraphConv_IsRootPlusWeightedSumOfNeighbours()
    {
        torch.manual_seed(3);
        var layer = new GraphConv(2, 3);
        var x = torch.tensor(new float[] { 1, 2, 3, 4, 5, 6 }, [3, 2]);
        // edges 0→2 (w 0.5), 1→2 (w 2), 2→0 (w 1)
        var ei = torch.tensor(new long[] { 0, 1, 2, 2, 2, 0 }, [2, 3]);
        var w = torch.tensor(new float[] { 0.5f, 2f, 1f });
        var y = layer.forward(x, ei, w);
        var p = layer.named_parameters().ToDictionary(kv => kv.name, kv => kv.parameter);
        var agg = torch.tensor(new float[] { 5, 6, 0, 0, 0.5f * 1 + 2 * 3, 0.5f * 2 + 2 * 4 }, [3, 2]);
        var expect = x.matmul(p["root.weight"].t()) + p["root.bias"] + agg.matmul(p["rel.weight"].t());
        Assert.True(torch.allclose(y, expect, 1e-5, 1e-6));
    }

    [Theory]
    [InlineData("graphconv")]
    [InlineData("sage")]
    [InlineData("gcn")]
    [InlineData("gat")]
    public void EveryLayer_RunsForwardAndBackward(string conv)
    {
        var model = new GnnModel(new GnnArchitecture { Conv = conv }, 4, 3);
        var x = torch.randn(10, 4);
        var ei = torch.tensor(new long[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0 }, [2, 10]);
        var w = torch.ones(10);
        var logits = model.forward(x * 1000, ei, w); // large inputs must not overflow the attention softmax
        Assert.Equal(new long[] { 10, 3 }, logits.shape);
        Assert.True(logits.isfinite().all().item<bool>(), $"{conv}: non-finite outputs");
        var loss = nn.functional.cross_entropy(logits, torch.tensor(new long[] { 0, 1, 2, -1, 0, 1, 2, -1, 0, 1 }), ignore_index: -1);
        loss.backward();
        Assert.All(model.parameters(), p => Assert.NotNull(p.grad));
    }

    /// <summary>A graph whose labels only neighbours can explain: a node's own feature is noise; its class is the sign of its neighbours' mean.</summary>
    private string NeighbourTaskGraph(string name, int seed, int n = 400)
    {
        var rnd = new Random(seed);
        var feat = Enumerable.Range(0, n).Select(_ => (float)(rnd.NextDouble() * 2 - 1)).ToArray();
        var src = new List<long>(); var dst = new List<long>();
        for (int i = 0; i < n; i++) for (int k = 1; k <= 3; k++) { int j = (i + k * 37 + seed) % n; src.Add(j); dst.Add(i); src.Add(i); dst.Add(j); }
        var y = new long[n];
        for (int i = 0; i < n; i++)
        {
            double s = 0; int c = 0;
            for (int e = 0; e < src.Count; e++) if (dst[e] == i) { s += feat[src[e]]; c++; }
            y[i] = s / c > 0 ? 1 : 0;
        }
        var hist = new long[n * 2];
        for (int i = 0; i < n; i++) hist[i * 2 + y[i]] = 10;
        var path = Path.Combine(_dir, name + ".npz");
        using var npz = new NpzWriter(path);
        npz.Add<float>("x", feat, n, 1);
        var ei = src.Concat(dst).ToArray();
        npz.Add<long>("edge_index", ei, 2, src.Count);
        npz.Add<float>("edge_weight", Enumerable.Repeat(1f, src.Count).ToArray(), src.Count);
        npz.Add<float>("edge_weight_scaled", Enumerable.Repeat(1f, src.Count).ToArray(), src.Count);
        npz.Add<long>("y", y, n);
        npz.Add<long>("class_hist", hist, n, 2);
        npz.AddStrings("feature_names", ["mean"]);
        npz.Complete();
        return path;
    }

    [Fact]
    public void Training_LearnsFromNeighbours_SavesCheckpoints_AndEvaluates()
    {
        var graphs = Enumerable.Range(0, 6).Select(i => NeighbourTaskGraph($"g{i}", i)).ToList();
        var outDir = Path.Combine(_dir, "model");
        var r = Trainer.Train(graphs, outDir, new TrainOptions { MaxEpochs = 150, Patience = 30, Seed = 7, ValidationFraction = 0.2 });
        Assert.True(File.Exists(r.BestModel) && File.Exists(r.LastModel));
        Assert.True(File.Exists(Path.Combine(outDir, "curves.csv")));
        Assert.Contains("\"seed\": 7", File.ReadAllText(Path.Combine(outDir, "split.json")));
        var lines = File.ReadAllLines(Path.Combine(outDir, "curves.csv"));
        Assert.True(lines.Length > 10);

        var (spec, model) = ModelFile.Load(r.BestModel);
        Assert.Equal(new[] { "mean" }, spec.FeatureNames);
        var test = GraphSample.Load(NeighbourTaskGraph("test", 99), spec.Edges);
        var pred = Predictor.Predict(spec, model, test, CPU);
        var m = PixelMetrics.FromHistograms([(test.ClassHist!, test.Classes, pred)], spec.Classes);
        Assert.True(m.Accuracy > 0.8, $"accuracy {m.Accuracy:P1}: the model did not learn from its neighbours");
        Assert.Equal(1.0, m.SuperpixelCeiling, 6);
    }

    [Fact]
    public void AFailedTrainingRun_LeavesTheEarlierModelUntouched()
    {
        var graphs = Enumerable.Range(0, 3).Select(i => NeighbourTaskGraph($"d{i}", i, 80)).ToList();
        var dir = Path.Combine(_dir, "keep");
        var good = Trainer.Train(graphs, dir, new TrainOptions { MaxEpochs = 5, ValidationFraction = 0.34 });
        var before = File.ReadAllBytes(good.BestModel);
        // a learning rate that makes the loss explode: the run stops with an error mid-training
        var ex = Assert.Throws<InvalidOperationException>(() => Trainer.Train(graphs, dir, new TrainOptions { MaxEpochs = 50, Patience = 50, LearningRate = 1e30, ValidationFraction = 0.34 }));
        Assert.Contains("diverged", ex.Message);
        Assert.Equal(before, File.ReadAllBytes(good.BestModel));
        Assert.Empty(Directory.GetFiles(dir, ".best.model*.training"));
        // a checkpoint a run killed outright left behind goes with the next run in that folder
        File.WriteAllText(Path.Combine(dir, ".best.model.0123456789abcdef0123456789abcdef.training"), "left by a killed run");
        // one stopped (Ctrl-C) after its first epoch: it stops there (before, training ignored the signal to its end)
        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Trainer.Train(graphs, dir, new TrainOptions { MaxEpochs = 500, Patience = 500, ValidationFraction = 0.34, Seed = 3 },
            s => { if (s.StartsWith("epoch 1:", StringComparison.Ordinal)) cts.Cancel(); }, cts.Token));
        Assert.Equal(before, File.ReadAllBytes(good.BestModel));
        Assert.Empty(Directory.GetFiles(dir, ".best.model*.training"));
    }

    [Fact]
    public void PixelMetrics_AreExactFromClassHistograms()
    {
        // two nodes: node 0 has 30 px of class 0 and 10 of class 1, predicted 0; node 1 has 5/15, predicted 1
        var m = PixelMetrics.FromHistograms([(new long[] { 30, 10, 5, 15 }, 2, new long[] { 0, 1 })], 2);
        Assert.Equal(new long[] { 30, 5, 10, 15 }, m.Confusion);
        Assert.Equal(45.0 / 60, m.Accuracy, 9);
        Assert.Equal(2.0 * 30 / (35 + 40), m.F1[0], 9);
        Assert.Equal(30.0 / (35 + 40 - 30), m.IoU[0], 9);
        Assert.Equal(45.0 / 60, m.SuperpixelCeiling, 9);
    }

    [Fact]
    public void BadModelsAndGraphs_FailClearly()
    {
        var corrupt = Path.Combine(_dir, "corrupt.model");
        File.WriteAllText(corrupt, "ACTORSEG-GNN-MODEL\nnot really");
        var e1 = Assert.Throws<InvalidDataException>(() => ModelFile.Load(corrupt));
        Assert.StartsWith(corrupt, e1.Message);
        var notModel = Path.Combine(_dir, "x.model");
        File.WriteAllBytes(notModel, new byte[100]);
        Assert.Contains("not an ActorSeg GNN model", Assert.Throws<InvalidDataException>(() => ModelFile.Load(notModel)).Message);

        var graphs = Enumerable.Range(0, 3).Select(i => NeighbourTaskGraph($"b{i}", i, 60)).ToList();
        var r = Trainer.Train(graphs, Path.Combine(_dir, "m"), new TrainOptions { MaxEpochs = 3, Seed = 1, ValidationFraction = 0.34 });
        var (spec, model) = ModelFile.Load(r.BestModel);
        // a graph with another feature set
        var other = Path.Combine(_dir, "other.npz");
        using (var npz = new NpzWriter(other))
        {
            npz.Add<float>("x", new float[4], 2, 2);
            npz.Add<long>("edge_index", new long[] { 0, 1 }, 2, 1);
            npz.Add<float>("edge_weight", new float[] { 1 }, 1);
            npz.Add<long>("class_hist", new long[] { 1, 0, 0, 0, 0, 3 }, 2, 3); // class 2: unknown to the model
            npz.AddStrings("feature_names", ["c0_mean", "c1_mean"]);
            npz.Complete();
        }
        var g = GraphSample.Load(other, "knn");
        var e2 = Assert.Throws<InvalidDataException>(() => Predictor.Predict(spec, model, g, CPU));
        Assert.Contains("features", e2.Message);
        var g3 = new GraphSample { Path = other, Nodes = 2, FeatureNames = ["mean"], X = new float[2], EdgeIndex = [0, 1], EdgeWeight = [1], ClassHist = [1, 0, 0, 0, 0, 3], Classes = 3 };
        Assert.Contains("class 2", Assert.Throws<InvalidDataException>(() => spec.CheckCompatible(g3)).Message);
        // a graph without labels cannot be trained on
        var unlabelled = Path.Combine(_dir, "nolabels.npz");
        using (var npz = new NpzWriter(unlabelled))
        {
            npz.Add<float>("x", new float[2], 2, 1);
            npz.Add<long>("edge_index", new long[] { 0, 1 }, 2, 1);
            npz.Add<float>("edge_weight", new float[] { 1 }, 1);
            npz.AddStrings("feature_names", ["mean"]);
            npz.Complete();
        }
        Assert.Contains("no labels", Assert.Throws<InvalidDataException>(() => Trainer.Train([unlabelled], Path.Combine(_dir, "m2"), new TrainOptions())).Message);
    }
}
