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
    string? Objects = null, double? Simplify = null);

/// <summary>
/// The coordinator node's HTTP API: /healthz (the process answers), /readyz (cluster joined and the journal database
/// reachable; no connection details), POST /jobs (bearer token checked before the body is read; the body at most
/// <see cref="MaxBodyBytes"/>; 202 only once the coordinator has checked and journaled the job, 400/403/409 with its
/// reason otherwise) and GET /jobs/{id}.
/// </summary>
public static class HttpApi
{
    public const long MaxBodyBytes = 64 * 1024;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static void Map(WebApplication app, NodeOptions o)
    {
        var log = Log.ForContext("Role", "http");
        var roots = new DataRoots(o.DataRoots);
        if (o.ApiToken is null) log.Warning("No API token (ACTORSEG_APITOKEN): /jobs refuses every request");
        if (roots.Roots.Count == 0) log.Warning("No data roots (ACTORSEG_DATAROOTS): /jobs accepts no path");
        var dbChecked = (At: DateTime.MinValue, Ok: false);

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
                try { await o.Persistence.CheckReachableAsync(ct); dbChecked = (DateTime.UtcNow, true); }
                catch (DatabaseUnreachableException e)
                {
                    // the reason goes to the log, where operators look; anonymous callers learn only that it is down
                    log.Warning("Not ready: {Error}", e.Message);
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
            var given = h.StartsWith("Bearer ", StringComparison.Ordinal) ? h[7..].Trim() : "";
            bool ok = Same(given, o.ApiToken) | (readOnly && Same(given, o.StatusToken));
            if (!ok) log.Warning("Refused {Method} {Path} from {Remote}: missing or wrong bearer token", ctx.Request.Method, ctx.Request.Path.ToString(), ctx.Connection.RemoteIpAddress?.ToString());
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
            GraphJobSpec spec;
            try
            {
                var image = roots.Confine(req.Image, "image");
                if (!File.Exists(image)) return Error(400, $"{req.Image}: image not found");
                var mask = req.Mask is null ? null : roots.Confine(req.Mask, "mask");
                var model = req.Model is null ? null : roots.Confine(req.Model, "model");
                var outDir = roots.Confine(req.Out, "out");
                spec = new GraphJobSpec(image, mask, outDir, TileSize: req.TileSize ?? 2048, Spacing: req.Spacing ?? 40.96, ModelPath: model,
                    Objects: req.Objects ?? "geojson", Simplify: req.Simplify ?? 0);
            }
            catch (UnauthorizedAccessException e) { return Refused(403, e.Message); }
            catch (Exception e) when (e is ArgumentException or IOException) { return Refused(400, e.Message); }

            // 202 only once the coordinator has checked and journaled the job; its refusal, with the reason, otherwise
            object answer;
            try { answer = await coordinator.ActorRef.Ask<object>(new SubmitGraphJob(id, spec, MustBeNew: true), TimeSpan.FromSeconds(15), ctx.RequestAborted); }
            catch (AskTimeoutException) { return Error(503, "the coordinator did not answer in 15 s; the job may not have been recorded (GET /jobs/ID tells)"); }
            switch (answer)
            {
                case JobReceived:
                    log.Information("Job {JobId} submitted over HTTP: {Image} → {OutDir}", id, spec.ImagePath, spec.OutDir);
                    return Results.Json(new { jobId = id, status = $"/jobs/{id}" }, statusCode: 202);
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
            });
        });

        app.MapGet("/jobs/{id}", async (HttpContext ctx, string id, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            if (!Authorized(ctx)) return Error(401, "missing or wrong bearer token");
            if (AssignmentPaths.InvalidJobId(id) is { } badId) return Error(400, badId);
            StatusReport r;
            try { r = await coordinator.ActorRef.Ask<StatusReport>(new GetStatus(id), TimeSpan.FromSeconds(10)); }
            catch (AskTimeoutException) { return Error(503, "the coordinator did not answer in 10 s"); }
            var j = r.Jobs.FirstOrDefault();
            return j is null
                ? Error(404, $"no job {id}")
                : Results.Json(new { jobId = j.JobId, phase = j.Phase, tilesDone = j.TilesDone, tilesTotal = j.TilesTotal, inFlight = j.InFlight, retries = j.Retries, error = j.Error, outDir = j.OutDir });
        });
    }
}
