namespace ActorSeg.GpuTrainer;

/// <summary>A training recipe: the graph features, the edges and the architecture that go together.</summary>
/// <param name="Name">best or published</param>
/// <param name="Features">the feature set graphs are built with (texture or published)</param>
/// <param name="Edges">knn, knn-scaled or rag</param>
/// <param name="Architecture">the message-passing stack</param>
/// <param name="Description">one line for the help and the log</param>
public sealed record Recipe(string Name, string Features, string Edges, GnnArchitecture Architecture, string Description);

/// <summary>
/// The recipes <c>actorseg train --recipe</c> offers. <see cref="Best"/> is the default: the best one measured on the
/// shared real data by <c>bench/recipe-sweep.sh</c> (README, "GNN node classification"); <see cref="Published"/> is the
/// published method (11 intensity features per node, each node to its 10 nearest centroids weighted exp(−d), 3 GraphConv
/// layers of width 32, leaky ReLU, dropout 0.5). Explicit options override a recipe's settings one by one.
/// </summary>
public static class Recipes
{
    public static readonly Recipe Best = new("best", "absolute", "rag",
        new GnnArchitecture { Conv = "graphconv", Layers = 4, Hidden = 64, Dropout = 0.5, Activation = "leaky_relu" },
        "texture features (intensity, gradient and local-contrast statistics, boundary contrast) in absolute grey levels, region-adjacency edges weighted by shared boundary, 4 GraphConv layers of width 64");

    public static readonly Recipe Published = new("published", "published", "knn",
        new GnnArchitecture { Conv = "graphconv", Layers = 3, Hidden = 32, Dropout = 0.5, Activation = "leaky_relu" },
        "the published method: 11 intensity features, kNN-10 edges weighted exp(-d), 3 GraphConv layers of width 32");

    public static readonly IReadOnlyList<Recipe> All = [Best, Published];

    public static string[] Names => All.Select(r => r.Name).ToArray();

    public static Recipe Get(string name) =>
        All.FirstOrDefault(r => r.Name == name) ?? throw new ArgumentException($"recipe must be one of {string.Join(", ", Names)} (got '{name}')");

    /// <summary>The features a graph for <paramref name="model"/> is built with: the model's own, or without a model the best
    /// recipe's.</summary>
    public static string GraphFeatures(ModelSpec? model) => model?.FeatureSet ?? Best.Features;

    /// <summary>The seed spacing a graph for <paramref name="model"/> is built at: the one asked for, else the model's (the
    /// superpixel size it was trained on), else the default.</summary>
    public static double GraphSpacing(ModelSpec? model, double? asked) =>
        asked ?? (model?.SeedSpacing > 0 ? model.SeedSpacing : Core.Superpixels.SlicParameters.DefaultSpacing);

    /// <summary>How the masks of a job for <paramref name="model"/> are read: as asked ("binary" or "classes"), else as class
    /// ids when the model has more than two classes (its training masks were), else binary.</summary>
    public static string MaskMode(ModelSpec? model, string? asked) => asked ?? (model is { Classes: > 2 } ? "classes" : "binary");

    /// <summary>The recipe these settings are exactly, or "custom".</summary>
    public static string NameOf(string features, string edges, GnnArchitecture arch) =>
        All.FirstOrDefault(r => r.Features == features && r.Edges == edges && r.Architecture == arch)?.Name ?? "custom";
}
