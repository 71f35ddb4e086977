using Akka.Actor;
using Akka.Pattern;
using Akka.Cluster.Hosting;
using Akka.Cluster.Tools.Client;
using Akka.Hosting;
using Akka.Remote.Hosting;
using ActorSeg.Coordinator;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using ActorSeg.Messages;
using ActorSeg.TileWorker;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>Marker for the coordinator (its singleton proxy) in the actor registry.</summary>
public sealed class CoordinatorKey;

/// <summary>
/// A node's settings. Read from configuration in the usual .NET order: appsettings.json (beside the program, or
/// --config), then environment variables prefixed ACTORSEG_ (sections with '__', e.g. ACTORSEG_PERSISTENCE__PROVIDER),
/// then command-line flags.
/// </summary>
public sealed record NodeOptions
{
    public string[] Roles { get; init; } = [NodeRoles.Coordinator, NodeRoles.TileWorker, NodeRoles.GpuTrainer];
    /// <summary>Address to bind (0.0.0.0 in a container).</summary>
    public string Hostname { get; init; } = "127.0.0.1";
    /// <summary>Address other nodes reach this one at (the pod's DNS name in Kubernetes); defaults to Hostname.</summary>
    public string? PublicHostname { get; init; }
    /// <summary>0 = any free port (single-process mode).</summary>
    public int Port { get; init; } = 4053;
    /// <summary>Seed node addresses (akka.tcp://actorseg@host:port). Empty = join yourself (a cluster of one), unless
    /// <see cref="Discovery"/> finds the cluster.</summary>
    public string[] Seeds { get; init; } = [];
    /// <summary>Cluster formation without a seed list: contact points from discovery (a configured list, or the
    /// Kubernetes pods) and the bootstrap (Bootstrap/ClusterBootstrap.cs). Method none (the default): the seeds above.</summary>
    public Bootstrap.DiscoveryOptions Discovery { get; init; } = new();
    /// <summary>The bootstrap endpoint (GET /bootstrap/seed-nodes) on this port, when discovery is on.</summary>
    public int ManagementPort { get; init; } = 8558;
    /// <summary>Tile-worker slots on this node (one tile each at a time).</summary>
    public int Workers { get; init; } = Environment.ProcessorCount;
    /// <summary>Trainer device: auto, cpu or cuda.</summary>
    public string Device { get; init; } = "auto";
    public PersistenceOptions Persistence { get; init; } = new();
    /// <summary>Split-brain resolver: keep-majority after this many seconds of a stable unreachable set.</summary>
    public double DownAfterSeconds { get; init; } = 20;
    /// <summary>Heartbeats may pause this long before a node is unreachable.</summary>
    public double HeartbeatPauseSeconds { get; init; } = 5;
    public double TileDeadlineSeconds { get; init; } = 600;
    /// <summary>How often the coordinator checks deadlines and reports progress.</summary>
    public double ProgressIntervalSeconds { get; init; } = 5;
    /// <summary>A job whose prepare (the statistics pass) or stitch runs longer than this many minutes on the coordinator
    /// fails with the reason and frees its step slot (0: none).</summary>
    public double PrepareStitchDeadlineMinutes { get; init; } = 120;
    /// <summary>A job not finished this many hours after submission fails with the reason (0: none).</summary>
    public double JobDeadlineHours { get; init; } = 72;
    public int MaxTileSize { get; init; } = 16_384;
    public int MaxTilesPerJob { get; init; } = 250_000;
    public long MaxPixelsPerImage { get; init; } = 1L << 37;
    public int MaxConcurrentSteps { get; init; } = 2;
    public int MaxOpenJobs { get; init; } = 1_000;
    public int MaxAttempts { get; init; } = 3;
    public int SnapshotEvery { get; init; } = 1000;
    /// <summary>A node without any coordinator in its cluster for this long exits (code 3) so its supervisor restarts
    /// it and it joins afresh through the seeds (0 = never).</summary>
    public double ExitWithoutCoordinatorSeconds { get; init; } = 120;

