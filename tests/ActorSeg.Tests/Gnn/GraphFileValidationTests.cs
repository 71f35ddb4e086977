using TorchSharp;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using Xunit;

namespace ActorSeg.Tests.Gnn;

/// <summary>Graph and model files are read from disk and trusted nowhere: an array of the wrong shape, type or range is
/// refused when the file is loaded, naming the file and the array, before it can crash training or skew a metric.</summary>
[Collection("torch")] // training in TorchSharp on two test threads at once once failed inside BatchNorm (a native race): one at a time
public class GraphFileValidationTests() : TempDirTest("graphcheck")
{
    private const int N = 4;

    /// <summary>A valid 4-node, 2-feature, 2-class graph, with one array replaced (or removed, with a null writer).</summary>
    private string Graph(string name, string? replace = null, Action<NpzWriter>? with = null)
    {
        var path = Path.Combine(_dir, name + ".npz");
        using var npz = new NpzWriter(path);
        void Put(string key, Action<NpzWriter> write)
        {
            if (key != replace) write(npz);
            else with?.Invoke(npz);
        }
        Put("x", w => w.Add<float>("x", new float[] { 1, 2, 3, 4, 5, 6, 7, 8 }, N, 2));
        Put("feature_names", w => w.AddStrings("feature_names", ["mean", "std"]));
        Put("edge_index", w => w.Add<long>("edge_index", new long[] { 0, 1, 2, 3, 1, 2, 3, 0 }, 2, 4));
        Put("edge_weight", w => w.Add<float>("edge_weight", new float[] { 1, 1, 1, 1 }, 4));
        Put("edge_weight_scaled", w => w.Add<float>("edge_weight_scaled", new float[] { 1, 1, 1, 1 }, 4));
        Put("rag_edge_index", w => w.Add<long>("rag_edge_index", new long[] { 0, 1, 1, 0 }, 2, 2));
        Put("rag_boundary_length", w => w.Add<int>("rag_boundary_length", new[] { 3, 3 }, 2));
        Put("y", w => w.Add<long>("y", new long[] { 0, 1, -1, 1 }, N));
        Put("class_hist", w => w.Add<long>("class_hist", new long[] { 5, 0, 0, 5, 2, 2, 0, 4 }, N, 2));
        Put("seed_spacing", w => w.AddScalar("seed_spacing", 12.0));
        Put(ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, _ => { }); // absent unless given
        npz.Complete();
        return path;
    }

    [Fact]
    public void AValidGraph_Loads_WithEveryEdgeSet()
    {
        var path = Graph("ok");
        foreach (var edges in GraphSample.EdgeModes)
        {
            var g = GraphSample.Load(path, edges);
            Assert.Equal(N, g.Nodes);
            Assert.Equal(2, g.F);
            Assert.Equal(2, g.Classes);
            Assert.Equal(12.0, g.SeedSpacing);
        }
        // rag weights: each node's incoming weights sum to 1
        Assert.Equal(new float[] { 1, 1 }, GraphSample.Load(path, "rag").EdgeWeight);
    }

