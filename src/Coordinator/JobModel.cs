using System.Globalization;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Coordinator;

/// <summary>
/// A segmentation job's graph is built as its model's training graphs were: with the model's features, and at its seed
/// spacing unless the job gives its own. The coordinator checks this at prepare, from the model file's header, so a job
/// whose graph the model could not classify fails before any tile, instead of at classification after the whole graph
/// was built.
/// </summary>
public static class JobModel
{
    /// <summary>The job's spec with its model's features and seed spacing where it asks for them
    /// (<see cref="GraphJobSpec.ModelFeatures"/>, <see cref="GraphJobSpec.ModelSpacing"/>), and the model's header; without a
    /// model, the spec as it is and null.</summary>
    /// <exception cref="InputFileException">the model file is missing, or the job's features are not the model's (the
    /// message names the model, its features and spacing, and the job's)</exception>
    /// <exception cref="InvalidDataException">the model file is not sound (the message names it)</exception>
    public static (GraphJobSpec Spec, ModelHeader? Model) Resolve(string jobId, GraphJobSpec spec, ILogger log)
    {
        if (spec.ModelPath is not { } path) return (spec, null);
        ModelHeader model;
        try { model = ModelHeader.Read(path); }
        catch (FileNotFoundException) { throw new InputFileException(path, "model file does not exist"); }
        var resolved = spec with
        {
            Features = spec.ModelFeatures ? model.FeatureSet : spec.Features,
            Spacing = spec.ModelSpacing ? model.GraphSpacing : spec.Spacing,
            ModelFeatures = false, ModelSpacing = false,
        };
        if (spec.ModelFeatures || spec.ModelSpacing)
            log.Information("Job {JobId}: {Taken} from the model {Model}: {Features} features, seed spacing {Spacing} px", jobId,
                spec.ModelFeatures && spec.ModelSpacing ? "features and seed spacing" : spec.ModelFeatures ? "features" : "seed spacing",
                path, resolved.Features, Px(resolved.Spacing));
        if (resolved.Features != model.FeatureSet)
            throw new InputFileException(path, $"the model was trained on graphs of {model.FeatureSet} features (seed spacing " +
                $"{(model.SeedSpacing > 0 ? Px(model.SeedSpacing) + " px" : "not recorded")}), but job {jobId} builds its graph with {resolved.Features} " +
                $"features (seed spacing {Px(resolved.Spacing)} px): the model cannot classify that graph. Give the model's features " +
                $"({model.FeatureSet}), or none to take the model's");
        return (resolved, model);
    }

    /// <summary>After the image is opened, before any tile: an image of another channel count than the model's training
    /// images gives other features.</summary>
    /// <exception cref="InputFileException">names the image, its channels and the model</exception>
    public static void CheckChannels(ModelHeader model, string imagePath, int channels)
    {
        if (ModelFileFormat.ChannelMismatch(model.FeatureNames, model.Path, channels) is { } why) throw new InputFileException(imagePath, why);
    }

    private static string Px(double spacing) => spacing.ToString("0.##", CultureInfo.InvariantCulture);
}
