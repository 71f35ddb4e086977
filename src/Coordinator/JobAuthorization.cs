using ActorSeg.Core.IO;
using ActorSeg.Messages;

namespace ActorSeg.Coordinator;

/// <summary>
/// What jobs a coordinator accepts, whatever door they came in by (HTTP, cluster client, batch, training).
/// <paramref name="Roots"/>: the folders every input and output must lie in. <paramref name="RequireRoots"/>: without
/// roots, refuse every job (a node reachable from the network) instead of allowing every path (a laptop).
/// </summary>
public sealed record JobPolicy(DataRoots Roots, bool RequireRoots)
{
    /// <summary>Every absolute path allowed (single-process and loopback-only clusters without data roots).</summary>
    public static JobPolicy Open { get; } = new(new DataRoots([]), false);
}

/// <summary>Where an open job writes: its whole output folder (graph and segmentation jobs), or only files directly in it (training).</summary>
public sealed record OutputFootprint(string JobId, string OutDir, bool WholeFolder);

/// <summary>A job that may run, with every path made canonical (real, symlink-free), or the refusal to send back.</summary>
public readonly record struct Checked<T>(T? Spec, JobRefused? Refused) where T : class;

/// <summary>
/// The coordinator's admission check, as plain functions: job ids, data roots, and outputs that may not overlap the
/// job's own inputs or another open job's output. Paths come back canonical, so what is journaled is what was checked
/// and a symbolic link planted later along a path is caught where the file is opened (<see cref="SafePaths.CheckUnchanged"/>).
/// </summary>
public static class JobAuthorization
{
    private static string? RequestProblem(GraphJobSpec spec)
    {
        try { return Core.Pipeline.GraphJob.RequestProblem(GraphCoordinatorActor.ToRequest(spec)); }
        catch (ArgumentException e) { return e.Message; } // a mask mode that is neither value, …
    }

    /// <summary>The files a training job writes in its model folder.</summary>
    public static readonly string[] TrainingOutputs = ["best.model", "last.model", "curves.csv", "split.json", "train.json"];

    public static Checked<GraphJobSpec> Check(string jobId, GraphJobSpec spec, JobPolicy policy, IEnumerable<OutputFootprint> open) =>
        Admit(jobId, policy, open, ObjectExporter.Validate(spec.Objects) ?? ObjectExporter.ValidateSimplify(spec.Simplify)
            ?? ((spec.ModelFeatures || spec.ModelSpacing) && spec.ModelPath is null ? "the job asks for its model's features or seed spacing, but names no model" : null)
            // the settings that need no image (spacing, segments, halo, SLIC's parameters, k, series, …), before any folder is made
            ?? RequestProblem(spec), () => spec with
        {
            ImagePath = Place(spec.ImagePath, "image", policy),
            MaskPath = spec.MaskPath is null ? null : Place(spec.MaskPath, "mask", policy),
            ModelPath = spec.ModelPath is null ? null : Place(spec.ModelPath, "model", policy),
            // a tissue mask is an input like the image: inside the roots, made canonical
            Tissue = spec.Tissue is null or "auto" or "none" ? spec.Tissue : Place(spec.Tissue, "tissue mask", policy),
            OutDir = Place(spec.OutDir, "output folder", policy),
        }, c =>
        {
            foreach (var (input, what) in new[] { (c.ImagePath, "image"), (c.MaskPath, "mask"), (c.ModelPath, "model"), (c.Tissue is null or "auto" or "none" ? null : c.Tissue, "tissue mask") })
                if (input is not null && SafePaths.IsWithin(input, c.OutDir))
                    return $"output folder {c.OutDir} contains the job's {what} {input}: the job could overwrite its own input";
            return null;
        }, c => new OutputFootprint(jobId, c.OutDir, true), "output folder");

