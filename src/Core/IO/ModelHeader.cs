using System.Text.Json;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;

namespace ActorSeg.Core.IO;

/// <summary>The file system failed to deliver a model file's bytes (an I/O error, not a short, damaged or missing file):
/// worth another try, unlike a bad model.</summary>
public sealed class ModelReadException(string message, Exception inner) : IOException(message, inner);

/// <summary>
/// The layout of a trained GNN model file, shared by the trainer (ActorSeg.GpuTrainer.ModelFile writes it and loads it
/// whole) and the nodes that need only its settings (<see cref="ModelHeader"/>): a <see cref="SealedFile"/> whose body is
/// an int32 length, the model's spec as JSON (at most <see cref="MaxHeaderBytes"/>), then the weights.
/// </summary>
public static class ModelFileFormat
{
    /// <summary>The first line of a model file: since 2026-12-06 with a version, followed by the body's checksum
    /// (<see cref="SealedFile"/>); files written before have <see cref="LegacyMagic"/> and no checksum.</summary>
    public const string Magic = "ACTORSEG-GNN-MODEL/2\n", LegacyMagic = "ACTORSEG-GNN-MODEL\n";
    /// <summary>The largest JSON header read.</summary>
    public const int MaxHeaderBytes = 64 << 20;
    /// <summary>The most features a model may have.</summary>
    public const int MaxFeatures = 4096;
    private const string What = "GNN model";

    /// <summary>Writes a model file atomically: the header, then what <paramref name="weights"/> writes.</summary>
    public static void Write(string path, byte[] headerJson, Action<BinaryWriter> weights) =>
        SealedFile.Write(path, Magic, w =>
        {
            w.Write(headerJson.Length); w.Write(headerJson);
            weights(w);
        }, "model");

