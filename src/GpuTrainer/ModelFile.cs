using ActorSeg.Core.IO;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorSeg.GpuTrainer;

/// <summary>Everything needed to apply a model besides its weights: a model file alone is enough to segment.</summary>
public sealed record ModelSpec
{
    public string Format { get; init; } = "actorseg-gnn/1";
    public required GnnArchitecture Architecture { get; init; }
    public required string[] FeatureNames { get; init; }
    public required float[] FeatureMean { get; init; }
    public required float[] FeatureStd { get; init; }
    public required int Classes { get; init; }
    public required string Edges { get; init; }
    public required float[] ClassWeights { get; init; }
    public int Epoch { get; init; }
    public double ValidationLoss { get; init; }
    public int Seed { get; init; }
    /// <summary>The SLIC seed spacing of the training graphs: segmenting uses the same superpixel size.</summary>
    public double SeedSpacing { get; init; }
    /// <summary>The feature set the graphs were built with (absolute, texture or published).</summary>
    public string FeatureSet => Core.Pipeline.GraphRequest.FeatureSetOf(FeatureNames);
    public string[] TrainGraphs { get; init; } = [];
    /// <summary>Names and colours of the classes (absent in models trained before 2026-12: the defaults).</summary>
    public Core.IO.ClassInfo[]? ClassNames { get; init; }
    public Core.IO.ClassInfo[] ClassTable => ClassNames is { } n && n.Length == Classes ? n : Core.IO.ClassTable.Default(Classes).Take(Math.Max(Classes, 1)).ToArray();
    public string[] ValidationGraphs { get; init; } = [];
    /// <summary>The training recipe these settings are (best, published), or custom; null in models trained before recipes.</summary>
    public string? Recipe { get; init; }
    /// <summary>The boundary refinement trained with the model (<c>train --refine</c>), or null: the coarse classes are painted as they are.</summary>
    public Core.Refine.PixelRefinerSpec? Refiner { get; init; }
    /// <summary>The smallest and largest µm per pixel (along x) of the training images, as their graphs' graph.json
    /// recorded it; null where any training graph's is unknown (and in models trained before 2026-12-06).</summary>
    public double[]? MicronsPerPixel { get; init; }
    /// <summary>Absolute-feature models: per channel, the range over the training graphs of their superpixels' 5th and 95th
    /// percentile mean grey level (8-bit units): [lowest 5th, highest 5th, lowest 95th, highest 95th]. Null for other
    /// feature sets (their units are each image's own) and in models trained before 2026-12-07.</summary>
    public double[][]? GreyLevels { get; init; }

    /// <summary>How far (a factor) an image's percentiles may lie outside the training range before
    /// <see cref="GreyLevelMismatch"/> speaks. On the shared NIST and BBBC039 splits, 1.5 flags none of the 60 held-out
    /// fields as they are, every one at 256× or 1/256 (a bit-depth mix-up), and every BBBC039 field at 2× or ½ exposure.</summary>
    public const double GreyLevelTolerance = 1.5;

    /// <summary>The columns of <paramref name="featureNames"/> that hold each channel's mean grey level in absolute units
    /// (abs_mean, or abs_c0_mean, abs_c1_mean, …), or empty for other feature sets.</summary>
    public static int[] AbsoluteMeanColumns(string[] featureNames)
    {
        if (Core.Pipeline.GraphRequest.FeatureSetOf(featureNames) != "absolute") return [];
        string p = Core.Pipeline.GraphRequest.AbsolutePrefix;
        int single = Array.IndexOf(featureNames, p + "mean");
        if (single >= 0) return [single];
        var cols = new List<int>();
        for (int c = 0; ; c++)
        {
            int i = Array.IndexOf(featureNames, $"{p}c{c}_mean");
            if (i < 0) break;
            cols.Add(i);
        }
        return cols.ToArray();
    }

    /// <summary>The 5th and 95th percentile, over the nodes of <paramref name="g"/>, of feature column <paramref name="col"/>.</summary>
    public static (double P5, double P95) NodePercentiles(GraphSample g, int col)
    {
        if (g.Nodes == 0) return (double.NaN, double.NaN);
        var v = new float[g.Nodes];
        for (int n = 0; n < g.Nodes; n++) v[n] = g.X[(long)n * g.F + col];
        Array.Sort(v);
        return (v[(int)(0.05 * (g.Nodes - 1))], v[(int)(0.95 * (g.Nodes - 1))]);
    }

