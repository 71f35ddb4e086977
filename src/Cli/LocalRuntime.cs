using System.Threading.Channels;
using Akka.Actor;
using Akka.Hosting;
using ActorSeg.Coordinator;
using ActorSeg.Messages;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace ActorSeg.Cli;

/// <summary>
/// Every role in one process (the single-machine mode): the same node host as a cluster, as a cluster of one on
/// 127.0.0.1. Its journal is an SQLite file when one is given; otherwise Akka's in-memory journal, which lives as long
/// as the run. (The run's own journal was a temporary SQLite file deleted at the end, then a private in-memory SQLite
/// database: no later process could find and replay either, and starting the SQL plugins cost about half a second of
/// every command.)
/// </summary>
public sealed class LocalRuntime : IAsyncDisposable
{
    private readonly IHost _host;
    public ActorSystem System { get; }
    public IActorRef Coordinator { get; }

    private LocalRuntime(IHost host, ActorSystem system, IActorRef coordinator)
    {
        _host = host; System = system; Coordinator = coordinator;
    }

    public static async Task<LocalRuntime> StartAsync(int workers, CoordinatorSettings? settings = null, string device = "auto", string? journal = null)
    {
        if (workers < 1) throw new ArgumentException($"workers must be >= 1 (got {workers})");
        var o = new NodeOptions
        {
            Port = 0, Workers = workers, Device = device, Seeds = [],
            Persistence = journal is null
                ? new PersistenceOptions { InMemory = true }
                : new PersistenceOptions { Provider = "sqlite", ConnectionString = $"Data Source={journal}" },
            TileDeadlineSeconds = (settings ?? new CoordinatorSettings()).TileDeadline.TotalSeconds,
            MaxAttempts = (settings ?? new CoordinatorSettings()).MaxAttempts,
        }.Validate();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        NodeHost.Configure(builder.Services, o);
        // the command owns Ctrl-C and SIGTERM (Program.cs): the host's console lifetime would take them too and stop the
        // actor system under the command, which then learned of its own cancellation second-hand
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();
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
        var watcher = System.ActorOf(JobWatcher.Props((m, sender) => Coordinator.Tell(m, sender), job, channel.Writer), $"job-{job.JobId}");
        try
        {
            await foreach (var m in channel.Reader.EachUntilCancelled(ct)) yield return m;
        }
        finally { System.Stop(watcher); }
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
        // the coordinator deletes ended jobs' work folders in the background: this process must not exit halfway through
        Core.IO.GraphOutputs.WaitForCleaning(TimeSpan.FromMinutes(5));
    }
}

internal static class ChannelReading
{
    /// <summary>Every message of <paramref name="reader"/> until it completes, stopping at <paramref name="ct"/> even while
    /// messages keep coming: ReadAllAsync looks at the token only when it has to wait, so a job whose progress keeps its
    /// channel full would never see Ctrl-C.</summary>
    public static async IAsyncEnumerable<T> EachUntilCancelled<T>(this ChannelReader<T> reader, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        await foreach (var m in reader.ReadAllAsync(ct))
        {
            ct.ThrowIfCancellationRequested();
            yield return m;
        }
    }
}

/// <summary>A host lifetime that takes no signals: the one-process command stops the host when it ends or is cancelled.</summary>
internal sealed class CommandLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>
/// Submits a job and relays what the coordinator says about it. It re-sends the (idempotent) submission every few
/// seconds as a heartbeat, which is how it finds a coordinator that restarted or moved to another node.
/// </summary>
public sealed class JobWatcher : ReceiveActor, IWithTimers
{
    private sealed record Resend;
    private readonly Action<object, IActorRef> _send;
    private readonly object _job; // SubmitGraphJob or SubmitTrainJob
    public ITimerScheduler Timers { get; set; } = null!;

    /// <param name="send">delivers a message to the coordinator with the given sender (directly, or through a cluster client)</param>
    public JobWatcher(Action<object, IActorRef> send, object job, ChannelWriter<object> output)
    {
        _send = send; _job = job;
        Receive<Resend>(_ => _send(_job, Self));
        Receive<GraphJobCompleted>(m => { Timers.CancelAll(); output.TryWrite(m); output.TryComplete(); });
        Receive<GraphJobFailed>(m => { Timers.CancelAll(); output.TryWrite(m); output.TryComplete(); });
        Receive<TrainJobCompleted>(m => { Timers.CancelAll(); output.TryWrite(m); output.TryComplete(); });
        Receive<JobRefused>(m => { Timers.CancelAll(); output.TryWrite(m); output.TryComplete(); });
        ReceiveAny(m => output.TryWrite(m));
    }

    protected override void PreStart()
    {
        _send(_job, Self);
        Timers.StartPeriodicTimer("resend", new Resend(), TimeSpan.FromSeconds(5));
    }

    public static Props Props(Action<object, IActorRef> send, object job, ChannelWriter<object> output) =>
        Akka.Actor.Props.Create(() => new JobWatcher(send, job, output));
}

/// <summary>
/// Submits a batch (or, without a submission, attaches to one by its id) and relays what the coordinator says about it.
/// Until the batch is received it re-sends the submission every few seconds; then a light <see cref="WatchBatch"/>
/// heartbeat, which attaches it again to a coordinator that restarted or moved. A coordinator that does not know the
/// batch (a heartbeat that raced a restart) is sent the submission again.
/// </summary>
public sealed class BatchWatcher : ReceiveActor, IWithTimers
{
    private sealed record Resend;
    private readonly Action<object, IActorRef> _send;
    private readonly string _batchId;
    private readonly SubmitBatch? _submit;
    private bool _received;
    public ITimerScheduler Timers { get; set; } = null!;

    public BatchWatcher(Action<object, IActorRef> send, string batchId, SubmitBatch? submit, ChannelWriter<object> output)
    {
        _send = send; _batchId = batchId; _submit = submit;
        Receive<Resend>(_ => Send());
        Receive<BatchReceived>(m => { _received = true; output.TryWrite(m); });
        Receive<BatchCompleted>(m => { Timers.CancelAll(); output.TryWrite(m); output.TryComplete(); });
        Receive<JobRefused>(m =>
        {
            if (_received && _submit is not null && m.Code == RefusalCodes.Invalid) { _received = false; Send(); return; }
            Timers.CancelAll(); output.TryWrite(m); output.TryComplete();
        });
        ReceiveAny(m => output.TryWrite(m));
    }

    private void Send() => _send(_received || _submit is null ? new WatchBatch(_batchId) : _submit, Self);

    protected override void PreStart()
    {
        Send();
        Timers.StartPeriodicTimer("resend", new Resend(), TimeSpan.FromSeconds(5));
    }

    public static Props Props(Action<object, IActorRef> send, string batchId, SubmitBatch? submit, ChannelWriter<object> output) =>
        Akka.Actor.Props.Create(() => new BatchWatcher(send, batchId, submit, output));
}
