using ActorSeg.Core.IO;

namespace ActorSeg.GpuTrainer;

/// <summary>
/// A training run's files (best.model, last.model, curves.csv, split.json, train.json) are written into a staging folder
/// of its own inside the model folder and moved into place only once the whole run, boundary refinement and summary
/// included, has succeeded. A run that fails, is cancelled or is killed leaves the model folder's earlier files as they
/// were: never a new coarse model beside an old train.json, nor an unrefined model where a refined one was.
/// The caller holds the model folder's lock (<see cref="OutputFolderLock"/>), so staging folders left by a killed run
/// are removed when the next run starts.
/// </summary>
public static class StagedTraining
{
    private const string Prefix = ".staging-";

    /// <summary>Runs <paramref name="work"/> on a fresh staging folder and publishes the files it wrote there into
    /// <paramref name="outDir"/>, each replacing the old one atomically; the staging folder is removed either way.</summary>
    public static T Run<T>(string outDir, Func<string, T> work)
    {
        SafePaths.EnsureDirectory(outDir, "model folder");
        foreach (var stale in Directory.EnumerateDirectories(outDir, Prefix + "*"))
            try { Directory.Delete(stale, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        var stage = Path.Combine(outDir, Prefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(stage);
        try
        {
            var result = work(stage);
            // the summary last: a reader that finds the new train.json finds the new model beside it
            var files = Directory.GetFiles(stage).Where(f => !Path.GetFileName(f).StartsWith('.'))
                .OrderBy(f => Path.GetFileName(f) == "train.json" ? 1 : 0).ThenBy(f => f, StringComparer.Ordinal).ToList();
            foreach (var f in files) SafePaths.Publish(f, Path.Combine(outDir, Path.GetFileName(f)), "model");
            return result;
        }
        finally
        {
            try { Directory.Delete(stage, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Where a file written into the staging folder ends up.</summary>
    public static string Final(string outDir, string stagedPath) => Path.Combine(outDir, Path.GetFileName(stagedPath));

    /// <summary>A training result that names the published files instead of the staged ones.</summary>
    public static TrainResult Published(TrainResult r, string outDir) =>
        r with { BestModel = Final(outDir, r.BestModel), LastModel = Final(outDir, r.LastModel) };

    /// <summary>Log text with the staging folder's path put back to the model folder's (the files' final place).</summary>
    public static Action<string> Log(Action<string> log, string stage, string outDir) => s => log(s.Replace(stage, outDir, StringComparison.Ordinal));
}
