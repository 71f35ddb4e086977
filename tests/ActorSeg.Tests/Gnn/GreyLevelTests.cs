using ActorSeg.GpuTrainer;
using Xunit;

namespace ActorSeg.Tests.Gnn;

/// <summary>An absolute-feature model records the grey levels of its training images and says when an image's are unlike them.</summary>
public class GreyLevelTests
{
    private static readonly string[] Absolute = ["abs_mean", "abs_std", "abs_contrast"];

    /// <summary>A graph of <paramref name="n"/> nodes whose mean grey levels run evenly from <paramref name="lo"/> to <paramref name="hi"/>.</summary>
    private static GraphSample Graph(string[] names, double lo, double hi, int n = 101, string path = "g.npz")
    {
        var x = new float[n * names.Length];
        int col = Array.IndexOf(names, names.First(f => f.EndsWith("mean")));
        for (int v = 0; v < n; v++) x[v * names.Length + col] = (float)(lo + (hi - lo) * v / (n - 1));
        return new GraphSample { Path = path, Nodes = n, FeatureNames = names, X = x, EdgeIndex = [], EdgeWeight = [] };
    }

    private static ModelSpec Spec(string[] names, double[][]? grey) => new()
    {
        Architecture = new GnnArchitecture(), FeatureNames = names, FeatureMean = new float[names.Length],
        FeatureStd = Enumerable.Repeat(1f, names.Length).ToArray(), Classes = 2, Edges = "rag", ClassWeights = [1, 1], GreyLevels = grey,
    };

    [Fact]
    public void TheTrainingRange_IsEachGraphsFifthAndNinetyFifthPercentile()
    {
        var grey = ModelSpec.GreyLevelsOf([Graph(Absolute, 10, 30), Graph(Absolute, 20, 60)]);
        Assert.NotNull(grey);
        var r = Assert.Single(grey!);
        // 101 evenly spaced values: the 5th percentile is the 6th value, the 95th the 96th
        Assert.Equal(new[] { 11.0, 22.0, 29.0, 58.0 }, r.Select(v => Math.Round(v, 4)));
        // units that are each image's own have nothing to compare
        Assert.Null(ModelSpec.GreyLevelsOf([Graph(["mean", "std", "contrast"], 10, 30)]));
        Assert.Null(ModelSpec.GreyLevelsOf([Graph(["mean", "std"], 10, 30)]));
    }

    [Fact]
    public void EveryChannelsMean_IsFound()
    {
        string[] two = ["abs_c0_mean", "abs_c0_std", "abs_c1_mean", "abs_c1_std", "abs_grad_c0_mean", "abs_contrast"];
        Assert.Equal([0, 2], ModelSpec.AbsoluteMeanColumns(two));
        Assert.Equal([0], ModelSpec.AbsoluteMeanColumns(Absolute));
        Assert.Empty(ModelSpec.AbsoluteMeanColumns(["mean", "std", "contrast"]));
    }

    [Theory]
    [InlineData(1.0, false)]
    [InlineData(1.4, false)]  // within the tolerance
    [InlineData(0.7, false)]
    [InlineData(2.0, true)]   // twice the exposure
    [InlineData(0.5, true)]
    [InlineData(256.0, true)] // a 16-bit image's values where 8-bit ones were trained on
    public void AnImageOutsideTheTrainingGreyLevels_IsNamed(double scale, bool warned)
    {
        var spec = Spec(Absolute, ModelSpec.GreyLevelsOf([Graph(Absolute, 10, 30), Graph(Absolute, 12, 36)]));
        spec.Validate();
        var why = spec.GreyLevelMismatch(Graph(Absolute, 11 * scale, 33 * scale));
        if (!warned) Assert.Null(why);
        else
        {
            Assert.NotNull(why);
            Assert.Contains("grey levels are unlike the model's training images", why);
            Assert.Contains("--features texture", why);
        }
    }

    [Fact]
    public void OldModels_AndOtherFeatureSets_SayNothing()
    {
        Assert.Null(Spec(Absolute, null).GreyLevelMismatch(Graph(Absolute, 1000, 3000)));
        Assert.Null(Spec(["mean", "std", "contrast"], null).GreyLevelMismatch(Graph(["mean", "std", "contrast"], 1000, 3000)));
    }

    [Theory]
    [InlineData(new[] { 1.0, 2.0, 3.0 }, "not two ranges")]
    [InlineData(new[] { 2.0, 1.0, 3.0, 4.0 }, "not two ranges")]
    [InlineData(new[] { 1.0, 2.0, double.NaN, 4.0 }, "not two ranges")]
    public void BadGreyLevelsInAModelFile_AreRefused(double[] range, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => Spec(Absolute, [range]).Validate());
        Assert.Contains(expected, e.Message);
        Assert.Contains("channels, its features", Assert.Throws<InvalidDataException>(() => Spec(Absolute, [[1, 2, 3, 4], [1, 2, 3, 4]]).Validate()).Message);
    }
}
