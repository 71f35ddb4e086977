using MessagePack;

namespace ActorSeg.Messages;

// The messages that move between ActorSeg's roles, and the coordinator's journal events. They never carry pixels
// or large arrays: images, partial graphs, graphs and masks live in shared storage (a result store) and messages
// carry references with checksums.
//
// Wire format: MessagePack with integer keys (ActorSegSerializer). Schema rules that keep nodes of neighbouring
// versions talking: never reuse or renumber a key; add fields only at the end, nullable (or where 0/false means
// "absent"), because a field missing from an older sender arrives as null/0; readers ignore keys they do not know.
// A breaking change bumps ProtocolVersion.Major; workers and trainers announce their version and a coordinator of
// another major version refuses them with a clear log line instead of exchanging misunderstood messages.

/// <summary>Everything that crosses process boundaries or goes to the journal; bound to the hosts' MessagePack serializer (ActorSeg.Cli.ActorSegSerializer).</summary>
public interface IActorSegMessage;

public static class JobIds
{
    /// <summary>A new job id: sortable by time, unique (yyyyMMdd-HHmmss-xxxxxx).</summary>
    public static string New() => DateTime.UtcNow.ToString("yyyyMMdd-HHmmss") + "-" + Guid.NewGuid().ToString("N")[..6];

    /// <summary>Batch ids are job ids of at most this many characters (a slide's job id is the batch id and the slide's name).</summary>
    public const int MaxBatchIdLength = 64;

    /// <summary>
    /// The job id of one slide of a batch: the batch id, '-', the slide's name with anything but letters, digits, '-', '_'
    /// and '.' replaced (and at most 48 characters of it); where that changed the name, a hash of the whole name follows,
    /// so two names that read alike ("a b", "a_b") never share a job. The same batch and slide always give the same id:
    /// that is how a second client, or the coordinator after a restart, finds the slide's job instead of starting another.
    /// </summary>
    public static string ForSlide(string batchId, string slideName)
    {
        var plain = new string(slideName.Select(ch => char.IsAsciiLetterOrDigit(ch) || ch is '-' or '_' or '.' ? ch : '_').ToArray()).TrimStart('.');
        while (plain.Contains("..", StringComparison.Ordinal)) plain = plain.Replace("..", "._", StringComparison.Ordinal);
        var part = plain.Length > 48 ? plain[..48] : plain;
        if (part != slideName) part = (part.Length > 0 ? part + "-" : "") + Fnv1a(slideName).ToString("x8");
        return batchId + "-" + part;
    }

    /// <summary>What is wrong with a slide's name (it names the folder OUT/slides/NAME), or null.</summary>
    public static string? InvalidSlideName(string? name)
    {
        if (string.IsNullOrEmpty(name)) return "a slide needs a name";
        if (name.Length > 200) return $"slide name '{name[..40]}…' is {name.Length} characters long (at most 200)";
        if (name is "." or ".." || name.Any(c => c is '/' or '\\' || char.IsControl(c)))
            return $"slide name '{name}' is not usable: it names a folder (no '/', '\\' or control characters, not '.' or '..')";
        return null;
    }

    private static uint Fnv1a(string s)
    {
        uint h = 2166136261;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(s)) { h ^= b; h *= 16777619; }
        return h;
    }
}

public static class ProtocolVersion
{
    // 2: assignments name the job's output folder; workers derive their paths from it
    // 3: workers write their tile label rasters run-length coded, which a coordinator of major 2 cannot read
    public const int Major = 3;
    // minor 1: a job's series (GraphJobSpec key 25, PaintAssignment key 14: a CZI's scene, a LIF's image; null, as from a
    // peer of minor 0 or a journal written before, the default image)
    // minor 2: a job's features and seed spacing may be its model's (GraphJobSpec keys 26, 27: the coordinator reads them
    // from the model file at prepare; a coordinator of minor 1 ignores them and uses the spec's Features and Spacing)
    // minor 3: a classification's warnings (NodesClassified key 10, e.g. an image whose grey levels are unlike the model's
    // training images), kept in segment.json and a batch's summary; absent from a peer of minor 2 or less: none
    public const int Minor = 3;
    public static string Text => $"{Major}.{Minor}";
}

