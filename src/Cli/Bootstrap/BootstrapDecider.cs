using System.Text.Json;
using Akka.Actor;

namespace ActorSeg.Cli.Bootstrap;

/// <summary>A node's management endpoint, as discovery found it (a pod IP and its port named "management", or an entry of
/// the configured list): where its /bootstrap/seed-nodes answers.</summary>
public sealed record ContactPoint(string Host, int Port) : IComparable<ContactPoint>
{
    public int CompareTo(ContactPoint? other) =>
        other is null ? 1 : string.CompareOrdinal(Host, other.Host) is var c and not 0 ? c : Port.CompareTo(other.Port);

    public override string ToString() => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>
/// What a contact point said about itself: its own cluster address, and the reachable members (joining, up) of the
/// cluster it is in (none while it is in no cluster). Addresses only: nothing else is asked for or accepted.
/// </summary>
public sealed record ProbeAnswer(Address SelfNode, IReadOnlyList<Address> SeedNodes)
{
    /// <summary>The most bytes an answer may have: a few addresses fit many times over.</summary>
    public const int MaxBytes = 16 * 1024;
    /// <summary>The most member addresses an answer may list (the endpoint lists at most <see cref="MaxSeedNodes"/>).</summary>
    public const int MaxSeedNodes = 32;

    /// <summary>
    /// Parses an answer, trusting nothing in it: at most <see cref="MaxBytes"/>, a JSON object with "selfNode" (an address)
    /// and "seedNodes" (an array of at most <see cref="MaxSeedNodes"/> addresses), each address
    /// akka.tcp://actorseg@host:port (akka.ssl.tcp:// when the cluster speaks TLS), nothing else. Throws
    /// <see cref="FormatException"/> naming what is wrong.
    /// </summary>
    public static ProbeAnswer Parse(string body, bool tls)
    {
        if (body.Length > MaxBytes) throw new FormatException($"the answer is longer than {MaxBytes} bytes");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 4 }); }
        catch (JsonException e) { throw new FormatException($"the answer is not JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new FormatException("the answer is not a JSON object");
            if (!root.TryGetProperty("selfNode", out var self) || self.ValueKind != JsonValueKind.String)
                throw new FormatException("the answer has no selfNode address");
            if (!root.TryGetProperty("seedNodes", out var seeds) || seeds.ValueKind != JsonValueKind.Array)
                throw new FormatException("the answer has no seedNodes array");
            if (seeds.GetArrayLength() > MaxSeedNodes) throw new FormatException($"the answer lists more than {MaxSeedNodes} seed nodes");
            var list = new List<Address>();
            foreach (var s in seeds.EnumerateArray())
            {
                if (s.ValueKind != JsonValueKind.String) throw new FormatException("a seed node is not a string");
                list.Add(ParseAddress(s.GetString()!, tls));
            }
            return new ProbeAnswer(ParseAddress(self.GetString()!, tls), list.Distinct().ToList());
        }
    }

    /// <summary>An address of this cluster: the transport this node speaks (akka.ssl.tcp with TLS, akka.tcp without), the
    /// system actorseg, a host and a port 1..65535, no path.</summary>
    public static Address ParseAddress(string text, bool tls)
    {
        string protocol = tls ? "akka.ssl.tcp" : "akka.tcp";
        if (text.Length > 300 || !Address.TryParse(text, out var a) || a.Protocol != protocol || a.System != NodeHost.SystemName
            || string.IsNullOrEmpty(a.Host) || a.Port is not (> 0 and <= 65535) || text.TrimEnd('/') != a.ToString())
            throw new FormatException($"'{(text.Length > 80 ? text[..80] + "…" : text)}' is not an address like {protocol}://{NodeHost.SystemName}@host:port");
        return a;
    }

    public string ToJson() => JsonSerializer.Serialize(new { selfNode = SelfNode.ToString(), seedNodes = SeedNodes.Select(s => s.ToString()).ToArray() });
}

/// <summary>What the bootstrap does next.</summary>
public abstract record BootstrapDecision
{
    /// <summary>Keep discovering and probing; the reason is for the log.</summary>
    public sealed record Wait(string Reason) : BootstrapDecision;
    /// <summary>A cluster exists: join it through these members of it.</summary>
    public sealed record JoinSeeds(IReadOnlyList<Address> Seeds) : BootstrapDecision;
    /// <summary>No cluster exists and this node has the lowest address of all contact points: form the cluster (join itself).</summary>
    public sealed record Form : BootstrapDecision;
}

