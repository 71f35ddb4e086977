using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using ActorSeg.Core.IO;
using ActorSeg.Messages;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>A job as submitted over HTTP (paths must lie inside the data roots).</summary>
public sealed record HttpJobRequest(string? JobId, string Image, string? Mask, string? Model, string Out, int? TileSize, double? Spacing,
    string? Objects = null, double? Simplify = null, int? Series = null, string? MaskMode = null);

/// <summary>One slide of a batch submitted over HTTP: its image, optionally its ground-truth mask, its name (default: the
/// image's file name without extension; its folder is OUT/slides/NAME) and its split (only reported).</summary>
public sealed record HttpBatchSlide(string Image, string? Mask = null, string? Name = null, string? Split = null, int? Series = null);

/// <summary>A batch as submitted over HTTP (paths must lie inside the data roots): its folder, its slides, and the parameters every slide's job gets.</summary>
public sealed record HttpBatchRequest(string? BatchId, string Out, HttpBatchSlide[]? Slides, string? Model = null, int? TileSize = null, double? Spacing = null,
    int? Parallel = null, int? Level = null, string? Tissue = null, string? Objects = null, double? Simplify = null, string? MaskMode = null);

/// <summary>
/// The coordinator node's HTTP API: /healthz (the process answers), /readyz (cluster joined and the journal database
/// reachable; no connection details), POST /jobs (bearer token checked before the body is read; the body at most
/// <see cref="MaxBodyBytes"/>; 202 only once the coordinator has checked and journaled the job, 400/403/409 with its
/// reason otherwise, 503 when its paths are not checked and its model file read within <see cref="FileCheckSeconds"/>) and GET /jobs/{id}; POST /batches (the same checks, a body of at most <see cref="MaxBatchBodyBytes"/>;
/// 202 once the batch is journaled, 200 when the same batch was submitted before, 409 for another batch under its id)
/// and GET /batches/{id} (each slide's state).
/// </summary>
public static class HttpApi
{
    public const long MaxBodyBytes = 64 * 1024;
    public const long MaxBatchBodyBytes = 1024 * 1024;

