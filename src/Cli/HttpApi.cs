using System.Security.Cryptography;
using System.Text;
using Akka.Actor;
using Akka.Hosting;
using ActorSeg.Messages;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>A job as submitted over HTTP (paths must lie inside the data roots).</summary>
public sealed record HttpJobRequest(string? JobId, string Image, string? Mask, string? Model, string Out, int? TileSize, double? Spacing);

/// <summary>
/// The coordinator node's HTTP API: /healthz (the process answers), /readyz (cluster joined and the journal database
/// reachable), POST /jobs (bearer token; paths confined to the data roots) and GET /jobs/{id}.
/// </summary>
public static class HttpApi
{
    public static void Map(WebApplication app, NodeOptions o)
    {
        var log = Log.ForContext("Role", "http");
        var roots = new DataRoots(o.DataRoots);
        if (o.ApiToken is null) log.Warning("No API token (ACTORSEG_APITOKEN): /jobs refuses every request");
        if (roots.Roots.Count == 0) log.Warning("No data roots (ACTORSEG_DATAROOTS): /jobs accepts no path");
        var dbChecked = (At: DateTime.MinValue, Ok: false, Error: (string?)null);

        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", async (ActorSystem system, CancellationToken ct) =>
        {
            var cluster = Akka.Cluster.Cluster.Get(system);
            bool up = cluster.SelfMember.Status == Akka.Cluster.MemberStatus.Up;
            if (DateTime.UtcNow - dbChecked.At > TimeSpan.FromSeconds(5))
            {
                try { await o.Persistence.CheckReachableAsync(ct); dbChecked = (DateTime.UtcNow, true, null); }
                catch (DatabaseUnreachableException e) { dbChecked = (DateTime.UtcNow, false, e.Message); }
            }
            return up && dbChecked.Ok
                ? Results.Json(new { ready = true, member = cluster.SelfMember.Status.ToString() })
                : Results.Json(new { ready = false, member = cluster.SelfMember.Status.ToString(), database = dbChecked.Error ?? "ok" }, statusCode: 503);
        });

        bool Authorized(HttpContext ctx)
        {
            if (o.ApiToken is null) return false;
            var h = ctx.Request.Headers.Authorization.ToString();
            var given = h.StartsWith("Bearer ", StringComparison.Ordinal) ? h[7..].Trim() : "";
            bool ok = CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(o.ApiToken));
            if (!ok) log.Warning("Refused {Method} {Path} from {Remote}: missing or wrong bearer token", ctx.Request.Method, ctx.Request.Path.ToString(), ctx.Connection.RemoteIpAddress?.ToString());
            return ok;
        }

        app.MapPost("/jobs", (HttpContext ctx, HttpJobRequest req, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            if (!Authorized(ctx)) return Results.Json(new { error = "missing or wrong bearer token" }, statusCode: 401);
            GraphJobSpec spec;
            try
            {
                var image = roots.Confine(req.Image, "image");
                if (!File.Exists(image)) return Results.Json(new { error = $"{req.Image}: image not found" }, statusCode: 400);
                var mask = req.Mask is null ? null : roots.Confine(req.Mask, "mask");
                var model = req.Model is null ? null : roots.Confine(req.Model, "model");
                var outDir = roots.Confine(req.Out, "out");
                spec = new GraphJobSpec(image, mask, outDir, TileSize: req.TileSize ?? 2048, Spacing: req.Spacing ?? 40.96, ModelPath: model);
            }
            catch (Exception e) when (e is ArgumentException or UnauthorizedAccessException or IOException)
            {
                log.Warning("Refused a job from {Remote}: {Error}", ctx.Connection.RemoteIpAddress?.ToString(), e.Message);
                return Results.Json(new { error = e.Message }, statusCode: 400);
            }
            var id = req.JobId ?? JobIds.New();
            coordinator.ActorRef.Tell(new SubmitGraphJob(id, spec), ActorRefs.Nobody);
            log.Information("Job {JobId} submitted over HTTP: {Image} → {OutDir}", id, spec.ImagePath, spec.OutDir);
            return Results.Json(new { jobId = id, status = $"/jobs/{id}" }, statusCode: 202);
        });

        app.MapGet("/jobs/{id}", async (HttpContext ctx, string id, IRequiredActor<CoordinatorKey> coordinator) =>
        {
            if (!Authorized(ctx)) return Results.Json(new { error = "missing or wrong bearer token" }, statusCode: 401);
            StatusReport r;
            try { r = await coordinator.ActorRef.Ask<StatusReport>(new GetStatus(id), TimeSpan.FromSeconds(10)); }
            catch (AskTimeoutException) { return Results.Json(new { error = "the coordinator did not answer in 10 s" }, statusCode: 503); }
            var j = r.Jobs.FirstOrDefault();
            return j is null
                ? Results.Json(new { error = $"no job {id}" }, statusCode: 404)
                : Results.Json(new { jobId = j.JobId, phase = j.Phase, tilesDone = j.TilesDone, tilesTotal = j.TilesTotal, inFlight = j.InFlight, retries = j.Retries, error = j.Error, outDir = j.OutDir });
        });
    }
}