    /// <summary><see cref="GreyLevels"/> for a model trained on <paramref name="graphs"/>, or null when their features are
    /// not absolute.</summary>
    public static double[][]? GreyLevelsOf(IReadOnlyList<GraphSample> graphs)
    {
        if (graphs.Count == 0) return null;
        var cols = AbsoluteMeanColumns(graphs[0].FeatureNames);
        if (cols.Length == 0) return null;
        var ranges = new double[cols.Length][];
        for (int c = 0; c < cols.Length; c++)
        {
            double lo5 = double.PositiveInfinity, hi5 = double.NegativeInfinity, lo95 = double.PositiveInfinity, hi95 = double.NegativeInfinity;
            foreach (var g in graphs)
            {
                if (g.Nodes == 0) continue;
                var (p5, p95) = NodePercentiles(g, cols[c]);
                lo5 = Math.Min(lo5, p5); hi5 = Math.Max(hi5, p5); lo95 = Math.Min(lo95, p95); hi95 = Math.Max(hi95, p95);
            }
            if (!double.IsFinite(lo5)) return null;
            ranges[c] = [lo5, hi5, lo95, hi95];
        }
        return ranges;
    }

    /// <summary>Why the grey levels of <paramref name="g"/> look unlike the training images' (its superpixels' 5th or 95th
    /// percentile mean grey level outside the training range by more than <see cref="GreyLevelTolerance"/>), or null.
    /// Absolute features assume one exposure and bit depth for a collection; the classes of an image outside it may be
    /// wrong, and nothing else would say so.</summary>
    public string? GreyLevelMismatch(GraphSample g)
    {
        if (GreyLevels is not { } ranges || g.Nodes == 0 || !g.FeatureNames.SequenceEqual(FeatureNames)) return null;
        var cols = AbsoluteMeanColumns(FeatureNames);
        if (cols.Length != ranges.Length) return null;
        var I = System.Globalization.CultureInfo.InvariantCulture;
        for (int c = 0; c < cols.Length; c++)
        {
            var (p5, p95) = NodePercentiles(g, cols[c]);
            var r = ranges[c];
            static bool Outside(double v, double lo, double hi) => v < lo / GreyLevelTolerance || v > hi * GreyLevelTolerance;
            if (!Outside(p5, r[0], r[1]) && !Outside(p95, r[2], r[3])) continue;
            string ch = cols.Length == 1 ? "" : $" (channel {c})";
            string F(double v) => v.ToString("0.##", I);
            return $"its grey levels{ch} are unlike the model's training images: the 5th and 95th percentiles of its superpixels' " +
                $"mean are {F(p5)} and {F(p95)} (8-bit units), where the training images' lay within {F(r[0])}-{F(r[1])} and " +
                $"{F(r[2])}-{F(r[3])}. The model's absolute features assume the exposure and bit depth of its training images, so " +
                "its classes may be wrong (train on images like this one, or with --features texture, whose units are each image's own)";
        }
        return null;
    }

    /// <summary>Why an image read at <paramref name="micronsPerPixel"/> is at another scale than the training images, or
    /// null (the same scale within a factor of 1.25, or either unknown). Superpixels and texture features are measured in
    /// pixels, so a model applied at another resolution sees other features.</summary>
    public string? ScaleMismatch(double? micronsPerPixel)
    {
        if (MicronsPerPixel is not [var lo, var hi] || micronsPerPixel is not { } um || !(um > 0)) return null;
        const double tolerance = 1.25;
        if (um >= lo / tolerance && um <= hi * tolerance) return null;
        var I = System.Globalization.CultureInfo.InvariantCulture;
        string trained = lo == hi ? lo.ToString("0.####", I) : $"{lo.ToString("0.####", I)}-{hi.ToString("0.####", I)}";
        return $"it is read at {um.ToString("0.####", I)} µm/px, but the model was trained on images of {trained} µm/px: its superpixels and texture " +
               $"features are at another scale, so its classes may be wrong (read a level near the training resolution, e.g. --mpp {lo.ToString("0.####", I)})";
    }

