using System.Text;
using ActorSeg.Cli;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>The model header read without the weights (for the coordinator), the client's choice of a job's model
/// settings, and the HTTP door's bounded model read.</summary>
public class ModelHeaderTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("mhead");

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch { }
    }

    /// <summary>A model file as training writes it: texture features of one-channel images, trained at 30 px.</summary>
    private string SaveModel(string name, string features = "texture", double spacing = 30)
    {
        var names = Core.Pipeline.GraphJobManifest.FeatureNamesFor(1, features);
        var spec = new ModelSpec
        {
            Architecture = new GnnArchitecture { Layers = 2, Hidden = 4 }, FeatureNames = names, FeatureMean = new float[names.Length],
            FeatureStd = Enumerable.Repeat(1f, names.Length).ToArray(), Classes = 2, Edges = "rag", ClassWeights = [1, 1], SeedSpacing = spacing,
        };
        var path = Path.Combine(_dir, name);
        using (var gnn = new GnnModel(spec.Architecture, names.Length, 2)) ModelFile.Save(path, spec, gnn);
        return path;
    }

    /// <summary>A file of the format before the checksum (nothing checks its body): the legacy first line, then <paramref name="body"/>.</summary>
    private string Legacy(string name, byte[] body)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, [.. Encoding.ASCII.GetBytes(ModelFileFormat.LegacyMagic), .. body]);
        return path;
    }

    private static byte[] Header(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        return [.. BitConverter.GetBytes(bytes.Length), .. bytes];
    }

    [Theory]
    [InlineData("texture", 30)]
    [InlineData("absolute", 16)]
    [InlineData("published", 0)]
    public void AModelsHeader_GivesTheFeaturesAndSpacingItWasTrainedWith_AsTheWholeModelDoes(string features, double spacing)
    {
        var path = SaveModel($"{features}.model", features, spacing);
        var h = ModelHeader.Read(path);
        var whole = ModelFile.ReadSpec(path);
        Assert.Equal(features, h.FeatureSet);
        Assert.Equal(whole.FeatureSet, h.FeatureSet);
        Assert.Equal(whole.FeatureNames, h.FeatureNames);
        Assert.Equal(spacing, h.SeedSpacing);
        // a model that recorded no spacing is built at the default, as Recipes.GraphSpacing builds it
        Assert.Equal(Recipes.GraphSpacing(whole, null), h.GraphSpacing);
        Assert.Equal(path, h.Path);
    }

    [Fact]
    public void ALegacyModelsHeader_IsRead()
    {
        var path = Legacy("old.model", Header("""{"FeatureNames":["mean","std"],"SeedSpacing":24,"Classes":2}"""));
        var h = ModelHeader.Read(path);
        Assert.Equal(("published", 24.0), (h.FeatureSet, h.SeedSpacing));
    }

    public static TheoryData<string, string> BadFiles() => new()
    {
        { "truncated", "checksum does not match" },
        { "garbage", "not an ActorSeg GNN model file" },
        { "empty", "empty, or not a regular file" },
        { "huge-length", "corrupt header (its length reads 2147483647 bytes" },
        { "negative-length", "corrupt header (its length reads -5 bytes" },
        { "cut-header", "the file ends inside its header (10 of 1000 bytes)" },
        { "not-json", "corrupt or incompatible model file (JsonException" },
        { "json-null", "empty spec" },
        { "no-features", "the model names no features" },
        { "bad-spacing", "the model's seed spacing is -3" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void ABadModelFile_IsRefused_NamingTheFileAndTheProblem(string what, string expected)
    {
        string path = what switch
        {
            "truncated" => Truncated(),
            "garbage" => Write("garbage.model", "not a model at all, just text"u8.ToArray()),
            "empty" => Write("empty.model", []),
            "huge-length" => Legacy("huge.model", [.. BitConverter.GetBytes(int.MaxValue), .. "{}"u8]),
            "negative-length" => Legacy("neg.model", BitConverter.GetBytes(-5)),
            "cut-header" => Legacy("cut.model", [.. BitConverter.GetBytes(1000), .. "{\"Features"u8]),
            "not-json" => Legacy("notjson.model", Header("{not json")),
            "json-null" => Legacy("null.model", Header("null")),
            "no-features" => Legacy("nofeat.model", Header("""{"FeatureNames":[],"SeedSpacing":24}""")),
            "bad-spacing" => Legacy("spacing.model", Header("""{"FeatureNames":["mean"],"SeedSpacing":-3}""")),
            _ => throw new ArgumentException(what),
        };
        var e = Assert.Throws<InvalidDataException>(() => ModelHeader.Read(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);

        string Truncated()
        {
            var p = SaveModel("truncated.model");
            var bytes = File.ReadAllBytes(p);
            File.WriteAllBytes(p, bytes[..^100]); // a partial copy
            return p;
        }
    }

    private string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void AFolderOrAMissingFile_IsRefused_NamingIt()
    {
        var folder = Path.Combine(_dir, "trained");
        Directory.CreateDirectory(folder);
        SaveModel(Path.Combine("trained", "best.model"));
        var e = Assert.Throws<InvalidDataException>(() => ModelHeader.Read(folder));
        Assert.Equal($"{folder}: is a folder, not a model file (the trained model is {Path.Combine(folder, "best.model")})", e.Message);
        var missing = Path.Combine(_dir, "none.model");
        Assert.Equal($"{missing}: model file not found", Assert.Throws<FileNotFoundException>(() => ModelHeader.Read(missing)).Message);
    }

    [Fact]
    public void AClientThatCannotReadTheModel_LeavesItsFeaturesAndSpacingToTheCoordinator_UnlessGiven()
    {
        var spec = new GraphJobSpec("/d/a.tif", null, "/d/out", ModelPath: "/shared/best.model");
        // not readable here: the model's, resolved by the coordinator at prepare (the defaults stay for an older coordinator)
        var s = ClientCommands.WithModelSettings(spec, null, null, null);
        Assert.True(s.ModelFeatures && s.ModelSpacing);
        Assert.Equal((Recipes.Best.Features, Core.Superpixels.SlicParameters.DefaultSpacing), (s.Features, s.Spacing));
        // what the user gave is kept, and only the rest is the model's
        s = ClientCommands.WithModelSettings(spec, null, "texture", null);
        Assert.Equal(("texture", false, true), (s.Features, s.ModelFeatures, s.ModelSpacing));
        s = ClientCommands.WithModelSettings(spec, null, null, 25);
        Assert.Equal((25.0, true, false), (s.Spacing, s.ModelFeatures, s.ModelSpacing));
        // read here: the model's own values, nothing left to the coordinator
        var trained = ModelFile.ReadSpec(SaveModel("here.model", "texture", 30));
        s = ClientCommands.WithModelSettings(spec, trained, null, null);
        Assert.Equal(("texture", 30.0, false, false), (s.Features, s.Spacing, s.ModelFeatures, s.ModelSpacing));
        // no model: the defaults, and nothing asked of the coordinator
        s = ClientCommands.WithModelSettings(spec with { ModelPath = null }, null, null, null);
        Assert.False(s.ModelFeatures || s.ModelSpacing);
    }

    [Fact]
    public async Task ABoundedRead_ThatHangs_TimesOut_KeepsItsSlotUntilItEnds_AndErrorsPassThrough()
    {
        var reads = new BoundedReads(TimeSpan.FromMilliseconds(300), maxInFlight: 1);
        using var stalled = new ManualResetEventSlim(false);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var t1 = await Assert.ThrowsAsync<TimeoutException>(() => reads.RunAsync(() => { stalled.Wait(); return 1; }));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"the caller waited {sw.Elapsed}");
        Assert.Contains("not ended in 0.3 s", t1.Message);
        // the stalled read still holds the only slot: the next caller is not given another thread, and times out too
        var t2 = await Assert.ThrowsAsync<TimeoutException>(() => reads.RunAsync(() => 2));
        Assert.Contains("1 earlier reads have not ended", t2.Message);
        // once the file system answers, the slot is free again
        stalled.Set();
        int got = 0;
        for (var until = DateTime.UtcNow.AddSeconds(10); got == 0 && DateTime.UtcNow < until;)
        {
            try { got = await reads.RunAsync(() => 3); }
            catch (TimeoutException) { }
        }
        Assert.Equal(3, got);
        // the read's own error reaches the caller as it is
        var bad = await Assert.ThrowsAsync<InvalidDataException>(() => reads.RunAsync<int>(() => throw new InvalidDataException("/m: not a model")));
        Assert.Equal("/m: not a model", bad.Message);
    }

    [Fact]
    public async Task TheHttpDoor_ReadsMasksAsClassIds_ForAModelOfMoreThanTwoClasses_UnlessTheRequestSays()
    {
        var reads = new BoundedReads(TimeSpan.FromSeconds(10));
        var image = Write("mm.tif", [1]);
        var mask = Write("mm-mask.tif", [1]);
        var path = SaveModel("mm.model");
        HttpApi.DoorFiles Files(int classes) => new((p, _) => p, File.Exists, p => ModelFile.ReadSpec(p) with { Classes = classes });
        async Task<HttpApi.Checked<GraphJobSpec>> Job(int classes, string? mode) =>
            await HttpApi.CheckJobAsync(new HttpJobRequest(null, image, mask, path, Path.Combine(_dir, "out"), null, null, MaskMode: mode), Files(classes), reads, CancellationToken.None);
        Assert.Equal("binary", (await Job(2, null)).Value!.MaskMode);
        Assert.Equal("classes", (await Job(6, null)).Value!.MaskMode);
        Assert.Equal("binary", (await Job(6, "binary")).Value!.MaskMode);
        var bad = await Job(2, "weird");
        Assert.Equal(400, bad.Status);
        Assert.Contains("maskMode 'weird'", bad.Error);
        var batch = await HttpApi.CheckBatchAsync(new HttpBatchRequest(null, Path.Combine(_dir, "batch"), [new HttpBatchSlide(image, mask), new HttpBatchSlide(image, Name: "bare")], path),
            Files(6), reads, CancellationToken.None);
        Assert.Equal(["classes", "binary"], batch.Value!.Slides.Select(s => s.Spec.MaskMode)); // a slide without a mask reads none
    }

    [Fact]
    public async Task TheHttpDoorsModelRead_Answers503WhenTheReadHangs_And400ForABadOrMissingModel()
    {
        var reads = new BoundedReads(TimeSpan.FromMilliseconds(300));
        var image = Write("door.tif", [1]);
        var path = SaveModel("door.model");
        // the paths as given are the paths (the data roots are HttpDoorChecksTests')
        HttpApi.DoorFiles Files(Func<string, ModelSpec> read) => new((p, _) => p, File.Exists, read);
        Task<HttpApi.Checked<GraphJobSpec>> Job(string model, Func<string, ModelSpec> read) =>
            HttpApi.CheckJobAsync(new HttpJobRequest(null, image, null, model, Path.Combine(_dir, "out"), null, null), Files(read), reads, CancellationToken.None);
        using var stalled = new ManualResetEventSlim(false);
        try
        {
            var hung = await Job(path, p => { stalled.Wait(); return ModelFile.ReadSpec(p); });
            Assert.Equal(503, hung.Status);
            Assert.Null(hung.Value);
            Assert.StartsWith($"{path}: the model file could not be read in 0.3 s", hung.Error);
            Assert.EndsWith("nothing was submitted, try again later", hung.Error);
        }
        finally { stalled.Set(); }
        var good = await Job(path, ModelFile.ReadSpec);
        Assert.Equal((200, "texture", 30.0), (good.Status, good.Value!.Features, good.Value.Spacing));
        var garbage = Write("bad.model", "not a model"u8.ToArray());
        var bad = await Job(garbage, ModelFile.ReadSpec);
        Assert.Equal(400, bad.Status);
        Assert.Contains($"{garbage}: not an ActorSeg GNN model file", bad.Error);
        var none = Path.Combine(_dir, "none.model");
        var missing = await Job(none, ModelFile.ReadSpec);
        Assert.Equal((400, $"{none}: model not found"), (missing.Status, missing.Error));
        // the file system failing to read it is not the request's fault: 503, try again
        var failed = await Job(path, p => ModelFileFormat.Read<ModelSpec>(p, (_, _) => throw new IOException("Input/output error")));
        Assert.Equal(503, failed.Status);
        Assert.StartsWith($"{path}: the model file could not be read (Input/output error)", failed.Error);
    }

    [Fact]
    public void AFailedRead_IsRetried_WhereADamagedFileFailsTheJob()
    {
        var path = SaveModel("io.model");
        // an I/O error while the bytes are read (a network volume's hiccup): an IOException naming the file, which the
        // failure policy counts as one attempt, not "corrupt", which would fail the job for good
        var io = Assert.Throws<ModelReadException>(() => ModelFileFormat.Read<int>(path, (_, _) => throw new IOException("Input/output error")));
        Assert.StartsWith($"{path}: the model file could not be read (Input/output error)", io.Message);
        Assert.False(Core.FailurePolicy.IsPermanent(io));
        // a file that ends early is damaged whatever is tried again
        var shortFile = Assert.Throws<InvalidDataException>(() => ModelFileFormat.Read<int>(path, (_, _) => throw new EndOfStreamException()));
        Assert.StartsWith($"{path}: corrupt or incompatible model file", shortFile.Message);
        Assert.True(Core.FailurePolicy.IsPermanent(shortFile));
        Assert.True(ModelFileFormat.IsReadFailure(new IOException("stale file handle")));
        Assert.False(ModelFileFormat.IsReadFailure(new FileNotFoundException("gone")));
    }
}
