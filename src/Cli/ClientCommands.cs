using System.Collections.Immutable;
using System.CommandLine;
using System.Diagnostics;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Configuration;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>
/// A client of a running cluster: a small actor system (not a cluster member) that talks to the coordinator through
/// the receptionist on the coordinator nodes (Akka's cluster client), so it never disturbs the cluster's membership.
/// </summary>
public sealed class ClusterConnection : IAsyncDisposable
{
    public ActorSystem System { get; }
    private readonly IActorRef _client;

    /// <summary>Whether this client speaks TLS to the cluster.</summary>
    public bool Tls { get; }

    private ClusterConnection(ActorSystem system, IActorRef client, bool tls) { System = system; _client = client; Tls = tls; }

    /// <summary>Logs that the coordinator said nothing in <paramref name="seconds"/>, with what most often causes it: a
    /// cluster down, a wrong address, or a TLS mismatch, which the cluster meets by closing the connection without a word.</summary>
    public void LogNoAnswer(double seconds) => LogNoAnswer(seconds, Tls);

    public static void LogNoAnswer(double seconds, bool tls) =>
        Log.Error("No answer from the coordinator in {Seconds:F0}s: is the cluster up, and is the address right? This client spoke {Transport:l}; " +
                  "a cluster that speaks the other, or whose CA does not accept this client's certificate, closes the connection without an answer (its nodes' logs name it)",
            seconds, tls ? "TLS (--tls-cert, --tls-key, --tls-ca)" : "plain TCP, without TLS (a TLS cluster needs --tls-cert, --tls-key and --tls-ca, or ACTORSEG_TLS__*)");

    public static ClusterConnection Open(IReadOnlyList<string> coordinators, TlsOptions tls, string hostname = "127.0.0.1")
    {
        if (coordinators.Count == 0) throw new ArgumentException("no coordinator address: give --coordinator akka.tcp://actorseg@HOST:PORT (or ACTORSEG_COORDINATOR)");
        var contacts = coordinators.Select(c => ActorPath.Parse($"{Exposure.Normalize(c, tls.Enabled)}/system/receptionist")).ToImmutableHashSet();
        if (!tls.Enabled && contacts.Any(c => !Exposure.IsLoopback(c.Address.Host!)))
            Log.Warning("Talking to the cluster without TLS: give --tls-cert, --tls-key and --tls-ca (or ACTORSEG_TLS__*) when its nodes use TLS");
        var config = ConfigurationFactory.ParseString($$"""
            akka.loglevel = OFF
            akka.stdout-loglevel = OFF
            akka.log-dead-letters = off
            akka.log-dead-letters-during-shutdown = off
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp.hostname = "{{hostname}}"
            akka.remote.dot-netty.tcp.port = 0
            akka.remote.dot-netty.tcp.maximum-frame-size = 4MiB
            akka.remote.dot-netty.tcp.enable-ssl = {{(tls.Enabled ? "true" : "false")}}
            akka.cluster.client.reconnect-timeout = off
            {{ActorSegSerializer.Hocon}}
            """).WithFallback(ClusterClientReceptionist.DefaultConfig());
        var setup = BootstrapSetup.Create().WithConfig(config);
        var system = tls.Enabled
            ? ActorSystem.Create(NodeHost.SystemName + "-client", setup.And(tls.CreateSetup("client")))
            : ActorSystem.Create(NodeHost.SystemName + "-client", setup);
        var client = system.ActorOf(ClusterClient.Props(ClusterClientSettings.Create(system).WithInitialContacts(contacts)), "client");
        return new ClusterConnection(system, client, tls.Enabled);
    }

    public void Send(object message, IActorRef sender) => _client.Tell(new ClusterClient.Send(NodeHost.CoordinatorServicePath, message), sender);

