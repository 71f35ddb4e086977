using ActorSeg.Cli;
using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.Cli;

/// <summary>A wrong option value or output path is the user's mistake: the real program says so in one line naming it,
/// exits non-zero, prints no stack trace and leaves nothing half-written.</summary>
public class UserErrorTests() : TempDirTest("usererr")
{
    private static void OneLine(TestPaths.CliResult r, int exit, string expected)
    {
        Assert.True(r.ExitCode == exit, $"exit {r.ExitCode}, expected {exit}: {r.Stderr}");
        Assert.Contains(expected, r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.DoesNotContain("Unhandled exception", r.Stderr);
    }

    [Theory]
    [InlineData("--width", "0", "--width must be 1 to 1,048,576 pixels (got 0)")]
    [InlineData("--height", "-5", "--height must be 1 to 1,048,576 pixels (got -5)")]
    [InlineData("--name", "../escape", "--name must be a plain file name, without a folder (got '../escape')")]
    [InlineData("--mpp", "0", "--mpp must be a number of microns per pixel")]
    [InlineData("--glass", "2", "--glass must be in [0, 0.95] (got 2)")]
    public void Generate_RefusesAbsurdValues_AtParse(string option, string value, string expected)
    {
        OneLine(TestPaths.RunCli("generate", "-o", Path.Combine(_dir, "g"), option, value), 2, expected);
        Assert.False(Directory.Exists(Path.Combine(_dir, "g")));
        Assert.False(File.Exists(Path.Combine(_dir, "escape.tif")));
    }

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(-1.0)]
    [InlineData(0.0)]
    public void AnMppThatIsNoPositiveNumber_IsRefusedAsSuch_BeforeTheImageIsLookedAt(double mpp)
    {
        // before: NaN and infinity passed the check and were refused as "not a whole-slide format"
        var e = Assert.Throws<InputFileException>(() => GraphCommand.LevelFor("/data/slide.svs", 0, mpp));
        Assert.Contains("--mpp must be a positive number of microns per pixel", e.Message);
    }

    [Fact]
    public void AnInvalidOperation_IsTheUsersOnlyWhenActorSegRaisedIt()
    {
        static Exception Caught(Action a) { try { a(); } catch (Exception e) { return e; } throw new Xunit.Sdk.XunitException("no exception"); }
        // ActorSeg's own, with a message that names the problem
        var npy = Path.Combine(_dir, "f.npy");
        ActorSeg.Core.IO.NpyFile.Write<float>(npy, new float[] { 1, 2 }, [2]);
        var ours = Caught(() => ActorSeg.Core.IO.NpyFile.Read(npy).AsSpan<int>());
        Assert.IsType<InvalidOperationException>(ours);
        Assert.True(ExitCodes.IsInputError(ours));
        Assert.Equal(ours.Message, ExitCodes.DescribeUserError(ours));
        // the runtime's: a bug of ActorSeg's, whose trace must be printed
        var linq = Caught(() => new List<int>().First());
        var modified = Caught(() => { var l = new List<int> { 1, 2 }; foreach (var x in l) l.Add(x); });
        Assert.IsType<InvalidOperationException>(linq);
        Assert.IsType<InvalidOperationException>(modified);
        Assert.Null(ExitCodes.DescribeUserError(linq));
        Assert.Null(ExitCodes.DescribeUserError(modified));
        Assert.False(ExitCodes.IsInputError(linq));
    }

    [Fact]
    public void AnOutputFolderThatIsAFile_IsNamed_BeforeAnyWork()
    {
        var file = Path.Combine(_dir, "afile");
        File.WriteAllText(file, "keep me");
        OneLine(TestPaths.RunCli("generate", "-o", file, "--width", "64", "--height", "64"), 1, $"output folder {file} cannot be created: a file of that name is there");
        // evaluate checks where its metrics go before loading anything (the model here does not even exist)
        var r = TestPaths.RunCli("evaluate", "-m", Path.Combine(_dir, "none.model"), "-g", _dir, "-o", file);
        OneLine(r, 1, $"metrics folder {file} cannot be created");
        Assert.DoesNotContain("pixel accuracy", r.Stdout);
        Assert.Equal("keep me", File.ReadAllText(file));
    }