    public static Checked<TrainJobSpec> Check(string jobId, TrainJobSpec spec, JobPolicy policy, IEnumerable<OutputFootprint> open) =>
        Admit(jobId, policy, open, spec.Graphs.Length == 0 ? "no graphs to train on" : spec.RefineProblem(), () => spec with
            {
                Graphs = spec.Graphs.Select(g => Place(g, "graph", policy)).ToArray(),
                OutDir = Place(spec.OutDir, "model folder", policy),
            }, c =>
            {
                var outputs = TrainingOutputs.Select(n => Path.Combine(c.OutDir, n)).ToHashSet();
                return c.Graphs.FirstOrDefault(outputs.Contains) is { } clash ? $"the graph {clash} is one of the files the training job writes" : null;
            }, c => new OutputFootprint(jobId, c.OutDir, false), "model folder");

    /// <summary>Most slides in one batch (the batch travels in one message of at most 4 MiB).</summary>
    public const int MaxSlidesPerBatch = 2_000;

    /// <summary>Most slides of one batch in flight at once.</summary>
    public const int MaxParallel = 256;

    /// <summary>
    /// A batch: its id (a job id of at most <see cref="JobIds.MaxBatchIdLength"/> characters), slide names usable as folder
    /// names and unique, each slide's folder BATCH_OUT/slides/NAME, and each slide admitted as its own graph job would be
    /// (canonical paths inside the roots, outputs clear of its inputs); no input may lie inside the batch's folder, and
    /// the folder may not overlap another open job's or batch's output (<paramref name="open"/>, this batch's own slide
    /// jobs aside). The slides' folders are derived, never taken on trust: a folder that resolves elsewhere (a symbolic
    /// link at slides/ or slides/NAME) is refused.
    /// </summary>
    public static Checked<BatchSpec> Check(string batchId, BatchSpec spec, JobPolicy policy, IEnumerable<OutputFootprint> open)
    {
        JobRefused Refuse(string code, string why) => new(batchId, code, why);
        if (batchId is { Length: > JobIds.MaxBatchIdLength }) return new(null, Refuse(RefusalCodes.Invalid, $"batch id is {batchId.Length} characters long (at most {JobIds.MaxBatchIdLength})"));
        var names = new HashSet<string>(StringComparer.Ordinal);
        string? invalid = string.IsNullOrEmpty(spec.OutDir) || !Path.IsPathFullyQualified(spec.OutDir) ? $"the batch folder '{spec.OutDir}' must be an absolute path"
            : spec.Slides is not { Length: > 0 } ? "a batch needs at least one slide"
            : spec.Slides.Length > MaxSlidesPerBatch ? $"{spec.Slides.Length} slides in one batch, the limit is {MaxSlidesPerBatch}: split it into several batches"
            : spec.Parallel is < 1 or > MaxParallel ? $"parallel must be between 1 and {MaxParallel} slides in flight (got {spec.Parallel})"
            : spec.Slides.Select(s => JobIds.InvalidSlideName(s.Name)).FirstOrDefault(e => e is not null)
              ?? spec.Slides.Where(s => !names.Add(s.Name)).Select(s => $"two slides are named '{s.Name}' (their folders would collide)").FirstOrDefault()
              ?? spec.Slides.Where(s => s.Spec is null || string.IsNullOrEmpty(s.Spec.OutDir) || !Path.IsPathFullyQualified(s.Spec.OutDir)
                      || Path.GetFullPath(s.Spec.OutDir) != Path.GetFullPath(Path.Combine(spec.OutDir, "slides", s.Name)))
                  .Select(s => $"slide '{s.Name}' must write to the batch's folder slides/{s.Name} (got {s.Spec?.OutDir})").FirstOrDefault();
        var slideIds = spec.Slides?.Select(s => JobIds.ForSlide(batchId, s.Name)).ToHashSet() ?? [];
        var folder = Admit(batchId, policy, open.Where(f => !slideIds.Contains(f.JobId)), invalid, () => Place(spec.OutDir, "batch folder", policy),
            _ => null, o => new OutputFootprint(batchId, o, true), "batch folder");
        if (folder.Refused is { } r) return new(null, r);
        var outDir = folder.Spec!;
        var slides = new BatchSlideSpec[spec.Slides.Length];
        for (int i = 0; i < slides.Length; i++)
        {
            var s = spec.Slides[i];
            var want = Path.Combine(outDir, "slides", s.Name);
            var c = Check(JobIds.ForSlide(batchId, s.Name), s.Spec with { OutDir = want }, policy, []);
            if (c.Refused is { } sr) return new(null, Refuse(sr.Code, $"slide '{s.Name}': {sr.Reason}"));
            var cs = c.Spec!;
            if (cs.OutDir != want) return new(null, Refuse(RefusalCodes.Forbidden, $"slide '{s.Name}': its folder {want} resolves to {cs.OutDir} (a symbolic link)"));
            foreach (var (input, what) in new[] { (cs.ImagePath, "image"), (cs.MaskPath, "mask"), (cs.ModelPath, "model"), (cs.Tissue is null or "auto" or "none" ? null : cs.Tissue, "tissue mask") })
                if (input is not null && SafePaths.IsWithin(input, outDir))
                    return new(null, Refuse(RefusalCodes.Conflict, $"batch folder {outDir} contains slide '{s.Name}''s {what} {input}: the batch could overwrite its own input"));
            slides[i] = s with { Spec = cs };
        }
        return new(spec with { OutDir = outDir, Slides = slides }, null);
    }