    /// <summary>Submits a job (graph or training) and streams back everything the coordinator says about it until it ends.</summary>
    public async IAsyncEnumerable<object> RunJobAsync(object job, string jobId, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        var channel = Channel.CreateUnbounded<object>();
        var watcher = System.ActorOf(JobWatcher.Props((m, s) => Send(m, s), job, channel.Writer), "job-" + jobId);
        try
        {
            await foreach (var m in channel.Reader.EachUntilCancelled(ct)) yield return m;
        }
        finally { System.Stop(watcher); }
    }

    public Task<T> Ask<T>(object message, TimeSpan timeout) => _client.Ask<T>(new ClusterClient.Send(NodeHost.CoordinatorServicePath, message), timeout);

    public async ValueTask DisposeAsync() => await System.Terminate();

    public static string[] Addresses(string? flag) =>
        (flag ?? Environment.GetEnvironmentVariable("ACTORSEG_COORDINATOR") ?? "")
        .Split([',', ' ', ';'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

public static class ClientCommands
{
    public static Command Submit(Option<bool> verbose)
    {
        var image = new Argument<string>("IMAGE") { Description = "The image, as a path every node sees (shared volume)." };
        var output = new Option<string>("--out", "-o") { Description = "Output directory (shared volume).", Required = true };
        var mask = new Option<string?>("--mask", "-m") { Description = "Ground-truth mask (node labels)." };
        var maskMode = new Option<string?>("--mask-mode") { Description = "How --mask is read: binary (any non-zero value is foreground) or classes (values are class ids 0..254). Default: classes when the model (read on this machine) has more than two classes, else binary." };
        maskMode.AcceptOnlyFromAmong("binary", "classes");
        var model = new Option<string?>("--model") { Description = "Segment with this model: the trainer classifies the nodes, a worker paints OUT/mask.tif and OUT/overlay.png and writes OUT/objects.geojson (see --objects)." };
        var coordinator = new Option<string?>("--coordinator", "-c") { Description = "Coordinator node address(es), akka.tcp://actorseg@HOST:PORT, comma-separated. Env ACTORSEG_COORDINATOR." };
        var jobId = new Option<string?>("--job-id") { Description = "Job id (default: new). Re-submitting an id re-attaches to that job; a finished one answers at once." };
        var spacing = new Option<double?>("--spacing") { Description = "Seed spacing in pixels (default: the model's, where this machine can read it; else 40.96)." }.Within(2, double.PositiveInfinity);
        var tileSize = new Option<int>("--tile-size") { DefaultValueFactory = _ => 2048, Description = "Tile size in pixels." };
        var halo = new Option<int?>("--halo") { Description = "Halo in pixels (default: 10 seed spacings)." }.Within(0, Core.Pipeline.GraphRequest.MaxHalo);
        var features = new Option<string?>("--features") { Description = "absolute, texture or published (default: the model's, where this machine can read it; else the best recipe's, absolute)." };
        var keepWork = new Option<bool>("--keep-work") { Description = "Keep the per-tile results." };
        var level = new Option<int>("--level", "--page") { Description = GraphCommand.LevelHelp, DefaultValueFactory = _ => 0 };
        var mpp = new Option<double?>("--mpp") { Description = GraphCommand.MppHelp };
        var timeout = new Option<double>("--connect-timeout") { DefaultValueFactory = _ => 60, Description = "Seconds to wait for the coordinator to answer before giving up (exit 3)." }.Within(0, 86_400, loOpen: true);
        var tissue = GraphCommand.TissueOption();
        var objects = ObjectFlags.Format();
        var simplify = ObjectFlags.Simplify();
        var series = GraphCommand.SeriesOption();
        var cmd = new Command("submit", "Submit a job to a running cluster and follow it to the end (exit 0 done, 1 failed, 3 no coordinator).")
        {
            image, output, mask, maskMode, model, coordinator, jobId, spacing, tileSize, halo, features, keepWork, timeout, level, mpp, series, tissue, objects, simplify,
        };
        var tls = TlsFlags.Create();
        tls.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            int lv;
            try { lv = GraphCommand.LevelFor(Path.GetFullPath(pr.GetValue(image)!), pr.GetValue(level), pr.GetValue(mpp), pr.GetValue(series) ?? -1); }
            catch (Core.Imaging.InputFileException e) { Log.Error("{Error}", e.Message); return ExitCodes.Failed; }
            // the model, where this machine sees it (the cluster reads it on its shared storage, and checks it itself): its
            // graph is built with its features and at its superpixel size, as `segment` builds it
            string? modelPath = pr.GetValue(model) is { } mp ? Path.GetFullPath(mp) : null;
            var (trained, unread) = ReadableModel(modelPath);
            var spec = WithModelSettings(new GraphJobSpec(Path.GetFullPath(pr.GetValue(image)!), pr.GetValue(mask) is { } m ? Path.GetFullPath(m) : null,
                MaskMode: GpuTrainer.Recipes.MaskMode(trained, pr.GetValue(maskMode)), Page: lv, OutDir:
                Path.GetFullPath(pr.GetValue(output)!), TileSize: pr.GetValue(tileSize), Halo: pr.GetValue(halo), KeepWork: pr.GetValue(keepWork), ModelPath: modelPath,
                // a tissue mask is a path on the cluster's shared storage: the coordinator checks it
                Tissue: pr.GetValue(tissue) is { } tv and not ("auto" or "none") ? Path.GetFullPath(tv) : pr.GetValue(tissue),
                Objects: pr.GetValue(objects)!, Simplify: pr.GetValue(simplify), Series: pr.GetValue(series)), trained, pr.GetValue(features), pr.GetValue(spacing));
            if (spec.ModelFeatures || spec.ModelSpacing)
                Log.Information("{Model}: not read on this machine ({Reason}); the coordinator takes the model's {Settings} from it on the cluster's storage, before any tile",
                    modelPath, unread, spec.ModelFeatures && spec.ModelSpacing ? "features and seed spacing" : spec.ModelFeatures ? "features" : "seed spacing");
            var id = pr.GetValue(jobId) ?? JobIds.New();
            // a model trained at another resolution: said here as `segment` says it, where this machine sees the image too
            if (trained is not null && File.Exists(spec.ImagePath))
            {
                try { SegmentCommand.WarnIfOtherScale(trained, modelPath!, spec.ImagePath, lv, spec.Series ?? -1); }
                catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or Core.Imaging.InputFileException or NetVips.VipsException)
                {
                    Log.Debug("{Image}: its scale not compared with the model's here: {Error}", spec.ImagePath, e.Message);
                }
            }
            try
            {
                await using var conn = ClusterConnection.Open(ClusterConnection.Addresses(pr.GetValue(coordinator)), tls.Read(pr));
                return await FollowAsync(conn, new SubmitGraphJob(id, spec), TimeSpan.FromSeconds(pr.GetValue(timeout)), ct);
            }
            catch (ArgumentException e) { Console.Error.WriteLine($"actorseg submit: {e.Message}"); return ExitCodes.Usage; }
        });
        return cmd;
    }