    /// <summary>Request bodies: a field the request types do not have (a misspelt "modle") is refused, not ignored.</summary>
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow };
    private static readonly JsonSerializerOptions DigestJson = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>How long a POST waits for the file-system checks of its paths (confinement, existence, its model file read)
    /// before it is answered 503: a stalled network file system would otherwise hold the request, and its thread, for
    /// ever. Generous for the first model read of a process, which also loads TorchSharp's native libraries.</summary>
    public const double FileCheckSeconds = 10;

    /// <summary>How long /readyz waits for the journal database check before it reports the database unreachable.</summary>
    public const double ReadyDatabaseSeconds = 5;

    /// <summary>The outcome of a door's file-system step: its value, or the status and error to answer instead.</summary>
    public sealed record Checked<T>(T? Value, int Status = 200, string? Error = null);

    /// <summary>A refusal of bad input, with its status, thrown inside a door's file-system step.</summary>
    public sealed class DoorRefusal(int status, string message) : Exception(message)
    {
        public int Status => status;
    }

    /// <summary>What a door's file-system step is touching now; its 503 names it.</summary>
    public sealed class Touching(string initial)
    {
        private volatile string _what = initial;
        public string What => _what;
        /// <param name="what">the path as given, then what it is: "/data/a.tif: the image"</param>
        public void Now(string what) => _what = what;
    }

    /// <summary>The file-system touches of the POST checks; tests give stalling ones.</summary>
    public sealed record DoorFiles(Func<string, string, string> Confine, Func<string, bool> Exists, Func<string, GpuTrainer.ModelSpec> ReadModel)
    {
        public static DoorFiles Of(DataRoots roots) => new(roots.Confine, File.Exists, GpuTrainer.ModelFile.ReadSpec);
    }

    /// <summary><paramref name="check"/> run off the request thread within <paramref name="reads"/>' timeout: its
    /// <see cref="DoorRefusal"/> with its status, 403 for a path outside the data roots, 400 for other bad input, 503
    /// naming what it was touching when it does not end in time (that touch keeps its thread until the file system
    /// answers; its result is dropped). <paramref name="what"/> names the request's paths until the check names one.</summary>
    public static async Task<Checked<T>> CheckAsync<T>(BoundedReads reads, string what, Func<Touching, T> check, CancellationToken ct)
    {
        var at = new Touching(what);
        try { return new Checked<T>(await reads.RunAsync(() => check(at), ct)); }
        catch (TimeoutException e)
        {
            return new Checked<T>(default, 503, $"{at.What} could not be read in {reads.Timeout.TotalSeconds:0.#} s ({e.Message}; " +
                                                "a stalled file system?): nothing was submitted, try again later");
        }
        catch (DoorRefusal e) { return new Checked<T>(default, e.Status, e.Message); }
        // the file system failed to read the model: the request was sound, so try again later (not 400)
        catch (ModelReadException e) { return new Checked<T>(default, 503, $"{e.Message}: nothing was submitted, try again later"); }
        catch (UnauthorizedAccessException e) { return new Checked<T>(default, 403, e.Message); }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException) { return new Checked<T>(default, 400, e.Message); }
    }

    /// <summary>The model at <paramref name="path"/> (<paramref name="given"/> in the request), marked as the touch in progress.</summary>
    private static GpuTrainer.ModelSpec ReadModel(Touching at, string given, string path, Func<string, bool> exists, Func<string, GpuTrainer.ModelSpec> read)
    {
        at.Now($"{given}: the model file");
        return exists(path) ? read(path) : throw new DoorRefusal(400, $"{given}: model not found");
    }

    /// <summary>How a request's masks are read (<see cref="GpuTrainer.Recipes.MaskMode"/>, as <c>batch</c> and <c>submit</c>
    /// read them); a mode that is neither "binary" nor "classes" is refused.</summary>
    private static string MaskModeOf(string? asked, GpuTrainer.ModelSpec? model) =>
        asked is null or "binary" or "classes" ? GpuTrainer.Recipes.MaskMode(model, asked) : throw new DoorRefusal(400, $"maskMode '{asked}': binary or classes");

    /// <summary><paramref name="given"/> confined by <paramref name="files"/>, marked as the touch in progress.</summary>
    private static string Confine(DoorFiles files, Touching at, string given, string what, string described)
    {
        at.Now($"{given}: {described}");
        return files.Confine(given, what);
    }

    /// <summary>A job request's paths confined, its image's existence checked and its model read, in one bounded step
    /// (see <see cref="CheckAsync{T}"/>): the job as the coordinator gets it.</summary>
    public static Task<Checked<GraphJobSpec>> CheckJobAsync(HttpJobRequest req, DoorFiles files, BoundedReads reads, CancellationToken ct) =>
        CheckAsync(reads, $"the job's paths (image {req.Image}, out {req.Out})", at =>
        {
            var image = Confine(files, at, req.Image, "image", "the image");
            if (!files.Exists(image)) throw new DoorRefusal(400, $"{req.Image}: image not found");
            var mask = req.Mask is null ? null : Confine(files, at, req.Mask, "mask", "the mask");
            // as a batch's slides are: a job whose mask is missing is refused here, not after its statistics pass
            if (mask is not null && !files.Exists(mask)) throw new DoorRefusal(400, $"{req.Mask}: mask not found");
            var model = req.Model is null ? null : Confine(files, at, req.Model, "model", "the model file");
            var outDir = Confine(files, at, req.Out, "out", "the output folder");
            // the graph is built with the features and the superpixel size the model was trained with, as a batch's
            var ms = model is null ? null : ReadModel(at, req.Model!, model, files.Exists, files.ReadModel);
            return new GraphJobSpec(image, mask, outDir, MaskMode: MaskModeOf(req.MaskMode, ms), TileSize: req.TileSize ?? 2048, Spacing: GpuTrainer.Recipes.GraphSpacing(ms, req.Spacing), ModelPath: model,
                Features: GpuTrainer.Recipes.GraphFeatures(ms),
                Objects: req.Objects ?? "geojson", Simplify: req.Simplify ?? 0, Series: req.Series);
        }, ct);

    /// <summary>A batch request's paths confined, its slides' images and masks checked and its model read, in one bounded
    /// step (see <see cref="CheckAsync{T}"/>): the batch as the coordinator gets it.</summary>
    public static Task<Checked<BatchSpec>> CheckBatchAsync(HttpBatchRequest req, DoorFiles files, BoundedReads reads, CancellationToken ct) =>
        CheckAsync(reads, $"the batch's paths (out {req.Out}, {req.Slides!.Length} slides)", at =>
        {
            var outDir = Confine(files, at, req.Out, "out", "the output folder");
            var model = req.Model is null ? null : Confine(files, at, req.Model, "model", "the model file");
            // the features and seed spacing the model was trained with
            var ms = model is null ? null : ReadModel(at, req.Model!, model, files.Exists, files.ReadModel);
            var tissue = req.Tissue is null or "auto" or "none" ? req.Tissue : Confine(files, at, req.Tissue, "tissue mask", "the tissue mask");
            var maskMode = MaskModeOf(req.MaskMode, ms);
            var slides = new List<BatchSlideSpec>();
            foreach (var sl in req.Slides!)
            {
                var image = Confine(files, at, sl.Image, "image", "the image");
                if (!files.Exists(image)) throw new DoorRefusal(400, $"{sl.Image}: image not found");
                var mask = sl.Mask is null ? null : Confine(files, at, sl.Mask, "mask", "the mask");
                if (mask is not null && !files.Exists(mask)) throw new DoorRefusal(400, $"{sl.Mask}: mask not found");
                var name = sl.Name ?? BatchInput.SlideName(image, sl.Series);
                if (JobIds.InvalidSlideName(name) is { } badName) throw new DoorRefusal(400, badName);
                slides.Add(new BatchSlideSpec(name, new GraphJobSpec(image, mask, Path.Combine(outDir, "slides", name), MaskMode: mask is null ? "binary" : maskMode, Page: req.Level ?? 0,
                    Spacing: GpuTrainer.Recipes.GraphSpacing(ms, req.Spacing), TileSize: req.TileSize ?? 2048, WriteNodeMap: model is not null,
                    ModelPath: model, Features: GpuTrainer.Recipes.GraphFeatures(ms), Tissue: tissue, Objects: req.Objects ?? "geojson", Simplify: req.Simplify ?? 0,
                    Series: sl.Series), sl.Split));
            }
            // the same request again is the same batch (it attaches); the digest is of the request, canonical (this door reads no file contents)
            // (NaN and infinities written as names: the coordinator refuses them, naming the field, after the digest)
            var digest = Convert.ToHexString(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(new { outDir, slides }, DigestJson))).ToLowerInvariant();
            return new BatchSpec(outDir, slides.ToArray(), req.Parallel ?? 2, null, "http-" + digest); // the coordinator refuses a value outside 1..256
        }, ct);

    /// <summary>A batch as GET /batches/ID and /status show it (slides: when one batch was asked for).</summary>
    private static object BatchJson(BatchStatus b) => new
    {
        batchId = b.BatchId, phase = b.Phase, total = b.Total, done = b.Done, failed = b.Failed, skipped = b.Skipped, running = b.Running,
        pending = b.Total - b.Done - b.Failed - b.Skipped - b.Running, outDir = b.OutDir,
        slides = b.Slides?.Select(x => new { name = x.Name, jobId = x.JobId, state = x.State, error = x.Error, phase = x.Phase, tilesDone = x.TilesDone, tilesTotal = x.TilesTotal }),
    };

    public static void Map(WebApplication app, NodeOptions o)
    {
        var log = Log.ForContext("Role", "http");
        var roots = new DataRoots(o.DataRoots);
        if (o.ApiToken is null) log.Warning("No API token (ACTORSEG_APITOKEN): /jobs refuses every request");
        if (roots.Roots.Count == 0) log.Warning("No data roots (ACTORSEG_DATAROOTS): /jobs accepts no path");
        var dbChecked = (At: DateTime.MinValue, Ok: false);
        var files = DoorFiles.Of(roots);
        // every POST's file-system checks share these threads; the journal check has one of its own
        var fileChecks = new BoundedReads(TimeSpan.FromSeconds(FileCheckSeconds));
        var dbChecks = new BoundedReads(TimeSpan.FromSeconds(ReadyDatabaseSeconds), maxInFlight: 1);

        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", async (ActorSystem system, IRequiredActor<CoordinatorKey> coordinator, CancellationToken ct) =>
        {
            var cluster = Akka.Cluster.Cluster.Get(system);
            bool up = cluster.SelfMember.Status == Akka.Cluster.MemberStatus.Up;
            // the coordinator singleton answers (it is not running while its journal is down and its supervisor waits to restart it)
            bool running;
            try { running = await coordinator.ActorRef.Ask<StatusReport>(new GetStatus("-readyz-"), TimeSpan.FromSeconds(3), ct) is not null; }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException) { running = false; }
            if (DateTime.UtcNow - dbChecked.At > TimeSpan.FromSeconds(5))
            {
                // off the request thread and bounded: SQLite opens and reads its file synchronously, on a volume that may stall
                try
                {
                    await dbChecks.RunAsync(() => { o.Persistence.CheckReachableAsync(CancellationToken.None).GetAwaiter().GetResult(); return true; }, ct);
                    dbChecked = (DateTime.UtcNow, true);
                }
                catch (Exception e) when (e is DatabaseUnreachableException or TimeoutException)
                {
                    // the reason goes to the log, where operators look; anonymous callers learn only that it is down
                    log.Warning("Not ready: {Error}", e is TimeoutException ? $"the journal database check did not end in {ReadyDatabaseSeconds} s ({e.Message})" : e.Message);
                    dbChecked = (DateTime.UtcNow, false);
                }
            }
            return up && dbChecked.Ok && running
                ? Results.Json(new { ready = true })
                : Results.Json(new { ready = false, cluster = up ? "up" : "not up", database = dbChecked.Ok ? "reachable" : "unreachable",
                    coordinator = running ? "running" : "not answering" }, statusCode: 503);
        });

        static bool Same(string given, string? token) => token is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(token));
        /// <param name="readOnly">the status token will do as well as the API token</param>
        bool Authorized(HttpContext ctx, bool readOnly = false)
        {
            var h = ctx.Request.Headers.Authorization.ToString();
            var given = h.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? h[7..].Trim() : ""; // the scheme's name is case-insensitive (RFC 9110)
            bool ok = Same(given, o.ApiToken) | (readOnly && Same(given, o.StatusToken));
            if (!ok)
            {
                log.Warning("Refused {Method} {Path} from {Remote}: missing or wrong bearer token", ctx.Request.Method, ctx.Request.Path.ToString(), ctx.Connection.RemoteIpAddress?.ToString());
                ctx.Response.Headers.WWWAuthenticate = "Bearer realm=\"actorseg\""; // what the 401 asks for (RFC 9110)
            }
            return ok;
        }

        IResult Error(int status, string message) => Results.Json(new { error = message }, statusCode: status);

        app.MapPost("/jobs", async (HttpContext ctx, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            // the token first: an anonymous caller gets nothing read, parsed or checked
            if (!Authorized(ctx)) return Error(401, "missing or wrong bearer token");
            if (ctx.Request.ContentLength is > MaxBodyBytes) return Error(413, $"the request body is over {MaxBodyBytes} bytes");
            if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = MaxBodyBytes;
            HttpJobRequest? req;
            try { req = await JsonSerializer.DeserializeAsync<HttpJobRequest>(ctx.Request.Body, Json, ctx.RequestAborted); }
            catch (JsonException e) { return Error(400, $"the body is not a job: {e.Message}"); }
            catch (BadHttpRequestException e) when (e.StatusCode == 413) { return Error(413, $"the request body is over {MaxBodyBytes} bytes"); }
            if (req is null || string.IsNullOrEmpty(req.Image) || string.IsNullOrEmpty(req.Out)) return Error(400, "a job needs at least 'image' and 'out'");
            var id = req.JobId ?? JobIds.New();
            if (AssignmentPaths.InvalidJobId(id) is { } badId) return Error(400, badId);
            var checkedJob = await CheckJobAsync(req, files, fileChecks, ctx.RequestAborted);
            if (checkedJob.Error is { } why) return Refused(checkedJob.Status, why);
            var spec = checkedJob.Value!;

            // 202 only once the coordinator has checked and journaled the job; its refusal, with the reason, otherwise
            object answer;
            try { answer = await coordinator.ActorRef.Ask<object>(new SubmitGraphJob(id, spec, MustBeNew: true), TimeSpan.FromSeconds(15), ctx.RequestAborted); }
            catch (AskTimeoutException) { return Error(503, "the coordinator did not answer in 15 s; the job may not have been recorded (GET /jobs/ID tells)"); }
            switch (answer)
            {
                case JobReceived:
                    log.Information("Job {JobId} submitted over HTTP: {Image} → {OutDir}", id, spec.ImagePath, spec.OutDir);
                    return Results.Json(new { jobId = id, status = $"/jobs/{Uri.EscapeDataString(id)}" }, statusCode: 202);
                case JobRefused r:
                    return Refused(r.Code switch { RefusalCodes.Conflict => 409, RefusalCodes.Forbidden => 403, _ => 400 }, r.Reason);
                case GraphJobFailed f:
                    return Refused(400, f.Error);
                default:
                    return Error(502, $"unexpected answer from the coordinator: {answer.GetType().Name}");
            }

            IResult Refused(int status, string why)
            {
                log.Warning("Refused a job from {Remote} ({Status}): {Error}", ctx.Connection.RemoteIpAddress?.ToString(), status, why);
                return Error(status, why);
            }
        });

        app.MapPost("/batches", async (HttpContext ctx, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            // the token first: an anonymous caller gets nothing read, parsed or checked
            if (!Authorized(ctx)) return Error(401, "missing or wrong bearer token");
            if (ctx.Request.ContentLength is > MaxBatchBodyBytes) return Error(413, $"the request body is over {MaxBatchBodyBytes} bytes");
            if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = MaxBatchBodyBytes;
            HttpBatchRequest? req;
            try { req = await JsonSerializer.DeserializeAsync<HttpBatchRequest>(ctx.Request.Body, Json, ctx.RequestAborted); }
            catch (JsonException e) { return Error(400, $"the body is not a batch: {e.Message}"); }
            catch (BadHttpRequestException e) when (e.StatusCode == 413) { return Error(413, $"the request body is over {MaxBatchBodyBytes} bytes"); }
            if (req is null || string.IsNullOrEmpty(req.Out) || req.Slides is not { Length: > 0 } || req.Slides.Any(x => x is null || string.IsNullOrEmpty(x.Image)))
                return Error(400, "a batch needs 'out' and 'slides', each slide with at least 'image'");
            if (req.BatchId is { } given && (AssignmentPaths.InvalidJobId(given) ?? (given.Length > JobIds.MaxBatchIdLength ? $"batch id is {given.Length} characters long (at most {JobIds.MaxBatchIdLength})" : null)) is { } badId)
                return Error(400, badId);
            var checkedBatch = await CheckBatchAsync(req, files, fileChecks, ctx.RequestAborted);
            if (checkedBatch.Error is { } why) return Refused(checkedBatch.Status, why);
            var spec = checkedBatch.Value!;
            var id = req.BatchId ?? "batch-" + spec.Digest![5..21];

            // 202 only once the coordinator has checked and journaled the batch; 200 for the same batch submitted before
            object answer;
            try { answer = await coordinator.ActorRef.Ask<object>(new SubmitBatch(id, spec, Detached: true), TimeSpan.FromSeconds(15), ctx.RequestAborted); }
            catch (AskTimeoutException) { return Error(503, "the coordinator did not answer in 15 s; the batch may not have been recorded (GET /batches/ID tells)"); }
            switch (answer)
            {
                case BatchReceived r:
                    log.Information("Batch {BatchId} submitted over HTTP ({Existing}): {Slides} slides → {OutDir}", id, r.Existing ? "already known" : "new", r.Spec.Slides.Length, r.Spec.OutDir);
                    return Results.Json(new { batchId = id, existing = r.Existing, slides = r.Spec.Slides.Length, status = $"/batches/{Uri.EscapeDataString(id)}" }, statusCode: r.Existing ? 200 : 202);
                case JobRefused r:
                    return Refused(r.Code switch { RefusalCodes.Conflict => 409, RefusalCodes.Forbidden => 403, _ => 400 }, r.Reason);
                default:
                    return Error(502, $"unexpected answer from the coordinator: {answer.GetType().Name}");
            }

            IResult Refused(int status, string why)
            {
                log.Warning("Refused a batch from {Remote} ({Status}): {Error}", ctx.Connection.RemoteIpAddress?.ToString(), status, why);
                return Error(status, why);
            }
        });

        app.MapGet("/batches/{id}", async (HttpContext ctx, string id, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            if (!Authorized(ctx)) return Error(401, "missing or wrong bearer token");
            if (AssignmentPaths.InvalidJobId(id) is { } badId) return Error(400, badId);
            StatusReport r;
            try { r = await coordinator.ActorRef.Ask<StatusReport>(new GetStatus(id), TimeSpan.FromSeconds(10)); }
            catch (AskTimeoutException) { return Error(503, "the coordinator did not answer in 10 s"); }
            var b = r.Batches?.FirstOrDefault(x => x.BatchId == id);
            return b is null ? Error(404, $"no batch {id}") : Results.Json(BatchJson(b));
        });

        // the status page: a static page with no data in it; its script asks for /status with the token the person gives
        app.MapGet("/", () => Results.Content(StatusPage.Html, "text/html; charset=utf-8"));
        app.MapGet("/status", async (HttpContext ctx, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            if (!Authorized(ctx, readOnly: true)) return Error(401, "missing or wrong bearer token");
            StatusReport r;
            try { r = await coordinator.ActorRef.Ask<StatusReport>(new GetStatus(), TimeSpan.FromSeconds(10)); }
            catch (AskTimeoutException) { return Error(503, "the coordinator did not answer in 10 s"); }
            ctx.Response.Headers.CacheControl = "no-store";
            return Results.Json(new
            {
                time = DateTime.UtcNow, workers = r.Workers, trainers = r.Trainers,
                jobs = r.Jobs.Select(j => new { jobId = j.JobId, phase = j.Phase, tilesDone = j.TilesDone, tilesTotal = j.TilesTotal, inFlight = j.InFlight, retries = j.Retries, error = j.Error, outDir = j.OutDir }),
                nodes = (r.Nodes ?? []).Select(n => new { address = n.Address, role = n.Role, slots = n.Slots, busy = n.Busy }),
                recentErrors = r.RecentErrors ?? [],
                batches = (r.Batches ?? []).Select(BatchJson),
                endedNotListed = r.EndedNotListed,
            });
        });

        app.MapGet("/jobs/{id}", async (HttpContext ctx, string id, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            if (!Authorized(ctx)) return Error(401, "missing or wrong bearer token");
            if (AssignmentPaths.InvalidJobId(id) is { } badId) return Error(400, badId);
            StatusReport r;
            try { r = await coordinator.ActorRef.Ask<StatusReport>(new GetStatus(id), TimeSpan.FromSeconds(10)); }
            catch (AskTimeoutException) { return Error(503, "the coordinator did not answer in 10 s"); }
            // the status of that job only (the coordinator's report for a batch id lists the batch's slides' jobs)
            var j = r.Jobs.FirstOrDefault(x => x.JobId == id);
            return j is null
                ? Error(404, r.Jobs.Length > 0 ? $"no job {id} (it is a batch: GET /batches/{id})" : $"no job {id}")
                : Results.Json(new { jobId = j.JobId, phase = j.Phase, tilesDone = j.TilesDone, tilesTotal = j.TilesTotal, inFlight = j.InFlight, retries = j.Retries, error = j.Error, outDir = j.OutDir });
        });
    }
}
