using ActorSeg.Messages;

namespace ActorSeg.Core.IO;

/// <summary>
/// What a worker or trainer checks before it acts on an assignment, wherever it came from: the job's output folder is
/// absolute, canonical (no link along it) and inside the node's data roots when it has any, and every path the
/// message names is the one the worker derives itself from that folder. Each check returns why not, or null.
/// </summary>
public static class AssignmentPaths
{
    public const string MaskFile = "mask.tif", OverlayFile = "overlay.png", ClassesFile = "classes.u8", ProbsFile = "probs.f32", ManifestFile = "job.json";

    /// <summary>The node probabilities as a NumPy array (N × C float32) beside graph.npz; the same values as probs.f32.</summary>
    public const string ProbsNpyFile = "probs.npy";

    /// <summary>Beside mask.tif: per pixel the probability of the class painted there (the winning class), × 255, uint8, pyramidal.</summary>
    public const string ProbabilityMapFile = "prob.tif";

    /// <summary>The objects file a paint job writes in its output folder for an objects format (null: none); an exception names a bad format.</summary>
    public static string? ObjectsFile(string outDir, string? format) => ObjectExporter.FileName(format) is { } name ? Path.Combine(outDir, name) : null;

    public static string? InvalidJobId(string? id)
    {
        if (string.IsNullOrEmpty(id)) return "a job id is required";
        if (id.Length > 128) return $"job id is {id.Length} characters long (at most 128)";
        if (id[0] == '.' || id.Contains("..") || id.Any(c => c is '/' or '\\' || char.IsControl(c)))
            return $"job id '{id}' is not usable: it names a work folder (no '/', '\\\\', '..' or control characters, not starting with '.')";
        return null;
    }

    /// <summary>The job's output folder as this node will write it, or why it may not.</summary>
    public static string? CheckOutDir(string jobId, string? outDir, DataRoots roots)
    {
        if (InvalidJobId(jobId) is { } bad) return bad;
        if (string.IsNullOrEmpty(outDir)) return "the assignment names no output folder";
        if (!Path.IsPathFullyQualified(outDir) || Path.GetFullPath(outDir) != outDir.TrimEnd('/') && Path.GetFullPath(outDir) != outDir)
            return $"output folder '{outDir}' is not an absolute, normalised path";
        try { SafePaths.CheckUnchanged(outDir, "output folder"); }
        catch (UnsafePathException e) { return e.Message; }
        if (roots.Any && !roots.Contains(outDir)) return $"output folder {outDir} is outside this node's data roots ({string.Join(", ", roots.Roots)})";
        return null;
    }

    /// <summary>An input the message names: absolute, and inside the data roots when the node has any.</summary>
    public static string? CheckInput(string? path, string what, DataRoots roots)
    {
        if (string.IsNullOrEmpty(path) || !Path.IsPathFullyQualified(path)) return $"{what} '{path}' is not an absolute path";
        if (!roots.Any) return null;
        try { return roots.Contains(SafePaths.RealPath(Path.GetFullPath(path))) ? null : $"{what} {path} is outside this node's data roots"; }
        catch (UnsafePathException e) { return e.Message; }
    }

    public static string WorkDir(string outDir, string jobId) => Path.Combine(outDir, $".work-{jobId}");

    /// <summary>
    /// For an order whose job set its earlier results aside (<see cref="EarlierResults"/>): a reason not to publish, once
    /// that folder is gone (the job has ended: succeeded, or failed and its earlier results put back); null while it runs.
    /// The trainer's folder is the job's graph folder (OUT/graph), the painter's the job's own.
    /// </summary>
    public static Func<string?>? StillRunning(string jobId, string jobOutDir)
    {
        var marker = EarlierResults.Folder(jobOutDir, jobId);
        return () => Directory.Exists(marker) ? null : $"job {jobId} has ended (its folder {marker} is gone), so the files in {jobOutDir} are no longer its to replace";
    }

    public static Func<string?>? StillRunning(PaintAssignment w) => w.Guarded ? StillRunning(w.JobId, w.OutDir!) : null;

    public static Func<string?>? StillRunning(ClassifyNodes w) => w.Guarded ? StillRunning(w.JobId, Path.GetDirectoryName(w.OutDir!.TrimEnd('/'))!) : null;

    public static string? Check(TileAssignment w, DataRoots roots)
    {
        if (CheckOutDir(w.JobId, w.OutDir, roots) is { } bad) return bad;
        var manifest = Path.Combine(WorkDir(w.OutDir!, w.JobId), ManifestFile);
        return Path.GetFullPath(w.ManifestPath) == manifest ? null : $"manifest {w.ManifestPath} is not the job's ({manifest})";
    }

    public static string? Check(PaintAssignment w, DataRoots roots)
    {
        if (CheckOutDir(w.JobId, w.OutDir, roots) is { } bad) return bad;
        string mask = Path.Combine(w.OutDir!, MaskFile), overlay = Path.Combine(w.OutDir!, OverlayFile);
        if (w.MaskPath != mask || w.OverlayPath != overlay) return $"it names {w.MaskPath} and {w.OverlayPath}; a paint job writes only {mask}, {overlay}, {ProbabilityMapFile} and the objects file";
        if ((ObjectExporter.Validate(w.Objects) ?? ObjectExporter.ValidateSimplify(w.Simplify)) is { } badObjects) return badObjects;
        if (w.Page < 0) return $"page {w.Page}";
        foreach (var (p, what) in new[] { (w.NodeMap.Path, "node map"), (w.Classes.Path, "node classes"), (w.Probs?.Path, "node probabilities"), (w.Refine?.Path, "refinement") })
            if (p is not null && !SafePaths.IsWithin(Path.GetFullPath(p), w.OutDir!)) return $"{what} {p} is not in the job's folder {w.OutDir}";
        return CheckInput(w.ImagePath, "image", roots);
    }

    public static string? Check(ClassifyNodes w, DataRoots roots)
    {
        if (CheckOutDir(w.JobId, w.OutDir, roots) is { } bad) return bad;
        var classes = Path.Combine(w.OutDir!, ClassesFile);
        if (w.ClassesPath != classes) return $"it names {w.ClassesPath}; node classes are written only to {classes}";
        if (!SafePaths.IsWithin(Path.GetFullPath(w.Graph.Path), w.OutDir!)) return $"graph {w.Graph.Path} is not in the job's folder {w.OutDir}";
        return CheckInput(w.ModelPath, "model", roots);
    }

    public static string? Check(TrainModel w, DataRoots roots)
    {
        if (CheckOutDir(w.JobId, w.Spec.OutDir, roots) is { } bad) return bad;
        foreach (var g in w.Spec.Graphs) if (CheckInput(g, "graph", roots) is { } why) return why;
        return null;
    }
}