    /// <summary>The coordinator's HTTP API (/healthz, /readyz, /jobs) on this port; 0 = off.</summary>
    public int HttpPort { get; init; }
    /// <summary>Serve /metrics (Prometheus text format) on this port; 0 = not at all.</summary>
    public int MetricsPort { get; init; }
    /// <summary>Bearer token that /jobs requires (from a Secret: ACTORSEG_APITOKEN). Without one, /jobs refuses everything.</summary>
    public string? ApiToken { get; init; }
    /// <summary>A read-only token: it opens the status page's data (GET /status) and nothing else.</summary>
    public string? StatusToken { get; init; }
    /// <summary>Directories that paths submitted over HTTP must lie in (comma-separated in ACTORSEG_DATAROOTS).</summary>
    public string[] DataRoots { get; init; } = [];
    /// <summary>Mutual TLS on the cluster transport (certificate, key and CA from files).</summary>
    public TlsOptions Tls { get; init; } = new();
    /// <summary>Allow binding an address other machines can reach without TLS (a network you trust).</summary>
    public bool Insecure { get; init; }
    /// <summary>The coordinator's HTTP API over HTTPS: certificate and key (PEM files); plain HTTP without them.</summary>
    public string? HttpsCertificate { get; init; }
    public string? HttpsKey { get; init; }

    /// <summary>Only this machine can reach the node (loopback): no TLS needed, and jobs without data roots are allowed.</summary>
    public bool LoopbackOnly => Exposure.IsLoopback(Hostname);

    public bool Has(string role) => Roles.Contains(role, StringComparer.OrdinalIgnoreCase);

