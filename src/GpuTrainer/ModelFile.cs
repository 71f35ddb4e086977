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
