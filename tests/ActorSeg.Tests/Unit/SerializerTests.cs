using ActorSeg.Cli;
using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Configuration;
using Akka.Serialization;
using ActorSeg.Messages;
using MessagePack;
using Xunit;

namespace ActorSeg.Tests.Unit;

public class SerializerTests : IDisposable
{
    private readonly ActorSystem _sys = ActorSystem.Create("ser", ConfigurationFactory.ParseString(ActorSegSerializer.Hocon));
    public void Dispose() => _sys.Dispose();

    private static readonly ResultRef Ref = new("/data/out/.work-j/tile-000001.apg", 12345, "0123456789abcdef");
    private static readonly TrainJobSpec TrainSpec = new(["/g/a/graph.npz", "/g/b/graph.npz"], "/m", "sage", "rag", 6, 64, 0.3, 0.01, 100, 10, 0.2, 3, "cuda");
    private static readonly GraphJobSpec Spec = new("/data/a.tif", "/data/a_mask.tif", "/data/out", IgnoreValue: 7, Halo: 99, ModelPath: "/m/best.model");
    private static readonly BatchSpec Batch = new("/data/b", [new BatchSlideSpec("a", Spec with { OutDir = "/data/b/slides/a" }, "test")], 3,
        [new BatchSlideRejected("c", "/data/c.tif", null, null, "rejected", "/data/c.tif: image not found")], "0123abcd");
    private static readonly BatchSlideOutcome Outcome = new("a", "b-a", "done", null, 12, 3.5, "/data/b/slides/a/mask.tif", 0.4, 2);

    public static IEnumerable<object[]> Samples() => new object[]
    {
        Spec, Ref, new SubmitGraphJob("j", Spec), new SubmitGraphJob("j", Spec, MustBeNew: true), new JobReceived("j"),
        new JobRefused("j", RefusalCodes.Conflict, "output overlaps"), new GraphJobAccepted("j", "a", 10, 20, 1, 4, 5, 6, 2),
        new GraphJobProgress("j", "tiles", 1, 4, 2.5, 1, 2, 3),
        new GraphJobCompleted("j", "/o", 1, 2, 3, 0.1, 0.2, 0.3, 0.4, 5, "/o/mask.tif", [1, 2], 3, 0.5, 0.6),
        new GraphJobFailed("j", "bad"), new RequestWork(2, 1, "akka.tcp://actorseg@h:1"), new WorkRefused("no"),
        new TileAssignment("j", "a", "/m.json", 3, 2, "/data/out"), new TileCompleted("j", 3, 2, Ref, Ref, 10, 2, 1000, 1.5),
        new TileFailed("j", 3, 2, "e", true), new TileHandedBack("j", 3, 2), new AbandonWork("j", 3, 2),
        new StepStarted("j", "prepare"), new StepEnded("j", "stitch"),
        new PaintAssignment("j", "a", "/a.tif", Ref, Ref, "/o/mask.tif", "/o/overlay.png", 1, "/o"),
        new PaintAssignment("j", "a", "/a.tif", Ref, Ref, "/o/mask.tif", "/o/overlay.png", 1, "/o", Ref, "geojson.gz", 2.5),
        Spec with { Objects = "none", Simplify = 1.5 }, Spec with { Page = 2, Series = 3 }, Spec with { ModelFeatures = true, ModelSpacing = true },
        new PaintAssignment("j", "a", "/a.lif", Ref, Ref, "/o/mask.tif", "/o/overlay.png", 1, "/o", Page: 1, Series: 4),
        new NodesClassified("j", 1, Ref, 10, [5, 5], 0.1, "cpu", Ref), new ImageClassified("j", Ref, [1, 2], 0.1, "cpu", Ref),
        new NodesClassified("j", 1, Ref, 10, [5, 5], 0.1, "cpu", Ref, [0.91, 0.87]), new ImageClassified("j", Ref, [1, 2], 0.1, "cpu", Ref, [0.91, 0.87]),
        new PaintCompleted("j", 1, Ref, 2.0), new PaintFailed("j", 1, "e", false),
        new TrainerReady(1, "cpu"), new ClassifyNodes("j", "a", Ref, "/m", "/c", "cuda", 1, "/o/graph"),
        new NodesClassified("j", 1, Ref, 10, [5, 5], 0.1, "cpu"), new ClassifyFailed("j", 1, "e", true),
        new GetStatus("j"), new JobStatus("j", "tiles", 1, 4, 1, 0, "e", "/o"), new StatusReport([new JobStatus("j", "tiles", 1, 4, 1, 0, null, "/o")], 2, 1),
        new StatusReport([], 1, 0, [new NodeStatus("akka.tcp://actorseg@h:4053", "tile-worker", 2, 1)], ["2026-12-04 10:00:00Z j: tile 3 failed"]),
        new NodeStatus("akka.tcp://actorseg@h:4053", "gpu-trainer", 1, 0),
        new JobSubmitted("j", Spec, new DateTime(2026, 11, 24, 0, 0, 0, DateTimeKind.Utc)), new JobPlanned("j", "a", "/m.json", 4, 100, 0.5),
        new TileDone("j", 3, Ref, Ref, 100), new TileInvalidated("j", 3, "missing"),
        new GraphStitched("j", Ref, null, 1, 2, 3, 4, 5, 6), new ImageClassified("j", Ref, [1, 2], 0.1, "cpu"),
        new ImageSegmented("j", Ref, 1.0), new JobRetried("j", 2), new JobEnded("j", false, "why"),
        TrainSpec, new SubmitTrainJob("t", TrainSpec), new TrainModel("t", TrainSpec, 2),
        new ModelReady("t", 2, Ref, 40, 31, 0.25, 12.5, "cpu", 300), new TrainFailed("t", 2, "diverged", true),
        new TrainJobCompleted("t", "/m/best.model", 40, 31, 0.25, 12.5, "cpu"), new TrainJobSubmitted("t", TrainSpec, DateTime.UnixEpoch),
        new ModelTrained("t", new ModelReady("t", 2, Ref, 40, 31, 0.25, 12.5, "cpu", 300)),
        Batch.Slides[0], Batch.Rejected![0], Batch, new SubmitBatch("b", Batch, ["a"], true), new WatchBatch("b"), new BatchReceived("b", Batch, true),
        Outcome, new BatchSlideFinished("b", Outcome), new BatchProgress("b", 10, 4, 1, 2, 2), new BatchCompleted("b", [Outcome]),
        new BatchStatus("b", "running", 3, 1, 0, 0, 1, "/data/b", [new BatchSlideStatus("a", "b-a", "running", null, "tiles", 3, 9)]),
        new BatchSlideStatus("a", "b-a", "failed", "bad"), new StatusReport([], 1, 0, null, null, [new BatchStatus("b", "done", 1, 1, 0, 0, 0, "/data/b")]),
        new StatusReport([], 1, 0, null, null, null, EndedNotListed: 42),
        new BatchSubmitted("b", Batch, DateTime.UnixEpoch, ["a"]), new BatchSlideEnded("b", Outcome), new BatchRecord(new BatchSubmitted("b", Batch, DateTime.UnixEpoch), [Outcome]),
    }.Select(o => new[] { o });