    public static NodeOptions From(IConfiguration c)
    {
        var o = new NodeOptions();
        static string[] List(string? v) => v is null ? [] : v.Split([',', ' ', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        double D(string key, double d) => c[key] is { } s ? double.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : d;
        int I(string key, int d) => c[key] is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : d;
        try
        {
            o = o with
            {
                Roles = c["Roles"] is { } r ? List(r) : o.Roles,
                Hostname = c["Hostname"] ?? o.Hostname,
                PublicHostname = c["PublicHostname"],
                Port = I("Port", o.Port),
                Seeds = c["Seeds"] is { } s ? List(s) : o.Seeds,
                Discovery = Bootstrap.DiscoveryOptions.From(c),
                ManagementPort = I("ManagementPort", o.ManagementPort),
                Workers = I("Workers", o.Workers),
                Device = c["Device"] ?? o.Device,
                Persistence = new PersistenceOptions
                {
                    Provider = c["Persistence:Provider"] ?? "sqlite",
                    ConnectionString = c["Persistence:ConnectionString"],
                },
                DownAfterSeconds = D("DownAfterSeconds", o.DownAfterSeconds),
                HeartbeatPauseSeconds = D("HeartbeatPauseSeconds", o.HeartbeatPauseSeconds),
                TileDeadlineSeconds = D("TileDeadlineSeconds", o.TileDeadlineSeconds),
                ProgressIntervalSeconds = D("ProgressIntervalSeconds", o.ProgressIntervalSeconds),
                JobDeadlineHours = D("JobDeadlineHours", o.JobDeadlineHours),
                PrepareStitchDeadlineMinutes = D("PrepareStitchDeadlineMinutes", o.PrepareStitchDeadlineMinutes),
                MaxTileSize = I("MaxTileSize", o.MaxTileSize),
                MaxTilesPerJob = I("MaxTilesPerJob", o.MaxTilesPerJob),
                MaxPixelsPerImage = c["MaxPixelsPerImage"] is { } mpx ? long.Parse(mpx, System.Globalization.CultureInfo.InvariantCulture) : o.MaxPixelsPerImage,
                MaxConcurrentSteps = I("MaxConcurrentSteps", o.MaxConcurrentSteps),
                MaxOpenJobs = I("MaxOpenJobs", o.MaxOpenJobs),
                MaxAttempts = I("MaxAttempts", o.MaxAttempts),
                SnapshotEvery = I("SnapshotEvery", o.SnapshotEvery),
                ExitWithoutCoordinatorSeconds = D("ExitWithoutCoordinatorSeconds", o.ExitWithoutCoordinatorSeconds),
                HttpPort = I("HttpPort", o.HttpPort),
                MetricsPort = I("MetricsPort", o.MetricsPort),
                ApiToken = string.IsNullOrEmpty(c["ApiToken"]) ? null : c["ApiToken"],
                StatusToken = string.IsNullOrEmpty(c["StatusToken"]) ? null : c["StatusToken"],
                DataRoots = c["DataRoots"] is { } dr ? List(dr) : o.DataRoots,
                Tls = TlsOptions.From(c),
                Insecure = c["Insecure"] is { } ins && bool.Parse(ins),
                HttpsCertificate = string.IsNullOrWhiteSpace(c["HttpsCertificate"]) ? null : c["HttpsCertificate"],
                HttpsKey = string.IsNullOrWhiteSpace(c["HttpsKey"]) ? null : c["HttpsKey"],
            };
        }
        catch (FormatException e) { throw new ArgumentException($"configuration: {e.Message}", e); }
        return o.Validate();
    }

    public NodeOptions Validate()
    {
        foreach (var r in Roles)
            if (!NodeRoles.All.Contains(r, StringComparer.OrdinalIgnoreCase))
                throw new ArgumentException($"unknown role '{r}' (roles: {string.Join(", ", NodeRoles.All)})");
        if (Roles.Length == 0) throw new ArgumentException("a node needs at least one role");
        if (Port is < 0 or > 65535) throw new ArgumentException($"port must be 0..65535 (got {Port})");
        if (Workers < 1 || Workers > WorkersOption.Max)
            throw new ArgumentException($"workers (--workers, ACTORSEG_WORKERS) must be 1 to {WorkersOption.Max} (four per core on this machine's {Environment.ProcessorCount} cores, at least 8; got {Workers})");
        if (HttpPort is < 0 or > 65535) throw new ArgumentException($"http port must be 0..65535 (got {HttpPort})");
        if (MetricsPort is < 0 or > 65535) throw new ArgumentException($"metrics port must be 0..65535 (got {MetricsPort})");
        if (MetricsPort > 0 && (MetricsPort == HttpPort || MetricsPort == Port)) throw new ArgumentException($"metrics port {MetricsPort} is already the node's cluster or HTTP port");
        if (HttpPort > 0 && !Has(NodeRoles.Coordinator)) throw new ArgumentException("the HTTP API runs on coordinator nodes: give this node the coordinator role, or no http port");
        var seeds = Seeds.Select(s => Exposure.Normalize(s, Tls.Enabled)).ToArray();
        Discovery.Validate(this);
        Tls.Validate();
        if (!LoopbackOnly && !Tls.Enabled && !Insecure)
            throw new ArgumentException($"this node binds {Hostname}, which other machines can reach, without TLS: give it its certificate, key and the cluster's CA " +
                "(ACTORSEG_TLS__CERTIFICATE, ACTORSEG_TLS__KEY, ACTORSEG_TLS__CA, or --tls-cert, --tls-key, --tls-ca), or start it with --insecure on a network you trust");
        if (ApiToken is { } token && (Secrets.IsPlaceholder(token) || token.Length < 16))
            throw new ArgumentException("the API token (ACTORSEG_APITOKEN) is a placeholder or shorter than 16 characters: make one with `openssl rand -hex 32`");
        if (StatusToken is { } st && (Secrets.IsPlaceholder(st) || st.Length < 16 || st == ApiToken))
            throw new ArgumentException("the status token (ACTORSEG_STATUSTOKEN) is a placeholder, shorter than 16 characters or the API token itself: make one with `openssl rand -hex 32`");
        if ((HttpsCertificate is null) != (HttpsKey is null))
            throw new ArgumentException("HTTPS needs both a certificate and its key (ACTORSEG_HTTPSCERTIFICATE and ACTORSEG_HTTPSKEY)");
        foreach (var f in new[] { HttpsCertificate, HttpsKey })
            if (f is not null && !File.Exists(f)) throw new ArgumentException($"{f}: HTTPS certificate or key file not found");
        Persistence.Validate();
        return this with { Seeds = seeds };
    }
}

public static class NodeRoles
{
    public const string Coordinator = "coordinator", TileWorker = "tile-worker", GpuTrainer = "gpu-trainer";
    public static readonly string[] All = [Coordinator, TileWorker, GpuTrainer];
}

/// <summary>Where the coordinator's journal lives: an embedded SQLite file by default, PostgreSQL by connection string.</summary>
public sealed record PersistenceOptions
{
    public string Provider { get; init; } = "sqlite";
    /// <summary>SQLite: "Data Source=PATH" (default: actorseg-journal.db in the working directory). PostgreSQL: an Npgsql connection string.</summary>
    public string? ConnectionString { get; init; }

    public bool IsPostgres => Provider.Equals("postgresql", StringComparison.OrdinalIgnoreCase) || Provider.Equals("postgres", StringComparison.OrdinalIgnoreCase);

    /// <summary>The journal of a one-process run (<see cref="LocalRuntime"/>): Akka's in-memory journal and snapshot
    /// store, which live and die with the process. Not a provider a node can be given: nothing could replay it.</summary>
    public bool InMemory { get; init; }

    public void Validate()
    {
        if (InMemory) return;
        if (!IsPostgres && !Provider.Equals("sqlite", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"persistence provider must be sqlite or postgresql (got '{Provider}')");
        if (IsPostgres && string.IsNullOrWhiteSpace(ConnectionString))
            throw new ArgumentException("persistence provider postgresql needs a connection string (ACTORSEG_PERSISTENCE__CONNECTIONSTRING or --db)");
        if (ConnectionString is { } cs && Secrets.PasswordOf(cs) is { } pw && Secrets.IsPlaceholder(pw))
            throw new ArgumentException($"the journal's password is a placeholder ({Secrets.Redact(cs)}): set a real one");
    }

    public string EffectiveConnectionString => ConnectionString ?? "Data Source=actorseg-journal.db";

    public string Hocon()
    {
        // the one-process run: no database to start (the SQL plugins' first queries cost about half a second of every
        // command, for a journal no other process could ever read)
        if (InMemory) return """
            akka.persistence {
              journal.plugin = "akka.persistence.journal.inmem"
              snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
            }
            """;
        string provider = IsPostgres ? "PostgreSQL.15" : "SQLite.MS";
        string cs = EffectiveConnectionString.Replace("\\", "\\\\").Replace("\"", "\\\"");
        return $$"""
            akka.persistence {
              journal {
                plugin = "akka.persistence.journal.sql"
                sql {
                  class = "Akka.Persistence.Sql.Journal.SqlWriteJournal, Akka.Persistence.Sql"
                  connection-string = "{{cs}}"
                  provider-name = "{{provider}}"
                  auto-initialize = true
                }
              }
              query.journal.sql {
                class = "Akka.Persistence.Sql.Query.SqlReadJournalProvider, Akka.Persistence.Sql"
                connection-string = "{{cs}}"
                provider-name = "{{provider}}"
              }
              snapshot-store {
                plugin = "akka.persistence.snapshot-store.sql"
                sql {
                  class = "Akka.Persistence.Sql.Snapshot.SqlSnapshotStore, Akka.Persistence.Sql"
                  connection-string = "{{cs}}"
                  provider-name = "{{provider}}"
                  auto-initialize = true
                }
              }
            }
            """;
    }

    /// <summary>Describes the store with every secret redacted, for logs.</summary>
    public string Describe() => InMemory ? "in memory (this process only)" : $"{(IsPostgres ? "PostgreSQL" : "SQLite")} ({Secrets.Redact(EffectiveConnectionString)})";

    /// <summary>Fails early, with a clear message, when the database cannot be reached.</summary>
    public async Task CheckReachableAsync(CancellationToken ct)
    {
        if (InMemory) return;
        try
        {
            if (IsPostgres)
            {
                await using var c = new Npgsql.NpgsqlConnection(EffectiveConnectionString);
                await c.OpenAsync(ct);
            }
            else
            {
                await using var c = new Microsoft.Data.Sqlite.SqliteConnection(EffectiveConnectionString);
                await c.OpenAsync(ct);
                // SQLite opens any file lazily: reading its schema is what finds a file that is no database, or a damaged one
                await using var q = c.CreateCommand();
                q.CommandText = "SELECT count(*) FROM sqlite_master";
                await q.ExecuteScalarAsync(ct);
            }
        }
        catch (Microsoft.Data.Sqlite.SqliteException e) when (e.SqliteErrorCode is 26 or 11) // SQLITE_NOTADB, SQLITE_CORRUPT
        {
            // waiting does not mend a file: before, the node came up and its journal failed to start every second, for ever
            throw new DatabaseUnreachableException($"the job database {Describe()} is not a readable SQLite database ({e.Message}): " +
                "a damaged or foreign file; restore it from a copy, or give --db another file (a new one starts an empty journal)", e, permanent: true);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new DatabaseUnreachableException($"the job database {Describe()} cannot be reached: {e.Message}", e);
        }
    }
}

/// <param name="permanent">trying again cannot help (the file is not a database), as opposed to a server not up yet</param>
public sealed class DatabaseUnreachableException(string message, Exception inner, bool permanent = false) : Exception(message, inner)
{
    public bool Permanent { get; } = permanent;
}

/// <summary>
/// One ActorSeg node: an Akka.Hosting host that joins the cluster and starts the actors of its roles. The
/// single-process mode of the CLI commands is this same host with every role and the embedded defaults.
/// </summary>
public static class NodeHost
{
    public const string SystemName = "actorseg";

    public static string Hocon(NodeOptions o) => $$"""
        akka.loglevel = WARNING
        akka.stdout-loglevel = OFF
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        akka.actor.provider = cluster
        akka.remote.dot-netty.tcp.maximum-frame-size = 4MiB
        akka.cluster {
          downing-provider-class = "Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster"
          split-brain-resolver {
            active-strategy = keep-majority
            stable-after = {{o.DownAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}}s
          }
          failure-detector.acceptable-heartbeat-pause = {{o.HeartbeatPauseSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}}s
          seed-node-timeout = 2s
          retry-unsuccessful-join-after = 2s
          shutdown-after-unsuccessful-join-seed-nodes = off
          log-info = off
          singleton.hand-over-retry-interval = 1s
          singleton-proxy.singleton-identification-interval = 500ms
        }
        akka.cluster.client.receptionist.response-tunnel-receive-timeout = 120s
        akka.coordinated-shutdown.phases.service-requests-done.timeout = 10s
        akka.persistence.journal-plugin-fallback.recovery-event-timeout = 120s
        {{(OnlyNode(o) ? "akka.cluster.singleton.hand-over-retry-interval = 20ms\nakka.cluster.leader-actions-interval = 20ms\nakka.cluster.singleton-proxy.singleton-identification-interval = 50ms\nakka.cluster.periodic-tasks-initial-delay = 100ms" : "")}}
        """;

    /// <summary>A node alone for good: the single-process runtime of the CLI commands (a port nobody knows, no seeds). Its
    /// coordinator singleton has no one to hand over to when it stops, so it waits 20 ms for a successor, not the
    /// cluster's 1 s (that second was most of a small command's shutdown), and its leader moves it out of the cluster
    /// every 20 ms, not 1 s (the host's stop 0.19 → 0.10 s with both); its proxy looks for the singleton every
    /// 50 ms, not 500 (the first job of every command waited for the proxy's second look); and its leader's periodic
    /// tasks start after 100 ms, not 1 s (a command that ended sooner waited for them to leave its cluster of one).</summary>
    private static bool OnlyNode(NodeOptions o) => o.Port == 0 && o.Seeds.Length == 0 && !o.Discovery.Enabled;

    /// <summary>Adds the actor system for these options to a host builder. <paramref name="onStarted"/> sees the system once the roles' actors exist.</summary>
    public static void Configure(IServiceCollection services, NodeOptions o, Action<ActorSystem, IActorRegistry>? onStarted = null)
    {
        services.AddSerilog(Log.Logger, dispose: false);
        services.AddAkka(SystemName, (b, _) =>
        {
            if (o.Tls.Enabled)
            {
                // mutual TLS: every connection in and out presents a certificate of the cluster's CA, or is refused
                b.AddHocon("akka.remote.dot-netty.tcp.enable-ssl = true", HoconAddMode.Prepend);
                b.AddSetup(o.Tls.CreateSetup("node"));
            }
            b.AddHocon(Hocon(o), HoconAddMode.Prepend);
            b.AddHocon(ActorSegSerializer.Hocon, HoconAddMode.Prepend);
            b.AddHocon(o.Persistence.Hocon(), HoconAddMode.Prepend);
            if (o.Discovery.Enabled) b.AddHocon(o.Discovery.Hocon(), HoconAddMode.Prepend);
            b.ConfigureLoggers(l => { l.ClearLoggers(); l.AddLoggerFactory(); });
            b.WithRemoting(o.Hostname, o.Port, o.PublicHostname ?? o.Hostname);
            b.WithClustering(new ClusterOptions { Roles = o.Roles, SeedNodes = o.Seeds.Length > 0 ? o.Seeds : null });
            var singleton = new ClusterSingletonOptions { Role = NodeRoles.Coordinator, LogSingletonIdentificationFailure = false };
            var settings = new CoordinatorSettings
            {
                TileDeadline = TimeSpan.FromSeconds(o.TileDeadlineSeconds), MaxAttempts = o.MaxAttempts, SnapshotEvery = o.SnapshotEvery,
                ProgressInterval = TimeSpan.FromSeconds(Math.Max(0.05, o.ProgressIntervalSeconds)),
                JobDeadline = TimeSpan.FromHours(o.JobDeadlineHours), PrepareStitchDeadline = TimeSpan.FromMinutes(o.PrepareStitchDeadlineMinutes), MaxTileSize = o.MaxTileSize, MaxTilesPerJob = o.MaxTilesPerJob,
                MaxPixelsPerImage = o.MaxPixelsPerImage, MaxConcurrentSteps = o.MaxConcurrentSteps, MaxOpenJobs = o.MaxOpenJobs,
                // a node others can reach refuses every job until it is told which folders jobs may use
                Policy = new JobPolicy(new DataRoots(o.DataRoots), RequireRoots: !o.LoopbackOnly),
            };
            var roots = new DataRoots(o.DataRoots);
            if (o.Has(NodeRoles.Coordinator))
            {
                // a coordinator whose journal fails stops; its supervisor starts it again with backoff (1 s doubling to 30 s),
                // and it recovers from the journal once the database answers again
                var supervised = BackoffSupervisor.Props(Backoff.OnStop(GraphCoordinatorActor.Props(settings), "coordinator",
                    TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), 0.2).WithDefaultStoppingStrategy());
                b.WithSingleton<CoordinatorKey>("coordinator", supervised, singleton, createProxyToo: true);
                b.WithClusterClientReceptionist("receptionist", NodeRoles.Coordinator);
            }
            else b.WithSingletonProxy<CoordinatorKey>("coordinator", singleton);
            b.WithActors((system, registry) =>
            {
                var coordinator = registry.Get<CoordinatorKey>();
                if (o.Has(NodeRoles.Coordinator)) ClusterClientReceptionist.Get(system).RegisterService(coordinator);
                var workers = new List<IActorRef>();
                var isCoordinator = CoordinatorIdentity.For(system); // work is taken from the coordinator singleton only
                // beside the coordinator, idle workers give their buffers back at once: the stitch that follows a job's
                // last tile builds the graph in this process's memory
                var keepBuffers = o.Has(NodeRoles.Coordinator) ? TileWorkerActor.KeepBuffersBesideCoordinator : TileWorkerActor.KeepBuffers;
                if (o.Has(NodeRoles.TileWorker))
                    for (int i = 0; i < o.Workers; i++) workers.Add(system.ActorOf(TileWorkerActor.Props(coordinator, null, isCoordinator, roots, keepBuffers), $"tile-worker-{i + 1}"));
                if (o.Has(NodeRoles.GpuTrainer)) system.ActorOf(TrainerActor.Props(coordinator, o.Device, null, isCoordinator, roots), "gpu-trainer");
                // a leaving node hands its unfinished tiles back before it leaves the cluster
                if (workers.Count > 0)
                    CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseServiceRequestsDone, "hand-back-tiles", async () =>
                    {
                        await Task.WhenAll(workers.Select(w => w.Ask<Akka.Done>(TileWorkerActor.Leave.Instance, TimeSpan.FromSeconds(5))));
                        return Akka.Done.Instance;
                    });
                // no seeds: discovery and the bootstrap find the cluster (or form it), or else this node is a cluster of its own
                if (o.Discovery.Enabled) system.ActorOf(Bootstrap.ClusterBootstrapActor.Props(o), "cluster-bootstrap");
                else if (o.Seeds.Length == 0) Akka.Cluster.Cluster.Get(system).Join(Akka.Cluster.Cluster.Get(system).SelfAddress);
                onStarted?.Invoke(system, registry);
            });
        });
    }

    /// <summary>The actor-system path clients send to through the receptionist.</summary>
    public const string CoordinatorServicePath = "/user/coordinator-proxy";

    /// <summary>Where the coordinator lives on the oldest coordinator node: singleton manager "coordinator", the singleton (its
    /// backoff supervisor) "coordinator", the coordinator actor itself "coordinator".</summary>
    public const string CoordinatorSingletonPath = "/user/coordinator/coordinator/coordinator";
}