public sealed record BootstrapSettings
{
    /// <summary>Form a new cluster only when discovery finds at least this many contact points (this node's included).</summary>
    public int RequiredContactPoints { get; init; } = 2;
    /// <summary>... and the set found has not changed for this long.</summary>
    public TimeSpan StableMargin { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>A probe answer older than this no longer counts (the contact point may have joined a cluster since).</summary>
    public TimeSpan AnswerFreshness { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>Join through at most this many members.</summary>
    public int MaxSeeds { get; init; } = 5;
}

/// <summary>
/// The decisions of the cluster bootstrap (the algorithm of Akka Management's ClusterBootstrap, lowest-address join
/// decider, with contact-with-all-contact-points), as a plain class: it is told what discovery found, what each contact
/// point answered or that it did not, and the time, and says whether to wait, join these members or form the cluster.
/// <list type="number">
/// <item>Any fresh answer that lists members: a cluster exists, join it through them (never through this node's own
/// address: an old incarnation of it may still be listed).</item>
/// <item>Else form a cluster only when at least <see cref="BootstrapSettings.RequiredContactPoints"/> contact points are
/// known, the set has been stable for <see cref="BootstrapSettings.StableMargin"/>, every one of them has answered
/// freshly that it is in no cluster (one that does not answer might be in one: a restarted node whose old peers are
/// still running must join them, not start a second cluster), and this node's address is the lowest of their
/// addresses. Everyone else waits, and then joins the one that formed it.</item>
/// </list>
/// </summary>
public sealed class BootstrapDecider(Address self, BootstrapSettings settings)
{
    private SortedSet<ContactPoint> _points = new();
    private bool _discovered;
    private DateTime _stableSince;
    private readonly Dictionary<ContactPoint, (ProbeAnswer Answer, DateTime At)> _answers = new();

    public Address Self => self;
    public IReadOnlyCollection<ContactPoint> ContactPoints => _points;

    /// <summary>Discovery found these contact points now (a failed lookup is simply not reported).</summary>
    public void Discovered(IEnumerable<ContactPoint> points, DateTime now)
    {
        var set = new SortedSet<ContactPoint>(points);
        if (!_discovered || !set.SetEquals(_points)) _stableSince = now;
        _points = set;
        _discovered = true;
        foreach (var gone in _answers.Keys.Where(p => !set.Contains(p)).ToList()) _answers.Remove(gone);
    }

    public void Answered(ContactPoint point, ProbeAnswer answer, DateTime now) => _answers[point] = (answer, now);

    /// <summary>The contact point did not answer, or answered something invalid: what it said before no longer counts.</summary>
    public void Failed(ContactPoint point) => _answers.Remove(point);

    public BootstrapDecision Decide(DateTime now)
    {
        if (!_discovered) return new BootstrapDecision.Wait("discovery has not answered yet");
        var fresh = _answers.Where(a => _points.Contains(a.Key) && now - a.Value.At <= settings.AnswerFreshness)
            .ToDictionary(a => a.Key, a => a.Value.Answer);
        var seeds = fresh.Values.SelectMany(a => a.SeedNodes).Where(s => !s.Equals(self)).Distinct()
            .OrderBy(s => s.Host, StringComparer.Ordinal).ThenBy(s => s.Port).Take(settings.MaxSeeds).ToList();
        if (seeds.Count > 0) return new BootstrapDecision.JoinSeeds(seeds);
        if (_points.Count < settings.RequiredContactPoints)
            return new BootstrapDecision.Wait($"{_points.Count} contact point(s) found, {settings.RequiredContactPoints} needed to form a cluster");
        if (now - _stableSince < settings.StableMargin)
            return new BootstrapDecision.Wait($"the {_points.Count} contact points found must stay the same for {settings.StableMargin.TotalSeconds:0.#}s (the stable margin)");
        var silent = _points.Where(p => !fresh.ContainsKey(p)).ToList();
        if (silent.Count > 0)
            return new BootstrapDecision.Wait($"no answer yet from {string.Join(", ", silent.Take(5))}{(silent.Count > 5 ? $" and {silent.Count - 5} more" : "")} (it may be in a cluster)");
        var lowest = fresh.Values.Select(a => a.SelfNode).OrderBy(a => a.Host, StringComparer.Ordinal).ThenBy(a => a.Port).First();
        return lowest.Equals(self)
            ? new BootstrapDecision.Form()
            : new BootstrapDecision.Wait($"no cluster yet; {lowest}, the lowest address of the {_points.Count} contact points, forms it");
    }
}