    [Theory, MemberData(nameof(Samples))]
    public void EveryMessage_RoundTripsThroughTheBinarySerializer(object message)
    {
        var ser = _sys.Serialization.FindSerializerFor(message);
        Assert.IsType<ActorSegSerializer>(ser);
        var bytes = ser.ToBinary(message);
        var back = _sys.Serialization.Deserialize(bytes, ser.Identifier, Akka.Serialization.Serialization.ManifestFor(ser, message));
        // records compare arrays by reference: compare the serialised forms instead
        Assert.Equal(message.GetType(), back.GetType());
        Assert.Equal(bytes, ser.ToBinary(back));
        if (message is not (GraphJobCompleted or NodesClassified or StatusReport or ImageClassified or TrainJobSpec or SubmitTrainJob or TrainModel or TrainJobSubmitted
            or BatchSpec or SubmitBatch or BatchReceived or BatchCompleted or BatchStatus or BatchSubmitted or BatchRecord))
            Assert.Equal(message, back);
    }

    [Fact]
    public void EveryMessageType_HasASample()
    {
        var covered = Samples().Select(s => s[0].GetType()).ToHashSet();
        var missing = ActorSegSerializer.MessageTypes.Where(t => !covered.Contains(t) && t != typeof(JobRecord) && t != typeof(TrainRecord) && t != typeof(CoordinatorSnapshot)).ToList();
        Assert.Empty(missing);
    }

    [Fact]
    public void AMessageOfAnUnknownType_IsSetAsideWithAClearReason()
    {
        // (in the journal: an event a newer coordinator wrote; failing it would stop the recovery for good)
        var ser = new ActorSegSerializer((ExtendedActorSystem)_sys);
        var u = Assert.IsType<UnreadableEvent>(ser.FromBinary([0x92, 0xa2, (byte)'j', (byte)'9', 0x01], "TilePaused"));
        Assert.Contains("incompatible or newer version", u.Reason);
        Assert.Equal(("TilePaused", "j9"), (u.Manifest, u.Id));
        var e2 = Assert.Throws<SerializationException>(() => ser.FromBinary([0x01, 0x02], nameof(TileAssignment)));
        Assert.Contains("malformed", e2.Message);
    }