/// <summary>A file in the result store: where it is, how long it is and its checksum (XxHash3-64, hex).</summary>
[MessagePackObject]
public sealed record ResultRef([property: Key(0)] string Path, [property: Key(1)] long Length, [property: Key(2)] string Checksum) : IActorSegMessage;

/// <summary>What a job is asked to do (flat, primitive fields so it can cross the network).
/// With <paramref name="ModelPath"/> the job also segments: node classes from the model, painted into OutDir/mask.tif.
/// <paramref name="Objects"/>: the mask's regions as QuPath objects, "geojson" (OutDir/objects.geojson), "geojson.gz" or "none";
/// <paramref name="Simplify"/>: their simplification tolerance in level-0 pixels (0: exact pixel edges).
/// <paramref name="ModelFeatures"/>, <paramref name="ModelSpacing"/>: the graph's features (seed spacing) are the model's,
/// read by the coordinator from <paramref name="ModelPath"/> at prepare in place of <paramref name="Features"/>
/// (<paramref name="Spacing"/>): sent by a client that cannot read the model itself. With a model, a job whose features
/// are not the model's fails at prepare, before any tile.</summary>
[MessagePackObject]
public sealed record GraphJobSpec(
    [property: Key(0)] string ImagePath,
    [property: Key(1)] string? MaskPath,
    [property: Key(2)] string OutDir,
    [property: Key(3)] int Page = 0,
    [property: Key(4)] string MaskMode = "binary",
    [property: Key(5)] int? IgnoreValue = null,
    [property: Key(6)] int? Segments = null,
    [property: Key(7)] double Spacing = 40.96,
    [property: Key(8)] double Compactness = 0.1,
    [property: Key(9)] double Sigma = 1.0,
    [property: Key(10)] int Iterations = 10,
    [property: Key(11)] double WindowFactor = 1.0,
    [property: Key(12)] double MinSizeFactor = 0.1,
    [property: Key(13)] int TileSize = 2048,
    [property: Key(14)] int? Halo = null,
    [property: Key(15)] int K = 10,
    [property: Key(16)] bool WriteNodeMap = true,
    [property: Key(17)] bool KeepWork = false,
    [property: Key(18)] string Features = "absolute", // the best recipe's (GpuTrainer.Recipes.Best)
    [property: Key(19)] string? ModelPath = null,
    [property: Key(20)] string? Device = null,
    [property: Key(21)] string? Tissue = null,
    [property: Key(22)] string Objects = "geojson",
    [property: Key(23)] double Simplify = 0,
    [property: Key(24)] bool Refine = true,
    [property: Key(25)] int? Series = null,
    [property: Key(26)] bool ModelFeatures = false,
    [property: Key(27)] bool ModelSpacing = false) : IActorSegMessage;

// ---- client ↔ coordinator -------------------------------------------------------------------------------------

/// <summary>Client → coordinator: run a job. Idempotent: re-sending a known job id attaches the sender as a watcher
/// (clients re-send it as a heartbeat, which is how they find a coordinator that restarted or moved).</summary>
[MessagePackObject]
public sealed record SubmitGraphJob([property: Key(0)] string JobId, [property: Key(1)] GraphJobSpec Spec,
    [property: Key(2)] bool MustBeNew = false) : IActorSegMessage;

/// <summary>Coordinator → client: the job was checked and journaled (it will run, whatever happens to the coordinator).</summary>
[MessagePackObject]
public sealed record JobReceived([property: Key(0)] string JobId) : IActorSegMessage;

/// <summary>Coordinator → client: the job was refused before anything was recorded. <paramref name="Code"/> is one of
/// <see cref="RefusalCodes"/>; <paramref name="Reason"/> says what is wrong, naming the path or the limit.</summary>
[MessagePackObject]
public sealed record JobRefused([property: Key(0)] string JobId, [property: Key(1)] string Code, [property: Key(2)] string Reason) : IActorSegMessage;

public static class RefusalCodes
{
    /// <summary>The request is malformed (bad id, relative path, impossible parameters): HTTP 400.</summary>
    public const string Invalid = "invalid";
    /// <summary>A path outside the data roots, or jobs refused on this node altogether: HTTP 403.</summary>
    public const string Forbidden = "forbidden";
    /// <summary>The id is taken, or the output overlaps an input or another open job's output: HTTP 409.</summary>
    public const string Conflict = "conflict";
}

