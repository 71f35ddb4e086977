using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Cluster;
using Akka.Discovery;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;
using Serilog;
using ILogger = Serilog.ILogger;

namespace ActorSeg.Cli.Bootstrap;

/// <summary>
/// The management endpoint every node serves when it finds its peers by discovery: GET /bootstrap/seed-nodes answers
/// this node's cluster address and the reachable joining or up members of its cluster (addresses only; nothing else
/// is served). With the cluster's TLS it is HTTPS with the node's certificate and requires a client certificate of the
/// cluster's CA, like the Akka transport: only members can ask, and what they read cannot be forged.
/// </summary>
public static class ManagementEndpoint
{
    public const string SeedNodesPath = "/bootstrap/seed-nodes";
    /// <summary>The most members an answer lists.</summary>
    public const int MaxSeedNodes = 8;

    /// <summary>What this node answers: its own address and the reachable joining/up members, up first, oldest first.</summary>
    public static ProbeAnswer Answer(Akka.Cluster.Cluster cluster)
    {
        var state = cluster.State;
        var members = state.Members.Where(m => !state.Unreachable.Contains(m) && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining)
            .OrderBy(m => m.Status == MemberStatus.Up ? 0 : 1).ThenBy(m => m, Member.AgeOrdering).Take(MaxSeedNodes).Select(m => m.Address).ToList();
        return new ProbeAnswer(cluster.SelfAddress, members);
    }

    public static async Task<WebApplication> StartAsync(NodeOptions o, ActorSystem system, ILogger log, CancellationToken ct)
    {
        var wb = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        wb.Logging.ClearProviders();
        var tls = o.Tls.Enabled ? o.Tls.Load() : default;
        wb.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = 0;
            k.Limits.MaxRequestHeadersTotalSize = 8 * 1024;
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(5);
            void Listen(Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions l)
            {
                if (!o.Tls.Enabled) return;
                l.UseHttps(new HttpsConnectionAdapterOptions
                {
                    ServerCertificate = tls.Certificate,
                    ClientCertificateMode = ClientCertificateMode.RequireCertificate,
                    ClientCertificateValidation = (cert, chain, _) =>
                    {
                        if (TlsOptions.ChainsTo(cert, chain, tls.Ca, out var why)) return true;
                        log.Warning("Bootstrap endpoint: refused a client certificate {Subject} (issuer {Issuer}): not signed by the cluster's CA ({Status})", cert.Subject, cert.Issuer, why);
                        return false;
                    },
                });
            }
            if (IPAddress.TryParse(o.Hostname, out var ip)) k.Listen(ip, o.ManagementPort, Listen);
            else if (o.Hostname == "localhost") k.ListenLocalhost(o.ManagementPort, Listen);
            else k.ListenAnyIP(o.ManagementPort, Listen);
        });
        var app = wb.Build();
        var cluster = Akka.Cluster.Cluster.Get(system);
        app.MapGet(SeedNodesPath, () => Results.Text(Answer(cluster).ToJson(), "application/json"));
        await app.StartAsync(ct);
        log.Information("Cluster bootstrap endpoint on {Scheme}://{Host}:{Port}{Path}", o.Tls.Enabled ? "https" : "http", o.Hostname, o.ManagementPort, SeedNodesPath);
        return app;
    }
}