    public static async Task<int> FollowAsync(ClusterConnection conn, SubmitGraphJob job, TimeSpan connectTimeout, CancellationToken ct)
    {
        // sent, not yet recorded: "accepted" follows once the coordinator has journaled it
        Log.Information("Submitting job {JobId}: {Image} → {OutDir}", job.JobId, job.Spec.ImagePath, job.Spec.OutDir);
        return await FollowAsync(conn, job.JobId, job, connectTimeout, ct);
    }

    /// <summary>How long a followed job may stay silent before the client gives up (exit 3). Env ACTORSEG_SILENCETIMEOUTSECONDS.</summary>
    public static TimeSpan SilenceTimeout { get; } = TimeSpan.FromSeconds(
        double.TryParse(Environment.GetEnvironmentVariable("ACTORSEG_SILENCETIMEOUTSECONDS"), System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 300);

    /// <summary>Follows one job (graph, segmentation or training) to its end; the exit code of its outcome.</summary>
    public static async Task<int> FollowAsync(ClusterConnection conn, string jobId, object job, TimeSpan connectTimeout, CancellationToken ct, Action<object>? onEnd = null)
    {
        var channel = Channel.CreateUnbounded<object>();
        var watcher = conn.System.ActorOf(JobWatcher.Props((m, s) => conn.Send(m, s), job, channel.Writer), "job-" + jobId);
        var sw = Stopwatch.StartNew();
        var last = Stopwatch.StartNew();
        bool heard = false;
        while (!ct.IsCancellationRequested)
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            wait.CancelAfter(TimeSpan.FromSeconds(1));
            object m;
            try { m = await channel.Reader.ReadAsync(wait.Token); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                if (!heard && last.Elapsed > connectTimeout)
                {
                    conn.LogNoAnswer(connectTimeout.TotalSeconds);
                    return ExitCodes.NoCoordinator;
                }
                // the coordinator reports every open job every few seconds: silence this long means it is gone (its journal down for good, say)
                if (heard && last.Elapsed > SilenceTimeout)
                {
                    Log.Error("The coordinator has said nothing about job {JobId} for {Seconds:F0}s (it reports every few seconds): it may be down or unable to reach its journal. " +
                              "The job is journaled: run the same command again (same --job-id) to follow it once the cluster is back", jobId, SilenceTimeout.TotalSeconds);
                    conn.System.Stop(watcher);
                    return ExitCodes.NoCoordinator;
                }
                continue;
            }
            catch (ChannelClosedException) { break; }
            heard = true; last.Restart();
            switch (m)
            {
                case GraphJobAccepted a:
                    Log.Information("Job {JobId} accepted: {Width}x{Height} px, {Tiles} tiles ({Done} already done)", a.JobId, a.Width, a.Height, a.Tiles, a.TilesAlreadyDone);
                    break;
                case GraphJobProgress p:
                    Log.Information("Job {JobId}: {Phase} {Done}/{Total} tiles, {InFlight} in flight, {Retries} retries, {MPps:F1} MP/s", p.JobId, p.Phase, p.TilesDone, p.TilesTotal, p.InFlight, p.Retries, p.MegapixelsPerSecond);
                    break;
                case GraphJobCompleted c:
                    Log.Information("Job {JobId} done in {Seconds:F1}s: {Nodes} nodes; tiles {Tiles:F1}s, stitch {Stitch:F1}s, {Retries} retries, {Recovered} tiles recovered{Mask}",
                        c.JobId, sw.Elapsed.TotalSeconds, c.Nodes, c.TilesSeconds, c.StitchSeconds, c.Retries, c.TilesRecovered, c.MaskPath is null ? "" : $"; mask {c.MaskPath}");
                    if (c.TissueFraction is { } tf) Log.Information("Job {JobId}: tissue {TissueFraction:P1} of the image, {TilesSkipped} glass-only tiles skipped", c.JobId, tf, c.TilesSkipped);
                    if (onEnd is null) Console.WriteLine(c.MaskPath ?? Path.Combine(c.OutDir, Core.IO.GraphOutputs.GraphFile));
                    onEnd?.Invoke(c);
                    return ExitCodes.Ok;
                case TrainJobCompleted t:
                    Log.Information("Job {JobId}: model trained on {Device} in {Seconds:F1}s ({Epochs} epochs, best {Best}, validation loss {Loss:F4}): {Model}",
                        t.JobId, t.Device, t.Seconds, t.Epochs, t.BestEpoch, t.BestValidationLoss, t.BestModel);
                    if (onEnd is null) Console.WriteLine(t.BestModel);
                    onEnd?.Invoke(t);
                    return ExitCodes.Ok;
                case GraphJobFailed f:
                    Log.Error("Job {JobId} failed: {Error}", f.JobId, f.Error);
                    return ExitCodes.Failed;
                case JobRefused r:
                    Log.Error("Job {JobId} refused by the coordinator ({Code}): {Reason}", r.JobId, r.Code, r.Reason);
                    return ExitCodes.Failed;
                case JobReceived:
                    break;
            }
        }
        conn.System.Stop(watcher);
        return ExitCodes.Failed;
    }

