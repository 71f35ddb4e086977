using System.CommandLine;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using ILogger = Serilog.ILogger;
using Microsoft.Extensions.Logging;
using Serilog;

namespace ActorSeg.Cli;

/// <summary><c>actorseg node</c>: run one cluster node with the given roles until SIGTERM/Ctrl-C.</summary>
public static class NodeCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var config = new Option<FileInfo?>("--config") { Description = "A JSON settings file (keys as in appsettings.json); read after appsettings.json beside the program, before environment variables (ACTORSEG_*) and flags." };
        var roles = new Option<string?>("--roles") { Description = "Comma-separated roles: coordinator, tile-worker, gpu-trainer (default: all three). Env ACTORSEG_ROLES." };
        var hostname = new Option<string?>("--hostname") { Description = "Address to bind (default 127.0.0.1; 0.0.0.0 in containers). Env ACTORSEG_HOSTNAME." };
        var publicHost = new Option<string?>("--public-hostname") { Description = "Address other nodes use to reach this one (default: --hostname). Env ACTORSEG_PUBLICHOSTNAME." };
        var port = new Option<int?>("--port") { Description = "Port (default 4053). Env ACTORSEG_PORT." };
        var seeds = new Option<string?>("--seeds") { Description = "Comma-separated seed nodes, akka.tcp://actorseg@HOST:PORT (default: none, the node forms a cluster of its own, unless --discovery finds one). Env ACTORSEG_SEEDS." };
        var discovery = new Option<string?>("--discovery") { Description = "Find the cluster without a seed list: none (default: --seeds), config (the --contact-points) or kubernetes (the pods matching ACTORSEG_DISCOVERY__LABELSELECTOR, default actorseg/cluster=actorseg, port named ACTORSEG_DISCOVERY__PORTNAME, default management). Env ACTORSEG_DISCOVERY__METHOD." };
        var contactPoints = new Option<string?>("--contact-points") { Description = "With --discovery config: every node's bootstrap endpoint, HOST:PORT comma-separated (their --management-port). Env ACTORSEG_DISCOVERY__CONTACTPOINTS." };
        var managementPort = new Option<int?>("--management-port") { Description = "With --discovery: serve the bootstrap endpoint (/bootstrap/seed-nodes) on this port (default 8558). Env ACTORSEG_MANAGEMENTPORT." };
        var requiredContactPoints = new Option<int?>("--required-contact-points") { Description = "With --discovery: form a new cluster only when at least this many contact points are found (default 2). Env ACTORSEG_DISCOVERY__REQUIREDCONTACTPOINTS." };
        var workers = new Option<int?>("--workers", "-w") { Description = "Tile-worker slots on this node (default: the number of cores). Env ACTORSEG_WORKERS." };
        var device = new Option<string?>("--device") { Description = "Trainer device: auto, cpu or cuda. Env ACTORSEG_DEVICE." };
        var dbProvider = new Option<string?>("--db-provider") { Description = "Job journal: sqlite (default) or postgresql. Env ACTORSEG_PERSISTENCE__PROVIDER." };
        var httpPort = new Option<int?>("--http-port") { Description = "Serve the HTTP API (/healthz, /readyz, POST /jobs, GET /jobs/ID) on this port (coordinator nodes). Env ACTORSEG_HTTPPORT; the token from ACTORSEG_APITOKEN, the allowed paths from ACTORSEG_DATAROOTS." };
        var metricsPort = new Option<int?>("--metrics-port") { Description = "Serve /metrics in the Prometheus text format on this port (any role: jobs, tiles, retries, quarantines, journal latency, busy slots). Env ACTORSEG_METRICSPORT." };
        var db = new Option<string?>("--db") { Description = "Journal connection string (sqlite default: Data Source=actorseg-journal.db). Env ACTORSEG_PERSISTENCE__CONNECTIONSTRING." };
        var dataRoots = new Option<string?>("--data-roots") { Description = "Comma-separated folders every job's inputs and outputs must lie in. Env ACTORSEG_DATAROOTS. A node reachable from other machines refuses every job without them." };
        var tls = TlsFlags.Create();
        var insecure = new Option<bool>("--insecure") { Description = "Allow binding an address other machines can reach without TLS (only on a network you trust). Env ACTORSEG_INSECURE." };
        var cmd = new Command("node", "Run a cluster node with the given roles; stops cleanly (handing back its work) on SIGTERM or Ctrl-C.")
        {
            config, roles, hostname, publicHost, port, seeds, discovery, contactPoints, managementPort, requiredContactPoints, workers, device, dbProvider, db, httpPort, metricsPort, dataRoots, tls.Cert, tls.Key, tls.Ca, insecure,
        };
        cmd.SetAction(async (pr, _) =>
        {
            var flags = new Dictionary<string, string?>
            {
                ["Roles"] = pr.GetValue(roles), ["Hostname"] = pr.GetValue(hostname), ["PublicHostname"] = pr.GetValue(publicHost),
                ["Port"] = pr.GetValue(port)?.ToString(), ["Seeds"] = pr.GetValue(seeds), ["Workers"] = pr.GetValue(workers)?.ToString(),
                ["Device"] = pr.GetValue(device), ["Persistence:Provider"] = pr.GetValue(dbProvider), ["Persistence:ConnectionString"] = pr.GetValue(db), ["HttpPort"] = pr.GetValue(httpPort)?.ToString(), ["MetricsPort"] = pr.GetValue(metricsPort)?.ToString(),
                ["DataRoots"] = pr.GetValue(dataRoots), ["Insecure"] = pr.GetValue(insecure) ? "true" : null,
                ["Discovery:Method"] = pr.GetValue(discovery), ["Discovery:ContactPoints"] = pr.GetValue(contactPoints),
                ["ManagementPort"] = pr.GetValue(managementPort)?.ToString(), ["Discovery:RequiredContactPoints"] = pr.GetValue(requiredContactPoints)?.ToString(),
            };
            tls.AddTo(pr, flags);
            NodeOptions o;
            try { o = NodeOptions.From(BuildConfiguration(pr.GetValue(config)?.FullName, flags)); }
            catch (Exception e) when (e is ArgumentException or FileNotFoundException or InvalidDataException or FormatException)
            {
                Console.Error.WriteLine($"actorseg node: {e.Message}");
                return ExitCodes.Usage;
            }
            Logging.Configure(pr.GetValue(verbose), defaultJson: Console.IsOutputRedirected, toStdout: true,
                node: $"{o.PublicHostname ?? o.Hostname}:{o.Port}", roles: string.Join(",", o.Roles));
            return await RunAsync(o);
        });
        return cmd;
    }

    public static IConfiguration BuildConfiguration(string? file, IDictionary<string, string?> flags)
    {
        var b = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(AppContext.BaseDirectory, "appsettings.json"), optional: true);
        if (file is not null)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"{file}: settings file not found");
            b.AddJsonFile(file, optional: false);
        }
        b.AddEnvironmentVariables("ACTORSEG_");
        b.AddInMemoryCollection(flags.Where(kv => kv.Value is not null));
        try { return b.Build(); }
        catch (Exception e) when (e is FormatException or InvalidDataException) { throw new InvalidDataException($"{file}: {e.Message}", e); }
    }

    /// <summary>/metrics for Prometheus on the node's own address (every role): ActorSeg's meters (see Core.Telemetry)
    /// and the process's and runtime's.</summary>
    private static IDisposable? StartMetrics(NodeOptions o, Serilog.ILogger log)
    {
        if (o.MetricsPort <= 0) return null;
        Prometheus.Metrics.ConfigureMeterAdapter(m =>
        {
            m.InstrumentFilterPredicate = i => i.Meter.Name == Core.Telemetry.MeterName || i.Meter.Name.StartsWith("System.Runtime", StringComparison.Ordinal);
            m.ResolveHistogramBuckets = i => i.Name.Contains("journal") ? [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
                : [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
        });
        // prometheus-net starts its adapters at the first collection: collect once now, so that nothing counted
        // before the first scrape is lost
        Prometheus.Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null).GetAwaiter().GetResult();
        var host = System.Net.IPAddress.TryParse(o.Hostname, out _) || o.Hostname == "localhost" ? o.Hostname : "*";
        var server = new Prometheus.KestrelMetricServer(host, o.MetricsPort).Start();
        log.Information("Metrics on http://{Host}:{Port}/metrics (Prometheus text format)", o.Hostname, o.MetricsPort);
        return server;
    }

    /// <summary>
    /// Runs the node until SIGTERM, SIGINT, a downing or a fatal start-up error. The node owns its termination signals
    /// from the first line to the last (Program turns System.CommandLine's handler off for this command): two owners
    /// raced, and a signal arriving while the other had already stopped the host crashed the process (exit 134).
    /// </summary>
    public static async Task<int> RunAsync(NodeOptions o)
    {
        var log = Log.ForContext("Role", "node");
        // never disposed: a signal may still be delivered while the process winds down, after this method returned
        var stopping = new CancellationTokenSource();
        var ct = stopping.Token;
        IHostApplicationLifetime? lifetime = null;
        void OnSignal(PosixSignalContext c)
        {
            c.Cancel = true; // the host's stop hands the node's work back; the process must live through it
            if (!stopping.IsCancellationRequested) log.Information("{Signal} received: stopping", c.Signal);
            try { stopping.Cancel(); lifetime?.StopApplication(); }
            catch (ObjectDisposedException) { } // the host is already gone: nothing is left to stop
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        try { return await RunUntilStoppedAsync(o, log, ct, l => lifetime = l); }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            log.Information("ActorSeg node stopped before it was up (exit code {ExitCode})", ExitCodes.Ok);
            return ExitCodes.Ok;
        }
    }

    private static async Task<int> RunUntilStoppedAsync(NodeOptions o, ILogger log, CancellationToken ct, Action<IHostApplicationLifetime> started)
    {
        log.Information("ActorSeg node starting: roles {Roles}, {Host}:{Port}, {Seeds}, {Workers} worker slots, journal {Journal}, protocol {Protocol}, transport {Transport}, data roots [{Roots}]",
            string.Join(",", o.Roles), o.PublicHostname ?? o.Hostname, o.Port,
            o.Discovery.Enabled ? $"discovery {o.Discovery.Method}" : $"seeds [{string.Join(", ", o.Seeds)}]", o.Has(NodeRoles.TileWorker) ? o.Workers : 0,
            o.Has(NodeRoles.Coordinator) ? o.Persistence.Describe() : "-", Messages.ProtocolVersion.Text,
            o.Tls.Enabled ? "mutual TLS" : o.LoopbackOnly ? "plain TCP (loopback only)" : "plain TCP (--insecure)", string.Join(", ", o.DataRoots));
        if (!o.Tls.Enabled && !o.LoopbackOnly) log.Warning("Running without TLS on {Host} (--insecure): anyone who reaches port {Port} can join this cluster and send it work", o.Hostname, o.Port);
        if (o.Has(NodeRoles.Coordinator))
        {
            // the journal is where every job lives: wait for it a little (a database pod may start after us), then fail clearly
            for (int attempt = 1; ; attempt++)
            {
                try { await o.Persistence.CheckReachableAsync(ct); break; }
                catch (DatabaseUnreachableException e) when (attempt < 6 && !e.Permanent)
                {
                    var wait = TimeSpan.FromSeconds(Math.Min(16, 1 << (attempt - 1)));
                    log.Warning("{Error}; retrying in {Seconds}s (attempt {Attempt} of 6)", e.Message, wait.TotalSeconds, attempt);
                    await Task.Delay(wait, ct);
                }
                catch (DatabaseUnreachableException e)
                {
                    log.Fatal("{Error}; giving up (no job state was touched)", e.Message);
                    return ExitCodes.NoDatabase;
                }
            }
        }
        int exitCode = ExitCodes.Ok;
        IHostApplicationLifetime? lifetime = null;
        Action<int> exit = code => { exitCode = code; lifetime?.StopApplication(); };
        void Services(IServiceCollection services)
        {
            services.AddSingleton<IHostLifetime, ConsoleLifetime>();
            services.Configure<ConsoleLifetimeOptions>(c => c.SuppressStatusMessages = true);
            services.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(30));
            NodeHost.Configure(services, o, (system, _) => system.ActorOf(Props.Create(() => new ClusterListener(o, exit)), "cluster-listener"));
        }
        IHost host;
        if (o.HttpPort > 0)
        {
            // the coordinator's HTTP API lives in the same host as the actor system
            var wb = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
            wb.Logging.ClearProviders();
            wb.WebHost.ConfigureKestrel(k =>
            {
                k.Limits.MaxRequestBodySize = HttpApi.MaxBodyBytes;
                void Https(Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions l)
                {
                    if (o.HttpsCertificate is null) return;
                    using var pem = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(o.HttpsCertificate, o.HttpsKey);
                    l.UseHttps(System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12(
                        pem.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12), null));
                }
                if (System.Net.IPAddress.TryParse(o.Hostname, out var ip)) k.Listen(ip, o.HttpPort, Https); else k.ListenAnyIP(o.HttpPort, Https);
            });
            Services(wb.Services);
            var app = wb.Build();
            HttpApi.Map(app, o);
            host = app;
            log.Information("HTTP API on {Scheme}://{Host}:{Port} (/healthz, /readyz, /jobs)", o.HttpsCertificate is null ? "http" : "https", o.Hostname, o.HttpPort);
        }
        else
        {
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            Services(builder.Services);
            host = builder.Build();
        }
        using var hostScope = host;
        lifetime = host.Services.GetRequiredService<IHostApplicationLifetime>();
        started(lifetime);
        await host.StartAsync(ct);
        using var metrics = StartMetrics(o, log);
        var system = host.Services.GetRequiredService<ActorSystem>();
        // the bootstrap's endpoint: the other nodes ask it whether this node is in a cluster (addresses only)
        WebApplication? management = null;
        if (o.Discovery.Enabled)
        {
            try { management = await Bootstrap.ManagementEndpoint.StartAsync(o, system, log, ct); }
            catch (IOException e)
            {
                // without it no other node can learn whether this one is in a cluster: stop rather than half-work
                log.Fatal("The cluster bootstrap endpoint cannot listen on port {Port}: {Error}", o.ManagementPort, e.Message);
                await host.StopAsync(CancellationToken.None);
                return ExitCodes.Usage;
            }
        }
        await using var managementScope = management;
        // a node the cluster downed (split-brain resolver) terminates its actor system: the process ends with it
        // (SIGTERM may reach Akka's own shutdown hook first: only a downing, or a join that never succeeded, is an error)
        _ = system.WhenTerminated.ContinueWith(_ =>
        {
            var reason = CoordinatedShutdown.Get(system).ShutdownReason;
            if (reason is CoordinatedShutdown.ClusterDowningReason or CoordinatedShutdown.ClusterJoinUnsuccessfulReason)
            {
                log.Error("This node was {Reason}: stopping (exit code {Code}) so that its supervisor restarts it into the cluster",
                    reason is CoordinatedShutdown.ClusterDowningReason ? "downed by the cluster" : "unable to join the cluster", ExitCodes.NoCoordinator);
                exitCode = ExitCodes.NoCoordinator;
            }
            lifetime.StopApplication();
        });
        log.Information("ActorSeg node up at {Address}", Cluster.Get(system).SelfAddress.ToString());
        await host.WaitForShutdownAsync(CancellationToken.None);
        // a coordinator may still be deleting an ended job's work folder (in the background): finish it, within the
        // grace period a supervisor gives
        if (!Core.IO.GraphOutputs.WaitForCleaning(TimeSpan.FromSeconds(20))) log.Warning("A job's work folder was still being deleted at exit");
        log.Information("ActorSeg node stopped (exit code {ExitCode})", exitCode);
        return exitCode;
    }
}

