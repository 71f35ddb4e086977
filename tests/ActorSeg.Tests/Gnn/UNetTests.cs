using ActorSeg.Core.Imaging;
using ActorSeg.GpuTrainer;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace ActorSeg.Tests.Gnn;

public class UNetTests() : TempDirTest("unet")
{

    [Fact]
    public void UNet_KeepsTheImageSize()
    {
        var net = new UNet(new UNetSpec { Channels = 3, Classes = 4, Base = 4, Depth = 2 });
        var y = net.forward(torch.randn(2, 3, 32, 48));
        Assert.Equal(new long[] { 2, 4, 32, 48 }, y.shape);
    }

    [Fact]
    public void UNet_TrainsOnNuclei_AndPredictsWholeImagesBySlidingWindow()
    {
        var pairs = new List<(string, string)>();
        for (int s = 1; s <= 3; s++)
        {
            string img = Path.Combine(_dir, $"n{s}.tif"), mask = Path.Combine(_dir, $"n{s}_mask.tif");
            SyntheticMicroscopy.Generate(new SyntheticSpec(200, 150, SyntheticKind.Nuclei, 8, 1, s), img, mask);
            pairs.Add((img, mask));
        }
        var r = UNetRunner.Train(pairs, Path.Combine(_dir, "m"), new UNetTrainOptions { Base = 8, Depth = 2, Patch = 64, Batch = 4, StepsPerEpoch = 15, MaxEpochs = 8, Patience = 8, ValidationFraction = 0.34, LearningRate = 3e-3 });
        Assert.True(File.Exists(r.BestModel));
        var m = UNetRunner.Evaluate(r.BestModel, pairs, binary: true, device: "cpu");
        Assert.True(m.Accuracy > 0.85, $"pixel accuracy {m.Accuracy:P1}");
        var bad = Path.Combine(_dir, "bad.unet");
        File.WriteAllText(bad, "nope");
        Assert.StartsWith(bad, Assert.Throws<InvalidDataException>(() => UNetRunner.Load(bad, CPU)).Message);
    }
}