    /// <summary>Refuses a spec whose parts disagree or lie outside what training writes (read from a file: trust nothing).</summary>
    /// <exception cref="InvalidDataException">names the first bad field</exception>
    public void Validate()
    {
        if (Architecture is null) throw new InvalidDataException("the model has no architecture");
        try { Architecture.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"the model's architecture: {e.Message}"); }
        if (Classes < 2 || Classes > GraphSample.MaxClasses) throw new InvalidDataException($"the model has {Classes} classes (2..{GraphSample.MaxClasses} allowed)");
        ModelFileFormat.CheckFeatureNames(FeatureNames);
        if (FeatureMean is null || FeatureMean.Length != FeatureNames.Length || FeatureStd is null || FeatureStd.Length != FeatureNames.Length)
            throw new InvalidDataException($"the model's feature normalisation has {FeatureMean?.Length ?? 0} means and {FeatureStd?.Length ?? 0} deviations for {FeatureNames.Length} features");
        for (int f = 0; f < FeatureNames.Length; f++)
            if (!float.IsFinite(FeatureMean[f]) || !(float.IsFinite(FeatureStd[f]) && FeatureStd[f] > 0))
                throw new InvalidDataException($"the model's normalisation of feature {FeatureNames[f]} is mean {FeatureMean[f]}, deviation {FeatureStd[f]}");
        if (!GraphSample.EdgeModes.Contains(Edges)) throw new InvalidDataException($"the model's edges '{Edges}' are not one of {string.Join(", ", GraphSample.EdgeModes)}");
        ModelFileFormat.CheckSeedSpacing(SeedSpacing);
        if (MicronsPerPixel is { } um && !(um.Length == 2 && double.IsFinite(um[0]) && um[0] > 0 && double.IsFinite(um[1]) && um[1] >= um[0]))
            throw new InvalidDataException($"the model's training pixel sizes are [{string.Join(", ", um)}], not a range of two positive numbers");
        if (GreyLevels is { } gl)
        {
            if (gl.Length != AbsoluteMeanColumns(FeatureNames).Length)
                throw new InvalidDataException($"the model's grey levels name {gl.Length} channels, its features {AbsoluteMeanColumns(FeatureNames).Length}");
            foreach (var r in gl)
                if (r is not { Length: 4 } || r.Any(v => !double.IsFinite(v)) || r[0] > r[1] || r[2] > r[3])
                    throw new InvalidDataException($"the model's grey levels [{string.Join(", ", r ?? [])}] are not two ranges of finite numbers");
        }
    }

    /// <summary>Refuses a graph whose features the model was not trained on.</summary>
    public void CheckCompatible(GraphSample g)
    {
        if (!g.FeatureNames.SequenceEqual(FeatureNames))
            throw new InvalidDataException($"{g.Path}: the graph's features [{string.Join(", ", g.FeatureNames)}] differ from the model's [{string.Join(", ", FeatureNames)}] (different channel count or feature set)");
        if (g.ClassHist is not null && g.Classes > Classes)
        {
            for (int v = 0; v < g.Nodes; v++)
                for (int c = Classes; c < g.Classes; c++)
                    if (g.ClassHist[v * g.Classes + c] > 0)
                        throw new InvalidDataException($"{g.Path}: the mask has class {c}, but the model knows classes 0..{Classes - 1}");
        }
    }
}

/// <summary>A model file (<see cref="ModelFileFormat"/>): a magic line, the checksum of the rest (<see cref="SealedFile"/>),
/// the spec as JSON, then the weights (TorchSharp's format). Written atomically.</summary>
public static class ModelFile
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static void Save(string path, ModelSpec spec, GnnModel model) =>
        ModelFileFormat.Write(path, JsonSerializer.SerializeToUtf8Bytes(spec, Json), w => model.save(w));

    /// <summary>The model's spec, for the doors that decide how its graphs are built (features, spacing, scale) before any
    /// work: every check of <see cref="Load"/>, the weights' included, then the weights let go.</summary>
    public static ModelSpec ReadSpec(string path)
    {
        var (spec, model) = Load(path);
        model.Dispose();
        return spec;
    }

    public static (ModelSpec Spec, GnnModel Model) Load(string path, Device? device = null) => ModelFileFormat.Read(path, (r, json) =>
    {
        var spec = JsonSerializer.Deserialize<ModelSpec>(json, Json) ?? throw new InvalidDataException("empty spec");
        spec.Validate();
        if (spec.Refiner is { } refiner)
        {
            refiner.Validate("the model's refiner");
            if (refiner.Classes != spec.Classes) throw new InvalidDataException($"the refiner has {refiner.Classes} classes, the model {spec.Classes}");
        }
        var model = new GnnModel(spec.Architecture, spec.FeatureNames.Length, spec.Classes);
        try
        {
            model.load(r, strict: true);
            var fs = r.BaseStream;
            if (fs.Position != fs.Length) throw new InvalidDataException($"{fs.Length - fs.Position:N0} bytes after the weights");
            ModelWeights.RequireFinite(model, "the model");
            if (device is not null) model.to(device);
            return (spec, model);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    });
}