/// <summary>Coordinator → client: the job's inputs were read and its tiles planned.</summary>
[MessagePackObject]
public sealed record GraphJobAccepted(
    [property: Key(0)] string JobId, [property: Key(1)] string ImageId, [property: Key(2)] int Width, [property: Key(3)] int Height,
    [property: Key(4)] int Channels, [property: Key(5)] int Tiles, [property: Key(6)] int Halo, [property: Key(7)] int Seeds,
    [property: Key(8)] int TilesAlreadyDone = 0) : IActorSegMessage;

/// <summary>Coordinator → client: how far the job has come.</summary>
[MessagePackObject]
public sealed record GraphJobProgress(
    [property: Key(0)] string JobId, [property: Key(1)] string Phase, [property: Key(2)] int TilesDone, [property: Key(3)] int TilesTotal,
    [property: Key(4)] double MegapixelsPerSecond, [property: Key(5)] int InFlight = 0, [property: Key(6)] int Queued = 0,
    [property: Key(7)] int Retries = 0) : IActorSegMessage;

/// <summary>Coordinator → client: the job is done (graph written; with a model, the mask painted too).</summary>
[MessagePackObject]
public sealed record GraphJobCompleted(
    [property: Key(0)] string JobId, [property: Key(1)] string OutDir, [property: Key(2)] int Nodes, [property: Key(3)] int AdjacencyEdges,
    [property: Key(4)] int KnnEdges, [property: Key(5)] double PrepareSeconds, [property: Key(6)] double TilesSeconds,
    [property: Key(7)] double StitchSeconds, [property: Key(8)] double WriteSeconds, [property: Key(9)] int Retries,
    [property: Key(10)] string? MaskPath = null, [property: Key(11)] long[]? PixelsPerClass = null,
    [property: Key(12)] int TilesRecovered = 0, [property: Key(13)] double ClassifySeconds = 0, [property: Key(14)] double PaintSeconds = 0,
    [property: Key(15)] double? TissueFraction = null, [property: Key(16)] int TilesSkipped = 0) : IActorSegMessage;

/// <summary>Coordinator → client: the job failed; nothing that looks complete was left behind.</summary>
[MessagePackObject]
public sealed record GraphJobFailed([property: Key(0)] string JobId, [property: Key(1)] string Error) : IActorSegMessage;

// ---- batches: one journaled parent job holding its slides -----------------------------------------------------

/// <summary>One slide of a batch: its name (unique in the batch; its folder is BATCH_OUT/slides/NAME, its job id
/// <see cref="JobIds.ForSlide"/>), the graph job that makes it, and the split the input gave it (only reported).</summary>
[MessagePackObject]
public sealed record BatchSlideSpec([property: Key(0)] string Name, [property: Key(1)] GraphJobSpec Spec, [property: Key(2)] string? Split = null) : IActorSegMessage;

/// <summary>A row of the input that does not run, with the reason: <paramref name="Status"/> "rejected" (a missing file,
/// a duplicate) or "failed" (an image that cannot be read). Part of the batch so every client reports the same rows.</summary>
[MessagePackObject]
public sealed record BatchSlideRejected([property: Key(0)] string Name, [property: Key(1)] string Image, [property: Key(2)] string? Mask,
    [property: Key(3)] string? Split, [property: Key(4)] string Status, [property: Key(5)] string Reason) : IActorSegMessage;

/// <summary>What a batch is: its folder (summary.csv, report.html, slides/NAME/), its slides and the rows that do not run.
/// <paramref name="Parallel"/>: slides in flight at once (not part of what the batch is: a client attaching with another
/// value changes nothing). <paramref name="Digest"/>: the submitting client's hash of everything the results depend on
/// (inputs' sizes, times and contents, the model, every parameter); two definitions are the same batch only when their
/// digests are equal too.</summary>
[MessagePackObject]
public sealed record BatchSpec([property: Key(0)] string OutDir, [property: Key(1)] BatchSlideSpec[] Slides, [property: Key(2)] int Parallel = 2,
    [property: Key(3)] BatchSlideRejected[]? Rejected = null, [property: Key(4)] string? Digest = null) : IActorSegMessage
{
    /// <summary>The same batch: folder, digest, slides (name, job, split) and rejected rows equal, in order; <see cref="Parallel"/> aside.</summary>
    public bool SameAs(BatchSpec o) => OutDir == o.OutDir && Digest == o.Digest && Slides.SequenceEqual(o.Slides)
        && (Rejected ?? []).SequenceEqual(o.Rejected ?? []);
}

