using System.Diagnostics;
using ActorSeg.Core.Imaging;
using ActorSeg.GpuTrainer;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Cluster;

/// <summary>
/// The cluster as users run it: a coordinator, tile workers and a trainer as separate OS processes on 127.0.0.1,
/// jobs submitted with `actorseg submit`, nodes killed with SIGKILL in the middle of a job.
/// </summary>
[Collection("cluster")] // these start many processes: never two at once
public class ClusterProcessTests(ITestOutputHelper output) : ClusterTestBase("cluster")
{


    private static string Image(string dir, string name, int size, int seed)
    {
        var img = Path.Combine(dir, name + ".tif");
        if (!File.Exists(img)) SyntheticMicroscopy.Generate(new SyntheticSpec(size, size, SyntheticKind.Colonies, 16, 1, seed), img, Path.Combine(dir, name + "_mask.tif"));
        return img;
    }

    private Process Submit(ClusterHarness h, string coordinator, params string[] args) => SubmitNode(h, coordinator, args).Process;

    private static ClusterHarness.NodeProcess SubmitNode(ClusterHarness h, string coordinator, params string[] args) =>
        h.Run("submit", 0, null, ["submit", .. args, "--coordinator", coordinator]);

    private static int Wait(Process p, TimeSpan timeout)
    {
        if (!p.WaitForExit(timeout)) { p.Kill(true); throw new TimeoutException("submit did not finish in " + timeout); }
        p.WaitForExit();
        return p.ExitCode;
    }

