using System.Threading.Channels;
using Akka.Actor;
using Akka.Hosting;
using ActorSeg.Coordinator;
using ActorSeg.Messages;
using ActorSeg.TileWorker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>Marker for the coordinator in the actor registry.</summary>
public sealed class CoordinatorKey;

/// <summary>
/// Every role in one process (the single-machine mode): an Akka.Hosting host with the coordinator and a pool of
/// tile workers, talking through the same messages that cross the network in a cluster.
/// </summary>
public sealed class LocalRuntime : IAsyncDisposable
{
    private readonly IHost _host;
    public ActorSystem System { get; }
    public IActorRef Coordinator { get; }

    private LocalRuntime(IHost host, ActorSystem system, IActorRef coordinator) { _host = host; System = system; Coordinator = coordinator; }

    public static async Task<LocalRuntime> StartAsync(int workers, CoordinatorSettings? settings = null)
    {
        if (workers < 1) throw new ArgumentException($"workers must be >= 1 (got {workers})");
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddSerilog(Log.Logger, dispose: false);
        builder.Services.AddAkka("actorseg", (b, _) =>
        {
            b.AddHocon("akka.loglevel = WARNING\nakka.stdout-loglevel = WARNING\nakka.log-dead-letters = off\nakka.log-dead-letters-during-shutdown = off", HoconAddMode.Prepend);
            b.ConfigureLoggers(l => { l.ClearLoggers(); l.AddLoggerFactory(); });
            b.WithActors((system, registry) =>
            {
                var coord = system.ActorOf(GraphCoordinatorActor.Props(settings ?? new CoordinatorSettings()), "coordinator");
                registry.Register<CoordinatorKey>(coord);
                for (int i = 0; i < workers; i++) system.ActorOf(TileWorkerActor.Props(coord), $"tile-worker-{i + 1}");
            });
        });
        var host = builder.Build();
        await host.StartAsync();
        var system = host.Services.GetRequiredService<ActorSystem>();
        var registry = host.Services.GetRequiredService<ActorRegistry>();
        return new LocalRuntime(host, system, registry.Get<CoordinatorKey>());
    }

    /// <summary>Submits a job and streams back everything the coordinator says about it until it ends.</summary>
    public async IAsyncEnumerable<object> RunJobAsync(SubmitGraphJob job, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        var channel = Channel.CreateUnbounded<object>();
        var watcher = System.ActorOf(Props.Create(() => new JobWatcher(Coordinator, job, channel.Writer)), $"job-{job.JobId}");
        try
        {
            await foreach (var m in channel.Reader.ReadAllAsync(ct)) yield return m;
        }
        finally { System.Stop(watcher); }
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }

    private sealed class JobWatcher : ReceiveActor
    {
        public JobWatcher(IActorRef coordinator, SubmitGraphJob job, ChannelWriter<object> output)
        {
            coordinator.Tell(job);
            Receive<GraphJobCompleted>(m => { output.TryWrite(m); output.TryComplete(); });
            Receive<GraphJobFailed>(m => { output.TryWrite(m); output.TryComplete(); });
            ReceiveAny(m => output.TryWrite(m));
        }
    }
}