/// <summary>Client → coordinator: run a batch. The coordinator journals it and runs its slides itself, at most
/// <c>Parallel</c> at a time, each as a graph job with the id <see cref="JobIds.ForSlide"/>. Idempotent: the same id with
/// the same definition attaches the sender (a second client, a client started again, a retried Kubernetes Job); another
/// definition under that id is refused (conflict). <paramref name="AlreadyDone"/>: slides the client found finished by
/// an earlier run (a slide.json that matches), reported as skipped; read only when the batch is new.
/// <paramref name="Detached"/>: answer <see cref="BatchReceived"/> only; the sender is not told the batch's progress.</summary>
[MessagePackObject]
public sealed record SubmitBatch([property: Key(0)] string BatchId, [property: Key(1)] BatchSpec Spec, [property: Key(2)] string[]? AlreadyDone = null,
    [property: Key(3)] bool Detached = false) : IActorSegMessage;

/// <summary>Client → coordinator: follow a batch already submitted (the client's heartbeat once its batch is received,
/// and how a client attaches by id alone). An unknown id is answered with <see cref="JobRefused"/> (invalid).</summary>
[MessagePackObject]
public sealed record WatchBatch([property: Key(0)] string BatchId) : IActorSegMessage;

/// <summary>Coordinator → client: the batch is journaled and runs, whatever happens to the client or the coordinator.
/// <paramref name="Spec"/>: the batch as recorded (paths canonical). <paramref name="Existing"/>: it was submitted before.</summary>
[MessagePackObject]
public sealed record BatchReceived([property: Key(0)] string BatchId, [property: Key(1)] BatchSpec Spec, [property: Key(2)] bool Existing) : IActorSegMessage;

/// <summary>How one slide of a batch ended: <paramref name="Status"/> "done", "failed" (with <paramref name="Error"/>) or
/// "skipped" (finished by an earlier run); for a done slide its nodes, wall seconds from submission to end, the painted
/// mask and what tissue detection reported.</summary>
[MessagePackObject]
public sealed record BatchSlideOutcome([property: Key(0)] string Name, [property: Key(1)] string JobId, [property: Key(2)] string Status,
    [property: Key(3)] string? Error = null, [property: Key(4)] int Nodes = 0, [property: Key(5)] double Seconds = 0, [property: Key(6)] string? MaskPath = null,
    [property: Key(7)] double? TissueFraction = null, [property: Key(8)] int TilesSkipped = 0) : IActorSegMessage;

/// <summary>Coordinator → client: a slide of the batch ended (sent again for every ended slide to a client that attaches).</summary>
[MessagePackObject]
public sealed record BatchSlideFinished([property: Key(0)] string BatchId, [property: Key(1)] BatchSlideOutcome Outcome) : IActorSegMessage;

/// <summary>Coordinator → client: how far the batch has come (every few seconds while it runs).</summary>
[MessagePackObject]
public sealed record BatchProgress([property: Key(0)] string BatchId, [property: Key(1)] int Total, [property: Key(2)] int Done, [property: Key(3)] int Failed,
    [property: Key(4)] int Skipped, [property: Key(5)] int Running) : IActorSegMessage;

/// <summary>Coordinator → client: every slide of the batch has ended; <paramref name="Outcomes"/> holds them all.</summary>
[MessagePackObject]
public sealed record BatchCompleted([property: Key(0)] string BatchId, [property: Key(1)] BatchSlideOutcome[] Outcomes) : IActorSegMessage;

// ---- tile workers ---------------------------------------------------------------------------------------------

/// <summary>Worker → coordinator: I can take <paramref name="FreeSlots"/> more work items (pull-based distribution).</summary>
[MessagePackObject]
public sealed record RequestWork([property: Key(0)] int FreeSlots, [property: Key(1)] int ProtocolMajor = ProtocolVersion.Major,
    [property: Key(2)] string? Node = null) : IActorSegMessage;

/// <summary>Coordinator → worker (or anyone announcing an incompatible version): refused, with the reason.</summary>
[MessagePackObject]
public sealed record WorkRefused([property: Key(0)] string Reason) : IActorSegMessage;