    [Theory]
    [InlineData("--epochs", "0", "--epochs must be at least 1 (got 0)")]
    [InlineData("--patience", "-1", "--patience must be at least 1 (got -1)")]
    [InlineData("--lr", "NaN", "--lr must be a finite number > 0 (got NaN)")]
    [InlineData("--lr", "-0.01", "--lr must be a finite number > 0 (got -0.01)")]
    [InlineData("--hidden", "0", "--hidden must be in [1, 4,096] (got 0)")]
    [InlineData("--layers", "0", "--layers must be in [1, 16] (got 0)")]
    [InlineData("--dropout", "1", "--dropout must be a number in [0, 1) (got 1)")]
    [InlineData("--val-frac", "0", "--val-frac must be a number in (0, 1) (got 0)")]
    [InlineData("--segments", "1000000000000", "Cannot parse argument '1000000000000' for option '--segments' as a whole number")]
    public void Train_RefusesAbsurdValues_AtParse(string option, string value, string expected)
    {
        var model = Path.Combine(_dir, "m");
        OneLine(TestPaths.RunCli("train", "-g", _dir, "-o", model, option, value), 2, expected);
        Assert.False(Directory.Exists(model));
    }

    [Theory]
    [InlineData("--segments", "0", "--segments must be in [1, 2,147,483,647] (got 0)")]
    [InlineData("--spacing", "0.1", "--spacing must be a number in [2, ∞) (got 0.1)")]
    [InlineData("--k", "0", "--k must be in [1, 100] (got 0)")]
    [InlineData("--halo", "-1", "--halo must be in [0, 1,048,576] (got -1)")]
    [InlineData("--halo", "2147483647", "--halo must be in [0, 1,048,576] (got 2147483647)")]
    [InlineData("--page", "-1", "--level must be in [0, 1,048,576] (got -1)")]
    [InlineData("--iterations", "0", "--iterations must be in [1, 100] (got 0)")]
    [InlineData("--compactness", "0", "--compactness must be a number in (0, ∞) (got 0)")]
    [InlineData("--out", "", "Cannot parse argument '' for option '--out' as a folder path")]
    [InlineData("segment --spacing", "1", "--spacing must be a number in [2, ∞) (got 1)")]
    [InlineData("batch --spacing", "0.5", "--spacing must be a number in [2, ∞) (got 0.5)")]
    [InlineData("batch --parallel", "0", "--parallel must be in [1, 256] (got 0)")]
    [InlineData("demo --size", "0", "--size must be in [64, 1,048,576] (got 0)")]
    public void Graph_RefusesAbsurdValues_AtParse_BeforeTheImageIsOpened(string option, string value, string expected)
    {
        // the image need not exist: the values are refused as they are read (before: exit 1, after an actor system had started)
        var output = Path.Combine(_dir, "g");
        string[] args = option switch
        {
            "--out" => ["graph", Path.Combine(_dir, "none.tif"), "--out", value],
            "segment --spacing" => ["segment", Path.Combine(_dir, "none.tif"), "--model", Path.Combine(_dir, "none.model"), "--out", output, "--spacing", value],
            "batch --spacing" or "batch --parallel" => ["batch", _dir, "--out", output, option[6..], value],
            "demo --size" => ["demo", "--out", output, "--size", value],
            _ => ["graph", Path.Combine(_dir, "none.tif"), "--out", output, option, value],
        };
        OneLine(TestPaths.RunCli(args), 2, expected);
        Assert.False(Directory.Exists(output));
    }

    [Theory]
    [InlineData("--epochs", "0", "--epochs must be in [1, 2,147,483,647] (got 0)")]
    [InlineData("--steps", "0", "--steps must be in [1, 1,000,000] (got 0)")]
    [InlineData("--patch", "0", "--patch must be in [16, 1,024] (got 0)")]
    public void UNetTrain_RefusesAbsurdValues_AtParse(string option, string value, string expected) =>
        OneLine(TestPaths.RunCli("unet-train", "--images", _dir, "--masks", _dir, "--out", Path.Combine(_dir, "u"), option, value), 2, expected);

