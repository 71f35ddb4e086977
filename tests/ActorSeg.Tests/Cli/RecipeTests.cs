using ActorSeg.Core.Imaging;
using ActorSeg.GpuTrainer;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cli;

/// <summary><c>train</c> with no options trains the best recipe; <c>--recipe published</c> the published one; explicit options override a recipe.</summary>
public class RecipeTests(ITestOutputHelper output) : TempDirTest("recipe")
{
    [Fact]
    public void Train_DefaultsToTheBestRecipe_PublishedIsOneOptionAway_FlagsOverride()
    {
        string imgs = Path.Combine(_dir, "images"), masks = Path.Combine(_dir, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 2; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(320, 320, SyntheticKind.Colonies, 16, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));

        // no recipe options at all: the best recipe
        var best = Path.Combine(_dir, "best");
        var r = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--segments", "200", "--epochs", "2", "--val-frac", "0.5", "--no-refine", "--out", best);
        output.WriteLine(r.Stderr);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var (spec, _) = ModelFile.Load(Path.Combine(best, "best.model"));
        Assert.Equal("best", spec.Recipe);
        Assert.Equal(Recipes.Best.Edges, spec.Edges);
        Assert.Equal(Recipes.Best.Features, spec.FeatureSet);
        Assert.Equal(Recipes.Best.Architecture, spec.Architecture);
        Assert.Equal((4, 64, "rag", "absolute"), (spec.Architecture.Layers, spec.Architecture.Hidden, spec.Edges, spec.FeatureSet));
        Assert.Contains("Recipe best", r.Stderr);

        // the published recipe: its features (graphs built with them), kNN exp(-d) edges, 3 GraphConv layers of width 32
        var pub = Path.Combine(_dir, "published");
        r = TestPaths.RunCli("train", "--recipe", "published", "--images", imgs, "--masks", masks, "--segments", "200", "--epochs", "2", "--val-frac", "0.5", "--no-refine", "--out", pub);
        Assert.True(r.ExitCode == 0, r.Stderr);
        (spec, _) = ModelFile.Load(Path.Combine(pub, "best.model"));
        Assert.Equal("published", spec.Recipe);
        Assert.Equal(("knn", "published", 3, 32), (spec.Edges, spec.FeatureSet, spec.Architecture.Layers, spec.Architecture.Hidden));
        Assert.Equal(11, spec.FeatureNames.Length);

        // an explicit option overrides the recipe's value and nothing else; the graphs' own features win, with a warning
        var mixed = Path.Combine(_dir, "mixed");
        r = TestPaths.RunCli("train", "--recipe", "published", "--layers", "5", "--graphs", Path.Combine(best, "graphs"), "--epochs", "2", "--val-frac", "0.5", "--out", mixed);
        Assert.True(r.ExitCode == 0, r.Stderr);
        (spec, _) = ModelFile.Load(Path.Combine(mixed, "best.model"));
        Assert.Equal("custom", spec.Recipe);
        Assert.Equal(("knn", 5, 32), (spec.Edges, spec.Architecture.Layers, spec.Architecture.Hidden));
        Assert.Contains("--layers 5", r.Stderr);
        Assert.Contains("carry absolute features", r.Stderr);
        Assert.Contains("\"recipe\": \"published\"", File.ReadAllText(Path.Combine(mixed, "train.json")));

        // one early-stopping patience for every door that trains: the CLI, submit-train's message and the trainer itself
        Assert.Equal(50, ActorSeg.Messages.TrainDefaults.Patience);
        Assert.Equal(ActorSeg.Messages.TrainDefaults.Patience, new TrainOptions().Patience);
        Assert.Equal(ActorSeg.Messages.TrainDefaults.Patience, new ActorSeg.Messages.TrainJobSpec([], "out").Patience);
        foreach (var command in new[] { "train", "submit-train" })
        {
            var help = TestPaths.RunCli(command, "--help");
            Assert.Matches(@"--patience <patience>\s+Epochs without validation improvement before stopping\.\s+\[default: 50\]", help.Stdout);
        }

        // a recipe that does not exist is a usage error
        Assert.Equal(2, TestPaths.RunCli("train", "--recipe", "fastest", "--graphs", Path.Combine(best, "graphs"), "--out", Path.Combine(_dir, "x")).ExitCode);
    }
}