/// <summary>Coordinator → worker: process one tile of a job, described by the job manifest at <paramref name="ManifestPath"/>.
/// <paramref name="OutDir"/> is the job's graph folder: the worker derives the work folder (OutDir/.work-JOB), the
/// manifest and every result path from it and refuses an assignment whose manifest lies anywhere else.</summary>
[MessagePackObject]
public sealed record TileAssignment([property: Key(0)] string JobId, [property: Key(1)] string ImageId, [property: Key(2)] string ManifestPath,
    [property: Key(3)] int TileId, [property: Key(4)] int Attempt, [property: Key(5)] string? OutDir = null) : IActorSegMessage;

/// <summary>Worker → coordinator: a tile's partial graph and label raster are in the result store.</summary>
[MessagePackObject]
public sealed record TileCompleted(
    [property: Key(0)] string JobId, [property: Key(1)] int TileId, [property: Key(2)] int Attempt,
    [property: Key(3)] ResultRef Result, [property: Key(4)] ResultRef Labels,
    [property: Key(5)] int Fragments, [property: Key(6)] int ShippedFragments, [property: Key(7)] long Pixels, [property: Key(8)] double Seconds) : IActorSegMessage;

/// <summary>Worker → coordinator: a tile failed. <paramref name="Permanent"/> when retrying cannot help (bad input).</summary>
[MessagePackObject]
public sealed record TileFailed([property: Key(0)] string JobId, [property: Key(1)] int TileId, [property: Key(2)] int Attempt,
    [property: Key(3)] string Error, [property: Key(4)] bool Permanent) : IActorSegMessage;

/// <summary>Coordinator → worker: this work item missed its deadline and was given to another worker: stop reporting it,
/// and take new work (a read that hangs keeps its thread, but no longer its slot).</summary>
[MessagePackObject]
public sealed record AbandonWork([property: Key(0)] string JobId, [property: Key(1)] int TileId, [property: Key(2)] int Attempt) : IActorSegMessage;

/// <summary>Worker → coordinator: I am leaving (coordinated shutdown) and give this unfinished tile back; not a failure.</summary>
[MessagePackObject]
public sealed record TileHandedBack([property: Key(0)] string JobId, [property: Key(1)] int TileId, [property: Key(2)] int Attempt) : IActorSegMessage;

/// <summary>Coordinator → worker: paint the node classes back into a full-size mask (and an overlay preview). The worker
/// writes OutDir/mask.tif, OutDir/overlay.png and OutDir/objects.geojson[.gz] only; a message naming other paths is refused.
/// <paramref name="Probs"/>: the nodes' class probabilities (probs.f32, N×C float32) for the objects' mean probability;
/// <paramref name="Objects"/>: null (a coordinator that predates objects) writes objects.geojson, as the job's default does.</summary>
[MessagePackObject]
public sealed record PaintAssignment(
    [property: Key(0)] string JobId, [property: Key(1)] string ImageId, [property: Key(2)] string ImagePath,
    [property: Key(3)] ResultRef NodeMap, [property: Key(4)] ResultRef Classes, [property: Key(5)] string MaskPath,
    [property: Key(6)] string OverlayPath, [property: Key(7)] int Attempt, [property: Key(8)] string? OutDir = null,
    [property: Key(9)] ResultRef? Probs = null, [property: Key(10)] string? Objects = null, [property: Key(11)] double Simplify = 0,
    [property: Key(12)] ResultRef? Refine = null, [property: Key(13)] int Page = 0, [property: Key(14)] int? Series = null,
    [property: Key(15)] bool Guarded = false) : IActorSegMessage;

[MessagePackObject]
public sealed record PaintCompleted([property: Key(0)] string JobId, [property: Key(1)] int Attempt, [property: Key(2)] ResultRef Mask,
    [property: Key(3)] double Seconds, [property: Key(4)] long[]? PixelsPerClass = null, [property: Key(5)] long RefinedPixels = 0) : IActorSegMessage;

[MessagePackObject]
public sealed record PaintFailed([property: Key(0)] string JobId, [property: Key(1)] int Attempt, [property: Key(2)] string Error,
    [property: Key(3)] bool Permanent) : IActorSegMessage;

// ---- gpu trainer ----------------------------------------------------------------------------------------------