/// <summary>Asks a contact point what it knows: bounded in time and size, no redirects, no proxy, with the cluster's TLS when it has one.</summary>
public sealed class BootstrapProbe : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _tls;

    public BootstrapProbe(TlsOptions tls, TimeSpan timeout)
    {
        _tls = tls.Enabled;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false, UseProxy = false, UseCookies = false,
            ConnectTimeout = timeout, MaxResponseHeadersLength = 16, // KiB
            PooledConnectionLifetime = TimeSpan.FromMinutes(1),
        };
        if (tls.Enabled)
        {
            var (cert, ca) = tls.Load();
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = new X509CertificateCollection { cert },
                // the contact points are pod IPs: the certificate's chain to the cluster CA is what counts, not its names
                RemoteCertificateValidationCallback = (_, c, chain, _) => c is not null && TlsOptions.ChainsTo(c, chain, ca, out _),
            };
        }
        _http = new HttpClient(handler) { Timeout = timeout, MaxResponseContentBufferSize = ProbeAnswer.MaxBytes };
    }

    public Uri UriOf(ContactPoint p) => new UriBuilder(_tls ? "https" : "http", p.Host, p.Port, ManagementEndpoint.SeedNodesPath).Uri;

    /// <summary>The contact point's answer, validated (<see cref="ProbeAnswer.Parse"/>); throws on anything else.</summary>
    public async Task<ProbeAnswer> ProbeAsync(ContactPoint p, CancellationToken ct = default)
    {
        using var response = await _http.GetAsync(UriOf(p), HttpCompletionOption.ResponseContentRead, ct);
        if (response.StatusCode != HttpStatusCode.OK) throw new HttpRequestException($"HTTP {(int)response.StatusCode}");
        var body = await response.Content.ReadAsStringAsync(ct);
        return ProbeAnswer.Parse(body, _tls);
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>Where the bootstrap finds its contact points and how it decides (NodeOptions.Discovery).</summary>
public sealed record DiscoveryOptions
{
    /// <summary>none (static seeds, the default), config (a fixed list of contact points) or kubernetes (pods by label).</summary>
    public string Method { get; init; } = "none";
    /// <summary>The service looked up; in the label selector as {0}.</summary>
    public string ServiceName { get; init; } = "actorseg";
    /// <summary>kubernetes: the pods that are nodes of this cluster.</summary>
    public string LabelSelector { get; init; } = "actorseg/cluster={0}";
    /// <summary>kubernetes: the name of the pods' container port of the management endpoint.</summary>
    public string PortName { get; init; } = "management";
    /// <summary>kubernetes: the pods' namespace (default: the service account's, from the pod).</summary>
    public string? Namespace { get; init; }
    /// <summary>config: the contact points, host:port of each node's management endpoint.</summary>
    public string[] ContactPoints { get; init; } = [];
    public int RequiredContactPoints { get; init; } = 2;
    public double StableMarginSeconds { get; init; } = 5;
    /// <summary>How often to look up and probe.</summary>
    public double IntervalSeconds { get; init; } = 1;

    public bool Enabled => !Method.Equals("none", StringComparison.OrdinalIgnoreCase);
    public bool IsKubernetes => Method.Equals("kubernetes", StringComparison.OrdinalIgnoreCase);
    public bool IsConfig => Method.Equals("config", StringComparison.OrdinalIgnoreCase);

    public BootstrapSettings Settings => new()
    {
        RequiredContactPoints = RequiredContactPoints, StableMargin = TimeSpan.FromSeconds(StableMarginSeconds),
        AnswerFreshness = TimeSpan.FromSeconds(Math.Max(3, 5 * IntervalSeconds)),
    };

    public static DiscoveryOptions From(Microsoft.Extensions.Configuration.IConfiguration c)
    {
        var d = new DiscoveryOptions();
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        return d with
        {
            Method = c["Discovery:Method"] ?? d.Method,
            ServiceName = c["Discovery:ServiceName"] ?? d.ServiceName,
            LabelSelector = c["Discovery:LabelSelector"] ?? d.LabelSelector,
            PortName = c["Discovery:PortName"] ?? d.PortName,
            Namespace = string.IsNullOrWhiteSpace(c["Discovery:Namespace"]) ? null : c["Discovery:Namespace"],
            ContactPoints = c["Discovery:ContactPoints"] is { } cp ? cp.Split([',', ' ', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : d.ContactPoints,
            RequiredContactPoints = c["Discovery:RequiredContactPoints"] is { } r ? int.Parse(r, inv) : d.RequiredContactPoints,
            StableMarginSeconds = c["Discovery:StableMarginSeconds"] is { } m ? double.Parse(m, inv) : d.StableMarginSeconds,
            IntervalSeconds = c["Discovery:IntervalSeconds"] is { } i ? double.Parse(i, inv) : d.IntervalSeconds,
        };
    }

    public void Validate(NodeOptions o)
    {
        if (Enabled && !IsKubernetes && !IsConfig)
            throw new ArgumentException($"discovery must be none, config or kubernetes (got '{Method}')");
        if (!Enabled) return;
        if (o.Seeds.Length > 0)
            throw new ArgumentException($"give either seed nodes (--seeds, ACTORSEG_SEEDS) or discovery (--discovery {Method}), not both");
        if (o.ManagementPort is < 1 or > 65535) throw new ArgumentException($"discovery needs the bootstrap endpoint's port: --management-port 1..65535 (got {o.ManagementPort})");
        if (o.ManagementPort == o.Port || o.ManagementPort == o.HttpPort || o.ManagementPort == o.MetricsPort)
            throw new ArgumentException($"management port {o.ManagementPort} is already the node's cluster, HTTP or metrics port");
        if (RequiredContactPoints < 1) throw new ArgumentException($"required contact points must be >= 1 (got {RequiredContactPoints})");
        if (StableMarginSeconds < 0 || IntervalSeconds <= 0) throw new ArgumentException("the stable margin must be >= 0 and the interval > 0 seconds");
        if (string.IsNullOrWhiteSpace(ServiceName)) throw new ArgumentException("the discovery service name is empty");
        if (IsConfig)
        {
            if (ContactPoints.Length == 0)
                throw new ArgumentException("discovery config needs the contact points: --contact-points HOST:PORT,... (each node's management endpoint; env ACTORSEG_DISCOVERY__CONTACTPOINTS)");
            foreach (var p in ContactPoints) ParseContactPoint(p);
        }
        if (IsKubernetes && (string.IsNullOrWhiteSpace(LabelSelector) || string.IsNullOrWhiteSpace(PortName)))
            throw new ArgumentException("discovery kubernetes needs a pod label selector and the management port's name");
        try { _ = EffectiveLabelSelector; }
        catch (FormatException) { throw new ArgumentException($"the pod label selector '{LabelSelector}' is not a selector ({{0}} stands for the service name)"); }
    }

    /// <summary>The label selector with the service name in place of {0}.</summary>
    public string EffectiveLabelSelector => string.Format(System.Globalization.CultureInfo.InvariantCulture, LabelSelector, ServiceName);

    /// <summary>host:port (an IPv6 host in brackets).</summary>
    public static ContactPoint ParseContactPoint(string text)
    {
        int colon = text.LastIndexOf(':');
        string host = colon > 0 ? text[..colon].Trim('[', ']') : "";
        if (colon <= 0 || host.Length == 0 || !int.TryParse(text[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535
            || Uri.CheckHostName(host) == UriHostNameType.Unknown)
            throw new ArgumentException($"'{text}' is not a contact point HOST:PORT (a node's management endpoint)");
        return new ContactPoint(host, port);
    }

    /// <summary>Akka.Discovery's settings for the method: the config method's list, or the pod lookup of <see cref="KubernetesPodDiscovery"/>.</summary>
    public string Hocon()
    {
        static string Q(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        if (IsConfig)
            return $$"""
                akka.discovery.method = config
                akka.discovery.config.services.{{Q(ServiceName)}}.endpoints = [{{string.Join(", ", ContactPoints.Select(p => Q(ParseContactPoint(p).ToString())))}}]
                """;
        if (IsKubernetes)
            return $$"""
                akka.discovery.method = actorseg-kubernetes
                akka.discovery.actorseg-kubernetes {
                  class = {{Q(typeof(KubernetesPodDiscovery).AssemblyQualifiedName!)}}
                  pod-label-selector = {{Q(EffectiveLabelSelector)}}
                  pod-namespace = {{Q(Namespace ?? "")}}
                }
                """;
        return "";
    }
}

/// <summary>
/// The node's side of the bootstrap: every interval it looks its contact points up (Akka.Discovery: the configured
/// list, or the Kubernetes pods), probes each one's /bootstrap/seed-nodes, and lets <see cref="BootstrapDecider"/> decide:
/// join the members of the cluster a contact point is in, form the cluster if this node is the lowest of contact points
/// that all answered that there is none, or wait. Once it has joined (this node is up) it stops: a node in the cluster
/// needs discovery no more. A join that has not brought this node up within <see cref="JoinTimeout"/> goes back to probing.
/// </summary>
public sealed class ClusterBootstrapActor : ReceiveActor, IWithTimers
{
    private sealed record Tick : INoSerializationVerificationNeeded;
    private sealed record Found(IReadOnlyList<ContactPoint> Points) : INoSerializationVerificationNeeded;
    private sealed record LookupFailed(string Reason) : INoSerializationVerificationNeeded;
    private sealed record Probed(ContactPoint Point, ProbeAnswer? Answer, string? Error) : INoSerializationVerificationNeeded;
    private sealed record JoinTimedOut : INoSerializationVerificationNeeded;
    private sealed record SelfUp : INoSerializationVerificationNeeded;

    public static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(30);
    private readonly DiscoveryOptions _o;
    private readonly BootstrapDecider _decider;
    private readonly BootstrapProbe _probe;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILogger _log = Log.ForContext("Role", "bootstrap");
    private readonly HashSet<ContactPoint> _inFlight = new();
    private bool _lookingUp;
    private string? _lastWait, _lastLookupError;
    private readonly Dictionary<ContactPoint, string> _lastProbeError = new();
    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(NodeOptions o) => Akka.Actor.Props.Create(() => new ClusterBootstrapActor(o));

    public ClusterBootstrapActor(NodeOptions o)
    {
        _o = o.Discovery;
        _decider = new BootstrapDecider(_cluster.SelfAddress, _o.Settings);
        _probe = new BootstrapProbe(o.Tls, TimeSpan.FromSeconds(Math.Clamp(_o.IntervalSeconds * 2, 1, 5)));
        Probing();
    }

    private void Probing()
    {
        Receive<Tick>(_ => { Lookup(); Decide(); });
        Receive<Found>(f =>
        {
            _lookingUp = false;
            if (_lastLookupError is not null) { _log.Information("Discovery answers again"); _lastLookupError = null; }
            var before = _decider.ContactPoints.ToHashSet();
            _decider.Discovered(f.Points, DateTime.UtcNow);
            if (!before.SetEquals(_decider.ContactPoints))
                _log.Information("Discovery found {Count} contact point(s): {Points}", _decider.ContactPoints.Count, string.Join(", ", _decider.ContactPoints));
            foreach (var p in _decider.ContactPoints) Probe(p);
        });
        Receive<LookupFailed>(f =>
        {
            _lookingUp = false;
            if (f.Reason != _lastLookupError) _log.Warning("Discovery failed: {Reason} (retrying every {Seconds}s)", f.Reason, _o.IntervalSeconds);
            _lastLookupError = f.Reason;
        });
        Receive<Probed>(p =>
        {
            _inFlight.Remove(p.Point);
            if (p.Answer is { } a)
            {
                _decider.Answered(p.Point, a, DateTime.UtcNow);
                _lastProbeError.Remove(p.Point);
            }
            else
            {
                _decider.Failed(p.Point);
                if (!_lastProbeError.TryGetValue(p.Point, out var last) || last != p.Error)
                    _log.Information("Contact point {Point} did not answer: {Error}", p.Point, p.Error);
                _lastProbeError[p.Point] = p.Error!;
            }
            Decide();
        });
        Receive<JoinTimedOut>(_ => { });
        Receive<SelfUp>(_ => Done());
    }

    private void Joining()
    {
        Receive<SelfUp>(_ => Done());
        Receive<JoinTimedOut>(_ =>
        {
            if (_cluster.SelfMember.Status is MemberStatus.Up or MemberStatus.WeaklyUp) { Done(); return; }
            _log.Warning("Not up {Seconds:F0}s after joining: probing the contact points again", JoinTimeout.TotalSeconds);
            _lastWait = null;
            Become(Probing);
        });
        Receive<Probed>(p => _inFlight.Remove(p.Point));
        Receive<Found>(_ => _lookingUp = false);
        Receive<LookupFailed>(_ => _lookingUp = false);
        Receive<Tick>(_ => { });
    }

    private void Done()
    {
        _log.Information("Cluster bootstrap done: this node is a member ({Address}); discovery is no longer needed", _cluster.SelfAddress);
        Context.Stop(Self);
    }

    private void Lookup()
    {
        if (_lookingUp) return;
        _lookingUp = true;
        var timeout = TimeSpan.FromSeconds(Math.Clamp(_o.IntervalSeconds * 3, 2, 10));
        Discovery.Get(Context.System).Default.Lookup(new Lookup(_o.ServiceName, _o.PortName, "tcp"), timeout).ContinueWith<object>(t =>
        {
            if (t.IsFaulted || t.IsCanceled) return new LookupFailed(t.Exception?.GetBaseException().Message ?? "timed out");
            var points = new List<ContactPoint>();
            foreach (var r in t.Result.Addresses)
                if (r.Port is int port and > 0 and <= 65535 && !string.IsNullOrWhiteSpace(r.Host)) points.Add(new ContactPoint(r.Host, port));
            return new Found(points);
        }).PipeTo(Self);
    }

    private void Probe(ContactPoint p)
    {
        if (!_inFlight.Add(p)) return;
        _probe.ProbeAsync(p).ContinueWith(t => t.IsCompletedSuccessfully ? new Probed(p, t.Result, null)
            : new Probed(p, null, t.Exception?.GetBaseException() is { } e ? e is TaskCanceledException ? "timed out" : e.Message : "timed out")).PipeTo(Self);
    }

    private void Decide()
    {
        switch (_decider.Decide(DateTime.UtcNow))
        {
            case BootstrapDecision.Wait w:
                if (w.Reason != _lastWait) _log.Information("Cluster bootstrap waits: {Reason}", w.Reason);
                _lastWait = w.Reason;
                break;
            case BootstrapDecision.JoinSeeds j:
                _log.Information("Cluster bootstrap: a cluster exists, joining it through {Seeds}", string.Join(", ", j.Seeds));
                _cluster.JoinSeedNodes(j.Seeds);
                StartJoining();
                break;
            case BootstrapDecision.Form:
                _log.Information("Cluster bootstrap: no cluster among the {Count} contact points and this node has the lowest address: forming the cluster at {Address}",
                    _decider.ContactPoints.Count, _cluster.SelfAddress);
                _cluster.Join(_cluster.SelfAddress);
                StartJoining();
                break;
        }
    }

    private void StartJoining()
    {
        Timers.StartSingleTimer("join-timeout", new JoinTimedOut(), JoinTimeout);
        Become(Joining);
    }

    protected override void PreStart()
    {
        var self = Self;
        _cluster.RegisterOnMemberUp(() => self.Tell(new SelfUp()));
        _log.Information("Cluster bootstrap: discovery {Method} ({What}), forming a new cluster only with at least {Required} contact points stable for {Margin}s",
            _o.Method, _o.IsConfig ? string.Join(", ", _o.ContactPoints) : $"pods {_o.EffectiveLabelSelector}, port {_o.PortName}",
            _o.RequiredContactPoints, _o.StableMarginSeconds);
        Timers.StartPeriodicTimer("tick", new Tick(), TimeSpan.Zero, TimeSpan.FromSeconds(_o.IntervalSeconds));
    }

    protected override void PostStop() => _probe.Dispose();
}