/// <summary>
/// Logs cluster membership as it changes (joined, up, unreachable, reachable again, downed, left, removed) and stops a
/// node that has had no coordinator in its cluster for too long, so that its supervisor restarts it and it joins afresh.
/// </summary>
public sealed class ClusterListener : ReceiveActor, IWithTimers
{
    private sealed record Check : INoSerializationVerificationNeeded;
    private readonly Cluster _cluster = Cluster.Get(Context.System);
    private readonly ILogger _log = Log.ForContext("Role", "cluster");
    private DateTime _coordinatorSeen = DateTime.UtcNow;
    private readonly HashSet<UniqueAddress> _up = [];
    public ITimerScheduler Timers { get; set; } = null!;

    public ClusterListener(NodeOptions o, Action<int> exit)
    {
        string M(Member m) => $"{m.Address} [{string.Join(",", m.Roles)}]";
        Receive<ClusterEvent.MemberJoined>(e => _log.Information("Member joining: {Member}", M(e.Member)));
        // the count is of the members this node has seen come up and not yet seen removed, kept from the events
        // themselves: the cluster's state read while an event is handled may be ahead of or behind that event
        Receive<ClusterEvent.MemberUp>(e => { _up.Add(e.Member.UniqueAddress); _log.Information("Member up: {Member} ({Members} members)", M(e.Member), _up.Count); });
        Receive<ClusterEvent.MemberLeft>(e => _log.Information("Member leaving: {Member}", M(e.Member)));
        Receive<ClusterEvent.MemberExited>(e => _log.Information("Member exited: {Member}", M(e.Member)));
        Receive<ClusterEvent.MemberDowned>(e => _log.Warning("Member downed: {Member}", M(e.Member)));
        Receive<ClusterEvent.MemberRemoved>(e => { _up.Remove(e.Member.UniqueAddress); _log.Information("Member removed: {Member} (was {Previous})", M(e.Member), e.PreviousStatus); });
        Receive<ClusterEvent.UnreachableMember>(e => _log.Warning("Member unreachable: {Member}", M(e.Member)));
        Receive<ClusterEvent.ReachableMember>(e => _log.Information("Member reachable again: {Member}", M(e.Member)));
        Receive<ClusterEvent.LeaderChanged>(e => _log.Information("Cluster leader: {Leader}", e.Leader?.ToString() ?? "none"));
        Receive<ClusterEvent.IClusterDomainEvent>(_ => { });
        Receive<Check>(_ =>
        {
            var s = _cluster.State;
            bool any = s.Members.Any(m => m.Status == MemberStatus.Up && m.HasRole(NodeRoles.Coordinator) && !s.Unreachable.Contains(m));
            if (any || o.Has(NodeRoles.Coordinator)) { _coordinatorSeen = DateTime.UtcNow; return; }
            var missing = DateTime.UtcNow - _coordinatorSeen;
            if (o.ExitWithoutCoordinatorSeconds > 0 && missing.TotalSeconds > o.ExitWithoutCoordinatorSeconds)
            {
                _log.Error("No reachable coordinator in the cluster for {Seconds:F0}s: stopping so this node can be restarted and join afresh", missing.TotalSeconds);
                exit(ExitCodes.NoCoordinator);
            }
        });
    }

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent),
            typeof(ClusterEvent.IReachabilityEvent), typeof(ClusterEvent.LeaderChanged));
        Timers.StartPeriodicTimer("check", new Check(), TimeSpan.FromSeconds(5));
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);
}
