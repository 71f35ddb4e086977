using MessagePack;

namespace ActorSeg.Messages;

// The coordinator's journal (Akka.Persistence): a job's life as events. Replaying them rebuilds every job, so a
// coordinator that restarts, or the singleton moving to another node, continues without redoing finished work.
// Same schema rules as the protocol (see Protocol.cs).

/// <summary>Marker for journal events and snapshots.</summary>
public interface ICoordinatorEvent : IActorSegMessage;

/// <summary>
/// A journal event that could not be read back: damaged bytes, or a type this build does not know. The serializer
/// hands this to the coordinator's recovery instead of failing it (which would stop every job for good); never
/// written. <see cref="Id"/> is the job, training or batch id salvaged from the event's first field, when there is one;
/// <see cref="KnownType"/> says whether this build knows what such an event records (then only its bytes are lost).
/// </summary>
public sealed record UnreadableEvent(string Manifest, int Length, string Reason, string? Id, bool KnownType = true);

/// <summary>
/// A coordinator snapshot that could not be read back: the serializer hands this to the recovery, which then recovers
/// from the snapshot before it and the events after that (kept for this), instead of failing on every start. Never written.
/// </summary>
public sealed record UnreadableSnapshot(string Reason);

[MessagePackObject]
public sealed record JobSubmitted([property: Key(0)] string JobId, [property: Key(1)] GraphJobSpec Spec, [property: Key(2)] DateTime SubmittedUtc) : ICoordinatorEvent;

[MessagePackObject]
public sealed record JobPlanned(
    [property: Key(0)] string JobId, [property: Key(1)] string ImageId, [property: Key(2)] string ManifestPath, [property: Key(3)] int Tiles,
    [property: Key(4)] long Pixels, [property: Key(5)] double PrepareSeconds,
    // the job's earlier results were set aside in OUT/.previous-JOB as it was prepared (false in a journal written before
    // 2026-12-08): its painter and trainer publish nothing once that folder is gone (the job has ended)
    [property: Key(6)] bool SetAside = false) : ICoordinatorEvent;

[MessagePackObject]
public sealed record TileDone([property: Key(0)] string JobId, [property: Key(1)] int TileId, [property: Key(2)] ResultRef Result,
    [property: Key(3)] ResultRef Labels, [property: Key(4)] long Pixels) : ICoordinatorEvent;

/// <summary>A finished tile's result went missing or failed its checksum: it is to be computed again.</summary>
[MessagePackObject]
public sealed record TileInvalidated([property: Key(0)] string JobId, [property: Key(1)] int TileId, [property: Key(2)] string Reason) : ICoordinatorEvent;

[MessagePackObject]
public sealed record GraphStitched(
    [property: Key(0)] string JobId, [property: Key(1)] ResultRef Graph, [property: Key(2)] ResultRef? NodeMap, [property: Key(3)] int Nodes,
    [property: Key(4)] int AdjacencyEdges, [property: Key(5)] int KnnEdges, [property: Key(6)] double TilesSeconds,
    [property: Key(7)] double StitchSeconds, [property: Key(8)] double WriteSeconds,
    [property: Key(9)] double? TissueFraction = null, [property: Key(10)] int TilesSkipped = 0) : ICoordinatorEvent;

[MessagePackObject]
public sealed record ImageClassified([property: Key(0)] string JobId, [property: Key(1)] ResultRef Classes, [property: Key(2)] long[] PixelsPerClass,
    [property: Key(3)] double Seconds, [property: Key(4)] string Device, [property: Key(5)] ResultRef? Probs = null,
    [property: Key(6)] double[]? MeanProbabilityPerClass = null, [property: Key(7)] ResultRef? Refine = null,
    [property: Key(8)] string[]? Warnings = null) : ICoordinatorEvent;

[MessagePackObject]
public sealed record ImageSegmented([property: Key(0)] string JobId, [property: Key(1)] ResultRef Mask, [property: Key(2)] double Seconds,
    [property: Key(3)] long[]? PixelsPerClass = null, [property: Key(4)] long RefinedPixels = 0) : ICoordinatorEvent;

