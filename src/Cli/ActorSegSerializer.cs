using System.Collections.Frozen;
using System.Runtime.Serialization;
using Akka.Actor;
using Akka.Serialization;
using MessagePack;
using ActorSeg.Messages;

namespace ActorSeg.Cli;

/// <summary>
/// The binary serializer for every ActorSeg message and journal event (it lives with the hosts: the protocol assembly and
/// the algorithms know nothing of Akka): MessagePack with integer keys, and a short
/// stable manifest per type (the type's name) so a renamed namespace or a new assembly version still reads old data.
/// A manifest this build does not know (a newer or incompatible node, or a journal a newer coordinator wrote) is set aside
/// with a warning as an <see cref="UnreadableEvent"/>, as is a journal event whose bytes cannot be read.
/// </summary>
public sealed class ActorSegSerializer : SerializerWithStringManifest
{
    public const int Id = 7_311;

    private static readonly MessagePackSerializerOptions Options =
        MessagePackSerializerOptions.Standard.WithSecurity(MessagePackSecurity.UntrustedData);

    private static readonly FrozenDictionary<string, Type> Types = typeof(IActorSegMessage).Assembly.GetTypes()
        .Where(t => typeof(IActorSegMessage).IsAssignableFrom(t) && t is { IsClass: true, IsAbstract: false })
        .ToFrozenDictionary(t => t.Name);

    public ActorSegSerializer(ExtendedActorSystem system) : base(system) { }

    public override int Identifier => Id;

    public static IReadOnlyCollection<Type> MessageTypes => Types.Values;

    public override string Manifest(object o) => o is IActorSegMessage
        ? o.GetType().Name
        : throw new ArgumentException($"{o.GetType()} is not an ActorSeg message");

    public override byte[] ToBinary(object obj) => MessagePackSerializer.Serialize(obj.GetType(), obj, Options);

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!Types.TryGetValue(manifest, out var type))
        {
            // a type this build does not know: sent by a node of an incompatible version, or journaled by a newer
            // coordinator (the singleton moved back to an older node during a rolling upgrade). Set aside, with this
            // warning, rather than failing: failing it in the journal would stop the coordinator's recovery for good
            // (a message between nodes is dropped either way; the recipient ignores it).
            Serilog.Log.ForContext("Role", "node").Warning(
                "A message or journal event of unknown type {Manifest} ({Bytes} bytes) was set aside: it comes from an incompatible or newer version (this node speaks protocol {Protocol})",
                manifest, bytes.Length, ProtocolVersion.Text);
            return new UnreadableEvent(manifest, bytes.Length, $"unknown type '{manifest}': written by an incompatible or newer version (this node speaks protocol {ProtocolVersion.Text})", SalvageId(bytes), KnownType: false);
        }
        try { return MessagePackSerializer.Deserialize(type, bytes, Options)!; }
        catch (MessagePackSerializationException e)
        {
            var why = e.InnerException?.Message ?? e.Message;
            // a journal event that cannot be read (a damaged row, a field this build reads differently): the coordinator's
            // recovery skips it and fails the job it belonged to, where before the whole recovery failed on every start
            if (IsJournalEvent(type)) return new UnreadableEvent(manifest, bytes.Length, why, SalvageId(bytes));
            // a snapshot: the coordinator's recovery falls back to the one before it (never to an empty state)
            if (type == typeof(CoordinatorSnapshot)) return new UnreadableSnapshot($"{why}; {bytes.Length} bytes");
            throw new SerializationException($"malformed ActorSeg message '{manifest}' ({bytes.Length} bytes): {why}", e);
        }
    }

    /// <summary>Journal events (a snapshot is handled apart: it must never pass for an empty one).</summary>
    private static bool IsJournalEvent(Type t) => typeof(ICoordinatorEvent).IsAssignableFrom(t) && t != typeof(CoordinatorSnapshot);

    /// <summary>
    /// Every journal event's first field (key 0) is the id of its job, training or batch: read it from the damaged
    /// bytes if their start is intact. Only a plain id is taken; the coordinator acts on it only if it knows the id.
    /// </summary>
    internal static string? SalvageId(byte[] bytes)
    {
        try
        {
            var r = new MessagePackReader(bytes);
            if (r.NextMessagePackType != MessagePackType.Array || r.ReadArrayHeader() < 1 || r.NextMessagePackType != MessagePackType.String) return null;
            var id = r.ReadString();
            return id is { Length: > 0 and <= 256 } && id.All(c => c >= ' ' && c < 0x7f) ? id : null;
        }
        catch (Exception e) when (e is MessagePackSerializationException or EndOfStreamException or InvalidOperationException or ArgumentException) { return null; }
    }

    /// <summary>HOCON that registers the serializer for every ActorSeg message.</summary>
    public const string Hocon = """
        akka.actor {
          serializers.actorseg = "ActorSeg.Cli.ActorSegSerializer, actorseg"
          serialization-bindings { "ActorSeg.Messages.IActorSegMessage, ActorSeg.Messages" = actorseg }
          serialization-identifiers { "ActorSeg.Cli.ActorSegSerializer, actorseg" = 7311 }
        }
        """;
}
