using ActorSeg.Cli;
using Akka.Actor;
using Akka.Configuration;
using ActorSeg.Core.Imaging;
using ActorSeg.Messages;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cluster;

/// <summary>
/// The cluster's doors, tried as an outsider would, with real processes on 127.0.0.1: mutual TLS (a node or client
/// without a certificate of the cluster's CA can neither join nor be answered), forged work sent straight to a
/// worker's and a trainer's port, and a node that would expose plain TCP.
/// </summary>
[Collection("cluster")]
public class SecureClusterTests(ITestOutputHelper output) : ClusterTestBase("secure")
{


    private static int Exit(ClusterHarness.NodeProcess p, TimeSpan timeout)
    {
        if (!p.Process.WaitForExit(timeout)) { p.Kill(); throw new TimeoutException($"{p.Name} did not finish in {timeout}:\n{p.Log}"); }
        p.Process.WaitForExit();
        return p.Process.ExitCode;
    }

    [Fact]
    public void NodesOfOneCa_FormAClusterAndRunAJob_WhileOutsidersCanNeitherJoinNorBeAnswered()
    {
        var certs = Path.Combine(_dir, "certs");
        var ca = new TestCa(certs, "cluster");
        var other = new TestCa(certs, "stranger");
        var coordId = ca.Issue("coordinator"); var workerId = ca.Issue("worker"); var clientId = ca.Issue("client");
        var rogueId = other.Issue("rogue");
        var data = Path.Combine(_dir, "data");
        Directory.CreateDirectory(data);
        var img = Path.Combine(data, "slide.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(600, 600, SyntheticKind.Colonies, 16, 1, 5), img, Path.Combine(data, "slide_mask.tif"));

        var h = NewCluster();
        int pc = ClusterHarness.FreePort(), pw = ClusterHarness.FreePort(), pr = ClusterHarness.FreePort();
        var seeds = $"akka.ssl.tcp://actorseg@127.0.0.1:{pc}";
        var coord = h.Start("coordinator", pc, TestCa.Env(coordId, ca.CaPath), "--roles", "coordinator", "--seeds", seeds,
            "--data-roots", data, "--db", $"Data Source={Path.Combine(_dir, "journal.db")}");
        var worker = h.Start("worker", pw, TestCa.Env(workerId, ca.CaPath), "--roles", "tile-worker", "--seeds", seeds, "--workers", "1", "--data-roots", data);
        ClusterHarness.WaitFor(() => coord.Saw($"Worker akka.ssl.tcp://actorseg@127.0.0.1:{pw}"), TimeSpan.FromSeconds(60), "the TLS worker to join", coord);
        Assert.True(coord.Saw("transport mutual TLS"), "the node says its transport is mutual TLS");

        // a node whose certificate another CA signed (it trusts ours, so only our check can stop it)
        var rogue = h.Start("rogue", pr, TestCa.Env(rogueId, ca.CaPath), "--roles", "tile-worker", "--seeds", seeds, "--workers", "1");
        ClusterHarness.WaitFor(() => coord.Saw("TLS: refused"), TimeSpan.FromSeconds(60), "the coordinator to refuse the stranger's certificate", coord);

        // a job from a client of the cluster's CA runs to the end
        var outDir = Path.Combine(data, "out");
        var sub = h.Run("submit", 0, TestCa.Env(clientId, ca.CaPath), ["submit", img, "--out", outDir, "--tile-size", "256", "--coordinator", $"akka.tcp://actorseg@127.0.0.1:{pc}"]);
        Assert.True(Exit(sub, TimeSpan.FromMinutes(3)) == 0, sub.Log + "\n---\n" + coord.Log);
        Assert.True(File.Exists(Path.Combine(outDir, "graph.npz")));
        // a whole slide goes through the cluster the same way: the workers read it through OpenSlide, level 1
        if (ActorSeg.Core.Imaging.OpenSlideSource.Available)
        {
            var svs = Path.Combine(data, "slide.svs");
            ActorSeg.Core.Imaging.SlideWriter.WriteSvs(RgbOf(img, data), svs);
            var slideOut = Path.Combine(data, "slide-out");
            var sl = h.Run("submit-slide", 0, TestCa.Env(clientId, ca.CaPath), ["submit", svs, "--level", "1", "--out", slideOut, "--tile-size", "256", "--coordinator", $"akka.tcp://actorseg@127.0.0.1:{pc}"]);
            Assert.True(Exit(sl, TimeSpan.FromMinutes(3)) == 0, sl.Log + "\n---\n" + coord.Log);
            Assert.True(File.Exists(Path.Combine(slideOut, "graph.npz")));
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(slideOut, "graph.json")));
            Assert.Equal(300, doc.RootElement.GetProperty("image").GetProperty("width").GetInt32()); // level 1 of a 600 px slide
        }