    /// <summary>The admission steps every kind of job goes through: a usable id (job ids name work folders), a coordinator
    /// that takes jobs at all, a well-formed request (<paramref name="invalid"/>: what is wrong with it, or null), canonical
    /// paths inside the roots (<paramref name="place"/>), outputs clear of the job's inputs (<paramref name="ownClash"/>)
    /// and of every other open job's outputs.</summary>
    private static Checked<T> Admit<T>(string jobId, JobPolicy policy, IEnumerable<OutputFootprint> open, string? invalid, Func<T> place, Func<T, string?> ownClash,
        Func<T, OutputFootprint> footprint, string what) where T : class
    {
        JobRefused Refuse(string code, string why) => new(jobId, code, why);
        if (AssignmentPaths.InvalidJobId(jobId) is { } badId) return new(null, Refuse(RefusalCodes.Invalid, badId));
        if (RefuseAll(policy) is { } all) return new(null, Refuse(RefusalCodes.Forbidden, all));
        if (invalid is not null) return new(null, Refuse(RefusalCodes.Invalid, invalid));
        T c;
        try { c = place(); }
        catch (UnauthorizedAccessException e) { return new(null, Refuse(RefusalCodes.Forbidden, e.Message)); }
        catch (Exception e) when (e is ArgumentException or IOException) { return new(null, Refuse(RefusalCodes.Invalid, e.Message)); }
        if (ownClash(c) is { } clash) return new(null, Refuse(RefusalCodes.Conflict, clash));
        var mine = footprint(c);
        // a file where the output folder should be: refused now, not at prepare after a 202
        if (File.Exists(mine.OutDir)) return new(null, Refuse(RefusalCodes.Invalid, $"{what} {mine.OutDir} is a file, not a folder"));
        foreach (var f in open)
            if (f.JobId != jobId && Overlap(mine, f))
                return new(null, Refuse(RefusalCodes.Conflict, $"{what} {mine.OutDir} overlaps {f.OutDir}, the output of open job {f.JobId}"));
        return new(c, null);
    }

    /// <summary>Two open jobs may not write the same files: a whole-folder output may hold neither another output nor
    /// lie inside one; a training job's files (directly in its folder) clash only with a job writing that folder.</summary>
    public static bool Overlap(OutputFootprint a, OutputFootprint b)
    {
        if (a.WholeFolder && b.WholeFolder) return SafePaths.IsWithin(a.OutDir, b.OutDir) || SafePaths.IsWithin(b.OutDir, a.OutDir);
        if (!a.WholeFolder && !b.WholeFolder) return a.OutDir == b.OutDir;
        var (whole, files) = a.WholeFolder ? (a, b) : (b, a);
        return SafePaths.IsWithin(files.OutDir, whole.OutDir);
    }

    private static string? RefuseAll(JobPolicy p) => p.RequireRoots && !p.Roots.Any
        ? "this coordinator is reachable from the network and has no data roots (ACTORSEG_DATAROOTS): it accepts no jobs"
        : null;

    private static string Place(string path, string what, JobPolicy p) =>
        p.Roots.Any ? p.Roots.Confine(path, what) : SafePaths.Canonical(path, what);
}