/// <summary>Trainer → coordinator: I can classify graphs (sent on start and again while idle).</summary>
[MessagePackObject]
public sealed record TrainerReady([property: Key(0)] int ProtocolMajor, [property: Key(1)] string Device, [property: Key(2)] string? Node = null) : IActorSegMessage;

/// <summary>Coordinator → trainer: run the model over a stitched graph; write one class id (byte) per node to
/// OutDir/classes.u8 and the class probabilities (N×C float32, little-endian) to OutDir/probs.f32, the same as a NumPy
/// array to OutDir/probs.npy (OutDir: the job's graph folder, which holds the graph).</summary>
[MessagePackObject]
public sealed record ClassifyNodes(
    [property: Key(0)] string JobId, [property: Key(1)] string ImageId, [property: Key(2)] ResultRef Graph,
    [property: Key(3)] string ModelPath, [property: Key(4)] string ClassesPath, [property: Key(5)] string? Device,
    [property: Key(6)] int Attempt, [property: Key(7)] string? OutDir = null, [property: Key(8)] bool Refine = true,
    [property: Key(9)] bool Guarded = false) : IActorSegMessage;

[MessagePackObject]
public sealed record NodesClassified(
    [property: Key(0)] string JobId, [property: Key(1)] int Attempt, [property: Key(2)] ResultRef Classes, [property: Key(3)] int Nodes,
    [property: Key(4)] long[] PixelsPerClass, [property: Key(5)] double Seconds, [property: Key(6)] string Device,
    [property: Key(7)] ResultRef? Probs = null, [property: Key(8)] double[]? MeanProbabilityPerClass = null,
    [property: Key(9)] ResultRef? Refine = null, [property: Key(10)] string[]? Warnings = null) : IActorSegMessage;

[MessagePackObject]
public sealed record ClassifyFailed([property: Key(0)] string JobId, [property: Key(1)] int Attempt, [property: Key(2)] string Error,
    [property: Key(3)] bool Permanent) : IActorSegMessage;

// ---- status ---------------------------------------------------------------------------------------------------

/// <summary>Anyone → coordinator: what jobs do you know?</summary>
[MessagePackObject]
public sealed record GetStatus([property: Key(0)] string? JobId = null) : IActorSegMessage;

[MessagePackObject]
public sealed record JobStatus(
    [property: Key(0)] string JobId, [property: Key(1)] string Phase, [property: Key(2)] int TilesDone, [property: Key(3)] int TilesTotal,
    [property: Key(4)] int InFlight, [property: Key(5)] int Retries, [property: Key(6)] string? Error, [property: Key(7)] string OutDir) : IActorSegMessage;

[MessagePackObject]
public sealed record StatusReport([property: Key(0)] JobStatus[] Jobs, [property: Key(1)] int Workers, [property: Key(2)] int Trainers,
    [property: Key(3)] NodeStatus[]? Nodes = null, [property: Key(4)] string[]? RecentErrors = null, [property: Key(5)] BatchStatus[]? Batches = null,
    [property: Key(6)] int EndedNotListed = 0) : IActorSegMessage;

/// <summary>A batch as the coordinator sees it: phase "running" or "done", its slides counted by how they stand (pending
/// ones are the rest), and each slide's state when one batch was asked for.</summary>
[MessagePackObject]
public sealed record BatchStatus([property: Key(0)] string BatchId, [property: Key(1)] string Phase, [property: Key(2)] int Total, [property: Key(3)] int Done,
    [property: Key(4)] int Failed, [property: Key(5)] int Skipped, [property: Key(6)] int Running, [property: Key(7)] string OutDir,
    [property: Key(8)] BatchSlideStatus[]? Slides = null) : IActorSegMessage;

/// <summary>One slide of a batch: state "pending", "running" (then <paramref name="Phase"/> and tiles are its job's), "done", "failed" or "skipped".</summary>
[MessagePackObject]
public sealed record BatchSlideStatus([property: Key(0)] string Name, [property: Key(1)] string JobId, [property: Key(2)] string State,
    [property: Key(3)] string? Error = null, [property: Key(4)] string? Phase = null, [property: Key(5)] int TilesDone = 0, [property: Key(6)] int TilesTotal = 0) : IActorSegMessage;