    [Fact]
    public void AJournalEventThatCannotBeRead_ComesBackAsUnreadable_WithItsJobId_WhereMessagesAreRefused()
    {
        var ser = new ActorSegSerializer((ExtendedActorSystem)_sys);
        var good = ser.ToBinary(new JobPlanned("job-7", "a", "/m.json", 4, 100, 0.5));
        // the job id intact, a byte after it never used by MessagePack
        var bad = good.ToArray();
        bad[1 + 1 + "job-7".Length] = 0xc1;
        var u = Assert.IsType<UnreadableEvent>(ser.FromBinary(bad, nameof(JobPlanned)));
        Assert.Equal((nameof(JobPlanned), bad.Length, "job-7"), (u.Manifest, u.Length, u.Id));
        Assert.Contains("193", u.Reason);
        // the header damaged too: no id to salvage
        bad[0] = 0xc1;
        Assert.Null(Assert.IsType<UnreadableEvent>(ser.FromBinary(bad, nameof(JobPlanned))).Id);
        // a truncated event, a batch's event (its id is the batch's)
        var batch = ser.ToBinary(new BatchSlideEnded("batch-1", Outcome));
        Assert.Equal("batch-1", Assert.IsType<UnreadableEvent>(ser.FromBinary(batch[..^3], nameof(BatchSlideEnded))).Id);
        // a snapshot is marked unreadable (recovery falls back to the one before it; it never passes for an empty one),
        // and a message between nodes is still refused
        var snap = ser.ToBinary(new CoordinatorSnapshot([]));
        Assert.Contains("193", Assert.IsType<UnreadableSnapshot>(ser.FromBinary(snap[..^1].Append((byte)0xc1).ToArray(), nameof(CoordinatorSnapshot))).Reason);
        Assert.Throws<SerializationException>(() => ser.FromBinary([0x92, 0xa1, (byte)'j', 0xc1], nameof(TileAssignment)));
    }

    [MessagePackObject]
    public sealed record TileAssignmentV0([property: Key(0)] string JobId, [property: Key(1)] string ImageId);

    [MessagePackObject]
    public sealed record PaintAssignmentV0([property: Key(0)] string JobId, [property: Key(1)] string ImageId, [property: Key(2)] string ImagePath,
        [property: Key(3)] ResultRef NodeMap, [property: Key(4)] ResultRef Classes, [property: Key(5)] string MaskPath,
        [property: Key(6)] string OverlayPath, [property: Key(7)] int Attempt, [property: Key(8)] string? OutDir);

    [MessagePackObject]
    public sealed record RequestWorkV2([property: Key(0)] int FreeSlots, [property: Key(1)] int ProtocolMajor, [property: Key(2)] string? Node, [property: Key(3)] string NewField);

    [Fact]
    public void TheSchema_ToleratesOlderAndNewerSenders()
    {
        var ser = new ActorSegSerializer((ExtendedActorSystem)_sys);
        // an older sender without the trailing fields: they arrive as defaults
        var old = MessagePackSerializer.Serialize(new TileAssignmentV0("j", "a"));
        var a = (TileAssignment)ser.FromBinary(old, nameof(TileAssignment));
        Assert.Equal(("j", "a", 0), (a.JobId, a.ImageId, a.TileId));
        // a paint order and a job from before objects: no probabilities, and the objects format falls back to geojson
        var oldPaint = MessagePackSerializer.Serialize(new PaintAssignmentV0("j", "a", "/a.tif", Ref, Ref, "/o/mask.tif", "/o/overlay.png", 1, "/o"));
        var p = (PaintAssignment)ser.FromBinary(oldPaint, nameof(PaintAssignment));
        Assert.Equal(("/o", null, 0.0), (p.OutDir, p.Probs, p.Simplify));
        Assert.Equal("objects.geojson", ActorSeg.Core.IO.ObjectExporter.FileName(p.Objects));
        var oldSpec = (GraphJobSpec)ser.FromBinary(MessagePackSerializer.Serialize(new TileAssignmentV0("/a.tif", null!)), nameof(GraphJobSpec));
        Assert.Equal("objects.geojson", ActorSeg.Core.IO.ObjectExporter.FileName(oldSpec.Objects));
        Assert.Equal(0.0, oldSpec.Simplify);
        // and from before series: the default image (not series 0, which would read one scene of a slide's several)
        Assert.Null(oldSpec.Series);
        Assert.Null(p.Series);
        // and from before a job could take its features and spacing from its model: the spec's own
        Assert.False(oldSpec.ModelFeatures || oldSpec.ModelSpacing);
        // a newer sender with extra fields: they are ignored
        var newer = MessagePackSerializer.Serialize(new RequestWorkV2(3, 1, "n", "future"));
        var r = (RequestWork)ser.FromBinary(newer, nameof(RequestWork));
        Assert.Equal(3, r.FreeSlots);
    }
}