    /// <summary>Opens the model file at <paramref name="path"/> (the checksum of its body verified), reads its JSON header and
    /// hands it to <paramref name="read"/> with the reader positioned at the weights.</summary>
    /// <exception cref="FileNotFoundException">no such file</exception>
    /// <exception cref="InvalidDataException">a folder, not a regular file, or not a sound model file; the message starts with the path</exception>
    public static T Read<T>(string path, Func<BinaryReader, byte[], T> read)
    {
        if (Directory.Exists(path))
        {
            var inside = Path.Combine(path, "best.model");
            throw new InvalidDataException($"{path}: is a folder, not a model file{(File.Exists(inside) ? $" (the trained model is {inside})" : "")}");
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: model file not found");
        InputFiles.RefuseNonRegular(path, "not an ActorSeg GNN model file");
        if (BeginsWith(path, "ACTORSEG-UNET-MODEL"))
            throw new InvalidDataException($"{path}: a UNet model (from unet-train), not a GNN model: segment, evaluate, refine and batch take a model from train; unet-evaluate takes this one");
        try
        {
            using var fs = SealedFile.OpenBody(path, Magic, LegacyMagic, What);
            using var r = new BinaryReader(fs);
            int len = r.ReadInt32();
            if (len <= 0 || len > MaxHeaderBytes) throw new InvalidDataException($"corrupt header (its length reads {len} bytes; 1 to {MaxHeaderBytes} allowed)");
            var json = r.ReadBytes(len);
            if (json.Length != len) throw new InvalidDataException($"the file ends inside its header ({json.Length} of {len} bytes)");
            return read(r, json);
        }
        catch (IOException e) when (IsReadFailure(e))
        {
            // the file system did not deliver the bytes (a network volume's hiccup, a disk error): not a verdict on the
            // model, so an IOException, which the failure policy retries, rather than "corrupt", which fails the job
            throw new ModelReadException($"{path}: the model file could not be read ({e.Message})", e);
        }
        catch (Exception e) when (e is not FileNotFoundException && e is not InvalidDataException)
        {
            throw new InvalidDataException($"{path}: corrupt or incompatible model file ({e.GetType().Name}: {e.Message})", e);
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path))
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Whether the file's first bytes are <paramref name="magic"/> (false when it cannot be read).</summary>
    public static bool BeginsWith(string path, string magic)
    {
        try
        {
            using var f = File.OpenRead(path);
            var head = new byte[magic.Length];
            return f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) == head.Length && System.Text.Encoding.ASCII.GetString(head) == magic;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Whether <paramref name="e"/> is the file system failing to read, not the file being short or absent: a
    /// file that ends early (<see cref="EndOfStreamException"/>) is damaged, and one that is gone is missing, whatever
    /// is tried again.</summary>
    public static bool IsReadFailure(IOException e) =>
        e is not (EndOfStreamException or FileNotFoundException or DirectoryNotFoundException or PathTooLongException);

    /// <summary>Refuses feature names a model cannot have.</summary>
    /// <exception cref="InvalidDataException">names the problem</exception>
    public static void CheckFeatureNames(string[]? names)
    {
        if (names is null || names.Length == 0 || names.Any(string.IsNullOrWhiteSpace)) throw new InvalidDataException("the model names no features");
        if (names.Length > MaxFeatures) throw new InvalidDataException($"the model has {names.Length} features (at most {MaxFeatures})");
    }

    /// <summary>Refuses a seed spacing a model cannot have (0: a model trained before it was recorded).</summary>
    public static void CheckSeedSpacing(double spacing)
    {
        if (!(double.IsFinite(spacing) && spacing >= 0)) throw new InvalidDataException($"the model's seed spacing is {spacing}");
    }

    /// <summary>Why an image of <paramref name="channels"/> channels gives graphs whose features are not the model's (it
    /// was trained on images of another channel count), or null.</summary>
    public static string? ChannelMismatch(string[] featureNames, string modelPath, int channels)
    {
        var expected = GraphJobManifest.FeatureNamesFor(channels, GraphRequest.FeatureSetOf(featureNames));
        if (expected.SequenceEqual(featureNames)) return null;
        // the absolute features' names are the others' with a prefix
        var plain = featureNames.Select(n => n.StartsWith(GraphRequest.AbsolutePrefix, StringComparison.Ordinal) ? n[GraphRequest.AbsolutePrefix.Length..] : n).ToArray();
        int trained = plain.Contains("mean") ? 1 : plain.Count(n => n.Length > 6 && n[0] == 'c' && n.EndsWith("_mean", StringComparison.Ordinal) && int.TryParse(n[1..^5], out _));
        return $"the image has {channels} channel(s), but the model {modelPath} was trained on {trained}-channel images ({featureNames.Length} features; this image's graph would have {expected.Length})";
    }
}

/// <summary>
/// What a model file says about how its graphs are built, read from its header alone (no weights, no TorchSharp): for the
/// coordinator, which builds a segmentation job's graph before any trainer loads the model. The same checks as loading
/// the whole model: not a folder, a regular file, the checksum, the header's size, valid JSON, sound values.
/// </summary>
/// <param name="Path">the model file</param>
/// <param name="FeatureNames">the node features the model was trained on, in order</param>
/// <param name="SeedSpacing">the SLIC seed spacing of its training graphs (0: not recorded, in models trained before it was)</param>
public sealed record ModelHeader(string Path, string[] FeatureNames, double SeedSpacing)
{
    /// <summary>The feature set the model's graphs were built with (absolute, texture or published).</summary>
    public string FeatureSet => GraphRequest.FeatureSetOf(FeatureNames);

    /// <summary>The seed spacing its graphs are built at: the model's, or the default where it has none.</summary>
    public double GraphSpacing => SeedSpacing > 0 ? SeedSpacing : Superpixels.SlicParameters.DefaultSpacing;

    /// <summary>The fields of the JSON header read here (the rest is the trainer's).</summary>
    private sealed record Fields(string[]? FeatureNames, double SeedSpacing);

    /// <exception cref="FileNotFoundException">no such file</exception>
    /// <exception cref="InvalidDataException">not a sound model file; the message starts with the path</exception>
    public static ModelHeader Read(string path) => ModelFileFormat.Read(path, (_, json) =>
    {
        var f = JsonSerializer.Deserialize<Fields>(json) ?? throw new InvalidDataException("empty spec");
        ModelFileFormat.CheckFeatureNames(f.FeatureNames);
        ModelFileFormat.CheckSeedSpacing(f.SeedSpacing);
        return new ModelHeader(path, f.FeatureNames!, f.SeedSpacing);
    });
}