    [Fact]
    public void TrainingAndSegmentation_RunAcrossProcesses_AndAWorkerKilledMidJob_ChangesNothing()
    {
        string imgs = Path.Combine(_dir, "images"), masks = Path.Combine(_dir, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 2; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(640, 640, SyntheticKind.Colonies, 16, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        var held = Image(_dir, "held", 2560, 7);

        // the cluster: coordinator, two single-slot workers, a trainer
        var h = NewCluster();
        int pc = ClusterHarness.FreePort(), p1 = ClusterHarness.FreePort(), p2 = ClusterHarness.FreePort(), pt = ClusterHarness.FreePort();
        var seeds = $"akka.tcp://actorseg@127.0.0.1:{pc}";
        // progress every 0.2 s, so the test sees the first finished tiles at once (the default is every 5 s)
        var fastProgress = new Dictionary<string, string> { ["ACTORSEG_PROGRESSINTERVALSECONDS"] = "0.2" };
        var coord = h.Start("coordinator", pc, fastProgress, "--roles", "coordinator", "--seeds", seeds, "--db", $"Data Source={Path.Combine(_dir, "journal.db")}");
        var w1 = h.Start("worker1", p1, null, "--roles", "tile-worker", "--seeds", seeds, "--workers", "1");
        var w2 = h.Start("worker2", p2, null, "--roles", "tile-worker", "--seeds", seeds, "--workers", "1");
        var tn = h.Start("trainer", pt, null, "--roles", "gpu-trainer", "--seeds", seeds, "--device", "cpu");
        ClusterHarness.WaitFor(() => coord.Lines.Count(l => l.Contains("Worker ") && l.Contains(" joined")) >= 2 && coord.Saw("Trainer "), TimeSpan.FromSeconds(60), "two workers and a trainer to join", coord);

        // a model trained on the cluster: the workers build the graphs, the trainer trains
        var modelDir = Path.Combine(_dir, "model");
        var tr = h.Run("submit-train", 0, null, ["submit-train", "--images", imgs, "--masks", masks, "--segments", "1500", "--epochs", "30", "--val-frac", "0.5",
            "--out", modelDir, "--coordinator", coord.Address]).Process;
        Assert.True(Wait(tr, TimeSpan.FromMinutes(4)) == 0, coord.Log + "\n---\n" + tn.Log);
        var model = Path.Combine(modelDir, "best.model");
        Assert.True(File.Exists(model));
        Assert.True(tn.Saw("training graphconv") || tn.Saw("training "), "the trainer trained");
        Assert.True(coord.Saw("model trained on"), "the coordinator journaled the trained model");

        // the single-process reference, with that model
        var refDir = Path.Combine(_dir, "ref");
        // 100 tiles of 256 px: however fast the machine, many are still to do when worker 1 is killed
        var r = TestPaths.RunCli("segment", held, "--model", model, "--out", refDir, "--tile-size", "256", "--workers", "2");
        Assert.True(r.ExitCode == 0, r.Stderr);

        var outDir = Path.Combine(_dir, "cluster-out");
        int before = coord.Lines.Count;
        // no --spacing: submit builds the graph at the model's superpixel size, as segment does (the client reads the model)
        var sub = Submit(h, coord.Address, held, "--out", outDir, "--model", model, "--tile-size", "256");
        // kill worker 1 while it holds a tile: once the job's progress shows finished tiles, and not all of them
        ClusterHarness.WaitFor(() => coord.Lines.Skip(before).Any(l => l.Contains(" tiles, ") && !l.Contains(": 0/")), TimeSpan.FromSeconds(90), "the job's first tiles", coord);
        var killedAt = Stopwatch.StartNew();
        w1.Kill();
        int rc = Wait(sub, TimeSpan.FromMinutes(4));
        output.WriteLine(coord.Log);
        Assert.Equal(0, rc);
        // the coordinator's log is read from its pipe as it comes: give the line a moment to arrive
        ClusterHarness.WaitFor(() => coord.Saw("tile-worker") && (coord.Saw("is unreachable") || coord.Saw("is stopped") || coord.Saw("removed from the cluster")),
            TimeSpan.FromSeconds(60), "the coordinator to notice the dead worker", coord);
        Assert.True(coord.Saw("Worker akka.tcp://actorseg@127.0.0.1:" + p1), "worker 1 took part");
        Assert.True(tn.Saw("nodes classified"), "the trainer classified the nodes");
        Assert.True(w2.Saw("Mask painted"), "the surviving worker painted the mask");

        // the same bytes as the single-process run
        Assert.Equal(File.ReadAllBytes(Path.Combine(refDir, "graph", "graph.npz")), File.ReadAllBytes(Path.Combine(outDir, "graph", "graph.npz")));
        using var a = Vips.Image.NewFromFile(Path.Combine(refDir, "mask.tif"));
        using var b = Vips.Image.NewFromFile(Path.Combine(outDir, "mask.tif"));
        Assert.Equal(a.WriteToMemory<byte>(), b.WriteToMemory<byte>());
        Assert.True(File.Exists(Path.Combine(outDir, "overlay.png")));
        Assert.True(File.Exists(Path.Combine(outDir, "segment.json")));
        output.WriteLine($"job finished {killedAt.Elapsed.TotalSeconds:F1}s after the SIGKILL");

        // image 1 of a LIF project (--series 1): the job carries the series to every worker that reads it, and the
        // cluster's graph and mask are the one-process run's (image 0 is another size: a worker reading it would fail)
        ushort[] field;
        using (var f1 = Vips.Image.NewFromFile(Path.Combine(imgs, "f1.tif"))) field = f1.WriteToMemory<ushort>();
        var lif = Path.Combine(_dir, "project.lif");
        ActorSeg.Tests.IO.LifWriter.Write(lif, [ActorSeg.Tests.IO.LifWriter.OneChannel("overview", 100, 80, 2, new ushort[100 * 80], bits: 16),
            ActorSeg.Tests.IO.LifWriter.OneChannel("field", 640, 640, 0.5, field, bits: 16)]);
        var lifRef = Path.Combine(_dir, "lif-ref");
        var lr = TestPaths.RunCli("segment", lif, "--series", "1", "--model", model, "--out", lifRef, "--tile-size", "256");
        Assert.True(lr.ExitCode == 0, lr.Stderr);
        var lifOut = Path.Combine(_dir, "lif-out");
        var ls = Submit(h, coord.Address, lif, "--series", "1", "--out", lifOut, "--model", model, "--tile-size", "256", "--spacing", ModelFile.Load(model).Spec.SeedSpacing.ToString("R"));
        Assert.True(Wait(ls, TimeSpan.FromMinutes(4)) == 0, coord.Log);
        Assert.Equal(File.ReadAllBytes(Path.Combine(lifRef, "graph", "graph.npz")), File.ReadAllBytes(Path.Combine(lifOut, "graph", "graph.npz")));
        using (var la = Vips.Image.NewFromFile(Path.Combine(lifRef, "mask.tif")))
        using (var lb = Vips.Image.NewFromFile(Path.Combine(lifOut, "mask.tif")))
        {
            Assert.Equal((640, 640), (lb.Width, lb.Height));
            Assert.Equal(la.WriteToMemory<byte>(), lb.WriteToMemory<byte>());
        }

        // a whole slide on the cluster: an Aperio slide that is 60 % glass, segmented with a model of RGB fields; the
        // workers read it through OpenSlide, skip its glass-only tiles, and glass is class 0 in the mask
        if (!ActorSeg.Core.Imaging.OpenSlideSource.Available) { output.WriteLine("SKIPPED (slide part): libopenslide0 is not installed"); return; }
        string rgbImgs = Path.Combine(_dir, "rgb-images"), rgbMasks = Path.Combine(_dir, "rgb-masks");
        Directory.CreateDirectory(rgbImgs); Directory.CreateDirectory(rgbMasks);
        for (int s = 1; s <= 2; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(512, 512, SyntheticKind.Nuclei, 8, 3, s), Path.Combine(rgbImgs, $"f{s}.tif"), Path.Combine(rgbMasks, $"f{s}.tif"));
        var rgbModel = Path.Combine(_dir, "rgb-model");
        var rt = TestPaths.RunCli("train", "--images", rgbImgs, "--masks", rgbMasks, "--segments", "600", "--edges", "rag", "--epochs", "10", "--val-frac", "0.5", "--out", rgbModel);
        Assert.True(rt.ExitCode == 0, rt.Stderr);
        var gen = TestPaths.RunCli("generate", "--out", _dir, "--name", "glass", "--width", "1536", "--height", "1024", "--kind", "nuclei", "--format", "svs", "--glass", "0.6", "--seed", "3");
        Assert.True(gen.ExitCode == 0, gen.Stderr);
        var slideOut = Path.Combine(_dir, "slide-out");
        var ss = Submit(h, coord.Address, Path.Combine(_dir, "glass.svs"), "--out", slideOut, "--model", Path.Combine(rgbModel, "best.model"), "--tile-size", "256");
        Assert.True(Wait(ss, TimeSpan.FromMinutes(4)) == 0, coord.Log);
        Assert.True(coord.Saw("glass only and will be skipped"), "the coordinator logs the tissue it found");
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(slideOut, "segment.json"))))
        {
            Assert.InRange(doc.RootElement.GetProperty("tissueFraction").GetDouble(), 0.3, 0.5);
            Assert.True(doc.RootElement.GetProperty("tilesSkipped").GetInt32() > 0);
        }
        using var sm = Vips.Image.NewFromFile(Path.Combine(slideOut, "mask.tif"));
        using var sn = Vips.Image.NewFromFile(Path.Combine(slideOut, "graph", "nodes.tif"));
        var mk = sm.WriteToMemory<byte>(); var nd = sn.WriteToMemory<uint>();
        Assert.Equal((1536, 1024), (sm.Width, sm.Height));
        Assert.True(nd.Count(v => v == uint.MaxValue) > nd.Length / 2, "most of the slide is glass, with no node");
        for (int i = 0; i < nd.Length; i++) if (nd[i] == uint.MaxValue) Assert.Equal(0, mk[i]);
        Assert.True(File.Exists(Path.Combine(slideOut, "mask.ome.tif")));
        Assert.True(File.Exists(Path.Combine(slideOut, "objects.geojson")), "the worker that painted the mask wrote the objects");
    }

    public static IEnumerable<object[]> Journals()
    {
        yield return ["sqlite"];
        yield return ["postgresql"];
    }

    [Theory, MemberData(nameof(Journals))]
    public void AKilledCoordinator_RestartsFromItsJournal_AndDoesNotRedoFinishedTiles(string journal)
    {
        string db;
        if (journal == "sqlite") db = $"Data Source={Path.Combine(_dir, "journal.db")}";
        else
        {
            var pg = Environment.GetEnvironmentVariable("ACTORSEG_TEST_POSTGRES");
            if (pg is null) { output.WriteLine("SKIPPED: ACTORSEG_TEST_POSTGRES is not set (./run.sh test sets it after starting PostgreSQL)"); return; }
            db = PostgresTestDatabase.Create(pg);
        }
        try
        {
            var img = Image(_dir, "big", 3072, 11);
            var refDir = Path.Combine(_dir, "ref");
            // 144 tiles of 256 px: several seconds of tiles on two workers, so the kill below lands mid-phase
            // even on a fast machine (64 tiles of 384 px once finished in 2.6 s, between two progress reports)
            var r = TestPaths.RunCli("graph", img, "--mask", Path.Combine(_dir, "big_mask.tif"), "--out", refDir, "--tile-size", "256", "--workers", "2");
            Assert.True(r.ExitCode == 0, r.Stderr);

            var h = NewCluster();
            int pc = ClusterHarness.FreePort(), p1 = ClusterHarness.FreePort(), p2 = ClusterHarness.FreePort();
            // the workers are seeds too: a restarted coordinator joins the running cluster through them
            var seeds = $"akka.tcp://actorseg@127.0.0.1:{pc},akka.tcp://actorseg@127.0.0.1:{p1}";
            string[] coordArgs = ["--roles", "coordinator", "--seeds", seeds, "--db-provider", journal, "--db", db];
            // progress every 0.2 s, so the test sees the first journaled tiles at once (the default is every 5 s)
            var fastProgress = new Dictionary<string, string> { ["ACTORSEG_PROGRESSINTERVALSECONDS"] = "0.2" };
            var coord = h.Start("coordinator", pc, fastProgress, coordArgs);
            var w1 = h.Start("worker1", p1, null, "--roles", "tile-worker", "--seeds", seeds, "--workers", "1");
            var w2 = h.Start("worker2", p2, null, "--roles", "tile-worker", "--seeds", seeds, "--workers", "1");
            ClusterHarness.WaitFor(() => coord.Lines.Count(l => l.Contains("Worker ") && l.Contains(" joined")) >= 2, TimeSpan.FromSeconds(60), "two workers", coord);

            var outDir = Path.Combine(_dir, "out");
            var subNode = SubmitNode(h, coord.Address, img, "--mask", Path.Combine(_dir, "big_mask.tif"), "--out", outDir, "--tile-size", "256", "--job-id", "resume-1");
            var sub = subNode.Process;
            // SIGKILL the coordinator once some tiles are in the journal
            ClusterHarness.WaitFor(() => coord.Lines.Any(l => l.Contains("resume-1: ") && l.Contains(" tiles, ") && !l.Contains(": 0/")), TimeSpan.FromSeconds(90), "progress", coord);
            coord.Kill();
            var coord2 = h.Start("coordinator2", pc, fastProgress, coordArgs);
            int rc;
            try { rc = Wait(sub, TimeSpan.FromMinutes(4)); }
            finally { output.WriteLine(coord.Log + "\n--- restarted:\n" + coord2.Log + "\n--- worker 1:\n" + w1.Log + "\n--- submit:\n" + subNode.Log); }
            Assert.Equal(0, rc);
            var resumed = coord2.Lines.First(l => l.Contains("resumes in phase"));
            // "Job resume-1 resumes in phase tiles: K/N tiles already done"
            var kn = resumed[(resumed.IndexOf(": ", resumed.IndexOf("phase")) + 2)..].Split(' ')[0].Split('/');
            int k = int.Parse(kn[0]), n = int.Parse(kn[1]);
            Assert.True(k > 0 && k < n, resumed);
            // only the unfinished tiles were handed out again: count the completions the new coordinator journaled
            var done = coord2.Lines.First(l => l.Contains("all ") && l.Contains(" tiles done in "));
            Assert.Contains($"{k} recovered from the journal", done);
            Assert.Equal(File.ReadAllBytes(Path.Combine(refDir, "graph.npz")), File.ReadAllBytes(Path.Combine(outDir, "graph.npz")));
            // `status` asks the (restarted) coordinator what it knows
            var st = h.Run("status", 0, null, ["status", "resume-1", "--coordinator", coord2.Address]);
            Assert.Equal(0, Wait(st.Process, TimeSpan.FromSeconds(60)));
            Assert.Contains(st.Lines, l => l.StartsWith("resume-1") && l.Contains(" done ") && l.Contains($"{n}/{n}"));
            // and says so of a job it does not know (before: an empty table)
            var unknown = h.Run("status-unknown", 0, null, ["status", "no-such-job", "--coordinator", coord2.Address]);
            Assert.Equal(1, Wait(unknown.Process, TimeSpan.FromSeconds(60)));
            Assert.Contains(unknown.Lines, l => l.Contains("No job or batch no-such-job is known to the coordinator"));
        }
        finally
        {
            if (journal == "postgresql") PostgresTestDatabase.Drop(db);
        }
    }

    [Fact]
    public void AWorkerStoppedWithSigterm_HandsItsTileBack_AndLeavesCleanly()
    {
        // four tiles of 2048 px (each about half a second here): the SIGTERM lands while worker 1 still holds its tile,
        // however fast the machine (512-px tiles can finish between the "started" line and the signal)
        var img = Image(_dir, "mid", 4096, 5);
        var h = NewCluster();
        int pc = ClusterHarness.FreePort(), p1 = ClusterHarness.FreePort(), p2 = ClusterHarness.FreePort();
        var seeds = $"akka.tcp://actorseg@127.0.0.1:{pc}";
        var coord = h.Start("coordinator", pc, null, "--roles", "coordinator", "--seeds", seeds, "--db", $"Data Source={Path.Combine(_dir, "j.db")}");
        var w1 = h.Start("worker1", p1, null, "--roles", "tile-worker", "--seeds", seeds, "--workers", "1", "--verbose");
        var w2 = h.Start("worker2", p2, null, "--roles", "tile-worker", "--seeds", seeds, "--workers", "1");
        ClusterHarness.WaitFor(() => coord.Lines.Count(l => l.Contains("Worker ") && l.Contains(" joined")) >= 2, TimeSpan.FromSeconds(60), "two workers", coord);
        var sub = Submit(h, coord.Address, img, "--out", Path.Combine(_dir, "out"), "--tile-size", "2048");
        // stop worker 1 while it holds a tile: its latest tile line says "started"
        var sw = Stopwatch.StartNew();
        while (!(w1.Lines.LastOrDefault(l => l.Contains("Tile ") && (l.Contains(" started ") || l.Contains(" done: "))) is { } last && last.Contains(" started ")))
        {
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(60), "worker 1 never started a tile\n" + w1.Log);
            Thread.Sleep(5);
        }
        Process.Start("kill", ["-TERM", w1.Process.Id.ToString()])!.WaitForExit();
        Assert.True(w1.Process.WaitForExit(TimeSpan.FromSeconds(60)), "the worker should leave within its grace period");
        w1.Process.WaitForExit();
        Assert.Equal(0, Wait(sub, TimeSpan.FromMinutes(3)));
        output.WriteLine(w1.Log + "\n---\n" + coord.Log);
        Assert.Equal(0, w1.Process.ExitCode);
        Assert.True(w1.Saw("handed back"), "the leaving worker hands its tile back");
        Assert.True(coord.Saw("handed back by leaving worker"), "the coordinator re-queues it at once");
        Assert.True(coord.Saw("Member leaving") || coord.Saw("Member exited") || coord.Saw("Member removed"), "the leave is logged");
    }

    [Fact]
    public void TheHttpApi_ChecksHealth_RequiresItsToken_ConfinesPaths_AndRunsJobs()
    {
        var data = Path.Combine(_dir, "data");
        Directory.CreateDirectory(data);
        var img = Image(data, "slide", 600, 9);
        var h = NewCluster();
        int pc = ClusterHarness.FreePort(), http = ClusterHarness.FreePort();
        const string token = "a-real-token-0123456789abcdef";
        var env = new Dictionary<string, string> { ["ACTORSEG_APITOKEN"] = token, ["ACTORSEG_DATAROOTS"] = data };
        var node = h.Start("coordinator", pc, env, "--roles", "coordinator,tile-worker", "--workers", "2", "--http-port", http.ToString(),
            "--db", $"Data Source={Path.Combine(_dir, "j.db")}");
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
        ClusterHarness.WaitFor(() => { try { return client.GetAsync("/readyz").Result.IsSuccessStatusCode; } catch (Exception) { return false; } },
            TimeSpan.FromSeconds(60), "/readyz", node);
        Assert.Equal("ok", client.GetStringAsync("/healthz").Result);
        var ready = client.GetStringAsync("/readyz").Result;
        Assert.DoesNotContain("Data Source", ready); // no connection details for anonymous callers
        Assert.DoesNotContain(_dir, ready);

        HttpResponseMessage Post(HttpContent body, string? t)
        {
            var req = new HttpRequestMessage(HttpMethod.Post, "/jobs") { Content = body };
            req.Headers.ExpectContinue = true; // like curl for large bodies: the server may answer before the body is sent
            if (t is not null) req.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", t);
            return client.Send(req);
        }
        HttpResponseMessage PostJson(object o, string? t) => Post(new StringContent(System.Text.Json.JsonSerializer.Serialize(o), System.Text.Encoding.UTF8, "application/json"), t);
        var job = new { jobId = "web 1", image = img, @out = Path.Combine(data, "out"), tileSize = 256 };
        var anonymous = PostJson(job, null);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal("Bearer", Assert.Single(anonymous.Headers.WwwAuthenticate).Scheme);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, PostJson(job, "wrong").StatusCode);
        // the token is checked before the body is read: garbage without a token is 401, not 400
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, Post(new StringContent("{not json", System.Text.Encoding.UTF8, "application/json"), null).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.RequestEntityTooLarge, Post(new StringContent(new string(' ', 200_000), System.Text.Encoding.UTF8, "application/json"), token).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, PostJson(new { jobId = "../x", image = img, @out = Path.Combine(data, "o2") }, token).StatusCode);
        var refused = PostJson(new { image = img, @out = Path.Combine(data, "..", "elsewhere") }, token);
        Assert.Equal(System.Net.HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Contains("outside the data roots", refused.Content.ReadAsStringAsync().Result);
        // an output folder holding the job's own input is refused by the coordinator, with its reason
        var overlap = PostJson(new { image = img, @out = data }, token);
        Assert.Equal(System.Net.HttpStatusCode.Conflict, overlap.StatusCode);
        Assert.Contains("contains the job's image", overlap.Content.ReadAsStringAsync().Result);
        // a job's model is read at the door (its graph is built with the model's own features): a damaged one is refused
        // there, naming it, and a missing one too
        var badModel = Path.Combine(data, "bad.model");
        File.WriteAllText(badModel, "not a model");
        var bad = PostJson(new { image = img, @out = Path.Combine(data, "o3"), model = badModel }, token);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("bad.model", bad.Content.ReadAsStringAsync().Result);
        var missing = PostJson(new { image = img, @out = Path.Combine(data, "o3"), model = Path.Combine(data, "none.model") }, token);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, missing.StatusCode);
        Assert.Contains("model not found", missing.Content.ReadAsStringAsync().Result);
        Assert.False(Directory.Exists(Path.Combine(data, "o3")), "a refused job writes nothing");
        // a misspelt field is refused, not ignored (a "modle" made a job without its segmentation); settings that need no
        // image are refused at the door too, before any folder is made (before: 202, then the job failed at prepare)
        var typo = PostJson(new { image = img, @out = Path.Combine(data, "o4"), modle = badModel }, token);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, typo.StatusCode);
        Assert.Contains("modle", typo.Content.ReadAsStringAsync().Result);
        var nanSpacing = Post(new StringContent($$"""{"image":{{System.Text.Json.JsonSerializer.Serialize(img)}},"out":{{System.Text.Json.JsonSerializer.Serialize(Path.Combine(data, "o4"))}},"spacing":"NaN"}""", System.Text.Encoding.UTF8, "application/json"), token);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, nanSpacing.StatusCode);
        Assert.Contains("spacing must be >= 2 pixels (got NaN)", nanSpacing.Content.ReadAsStringAsync().Result);
        var tooSmall = PostJson(new { image = img, @out = Path.Combine(data, "o4"), spacing = 1.0 }, token);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, tooSmall.StatusCode);
        // an output "folder" that is a file is refused as the job is admitted (before: 202, then a failure at prepare)
        var aFile = Path.Combine(data, "a-file");
        File.WriteAllText(aFile, "");
        var outFile = PostJson(new { image = img, @out = aFile }, token);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, outFile.StatusCode);
        Assert.Contains("is a file, not a folder", outFile.Content.ReadAsStringAsync().Result);
        Assert.False(Directory.Exists(Path.Combine(data, "o4")), "a refused job writes nothing");
        var accepted = PostJson(job, token);
        Assert.Equal(System.Net.HttpStatusCode.Accepted, accepted.StatusCode);
        // the link to its status is a usable URL whatever the id holds (a space, here)
        var link = System.Text.Json.JsonDocument.Parse(accepted.Content.ReadAsStringAsync().Result).RootElement.GetProperty("status").GetString();
        Assert.Equal("/jobs/web%201", link);
        // the same id again is a conflict, not another 202 with another job's status
        var dup = PostJson(job with { @out = Path.Combine(data, "out-b") }, token);
        Assert.Equal(System.Net.HttpStatusCode.Conflict, dup.StatusCode);

        string phase = "";
        ClusterHarness.WaitFor(() =>
        {
            var req = new HttpRequestMessage(HttpMethod.Get, link);
            // the scheme's name in any case (RFC 9110)
            req.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("bearer", token);
            var body = client.Send(req).Content.ReadAsStringAsync().Result;
            phase = System.Text.Json.JsonDocument.Parse(body).RootElement.TryGetProperty("phase", out var p) ? p.GetString() ?? "" : "";
            return phase is "done" or "failed";
        }, TimeSpan.FromSeconds(90), "the job to end", node);
        Assert.Equal("done", phase);
        Assert.True(File.Exists(Path.Combine(data, "out", "graph.npz")));
        Assert.False(Directory.Exists(Path.Combine(data, "out-b")), "a refused job writes nothing");
        Assert.True(node.Saw("Refused"), "refusals are logged");

        // a job with a good model is built at the model's own superpixel spacing (30 px here), not the default
        var names = Core.Pipeline.GraphJobManifest.FeatureNamesFor(1, "texture");
        var modelSpec = new ModelSpec
        {
            Architecture = new GnnArchitecture { Layers = 2, Hidden = 4 }, FeatureNames = names, FeatureMean = new float[names.Length],
            FeatureStd = Enumerable.Repeat(1f, names.Length).ToArray(), Classes = 2, Edges = "rag", ClassWeights = [1, 1], SeedSpacing = 30,
        };
        var goodModel = Path.Combine(data, "grey.model");
        using (var gnn = new GnnModel(modelSpec.Architecture, names.Length, 2)) ModelFile.Save(goodModel, modelSpec, gnn);
        Assert.Equal(System.Net.HttpStatusCode.Accepted, PostJson(new { jobId = "web-2", image = img, @out = Path.Combine(data, "out2"), tileSize = 256, model = goodModel }, token).StatusCode);
        ClusterHarness.WaitFor(() => node.Saw("Job web-2 planned"), TimeSpan.FromSeconds(60), "the model's job to be planned", node);
        Assert.Contains("(spacing 30.0 px)", node.Lines.First(l => l.Contains("Job web-2 planned")));
        // (the default 40.96 px fits 600 px as 15 seeds of 40 px)
        Assert.Contains("(spacing 40.0 px)", node.Lines.First(l => l.Contains("Job web 1 planned")));
    }

    [Fact]
    public void TheManifestsRoles_RunABatchOnLocalAddresses_ToTheEnd()
    {
        var repo = new DirectoryInfo(AppContext.BaseDirectory);
        while (repo is not null && !File.Exists(Path.Combine(repo.FullName, "ActorSeg.sln"))) repo = repo.Parent;
        Assert.NotNull(repo);
        var work = Path.Combine(_dir, "lc");
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Path.Combine(repo!.FullName, "deploy", "local-cluster.sh"), "--work", work, "--slides", "4", "--broken", "1", "--size", "512" }) psi.ArgumentList.Add(a);
        psi.Environment["ACTORSEG_BIN"] = Path.GetDirectoryName(TestPaths.CliDll)!;
        using var p = Process.Start(psi)!;
        var so = p.StandardOutput.ReadToEndAsync(); var se = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(5)), "the local cluster batch should finish");
        output.WriteLine(so.Result + se.Result);
        Assert.Equal(1, p.ExitCode); // the broken slide fails, alone
        var rows = File.ReadAllLines(Path.Combine(work, "results", "summary.csv")).Skip(1).Select(l => l.Split(',')).ToList();
        Assert.Equal(4, rows.Count);
        Assert.Equal(3, rows.Count(r => r[4] == "done"));
        Assert.Equal("failed", rows.Single(r => r[0] == "broken-1")[4]);
        Assert.Contains("slides/hour", so.Result);
        Assert.True(File.Exists(Path.Combine(work, "results", "report.html")));
    }

    /// <summary>A coordinator whose PostgreSQL journal is on a port nothing listens on.</summary>
    private ClusterHarness.NodeProcess CoordinatorWithoutItsDatabase()
    {
        int pc = ClusterHarness.FreePort(), dead = ClusterHarness.FreePort();
        return NewCluster().Start("coordinator", pc, null, "--roles", "coordinator", "--db-provider", "postgresql",
            "--db", $"Host=127.0.0.1;Port={dead};Username=nobody;Password=x;Database=none;Timeout=2");
    }

    /// <summary>Rows of the journal database's snapshot table; 0 while the table does not exist or the database is busy.</summary>
    private static long SnapshotRows(string db)
    {
        try
        {
            using var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False");
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "SELECT count(*) FROM snapshot";
            return Convert.ToInt64(cmd.ExecuteScalar());
        }
        catch (Microsoft.Data.Sqlite.SqliteException) { return 0; }
    }

    [Fact]
    public void DamagedSnapshotsAndEvents_AreSkipped_AJobOfUnknownStateFails_AndTheCoordinatorGoesOn()
    {
        // before: a snapshot or an event that could not be read failed the recovery, and the coordinator restarted into it
        // every few seconds for ever, every job and batch waiting
        var db = Path.Combine(_dir, "journal.db");
        var img = Image(_dir, "small", 768, 5);
        var h = NewCluster();
        int pc = ClusterHarness.FreePort();
        var seeds = $"akka.tcp://actorseg@127.0.0.1:{pc}";
        string[] coordArgs = ["--roles", "coordinator", "--seeds", seeds, "--db", $"Data Source={db}"];
        var env = new Dictionary<string, string> { ["ACTORSEG_SNAPSHOTEVERY"] = "4", ["ACTORSEG_PROGRESSINTERVALSECONDS"] = "0.5" };
        var coord = h.Start("coordinator", pc, env, coordArgs);
        ClusterHarness.WaitFor(() => coord.Saw("Coordinator started"), TimeSpan.FromSeconds(60), "the coordinator", coord);
        var subs = new[] { "keep", "damaged" }.Select(id => SubmitNode(h, coord.Address, img, "--out", Path.Combine(_dir, "out-" + id), "--tile-size", "256", "--job-id", id)).ToList();
        ClusterHarness.WaitFor(() => coord.Saw("Job keep planned") && coord.Saw("Job damaged planned"), TimeSpan.FromSeconds(60), "both jobs planned", coord);
        // a snapshot is saved after the event that asks for it, without a log line: killed right after the plans, a
        // loaded machine could leave none (the table is read while the coordinator writes; SQLite allows that)
        ClusterHarness.WaitFor(() => SnapshotRows(db) >= 1, TimeSpan.FromSeconds(60), "a snapshot in the journal database", coord);
        foreach (var sn in subs) sn.Kill();
        coord.Kill();

        int snapshots;
        long damagedSeq, keptSeq;
        using (var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={db};Pooling=False"))
        {
            c.Open();
            void Rewrite(string table, string column, long seq, byte[] bytes)
            {
                using var up = c.CreateCommand();
                up.CommandText = $"UPDATE {table} SET {column} = $b WHERE sequence_number = $s";
                up.Parameters.AddWithValue("$b", bytes);
                up.Parameters.AddWithValue("$s", seq);
                Assert.Equal(1, up.ExecuteNonQuery());
            }
            using var cmd = c.CreateCommand();
            // every snapshot damaged. A third snapshot would have deleted the events up to the first (the last three and
            // the events after the oldest are kept), and the jobs recorded only there would be lost, as a log line says:
            // two jobs make about six events, one snapshot every four
            cmd.CommandText = "SELECT count(*) FROM snapshot";
            snapshots = Convert.ToInt32(cmd.ExecuteScalar());
            cmd.CommandText = "SELECT min(sequence_number) FROM journal";
            Assert.Equal(1L, Convert.ToInt64(cmd.ExecuteScalar()));
            cmd.CommandText = "SELECT sequence_number, snapshot FROM snapshot";
            var rows = new List<(long, byte[])>();
            using (var r = cmd.ExecuteReader()) while (r.Read()) rows.Add((r.GetInt64(0), (byte[])r[1]));
            foreach (var (seq, bytes) in rows)
            {
                bytes[0] = 0xc1;
                Rewrite("snapshot", "snapshot", seq, bytes);
            }
            // the kept job's plan damaged, its id still legible (the byte after it is never used by MessagePack): it is
            // planned again; the other job's plan relabelled as a type only a newer version would know: that job fails
            cmd.CommandText = "SELECT sequence_number, message FROM journal WHERE manifest = 'JobPlanned' AND instr(message, CAST('keep' AS BLOB)) > 0";
            using (var r = cmd.ExecuteReader())
            {
                Assert.True(r.Read(), "the kept job's plan is in the journal");
                keptSeq = r.GetInt64(0);
                var bytes = (byte[])r[1];
                bytes[2 + "keep".Length] = 0xc1;
                r.Close();
                Rewrite("journal", "message", keptSeq, bytes);
            }
            cmd.CommandText = "UPDATE journal SET manifest = 'JobParked' WHERE manifest = 'JobPlanned' AND instr(message, CAST('damaged' AS BLOB)) > 0 RETURNING sequence_number";
            damagedSeq = Convert.ToInt64(cmd.ExecuteScalar());
        }
        Assert.InRange(snapshots, 1, 2);

        var coord2 = h.Start("coordinator2", pc, env, coordArgs);
        var w = h.Start("worker", ClusterHarness.FreePort(), null, "--roles", "tile-worker", "--seeds", seeds, "--workers", "1");
        try
        {
            ClusterHarness.WaitFor(() => coord2.Saw("Job keep finished"), TimeSpan.FromSeconds(120), "the other job to finish", coord2);
        }
        finally { output.WriteLine(coord2.Log + "\n--- worker:\n" + w.Log); }
        Assert.Equal(snapshots, coord2.Lines.Count(l => l.Contains("Coordinator snapshot at event #") && l.Contains("could not be read")));
        Assert.Contains(coord2.Lines, l => l.Contains($"Journal event #{keptSeq} (JobPlanned) could not be read") && l.Contains("job keep resumes"));
        Assert.Contains(coord2.Lines, l => l.Contains($"Journal event #{damagedSeq} (JobParked) could not be read") && l.Contains("job damaged fails"));
        Assert.Contains(coord2.Lines, l => l.Contains("Job damaged failed: quarantined"));
        Assert.False(coord2.Saw("No snapshot of the coordinator could be read"), "no event had been deleted: nothing is lost");
        // planned again, the kept job's graph is the graph of an undisturbed run
        var reference = TestPaths.RunCli("graph", img, "--out", Path.Combine(_dir, "ref"), "--tile-size", "256");
        Assert.True(reference.ExitCode == 0, reference.Stderr);
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "ref", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "out-keep", "graph.npz")));
        var st = h.Run("status", 0, null, ["status", "--coordinator", coord2.Address]);
        Assert.Equal(0, Wait(st.Process, TimeSpan.FromSeconds(60)));
        Assert.Contains(st.Lines, l => l.StartsWith("damaged") && l.Contains("failed"));
        Assert.Contains(st.Lines, l => l.StartsWith("keep") && l.Contains(" done "));
    }

    [Fact]
    public void AnUnreachableDatabase_StopsTheCoordinatorWithAClearError()
    {
        var coord = CoordinatorWithoutItsDatabase();
        Assert.True(coord.Process.WaitForExit(TimeSpan.FromSeconds(90)), "the coordinator should give up");
        coord.Process.WaitForExit();
        Assert.Equal(4, coord.Process.ExitCode);
        Assert.True(coord.Saw("cannot be reached") && coord.Saw("giving up"), coord.Log);
    }

    [Fact]
    public void AJournalFileThatIsNoDatabase_StopsTheCoordinatorAtOnce_NamingIt()
    {
        // before: the node came up, and its journal and snapshot store failed to start every second for ever
        var db = Path.Combine(_dir, "damaged.db");
        File.WriteAllBytes(db, Enumerable.Range(0, 65536).Select(i => (byte)(i * 7919 % 251)).ToArray());
        int pc = ClusterHarness.FreePort();
        var coord = NewCluster().Start("coordinator", pc, null, "--roles", "coordinator", "--seeds", $"akka.tcp://actorseg@127.0.0.1:{pc}", "--db", $"Data Source={db}");
        Assert.True(coord.Process.WaitForExit(TimeSpan.FromSeconds(30)), "the coordinator should give up at once:\n" + coord.Log);
        coord.Process.WaitForExit();
        Assert.Equal(4, coord.Process.ExitCode);
        Assert.True(coord.Saw("is not a readable SQLite database") && coord.Saw(db) && !coord.Saw("retrying in"), coord.Log);
    }

    [Fact]
    public void ACoordinatorWaitingForItsDatabase_StopsCleanlyOnSigterm()
    {
        var coord = CoordinatorWithoutItsDatabase();
        ClusterHarness.WaitFor(() => coord.Saw("retrying in"), TimeSpan.FromSeconds(60), "the coordinator to wait for its database", coord);
        Process.Start("kill", ["-TERM", coord.Process.Id.ToString()])!.WaitForExit();
        // it stops during its wait, long before it would give up (about 30 s of retries)
        Assert.True(coord.Process.WaitForExit(TimeSpan.FromSeconds(20)), "the coordinator should stop at SIGTERM\n" + coord.Log);
        coord.Process.WaitForExit();
        Assert.Equal(0, coord.Process.ExitCode);
        Assert.True(coord.Saw("stopped before it was up"), coord.Log);
        Assert.False(coord.Saw("giving up"), coord.Log);
    }

    [Fact]
    public void SubmitWithoutACoordinator_GivesUpClearly()
    {
        var h = NewCluster();
        var img = Image(_dir, "small", 256, 3);
        var sub = Submit(h, $"akka.tcp://actorseg@127.0.0.1:{ClusterHarness.FreePort()}", img, "--out", Path.Combine(_dir, "o"), "--connect-timeout", "3");
        Assert.Equal(3, Wait(sub, TimeSpan.FromSeconds(60)));
    }
}

/// <summary>A throw-away PostgreSQL database per test, so journals of different runs never meet.</summary>
public static class PostgresTestDatabase
{
    public static string Create(string adminConnection)
    {
        var name = "actorseg_t_" + Guid.NewGuid().ToString("N")[..12];
        using (var c = new Npgsql.NpgsqlConnection(adminConnection))
        {
            c.Open();
            using var cmd = new Npgsql.NpgsqlCommand($"CREATE DATABASE {name}", c);
            cmd.ExecuteNonQuery();
        }
        return new Npgsql.NpgsqlConnectionStringBuilder(adminConnection) { Database = name }.ConnectionString;
    }

    public static void Drop(string connection)
    {
        var b = new Npgsql.NpgsqlConnectionStringBuilder(connection);
        var name = b.Database!;
        b.Database = "postgres";
        Npgsql.NpgsqlConnection.ClearAllPools();
        using var c = new Npgsql.NpgsqlConnection(b.ConnectionString);
        c.Open();
        using var cmd = new Npgsql.NpgsqlCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)", c);
        cmd.ExecuteNonQuery();
    }
}
