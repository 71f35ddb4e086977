using System.CommandLine;
using ActorSeg.GpuTrainer;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>
/// <c>--recipe best|published</c> and the options that override a recipe's settings one by one (<c>train</c> and
/// <c>submit-train</c>): an option left out takes the recipe's value, one given replaces it.
/// </summary>
public static class RecipeOptions
{
    /// <summary>The settings a training run ends up with, and which options replaced the recipe's.</summary>
    public sealed record Resolved(Recipe Recipe, string Features, string Edges, GnnArchitecture Architecture, string[] Overridden);

    public static Option<string> Recipe()
    {
        var o = new Option<string>("--recipe")
        {
            Description = $"best (default: {Recipes.Best.Description}; the best measured on the shared data) or published ({Recipes.Published.Description}). "
                + "--features, --edges, --conv, --layers, --hidden and --dropout override it.",
            DefaultValueFactory = _ => Recipes.Best.Name,
        };
        o.AcceptOnlyFromAmong(Recipes.Names);
        return o;
    }

    public static Option<string?> Features()
    {
        var o = new Option<string?>("--features") { Description = "Feature set when building graphs: texture, absolute or published (default: the recipe's; best: absolute, published: published)." };
        o.AcceptOnlyFromAmong(Core.Pipeline.GraphRequest.FeatureSets);
        return o;
    }

    public static Option<string?> Edges()
    {
        var o = new Option<string?>("--edges") { Description = "knn (published exp(-d) weights, neighbour messages vanish), knn-scaled (exp(-d/spacing)), rag (region adjacency by shared boundary) (default: the recipe's; best: rag, published: knn)." };
        o.AcceptOnlyFromAmong(GraphSample.EdgeModes);
        return o;
    }

    public static Option<string?> Conv()
    {
        var o = new Option<string?>("--conv") { Description = "graphconv (published), sage, gcn or gat (default: the recipe's, graphconv for both)." };
        o.AcceptOnlyFromAmong("graphconv", "sage", "gcn", "gat");
        return o;
    }

    public static Option<int?> Layers() => new Option<int?>("--layers") { Description = "Message-passing layers (default: the recipe's; best: 4, published: 3)." }.Within(1, 16);

    public static Option<int?> Hidden() => new Option<int?>("--hidden") { Description = "Hidden width (default: the recipe's; best: 64, published: 32)." }.Within(1, 4096);

    public static Option<double?> Dropout() => new Option<double?>("--dropout") { Description = "Dropout between layers (default: the recipe's, 0.5 for both)." }.Within(0, 1, hiOpen: true);

    public static Resolved Resolve(ParseResult pr, Option<string> recipe, Option<string?> features, Option<string?> edges, Option<string?> conv,
        Option<int?> layers, Option<int?> hidden, Option<double?> dropout)
    {
        var r = Recipes.Get(pr.GetValue(recipe)!);
        var over = new List<string>();
        T Pick<T>(Option<T?> o, T fallback) where T : class { if (pr.GetValue(o) is { } v) { over.Add($"{o.Name} {v}"); return v; } return fallback; }
        T PickV<T>(Option<T?> o, T fallback) where T : struct { if (pr.GetValue(o) is { } v) { over.Add(FormattableString.Invariant($"{o.Name} {v}")); return v; } return fallback; }
        var arch = r.Architecture with
        {
            Conv = Pick(conv, r.Architecture.Conv), Layers = PickV(layers, r.Architecture.Layers),
            Hidden = PickV(hidden, r.Architecture.Hidden), Dropout = PickV(dropout, r.Architecture.Dropout),
        };
        var res = new Resolved(r, Pick(features, r.Features), Pick(edges, r.Edges), arch, over.ToArray());
        Log.Information("Recipe {Recipe}{Overrides}: {Features} features, {Edges} edges, {Conv} {Layers} layers × {Hidden}, dropout {Dropout}",
            r.Name, over.Count == 0 ? "" : $" with {string.Join(", ", over)}", res.Features, res.Edges, arch.Conv, arch.Layers, arch.Hidden, arch.Dropout);
        return res;
    }

    /// <summary>Graphs given with --graphs carry their own features; says so when they are not the recipe's.</summary>
    public static void WarnIfGraphsDiffer(IEnumerable<string> graphPaths, Resolved r)
    {
        var first = graphPaths.FirstOrDefault();
        if (first is null) return;
        string[] names;
        try { names = Core.IO.NpzReader.Read(first)["feature_names"].Strings(); }
        catch (Exception e) when (e is InvalidDataException or IOException or KeyNotFoundException or NotSupportedException) { return; } // the trainer reports it
        var set = Core.Pipeline.GraphRequest.FeatureSetOf(names);
        if (set != r.Features)
            Log.Warning("The graphs ({Graph}, …) carry {Set} features, not the {Features} features of this run's settings: the model is trained on the graphs' features (build them with --features {Features}, or give --images and --masks)",
                first, set, r.Features, r.Features);
    }
}