        // the coordinator checks every job, whatever door: an output folder holding the job's own image is refused, and submit says why
        var clash = h.Run("submit-clash", 0, TestCa.Env(clientId, ca.CaPath), ["submit", img, "--out", data, "--coordinator", $"akka.tcp://actorseg@127.0.0.1:{pc}"]);
        Assert.Equal(1, Exit(clash, TimeSpan.FromMinutes(1)));
        Assert.True(clash.Saw("refused by the coordinator") && clash.Saw("contains the job's image"), clash.Log);
        var outside = h.Run("submit-outside", 0, TestCa.Env(clientId, ca.CaPath), ["submit", img, "--out", Path.Combine(_dir, "elsewhere"), "--coordinator", $"akka.tcp://actorseg@127.0.0.1:{pc}"]);
        Assert.Equal(1, Exit(outside, TimeSpan.FromMinutes(1)));
        Assert.True(outside.Saw("outside the data roots"), outside.Log);
        Assert.False(Directory.Exists(Path.Combine(_dir, "elsewhere")));

        // clients without a certificate, or with the stranger's, get no answer at all
        var plain = h.Run("status-plain", 0, null, ["status", "--coordinator", $"akka.tcp://actorseg@127.0.0.1:{pc}"]);
        var stranger = h.Run("status-rogue", 0, TestCa.Env(rogueId, ca.CaPath), ["status", "--coordinator", $"akka.ssl.tcp://actorseg@127.0.0.1:{pc}"]);
        Assert.Equal(3, Exit(plain, TimeSpan.FromSeconds(90)));
        Assert.Equal(3, Exit(stranger, TimeSpan.FromSeconds(90)));
        Assert.True(stranger.Saw("No answer from the coordinator"), stranger.Log);
        // each told what it spoke, since a TLS cluster closes a plain connection without an answer
        Assert.True(plain.Saw("This client spoke plain TCP, without TLS (a TLS cluster needs --tls-cert"), plain.Log);
        Assert.True(stranger.Saw("This client spoke TLS") && stranger.Saw("whose CA does not accept this client's certificate"), stranger.Log);
        Assert.True(coord.Saw("due to TLS handshake failure"), "the plain client's attempt is logged:\n" + coord.Log);
        // and the stranger never joined or took work
        Assert.False(coord.Saw($"127.0.0.1:{pr}/user/tile-worker"), "the stranger must never be a worker:\n" + coord.Log);
        Assert.False(coord.Lines.Any(l => l.Contains("Member up") && l.Contains($":{pr}")), "the stranger must never be a member");
        output.WriteLine(string.Join('\n', coord.Lines.Where(l => l.Contains("TLS") || l.Contains("Refused") || l.Contains("refused"))));
        rogue.Kill();
    }

    /// <summary>An 8-bit RGB copy of a grey image (an SVS is RGB).</summary>
    private static string RgbOf(string grey, string dir)
    {
        var rgb = Path.Combine(dir, "rgb.tif");
        using var g = NetVips.Image.NewFromFile(grey);
        using var u8 = g.Format == NetVips.Enums.BandFormat.Uchar ? g.Copy() : (g >> 8).Cast(NetVips.Enums.BandFormat.Uchar);
        using var three = u8.Bandjoin(u8, u8).Copy(interpretation: NetVips.Enums.Interpretation.Srgb);
        three.Tiffsave(rgb, tile: true);
        return rgb;
    }

    [Fact]
    public void ANodeReachableFromTheNetwork_WillNotStartWithoutTls_OrWithAPlaceholderToken()
    {
        var h = NewCluster();
        var open = h.Start("open", ClusterHarness.FreePort(), null, "--roles", "tile-worker", "--hostname", "0.0.0.0");
        Assert.Equal(2, Exit(open, TimeSpan.FromSeconds(60)));
        Assert.True(open.Saw("without TLS") && open.Saw("--insecure"), open.Log);
        var weak = h.Start("weak", ClusterHarness.FreePort(), new Dictionary<string, string> { ["ACTORSEG_APITOKEN"] = "change-me-too" }, "--roles", "coordinator");
        Assert.Equal(2, Exit(weak, TimeSpan.FromSeconds(60)));
        Assert.True(weak.Saw("placeholder"), weak.Log);
    }

    [Fact]
    public void ForgedWork_SentStraightToAWorkerOrATrainer_WritesNothing_AndIsLogged()
    {
        var h = NewCluster();
        int pc = ClusterHarness.FreePort(), pw = ClusterHarness.FreePort();
        var seeds = $"akka.tcp://actorseg@127.0.0.1:{pc}";
        var coord = h.Start("coordinator", pc, null, "--roles", "coordinator", "--seeds", seeds, "--db", $"Data Source={Path.Combine(_dir, "journal.db")}");
        var worker = h.Start("worker", pw, null, "--roles", "tile-worker,gpu-trainer", "--seeds", seeds, "--workers", "1", "--device", "cpu");
        ClusterHarness.WaitFor(() => coord.Saw($"Worker akka.tcp://actorseg@127.0.0.1:{pw}") && coord.Saw("Trainer "), TimeSpan.FromSeconds(60), "the worker and trainer to join", coord);

        // an outsider: an actor system of its own (not a member), sending work that names files it wants written
        var victim = Path.Combine(_dir, "victim");
        Directory.CreateDirectory(victim);
        var config = ConfigurationFactory.ParseString($"""
            akka.loglevel = OFF
            akka.actor.provider = remote
            akka.remote.dot-netty.tcp.hostname = 127.0.0.1
            akka.remote.dot-netty.tcp.port = 0
            {ActorSegSerializer.Hocon}
            """);
        using (var outsider = ActorSystem.Create("actorseg", config))
        {
            var anyRef = new ResultRef(Path.Combine(victim, "x"), 1, "0000000000000000");
            var w = outsider.ActorSelection($"akka.tcp://actorseg@127.0.0.1:{pw}/user/tile-worker-1");
            var t = outsider.ActorSelection($"akka.tcp://actorseg@127.0.0.1:{pw}/user/gpu-trainer");
            w.Tell(new PaintAssignment("evil", "x", "/etc/hostname", anyRef, anyRef, Path.Combine(victim, "mask.tif"), Path.Combine(victim, "overlay.png"), 1, victim));
            w.Tell(new TileAssignment("evil", "x", Path.Combine(victim, ".work-evil", "job.json"), 0, 1, victim));
            t.Tell(new ClassifyNodes("evil", "x", anyRef, "/m", Path.Combine(victim, "classes.u8"), "cpu", 1, victim));
            t.Tell(new TrainModel("evil", new TrainJobSpec([Path.Combine(victim, "g.npz")], victim), 1));
            ClusterHarness.WaitFor(() => worker.Lines.Count(l => l.Contains("it is not the coordinator")) >= 4, TimeSpan.FromSeconds(30), "four refusals", worker);
            outsider.Terminate().Wait(TimeSpan.FromSeconds(10));
        }
        Thread.Sleep(1000);
        Assert.Empty(Directory.EnumerateFileSystemEntries(victim));
        Assert.True(worker.Saw("Refused a paint job for job evil") && worker.Saw("Refused a tile for job evil"), worker.Log);
        Assert.True(worker.Saw("Refused a classification for job evil") && worker.Saw("Refused a training for job evil"), worker.Log);
    }
}
