using ActorSeg.Core.Imaging;
using ActorSeg.GpuTrainer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ActorSeg.Tests.Gnn;

[Collection("torch")] // training in TorchSharp on two test threads at once once failed inside BatchNorm (a native race): one at a time
public class UNetTests() : TempDirTest("unet")
{

    [Fact]
    public void UNet_KeepsTheImageSize()
    {
        var net = new UNet(new UNetSpec { Channels = 3, Classes = 4, Base = 4, Depth = 2 });
        var y = net.forward(torch.randn(2, 3, 32, 48));
        Assert.Equal(new long[] { 2, 4, 32, 48 }, y.shape);
    }

    /// <summary>Generated 8-bit nuclei fields (seeds 1..n) with their masks, as image and mask paths.</summary>
    private List<(string, string)> NucleiFields(string prefix, int n, int w, int h)
    {
        var pairs = new List<(string, string)>();
        for (int s = 1; s <= n; s++)
        {
            string img = Path.Combine(_dir, $"{prefix}{s}.tif"), mask = Path.Combine(_dir, $"{prefix}{s}_mask.tif");
            SyntheticMicroscopy.Generate(new SyntheticSpec(w, h, SyntheticKind.Nuclei, 8, 1, s), img, mask);
            pairs.Add((img, mask));
        }
        return pairs;
    }

    [Fact]
    public void UNet_TrainsOnNuclei_AndPredictsWholeImagesBySlidingWindow()
    {
        var pairs = NucleiFields("n", 3, 200, 150);
        var r = UNetRunner.Train(pairs, Path.Combine(_dir, "m"), new UNetTrainOptions { Base = 8, Depth = 2, Patch = 64, Batch = 4, StepsPerEpoch = 15, MaxEpochs = 8, Patience = 8, ValidationFraction = 0.34, LearningRate = 3e-3 });
        Assert.True(File.Exists(r.BestModel));
        var m = UNetRunner.Evaluate(r.BestModel, pairs, binary: true, device: "cpu");
        Assert.True(m.Accuracy > 0.85, $"pixel accuracy {m.Accuracy:P1}");
        var bad = Path.Combine(_dir, "bad.unet");
        File.WriteAllText(bad, "nope");
        Assert.StartsWith(bad, Assert.Throws<InvalidDataException>(() => UNetRunner.Load(bad, CPU)).Message);
    }

    [Fact]
    public void ARetrainThatDivergesOrIsStopped_LeavesTheEarlierBestUNetUntouched()
    {
        var pairs = NucleiFields("k", 2, 96, 96);
        var dir = Path.Combine(_dir, "keep");
        var o = new UNetTrainOptions { Base = 4, Depth = 2, Patch = 32, Batch = 2, StepsPerEpoch = 3, MaxEpochs = 2, Patience = 2, ValidationFraction = 0.5 };
        var good = UNetRunner.Train(pairs, dir, o);
        var before = File.ReadAllBytes(good.BestModel);
        // a learning rate that makes the loss explode after its first epochs: before, the first epoch's weights had
        // already been written over best.unet when the run failed
        var ex = Assert.Throws<InvalidOperationException>(() => UNetRunner.Train(pairs, dir, o with { MaxEpochs = 30, Patience = 30, LearningRate = 1e30 }));
        Assert.Contains("diverged", ex.Message);
        Assert.Equal(before, File.ReadAllBytes(good.BestModel));
        // and one stopped (Ctrl-C) mid-training
        using var cts = new CancellationTokenSource();
        int steps = 0;
        Assert.ThrowsAny<OperationCanceledException>(() => UNetRunner.Train(pairs, dir, o with { MaxEpochs = 30, Patience = 30 },
            s => { if (s.StartsWith("epoch 1:", StringComparison.Ordinal) && ++steps == 1) cts.Cancel(); }, cts.Token));
        Assert.Equal(before, File.ReadAllBytes(good.BestModel));
        Assert.Empty(Directory.GetFiles(dir, ".best.unet*.training"));
    }

    [Theory]
    [InlineData("patch", "patch must be 16 to 1024 pixels and a multiple of 8 (2^depth) (got 100)")]
    [InlineData("depth", "depth must be 1 to 6 levels (got 9)")]
    [InlineData("epochs", "the epochs must be at least 1 (got 0)")]
    [InlineData("lr", "the learning rate must be a finite number > 0 (got NaN)")]
    [InlineData("val", "the validation fraction must be in (0, 1) (got 1.5)")]
    public void AbsurdTrainingOptions_AreRefusedBeforeAnyImageIsRead(string what, string expected)
    {
        var o = what switch
        {
            "patch" => new UNetTrainOptions { Patch = 100 },
            "depth" => new UNetTrainOptions { Depth = 9 },
            "epochs" => new UNetTrainOptions { MaxEpochs = 0 },
            "lr" => new UNetTrainOptions { LearningRate = double.NaN },
            _ => new UNetTrainOptions { ValidationFraction = 1.5 },
        };
        // the images do not exist: the options are checked first
        var e = Assert.Throws<ArgumentException>(() => UNetRunner.Train([("none-a.tif", "none-a.tif"), ("none-b.tif", "none-b.tif")], Path.Combine(_dir, "m"), o));
        Assert.Equal(expected, e.Message);
    }

    [Theory]
    [InlineData("\"Classes\":2", "\"Classes\":100000", "the model has 100000 classes")]
    [InlineData("\"Patch\":64", "\"Patch\":62", "the model's patch must be 16 to 1024 pixels and a multiple of 4")]
    [InlineData("\"Channels\":1", "\"Channels\":0", "the model takes 0 channels")]
    public void ATamperedUNetSpec_IsRefusedNamingTheFile(string from, string to, string expected)
    {
        var spec = new UNetSpec { Channels = 1, Classes = 2, Base = 4, Depth = 2, Patch = 64 };
        spec.Validate();
        var json = System.Text.Json.JsonSerializer.Serialize(spec);
        Assert.Contains(from, json);
        var bytes = System.Text.Encoding.UTF8.GetBytes(json.Replace(from, to));
        var path = Path.Combine(_dir, "tampered.unet");
        using (var f = File.Create(path))
        using (var w = new BinaryWriter(f))
        {
            w.Write(System.Text.Encoding.ASCII.GetBytes("ACTORSEG-UNET-MODEL\n"));
            w.Write(bytes.Length); w.Write(bytes);
        }
        var e = Assert.Throws<InvalidDataException>(() => UNetRunner.ReadSpec(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AUNetChangedOnDisk_IsRefusedByItsChecksum()
    {
        var spec = new UNetSpec { Channels = 1, Classes = 2, Base = 4, Depth = 2, Patch = 64 };
        var path = Path.Combine(_dir, "sealed.unet");
        using (var m = new UNet(spec)) UNetRunner.Save(path, spec, m);
        using (UNetRunner.Load(path, CPU).Model) { }
        var bytes = File.ReadAllBytes(path);
        Assert.StartsWith("ACTORSEG-UNET-MODEL/2\n", System.Text.Encoding.ASCII.GetString(bytes, 0, 22));
        bytes[^5] ^= 0x20;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => UNetRunner.Load(path, CPU));
        Assert.StartsWith(path, e.Message);
        Assert.Contains("checksum does not match", e.Message);
    }
}