/// <summary>The coordinator is about to run one of its own steps of a job (prepare, stitch). Journaled before the step
/// starts, so a step that takes the coordinator down (out of memory, a crash) is counted across restarts: after
/// <c>MaxCrashes</c> starts without an outcome the job is quarantined instead of being tried again forever.</summary>
[MessagePackObject]
public sealed record StepStarted([property: Key(0)] string JobId, [property: Key(1)] string Step) : ICoordinatorEvent;

/// <summary>A coordinator-side step ended without an outcome event (it failed and will be retried or fail the job): it did not take the coordinator down.</summary>
[MessagePackObject]
public sealed record StepEnded([property: Key(0)] string JobId, [property: Key(1)] string Step) : ICoordinatorEvent;

/// <summary>Kept so that journals written before 2026-12 replay; no longer written (retries are counted in memory).</summary>
[MessagePackObject]
public sealed record JobRetried([property: Key(0)] string JobId, [property: Key(1)] int Retries) : ICoordinatorEvent;

[MessagePackObject]
public sealed record JobEnded([property: Key(0)] string JobId, [property: Key(1)] bool Succeeded, [property: Key(2)] string? Error) : ICoordinatorEvent;

/// <summary>One job as a snapshot holds it.</summary>
[MessagePackObject]
public sealed record JobRecord(
    [property: Key(0)] JobSubmitted Submitted,
    [property: Key(1)] JobPlanned? Planned,
    [property: Key(2)] TileDone[] Done,
    [property: Key(3)] GraphStitched? Stitched,
    [property: Key(4)] ImageClassified? Classified,
    [property: Key(5)] ImageSegmented? Segmented,
    [property: Key(6)] JobEnded? Ended,
    [property: Key(7)] int Retries,
    [property: Key(8)] int StepStarts = 0) : IActorSegMessage;

[MessagePackObject]
public sealed record CoordinatorSnapshot([property: Key(0)] JobRecord[] Jobs, [property: Key(1)] TrainRecord[]? Trainings = null,
    [property: Key(2)] BatchRecord[]? Batches = null) : ICoordinatorEvent;

/// <summary>A batch was admitted: its definition (paths canonical) and the slides its client found already done (they
/// count as skipped and never run). Its slides' jobs are journaled as they start (<see cref="JobSubmitted"/> with the
/// slide's job id), their ends as <see cref="BatchSlideEnded"/>.</summary>
[MessagePackObject]
public sealed record BatchSubmitted([property: Key(0)] string BatchId, [property: Key(1)] BatchSpec Spec, [property: Key(2)] DateTime SubmittedUtc,
    [property: Key(3)] string[]? Skipped = null) : ICoordinatorEvent;

/// <summary>One slide of a batch ended (its job's outcome, recorded once for the batch).</summary>
[MessagePackObject]
public sealed record BatchSlideEnded([property: Key(0)] string BatchId, [property: Key(1)] BatchSlideOutcome Outcome) : ICoordinatorEvent;

/// <summary>A batch as a snapshot holds it.</summary>
[MessagePackObject]
public sealed record BatchRecord([property: Key(0)] BatchSubmitted Submitted, [property: Key(1)] BatchSlideOutcome[] Ended) : IActorSegMessage;

[MessagePackObject]
public sealed record TrainJobSubmitted([property: Key(0)] string JobId, [property: Key(1)] TrainJobSpec Spec, [property: Key(2)] DateTime SubmittedUtc) : ICoordinatorEvent;

[MessagePackObject]
public sealed record ModelTrained([property: Key(0)] string JobId, [property: Key(1)] ModelReady Result) : ICoordinatorEvent;

/// <summary>A training job as a snapshot holds it.</summary>
[MessagePackObject]
public sealed record TrainRecord([property: Key(0)] TrainJobSubmitted Submitted, [property: Key(1)] ModelTrained? Trained, [property: Key(2)] JobEnded? Ended) : IActorSegMessage;