    [Theory]
    [InlineData("train", "--lr", "abc")]
    [InlineData("train", "--refine-threshold", "x")]
    [InlineData("train", "--workers", "many")]
    [InlineData("generate", "--glass", "lots")]
    [InlineData("generate", "--width", "wide")]
    [InlineData("graph", "--k", "ten")]
    public void AValueThatIsNoNumber_IsAUsageError_NotACrash(string command, string option, string value)
    {
        // before: a checked option whose value could not be read crashed the program (unhandled exception, exit 134)
        string[] args = command switch
        {
            "train" => ["train", "-g", _dir, "-o", Path.Combine(_dir, "m"), option, value],
            "graph" => ["graph", Path.Combine(_dir, "none.tif"), "-o", Path.Combine(_dir, "g"), option, value],
            _ => [command, "-o", Path.Combine(_dir, "gen"), option, value],
        };
        OneLine(TestPaths.RunCli(args), 2, $"Cannot parse argument '{value}' for option '{option}'");
    }

    [Fact]
    public void AModelOfTheOtherKind_IsNamedAsSuch()
    {
        // before: "not an ActorSeg GNN model file" for a UNet model given to segment, and the other way round
        var gen = TestPaths.RunCli("generate", "-o", _dir, "--width", "96", "--height", "96");
        Assert.Equal(0, gen.ExitCode);
        var unet = Path.Combine(_dir, "best.unet");
        File.WriteAllText(unet, "ACTORSEG-UNET-MODEL/2\n0000");
        OneLine(TestPaths.RunCli("segment", Path.Combine(_dir, "sample.tif"), "--model", unet, "--out", Path.Combine(_dir, "s")), 1,
            $"{unet}: a UNet model (from unet-train), not a GNN model");
        var gnn = Path.Combine(_dir, "best.model");
        File.WriteAllText(gnn, "ACTORSEG-GNN-MODEL/2\n0000");
        OneLine(TestPaths.RunCli("unet-evaluate", "--model", gnn, "--images", _dir, "--masks", _dir), 1, $"{gnn}: a GNN model (from train), not a UNet model");
    }

    [Fact]
    public void ACommandsOwnChecks_DoNotReadValuesTheParserCouldNotRead()
    {
        // before: a command-level check read every option, and one whose value could not be read crashed the program
        OneLine(TestPaths.RunCli("train", "--images", "", "--masks", _dir, "--out", Path.Combine(_dir, "m")), 2, "Cannot parse argument '' for option '--images' as a folder path");
        OneLine(TestPaths.RunCli("train", "--images", _dir, "--out", Path.Combine(_dir, "m")), 2, "--images and --masks go together");
        OneLine(TestPaths.RunCli("submit-train", "--images", _dir, "--masks", _dir, "--out", Path.Combine(_dir, "m"), "--refine-whole", "abc"), 2,
            "Cannot parse argument 'abc' for option '--refine-whole' as a number");
        OneLine(TestPaths.RunCli("submit-train", "--images", _dir, "--masks", _dir, "--out", Path.Combine(_dir, "m"), "--no-refine", "--refine-threshold", "0.5"), 2,
            "--no-refine contradicts --refine-threshold and --refine-whole");
        Assert.False(Directory.Exists(Path.Combine(_dir, "m")));
    }

    [Fact]
    public void Train_WithNothingToTrainOn_IsAUsageError() =>
        OneLine(TestPaths.RunCli("train", "-o", Path.Combine(_dir, "m")), 2, "nothing to train on: give --graphs, or --images with --masks");