    /// <summary>The spec of the model at <paramref name="path"/> when this machine can read it (the cluster reads it on its
    /// shared storage, and refuses a bad one with its reason), else null and why not.</summary>
    private static (GpuTrainer.ModelSpec? Spec, string? Unread) ReadableModel(string? path)
    {
        if (path is null) return (null, null);
        if (!File.Exists(path)) return (null, "no such file here");
        try { return (GpuTrainer.ModelFile.ReadSpec(path), null); }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            Log.Debug("{Model}: not read here: {Error}", path, e.Message);
            return (null, e.Message.StartsWith(path, StringComparison.Ordinal) ? e.Message[path.Length..].TrimStart(':', ' ') : e.Message);
        }
    }

    /// <summary>A graph job's features and seed spacing: those given (<paramref name="features"/>, <paramref name="spacing"/>),
    /// else the model's where this machine read it (<paramref name="trained"/>); for a model it could not read, the
    /// coordinator's to take from the model file at prepare (<see cref="GraphJobSpec.ModelFeatures"/>,
    /// <see cref="GraphJobSpec.ModelSpacing"/>; the defaults stay in the spec for a coordinator that predates them).</summary>
    public static GraphJobSpec WithModelSettings(GraphJobSpec spec, GpuTrainer.ModelSpec? trained, string? features, double? spacing)
    {
        bool theClusters = spec.ModelPath is not null && trained is null;
        return spec with
        {
            Features = features ?? GpuTrainer.Recipes.GraphFeatures(trained),
            Spacing = GpuTrainer.Recipes.GraphSpacing(trained, spacing),
            ModelFeatures = theClusters && features is null,
            ModelSpacing = theClusters && spacing is null,
        };
    }

    public static Command SubmitTrain(Option<bool> verbose)
    {
        var images = new Option<string>("--images") { Required = true, Description = "Training images (a directory every node sees)." };
        var masks = new Option<string>("--masks") { Required = true, Description = "Masks paired with the images by base name, whatever the extension." };
        var output = new Option<string>("--out", "-o") { Required = true, Description = "Model directory (shared volume): best.model, last.model, curves.csv, split.json, graphs/." };
        var coordinator = new Option<string?>("--coordinator", "-c") { Description = "Coordinator node address(es). Env ACTORSEG_COORDINATOR." };
        var jobId = new Option<string?>("--job-id") { Description = "Job id (default: new); the graph jobs are JOB-g-NAME." };
        var recipe = RecipeOptions.Recipe();
        var conv = RecipeOptions.Conv();
        var edges = RecipeOptions.Edges();
        var layers = RecipeOptions.Layers();
        var hidden = RecipeOptions.Hidden();
        var dropout = RecipeOptions.Dropout();
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 500 }.Within(1, int.MaxValue);
        var patience = new Option<int>("--patience") { DefaultValueFactory = _ => Messages.TrainDefaults.Patience, Description = "Epochs without validation improvement before stopping." }.Within(1, int.MaxValue);
        var valFrac = new Option<double>("--val-frac") { DefaultValueFactory = _ => 0.15 }.Within(0, 1, loOpen: true, hiOpen: true);
        var segments = new Option<int?>("--segments") { Description = "Superpixels per image (default: spacing 41 px)." }.Within(1, int.MaxValue);
        var features = RecipeOptions.Features();
        var maskMode = new Option<string>("--mask-mode") { Description = "binary (non-zero = class 1) or classes.", DefaultValueFactory = _ => "binary" };
        maskMode.AcceptOnlyFromAmong("binary", "classes");
        var classes = new Option<string?>("--classes") { Description = "Names and colours of the classes, class 0 first: background:#000000,colony:#ff0000." };
        var timeout = new Option<double>("--connect-timeout") { DefaultValueFactory = _ => 60 }.Within(0, 86_400, loOpen: true);
        var noRefine = new Option<bool>("--no-refine") { Description = "Train the coarse GNN only (and build the graphs without node maps)." };
        var refineThreshold = new Option<double?>("--refine-threshold") { Description = "Nodes whose winning probability is under this are refined even when their neighbours agree (default 0.9)." }.Within(0, 1);
        var refineWhole = new Option<double?>("--refine-whole") { Description = "As train's --refine-whole (default 0.1; 1 turns it off)." }.Within(0, 1, loOpen: true);
        var cmd = new Command("submit-train", "Train a GNN on a running cluster: the tile workers build every image's graph, a gpu-trainer trains the model.")
        {
            images, masks, maskMode, output, coordinator, jobId, recipe, conv, edges, layers, hidden, dropout, epochs, patience, valFrac, segments, features, timeout, classes,
            noRefine, refineThreshold, refineWhole,
        };
        cmd.Validators.Add(r =>
        {
            if (OptionRanges.Flag(r, noRefine) && (OptionRanges.Given(r, refineThreshold) || OptionRanges.Given(r, refineWhole)))
                r.AddError("--no-refine contradicts --refine-threshold and --refine-whole");
        });
        var tls = TlsFlags.Create();
        tls.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            var outDir = Path.GetFullPath(pr.GetValue(output)!);
            var id = pr.GetValue(jobId) ?? JobIds.New();
            try
            {
                var pairs = TrainCommand.Pair(Path.GetFullPath(pr.GetValue(images)!), Path.GetFullPath(pr.GetValue(masks)!));
                var r0 = RecipeOptions.Resolve(pr, recipe, features, edges, conv, layers, hidden, dropout);
                await using var conn = ClusterConnection.Open(ClusterConnection.Addresses(pr.GetValue(coordinator)), tls.Read(pr));
                var connect = TimeSpan.FromSeconds(pr.GetValue(timeout));
                // every image's graph, as concurrent jobs: the cluster spreads their tiles over all workers
                var graphs = pairs.Select(p => (p, Dir: Path.Combine(outDir, "graphs", Path.GetFileNameWithoutExtension(p.Image)))).ToList();
                var rcs = await Task.WhenAll(graphs.Select(g => FollowAsync(conn, $"{id}-g-{Path.GetFileName(g.Dir)}",
                    new SubmitGraphJob($"{id}-g-{Path.GetFileName(g.Dir)}", new GraphJobSpec(g.p.Image, g.p.Mask, g.Dir, MaskMode: pr.GetValue(maskMode)!, Segments: pr.GetValue(segments),
                        WriteNodeMap: !pr.GetValue(noRefine), Features: r0.Features)), connect, ct, _ => { }))); // node maps: the trainer adds the boundary refinement
                if (rcs.Any(rc => rc != ExitCodes.Ok)) return rcs.First(rc => rc != ExitCodes.Ok);
                var spec = new TrainJobSpec(graphs.Select(g => Path.Combine(g.Dir, Core.IO.GraphOutputs.GraphFile)).ToArray(), outDir,
                    r0.Architecture.Conv, r0.Edges, r0.Architecture.Layers, r0.Architecture.Hidden, r0.Architecture.Dropout, 0.01,
                    pr.GetValue(epochs), pr.GetValue(patience), pr.GetValue(valFrac), Classes: pr.GetValue(classes),
                    NoRefine: pr.GetValue(noRefine), RefineThreshold: pr.GetValue(refineThreshold), RefineWhole: pr.GetValue(refineWhole));
                if (spec.Classes is { } cs) Core.IO.ClassTable.Parse(cs); // a bad class list fails here, before any work
                Log.Information("Graphs of {Images} images built; submitting training job {JobId}", graphs.Count, id);
                return await FollowAsync(conn, id, new SubmitTrainJob(id, spec), connect, ct);
            }
            catch (ArgumentException e) { Console.Error.WriteLine($"actorseg submit-train: {e.Message}"); return ExitCodes.Usage; }
            catch (IOException e) { Log.Error("{Error}", e.Message); return ExitCodes.Failed; }
        });
        return cmd;
    }

    public static Command Status(Option<bool> verbose)
    {
        var coordinator = new Option<string?>("--coordinator", "-c") { Description = "Coordinator node address(es). Env ACTORSEG_COORDINATOR." };
        var jobId = new Argument<string?>("JOB") { Description = "One job, or one batch with each of its slides (default: all known).", Arity = ArgumentArity.ZeroOrOne };
        var cmd = new Command("status", "Show the batches and jobs a running cluster knows, and its workers and trainers.") { jobId, coordinator };
        var tls = TlsFlags.Create();
        tls.AddTo(cmd);
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            try
            {
                await using var conn = ClusterConnection.Open(ClusterConnection.Addresses(pr.GetValue(coordinator)), tls.Read(pr));
                StatusReport r;
                try { r = await conn.Ask<StatusReport>(new GetStatus(pr.GetValue(jobId)), TimeSpan.FromSeconds(20)); }
                catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
                {
                    conn.LogNoAnswer(20);
                    return ExitCodes.NoCoordinator;
                }
                Console.WriteLine($"{r.Workers} worker slots, {r.Trainers} trainers");
                if (r.Batches is { Length: > 0 } batches)
                {
                    Console.WriteLine($"{"BATCH",-28} {"PHASE",-8} {"ENDED",-9} {"DONE",-5} {"FAILED",-6} {"SKIPPED",-7} {"RUNNING",-7} OUT");
                    foreach (var b in batches)
                    {
                        Console.WriteLine($"{b.BatchId,-28} {b.Phase,-8} {$"{b.Done + b.Failed + b.Skipped}/{b.Total}",-9} {b.Done,-5} {b.Failed,-6} {b.Skipped,-7} {b.Running,-7} {b.OutDir}");
                        foreach (var sl in b.Slides ?? [])
                            Console.WriteLine($"  slide {sl.Name,-20} {sl.State,-8} {(sl.State == "running" ? $"{sl.Phase} {sl.TilesDone}/{sl.TilesTotal} tiles" : ""),-20} {sl.JobId} {sl.Error}");
                    }
                }
                Console.WriteLine($"{"JOB",-28} {"PHASE",-12} {"TILES",-12} {"IN FLIGHT",-9} {"RETRIES",-7} OUT / ERROR");
                foreach (var j in r.Jobs)
                    Console.WriteLine($"{j.JobId,-28} {j.Phase,-12} {$"{j.TilesDone}/{j.TilesTotal}",-12} {j.InFlight,-9} {j.Retries,-7} {j.Error ?? j.OutDir}");
                if (r.EndedNotListed > 0)
                    Console.WriteLine($"({r.EndedNotListed} older ended jobs and batches not listed; `actorseg status ID` shows any one)");
                if (r.Jobs.Length == 0 && (r.Batches ?? []).Length == 0 && pr.GetValue(jobId) is { } asked)
                {
                    Log.Error("No job or batch {JobId} is known to the coordinator", asked);
                    return ExitCodes.Failed;
                }
                return ExitCodes.Ok;
            }
            catch (ArgumentException e) { Console.Error.WriteLine($"actorseg status: {e.Message}"); return ExitCodes.Usage; }
        });
        return cmd;
    }
}