/// <summary>A node as the coordinator sees it: its address, its role (tile-worker or gpu-trainer), its slots and how many are busy.</summary>
[MessagePackObject]
public sealed record NodeStatus([property: Key(0)] string Address, [property: Key(1)] string Role, [property: Key(2)] int Slots, [property: Key(3)] int Busy) : IActorSegMessage;

// ---- training on the cluster ----------------------------------------------------------------------------------

/// <summary>Defaults shared by every door that trains a GNN (the CLI, submit-train, the trainer).</summary>
public static class TrainDefaults
{
    /// <summary>Epochs without a better validation loss before training stops; chosen by the training-settings sweep in
    /// README.md ("The training recipes"), where a shorter patience stopped some seeds early on a noisy validation loss.</summary>
    public const int Patience = 50;
}

/// <summary>What a training job is asked to do: train a GNN on graphs already in the result store (built by graph jobs).</summary>
[MessagePackObject]
public sealed record TrainJobSpec(
    [property: Key(0)] string[] Graphs,
    [property: Key(1)] string OutDir,
    [property: Key(2)] string Conv = "graphconv",
    [property: Key(3)] string Edges = "rag",
    [property: Key(4)] int Layers = 4,
    [property: Key(5)] int Hidden = 64,
    [property: Key(6)] double Dropout = 0.5,
    [property: Key(7)] double LearningRate = 0.01,
    [property: Key(8)] int MaxEpochs = 500,
    [property: Key(9)] int Patience = TrainDefaults.Patience,
    [property: Key(10)] double ValidationFraction = 0.15,
    [property: Key(11)] int Seed = 1,
    [property: Key(12)] string? Device = null,
    [property: Key(13)] string? Classes = null,
    // the boundary refinement (as `actorseg train` has it): skipped when asked; the threshold and the whole-class share,
    // null for the defaults (a job journalled before they existed reads as the defaults)
    [property: Key(14)] bool NoRefine = false,
    [property: Key(15)] double? RefineThreshold = null,
    [property: Key(16)] double? RefineWhole = null) : IActorSegMessage
{
    /// <summary>Why the refinement's settings cannot be used, or null (the ranges of `train`'s options).</summary>
    public string? RefineProblem() =>
        RefineThreshold is { } t && !(t >= 0 && t <= 1) ? $"the refinement threshold must be in [0, 1] (got {t})"
        : RefineWhole is { } l && !(l > 0 && l <= 1) ? $"the refinement's whole-class share must be in (0, 1] (got {l})"
        : null;
}

/// <summary>Client → coordinator: train a model (idempotent like <see cref="SubmitGraphJob"/>).</summary>
[MessagePackObject]
public sealed record SubmitTrainJob([property: Key(0)] string JobId, [property: Key(1)] TrainJobSpec Spec,
    [property: Key(2)] bool MustBeNew = false) : IActorSegMessage;

/// <summary>Coordinator → trainer: train on these graphs, write the model directory.</summary>
[MessagePackObject]
public sealed record TrainModel([property: Key(0)] string JobId, [property: Key(1)] TrainJobSpec Spec, [property: Key(2)] int Attempt) : IActorSegMessage;

/// <summary>Trainer → coordinator: the model is written.</summary>
[MessagePackObject]
public sealed record ModelReady(
    [property: Key(0)] string JobId, [property: Key(1)] int Attempt, [property: Key(2)] ResultRef BestModel, [property: Key(3)] int Epochs,
    [property: Key(4)] int BestEpoch, [property: Key(5)] double BestValidationLoss, [property: Key(6)] double Seconds, [property: Key(7)] string Device,
    [property: Key(8)] double PeakRssMiB) : IActorSegMessage;

[MessagePackObject]
public sealed record TrainFailed([property: Key(0)] string JobId, [property: Key(1)] int Attempt, [property: Key(2)] string Error,
    [property: Key(3)] bool Permanent) : IActorSegMessage;

/// <summary>Coordinator → client: the model is trained.</summary>
[MessagePackObject]
public sealed record TrainJobCompleted(
    [property: Key(0)] string JobId, [property: Key(1)] string BestModel, [property: Key(2)] int Epochs, [property: Key(3)] int BestEpoch,
    [property: Key(4)] double BestValidationLoss, [property: Key(5)] double Seconds, [property: Key(6)] string Device) : IActorSegMessage;