    [Fact]
    public void AModelFolderGivenAsTheModel_PointsAtTheModelInside()
    {
        var folder = Path.Combine(_dir, "model");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "best.model"), "");
        var r = TestPaths.RunCli("evaluate", "-m", folder, "-g", _dir);
        OneLine(r, 1, $"{folder}: is a folder, not a model file (the trained model is {Path.Combine(folder, "best.model")})");
    }

    [Fact]
    public void RefiningAModelThatCannotBeRead_NamesThatModel_AndLeavesTheOutputModelAsItWas()
    {
        // before: the model was copied over --out first, then read there: the error named --out, and a model that
        // --out held (an earlier refinement) was lost to the copy of a broken file
        var bad = Path.Combine(_dir, "broken.model");
        File.WriteAllText(bad, "not a model");
        var keep = Path.Combine(_dir, "refined.model");
        File.WriteAllBytes(keep, [1, 2, 3, 4]);
        OneLine(TestPaths.RunCli("refine", "-m", bad, "-o", keep), 1, $"{bad}: not an ActorSeg GNN model file");
        Assert.Equal([1, 2, 3, 4], File.ReadAllBytes(keep));
        var missing = Path.Combine(_dir, "missing.model");
        OneLine(TestPaths.RunCli("refine", "-m", missing, "-o", keep), 1, $"{missing}: model file not found");
        Assert.Equal([1, 2, 3, 4], File.ReadAllBytes(keep));
        Assert.Equal(["broken.model", "refined.model"], Directory.GetFiles(_dir).Select(Path.GetFileName).Order());
        // an --out that is a folder is named before the model is read or any refinement trained (before: after it)
        var folder = Directory.CreateDirectory(Path.Combine(_dir, "models")).FullName;
        OneLine(TestPaths.RunCli("refine", "-m", bad, "-o", folder), 1, $"--out {folder} is a folder: give the path of the file to write");
        Assert.Empty(Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void ATiffCutShort_IsNamedAsADamagedTiff_NotAsAnotherFormat()
    {
        // before: "not a supported image format", for a file that is a TIFF whose directory the cut took away
        var whole = Path.Combine(_dir, "whole.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(256, 256, SyntheticKind.Colonies, 8, 1, 5), whole, Path.Combine(_dir, "whole_mask.tif"));
        var bytes = File.ReadAllBytes(whole);
        foreach (var (name, length) in new[] { ("half.tif", bytes.Length / 2), ("header.tif", 100) })
        {
            var cut = Path.Combine(_dir, name);
            File.WriteAllBytes(cut, bytes[..length]);
            OneLine(TestPaths.RunCli("info", cut), 1, "TIFF file that cannot be read: truncated or corrupt");
        }
        var text = Path.Combine(_dir, "text.tif");
        File.WriteAllText(text, "not an image at all");
        OneLine(TestPaths.RunCli("info", text), 1, $"{text}: not a supported image format");
    }

    [Fact]
    public void AnImageTooSmallForTheUNetsPatches_IsNamed_NotATorchTrace()
    {
        // before: the patch shrank to the smallest image (2 px here) and libtorch failed inside the network with a trace
        string imgs = Directory.CreateDirectory(Path.Combine(_dir, "uimg")).FullName, masks = Directory.CreateDirectory(Path.Combine(_dir, "umask")).FullName;
        SyntheticMicroscopy.Generate(new SyntheticSpec(96, 96, SyntheticKind.Colonies, 8, 1, 3), Path.Combine(imgs, "big.tif"), Path.Combine(masks, "big.tif"));
        using (var im = NetVips.Image.NewFromFile(Path.Combine(imgs, "big.tif")))
        using (var strip = im.Crop(0, 40, 90, 7)) strip.Tiffsave(Path.Combine(imgs, "strip.tif"));
        using (var m = NetVips.Image.NewFromFile(Path.Combine(masks, "big.tif")))
        using (var strip = m.Crop(0, 40, 90, 7)) strip.Tiffsave(Path.Combine(masks, "strip.tif"));
        OneLine(TestPaths.RunCli("unet-train", "--images", imgs, "--masks", masks, "--out", Path.Combine(_dir, "unet"), "--epochs", "1", "--steps", "1"), 1,
            $"{Path.Combine(imgs, "strip.tif")}: 90x7 is too small for the UNet: its patches need at least 16 px on each side");
    }

    [Fact]
    public void AnInfiniteCompactness_IsRefusedNamingIt()
    {
        var gen = TestPaths.RunCli("generate", "-o", _dir, "--width", "96", "--height", "96");
        Assert.Equal(0, gen.ExitCode);
        var r = TestPaths.RunCli("graph", Path.Combine(_dir, "sample.tif"), "-o", Path.Combine(_dir, "g"), "--compactness", "Infinity");
        OneLine(r, 2, "--compactness must be a number in (0, ∞) (got Infinity)"); // as the command line is read (before: exit 1, from the job)
        Assert.DoesNotContain("JSON", r.Stderr);
    }

    [Fact]
    public void AnOutputFolderUnderAFile_FailsAtOnce_WithoutRetries()
    {
        var gen = TestPaths.RunCli("generate", "-o", _dir, "--width", "96", "--height", "96");
        Assert.Equal(0, gen.ExitCode);
        var file = Path.Combine(_dir, "afile");
        File.WriteAllText(file, "keep me");
        var r = TestPaths.RunCli("graph", Path.Combine(_dir, "sample.tif"), "-o", Path.Combine(file, "out"));
        OneLine(r, 1, $"output folder {Path.Combine(file, "out")} cannot be created");
        Assert.DoesNotContain("trying again", r.Stderr); // the same answer on every try
        Assert.Equal("keep me", File.ReadAllText(file));
    }

    /// <summary>A 64×64 three-channel image at <paramref name="path"/>, and a (untrained) model for one-channel images.</summary>
    private string RgbImageAndGreyModel(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var img = NetVips.Image.Xyz(64, 64)[0].Cast(NetVips.Enums.BandFormat.Uchar).Bandjoin([NetVips.Image.Xyz(64, 64)[1].Cast(NetVips.Enums.BandFormat.Uchar), NetVips.Image.Xyz(64, 64)[0].Cast(NetVips.Enums.BandFormat.Uchar)]))
            img.Tiffsave(path);
        var names = Core.Pipeline.GraphJobManifest.FeatureNamesFor(1, "texture");
        var spec = new GpuTrainer.ModelSpec
        {
            Architecture = new GpuTrainer.GnnArchitecture { Layers = 2, Hidden = 4 }, FeatureNames = names, FeatureMean = new float[names.Length],
            FeatureStd = Enumerable.Repeat(1f, names.Length).ToArray(), Classes = 2, Edges = "rag", ClassWeights = [1, 1], SeedSpacing = 16,
        };
        var model = Path.Combine(_dir, "grey.model");
        using (var gnn = new GpuTrainer.GnnModel(spec.Architecture, names.Length, 2)) GpuTrainer.ModelFile.Save(model, spec, gnn);
        return model;
    }

    [Fact]
    public void AModelOfAnotherChannelCount_IsRefusedBeforeTheGraphIsBuilt()
    {
        var rgb = Path.Combine(_dir, "rgb.tif");
        var model = RgbImageAndGreyModel(rgb);
        var outDir = Path.Combine(_dir, "seg");
        var e = Assert.Throws<InvalidDataException>(() => SegmentCommand.RunAsync(rgb, model, outDir, null, 1, "cpu", CancellationToken.None).GetAwaiter().GetResult());
        Assert.StartsWith(rgb, e.Message);
        Assert.Contains($"the image has 3 channel(s), but the model {model} was trained on 1-channel images", e.Message);
        Assert.False(Directory.Exists(outDir)); // no graph was built
    }

    [Fact]
    public void ABatchSlideOfAnotherChannelCount_FailsAloneBeforeItsGraph()
    {
        var slides = Path.Combine(_dir, "slides");
        var model = RgbImageAndGreyModel(Path.Combine(slides, "rgb.tif"));
        var outDir = Path.Combine(_dir, "batch");
        var r = TestPaths.RunCli("batch", slides, "--out", outDir, "--model", model);
        Assert.Equal(1, r.ExitCode);
        var summary = File.ReadAllText(Path.Combine(outDir, "summary.csv"));
        Assert.Contains("the image has 3 channel(s), but the model", summary);
        Assert.False(File.Exists(Path.Combine(outDir, "slides", "rgb", "graph", "graph.npz")));
    }
}