    public static TheoryData<string, string, string> Corruptions() => new()
    {
        // case, edges to load, what the message must name
        { "x-width", "knn", "'x' has shape (4, 3)" },
        { "x-nan", "knn", "'x' holds NaN at node 1, feature std" },
        { "x-dtype", "knn", "'x' is of dtype" },
        { "names-duplicate", "knn", "'feature_names' must be distinct" },
        { "edge-out-of-range", "knn", "edge refers to node 9 of 4" },
        { "edge-shape", "knn", "'edge_index' has shape (4, 2)" },
        { "weight-length", "knn", "'edge_weight' has shape (3)" },
        { "weight-negative", "knn", "'edge_weight' holds the edge weight -1" },
        { "boundary-zero", "rag", "'rag_boundary_length' holds 0 for edge 1" },
        { "hist-negative", "knn", "'class_hist' holds -7 pixels of class 1 at node 2" },
        { "hist-rows", "knn", "'class_hist' has shape (3, 2)" },
        { "hist-classes", "knn", "1..255 classes" },
        { "label-too-big", "knn", "'y' holds the label 7 at node 3" },
        { "label-negative", "knn", "'y' holds the label -5 at node 0" },
        { "spacing-nan", "knn", "'seed_spacing' is NaN" },
        { "mpp-negative", "knn", "'image_microns_per_pixel' is [-1, 0.5], not two positive sizes" },
        { "mpp-nan", "knn", "'image_microns_per_pixel' is [0.5, NaN]" },
        { "mpp-shape", "knn", "'image_microns_per_pixel' has shape (1), expected (2)" },
    };

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void ABadArray_IsRefusedAtLoad_NamingFileAndArray(string corruption, string edges, string expected)
    {
        string path = corruption switch
        {
            "x-width" => Graph(corruption, "x", w => w.Add<float>("x", new float[12], N, 3)),
            "x-nan" => Graph(corruption, "x", w => w.Add<float>("x", new float[] { 1, 2, 3, float.NaN, 5, 6, 7, 8 }, N, 2)),
            "x-dtype" => Graph(corruption, "x", w => w.Add<double>("x", new double[8], N, 2)),
            "names-duplicate" => Graph(corruption, "feature_names", w => w.AddStrings("feature_names", ["mean", "mean"])),
            "edge-out-of-range" => Graph(corruption, "edge_index", w => w.Add<long>("edge_index", new long[] { 0, 1, 2, 3, 1, 2, 9, 0 }, 2, 4)),
            "edge-shape" => Graph(corruption, "edge_index", w => w.Add<long>("edge_index", new long[8], 4, 2)),
            "weight-length" => Graph(corruption, "edge_weight", w => w.Add<float>("edge_weight", new float[] { 1, 1, 1 }, 3)),
            "weight-negative" => Graph(corruption, "edge_weight", w => w.Add<float>("edge_weight", new float[] { 1, -1, 1, 1 }, 4)),
            "boundary-zero" => Graph(corruption, "rag_boundary_length", w => w.Add<int>("rag_boundary_length", new[] { 3, 0 }, 2)),
            "hist-negative" => Graph(corruption, "class_hist", w => w.Add<long>("class_hist", new long[] { 5, 0, 0, 5, 2, -7, 0, 4 }, N, 2)),
            "hist-rows" => Graph(corruption, "class_hist", w => w.Add<long>("class_hist", new long[6], 3, 2)),
            "hist-classes" => Graph(corruption, "class_hist", w => w.Add<long>("class_hist", new long[N * 300], N, 300)),
            "label-too-big" => Graph(corruption, "y", w => w.Add<long>("y", new long[] { 0, 1, -1, 7 }, N)),
            "label-negative" => Graph(corruption, "y", w => w.Add<long>("y", new long[] { -5, 1, -1, 1 }, N)),
            "spacing-nan" => Graph(corruption, "seed_spacing", w => w.AddScalar("seed_spacing", double.NaN)),
            "mpp-negative" => Graph(corruption, ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, w => w.Add<double>(ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, [-1, 0.5], 2)),
            "mpp-nan" => Graph(corruption, ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, w => w.Add<double>(ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, [0.5, double.NaN], 2)),
            "mpp-shape" => Graph(corruption, ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, w => w.Add<double>(ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, [0.5], 1)),
            _ => throw new ArgumentException(corruption),
        };
        var e = Assert.Throws<InvalidDataException>(() => GraphSample.Load(path, edges));
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void LabelsBeyondTheHistogramsClasses_AreNotTrainedAsExtraClasses()
    {
        // before: a label of 7 in a 2-class graph silently trained an 8-class model
        var path = Graph("label7", "y", w => w.Add<long>("y", new long[] { 0, 1, -1, 7 }, N));
        var e = Assert.Throws<InvalidDataException>(() => Trainer.Train([path], Path.Combine(_dir, "m"), new TrainOptions { MaxEpochs = 1 }));
        Assert.Contains("label 7", e.Message);
        Assert.False(Directory.Exists(Path.Combine(_dir, "m")) && Directory.EnumerateFiles(Path.Combine(_dir, "m"), "*.model").Any());
    }

    private string SaveModel(string name, Func<ModelSpec, ModelSpec> tamper, Func<string, string>? editJson = null)
    {
        var spec = new ModelSpec
        {
            Architecture = new GnnArchitecture { Layers = 2, Hidden = 4 }, FeatureNames = ["mean", "std"], FeatureMean = [0, 0],
            FeatureStd = [1, 1], Classes = 2, Edges = "rag", ClassWeights = [1, 1], SeedSpacing = 12,
        };
        spec.Validate();
        using var model = new GnnModel(spec.Architecture, 2, 2);
        var path = Path.Combine(_dir, name + ".model");
        ModelFile.Save(path, tamper(spec), model);
        if (editJson is not null)
        {
            // as a hand edit would: the JSON header rewritten, the weights after it kept, in a file of the format before
            // the checksum (which has none to break): what the header says must still be checked
            var bytes = File.ReadAllBytes(path);
            int body = "ACTORSEG-GNN-MODEL/2\n".Length + 8, len = BitConverter.ToInt32(bytes, body);
            var json = System.Text.Encoding.UTF8.GetBytes(editJson(System.Text.Encoding.UTF8.GetString(bytes, body + 4, len)));
            File.WriteAllBytes(path, [.. "ACTORSEG-GNN-MODEL\n"u8, .. BitConverter.GetBytes(json.Length), .. json, .. bytes.AsSpan(body + 4 + len)]);
        }
        return path;
    }

    [Theory]
    [InlineData("header")]
    [InlineData("weights")]
    [InlineData("truncated")]
    [InlineData("nan-weight-legacy")]
    public void AModelChangedOnDisk_IsRefusedByItsChecksum_AndNaNWeightsEvenWithout(string where)
    {
        var path = SaveModel("sealed-" + where, s => s);
        var bytes = File.ReadAllBytes(path);
        Assert.StartsWith("ACTORSEG-GNN-MODEL/2\n", System.Text.Encoding.ASCII.GetString(bytes, 0, 21));
        switch (where)
        {
            case "header": bytes[40] ^= 0x04; break;                 // one bit of the JSON spec
            case "weights": bytes[^9] ^= 0x01; break;                // one bit of a weight
            case "truncated": bytes = bytes[..^100]; break;          // a partial copy
            default:
                // a legacy (unchecked) file whose last weight was overwritten with NaN bits: the weights are checked too
                int body = 21 + 8;
                BitConverter.GetBytes(float.NaN).CopyTo(bytes, bytes.Length - 4);
                bytes = [.. "ACTORSEG-GNN-MODEL\n"u8, .. bytes.AsSpan(body)];
                break;
        }
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => ModelFile.Load(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains(where == "nan-weight-legacy" ? "not finite" : "checksum does not match", e.Message);
    }

    public static TheoryData<string, string> BadSpecs() => new()
    {
        { "classes-huge", "1000000 classes" },
        { "classes-one", "1 classes" },
        { "mean-short", "1 means and 2 deviations for 2 features" },
        { "std-zero", "feature std is mean 0, deviation 0" },
        { "std-negative", "deviation -1" },
        { "edges", "edges 'grid'" },
        { "layers", "layers must be in [1, 16]" },
        { "spacing", "seed spacing is -1" },
        { "mpp-negative", "training pixel sizes are [-1, 2], not a range" },
        { "mpp-reversed", "training pixel sizes are [2, 1], not a range" },
        { "mpp-one", "training pixel sizes are [1], not a range" },
    };

    [Theory]
    [MemberData(nameof(BadSpecs))]
    public void ATamperedModelSpec_IsRefusedBeforeTheWeightsAreBuilt(string tamper, string expected)
    {
        var path = SaveModel(tamper, s => tamper switch
        {
            "classes-huge" => s,
            "classes-one" => s with { Classes = 1 },
            "mean-short" => s with { FeatureMean = [0] },
            "std-zero" => s with { FeatureStd = [1, 0] },
            "std-negative" => s with { FeatureStd = [-1, 1] },
            "edges" => s with { Edges = "grid" },
            "layers" => s with { Architecture = s.Architecture with { Layers = 100 } },
            "spacing" => s with { SeedSpacing = -1 },
            "mpp-negative" => s with { MicronsPerPixel = [-1, 2] },
            "mpp-reversed" => s with { MicronsPerPixel = [2, 1] },
            "mpp-one" => s with { MicronsPerPixel = [1] },
            _ => throw new ArgumentException(tamper),
        }, tamper == "classes-huge" ? json => json.Replace("\"Classes\": 2,", "\"Classes\": 1000000,", StringComparison.Ordinal) : null);
        Assert.Contains(tamper == "classes-huge" ? "1000000" : "", File.ReadAllText(path));
        var e = Assert.Throws<InvalidDataException>(() => ModelFile.Load(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AGraphSummaryThatIsNoSummary_IsRefusedNamingIt_AndTrainingRecordsNoPixelSizeFromIt()
    {
        // graph.json read back by a batch (was the image read as now?) and by training (the images' pixel size)
        var dir = Path.Combine(_dir, "summaries"); Directory.CreateDirectory(dir);
        var summary = Path.Combine(dir, "graph.json");
        foreach (var bad in new[] { "{ not json", "{}", "{\"image\": {\"width\": \"wide\"}, \"files\": {\"graph\": \"graph.npz\"}}", "[1, 2]" })
        {
            File.WriteAllText(summary, bad);
            var e = Assert.Throws<InvalidDataException>(() => ActorSeg.Core.IO.GraphOutputs.ReadSummaryImage(summary));
            Assert.StartsWith(summary + ": not a graph summary", e.Message);
            Assert.Null(Trainer.TrainingPixelSizes([(Path.Combine(dir, "graph.npz"), null)]));
        }
        File.WriteAllText(summary, "{\"image\": {\"width\": 10, \"height\": 8, \"channels\": 1, \"bitDepth\": 16, \"micronsPerPixel\": [0.5, 0.5]}, \"files\": {\"graph\": \"graph.npz\"}}");
        Assert.Equal([0.5, 0.5], Trainer.TrainingPixelSizes([(Path.Combine(dir, "graph.npz"), null)]));
        Assert.Null(Trainer.TrainingPixelSizes([(Path.Combine(dir, "other.npz"), null)])); // a summary of another graph in the folder
        Assert.Null(Trainer.TrainingPixelSizes([(Path.Combine(_dir, "nowhere", "graph.npz"), null)]));
        File.WriteAllText(summary, "{\"image\": {\"width\": 10, \"height\": 8, \"channels\": 1, \"bitDepth\": 16, \"micronsPerPixel\": [-3, 0.5]}, \"files\": {\"graph\": \"graph.npz\"}}");
        Assert.Null(Trainer.TrainingPixelSizes([(Path.Combine(dir, "graph.npz"), null)]));
        // a graph that records its own pixel size needs no summary (copied into a flat folder, renamed); one without still does
        var own = Graph("own-mpp", ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, w => w.Add<double>(ActorSeg.Core.IO.GraphOutputs.PixelSizeArray, [0.25, 0.3], 2));
        var g = GraphSample.Load(own, "knn");
        Assert.Equal((0.25, 0.3), g.MicronsPerPixel);
        Assert.Null(GraphSample.Load(Graph("no-mpp"), "knn").MicronsPerPixel);
        Assert.Equal([0.25, 0.5], Trainer.TrainingPixelSizes([(own, g.MicronsPerPixel), (Path.Combine(dir, "graph.npz"), ((double, double)?)(0.5, 0.5))]));
        Assert.Null(Trainer.TrainingPixelSizes([(own, g.MicronsPerPixel), (Path.Combine(_dir, "nowhere", "graph.npz"), ((double, double)?)null)]));
    }

    [Fact]
    public void OutputsThatOverflow_AreRefused_NotPaintedAsNaN()
    {
        // every field valid on its own: a deviation of 1e-38 turns a feature of 100 into infinity, and the logits into NaN
        var spec = new ModelSpec
        {
            Architecture = new GnnArchitecture { Layers = 2, Hidden = 4 }, FeatureNames = ["mean", "std"], FeatureMean = [0, 0],
            FeatureStd = [1e-38f, 1], Classes = 2, Edges = "rag", ClassWeights = [1, 1], SeedSpacing = 12,
        };
        spec.Validate();
        using var model = new GnnModel(spec.Architecture, 2, 2);
        var g = new GraphSample { Path = "/data/g.npz", Nodes = 2, FeatureNames = ["mean", "std"], X = [100, 1, 0, 1], EdgeIndex = [0, 1], EdgeWeight = [1] };
        var e = Assert.Throws<InvalidDataException>(() => Predictor.PredictWithProbabilities(spec, model, g, torch.CPU));
        Assert.StartsWith("/data/g.npz", e.Message);
        Assert.Contains("not finite", e.Message);
    }

    [Fact]
    public void AnUntamperedModel_Loads()
    {
        var (spec, model) = ModelFile.Load(SaveModel("ok", s => s));
        using (model) Assert.Equal(2, spec.Classes);
    }
}
