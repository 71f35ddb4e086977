using System.Net.Security;
using ActorSeg.Cli;
using ActorSeg.Cli.Bootstrap;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cluster;

/// <summary>
/// Cluster formation without a seed list, with real `actorseg node` processes on 127.0.0.1 that find each other by
/// discovery (the config method: the list of every node's bootstrap endpoint, as Kubernetes' pod list would give it)
/// and the bootstrap: started in any order they form exactly one cluster, and a node restarted while the lowest
/// node is down joins the cluster that exists instead of forming its own.
/// </summary>
[Collection("cluster")]
public class BootstrapClusterTests(ITestOutputHelper output) : ClusterTestBase("bootstrap")
{
    private const string Forming = "forming the cluster", Done = "Cluster bootstrap done";

    [Fact]
    public void NodesWithoutSeeds_FormOneCluster_InAnyOrder_AndARestartedNodeJoinsIt_WhileTheLowestIsDown()
    {
        var h = NewCluster();
        // node 0 has the lowest address (the lowest port on one host): the one to form the cluster
        var ports = Enumerable.Range(0, 4).Select(_ => ClusterHarness.FreePort()).Order().ToArray();
        var mgmt = Enumerable.Range(0, 4).Select(_ => ClusterHarness.FreePort()).ToArray();
        string[] names = ["n0-worker", "n1-coordinator", "n2-worker", "n3-worker"];
        var contactPoints = string.Join(",", mgmt.Select(p => $"127.0.0.1:{p}"));
        var env = new Dictionary<string, string> { ["ACTORSEG_DISCOVERY__STABLEMARGINSECONDS"] = "2", ["ACTORSEG_EXITWITHOUTCOORDINATORSECONDS"] = "0" };
        var journal = Path.Combine(_dir, "journal.db");
        ClusterHarness.NodeProcess Start(int i, string suffix = "") => h.Start(names[i] + suffix, ports[i], env,
        [
            "--roles", i == 1 ? "coordinator" : "tile-worker", "--workers", "1", "--discovery", "config", "--contact-points", contactPoints,
            "--management-port", mgmt[i].ToString(), .. (i == 1 ? new[] { "--db", $"Data Source={journal}" } : []),
        ]);
        string Addr(int i) => $"akka.tcp://actorseg@127.0.0.1:{ports[i]}";
        var all = new List<ClusterHarness.NodeProcess>();
        void Show() { foreach (var n in all) output.WriteLine($"--- {n.Name}\n{n.Log}"); }

        try
        {
            // the others first: they find each other but must not form a cluster while the lowest is silent (it may be in one)
            var n3 = Start(3); var n1 = Start(1); var n2 = Start(2);
            all.AddRange([n3, n1, n2]);
            foreach (var n in new[] { n1, n2, n3 })
                ClusterHarness.WaitFor(() => n.Saw($"no answer yet from 127.0.0.1:{mgmt[0]} (it may"), TimeSpan.FromSeconds(40), $"{n.Name} to wait for the silent lowest node", n);
            Assert.DoesNotContain(all, n => n.Saw(Forming));
            var n0 = Start(0);
            all.Add(n0);
            foreach (var n in all) ClusterHarness.WaitFor(() => n.Saw(Done), TimeSpan.FromSeconds(90), $"{n.Name} to join", n);
            ClusterHarness.WaitFor(() => n0.Saw("(4 members)") && n2.Saw("(4 members)"), TimeSpan.FromSeconds(60), "one cluster of four", n0);
            // exactly one node formed a cluster: the lowest; the others joined it
            Assert.Equal([n0.Name], all.Where(n => n.Saw(Forming)).Select(n => n.Name));
            Assert.All(new[] { n1, n2, n3 }, n => Assert.True(n.Saw("a cluster exists, joining it through"), n.Log));

            // the lowest node goes, then the coordinator; the two left are the cluster (the majority each time)
            n0.Kill();
            ClusterHarness.WaitFor(() => n2.Saw($"Member removed: {Addr(0)}"), TimeSpan.FromSeconds(40), "the lowest node to be removed", n2);
            n1.Kill();
            ClusterHarness.WaitFor(() => n2.Saw($"Member removed: {Addr(1)}"), TimeSpan.FromSeconds(40), "the coordinator to be removed", n2);

            // the coordinator restarted while the lowest node is down: it finds the cluster of nodes 2 and 3 and joins it
            var n1b = Start(1, "-restarted");
            all.Add(n1b);
            ClusterHarness.WaitFor(() => n1b.Saw(Done), TimeSpan.FromSeconds(90), "the restarted coordinator to join", n1b);
            Assert.False(n1b.Saw(Forming), n1b.Log);
            Assert.True(n1b.Saw("a cluster exists, joining it through"), n1b.Log);
            ClusterHarness.WaitFor(() => n2.Lines.Any(l => l.Contains($"Member up: {Addr(1)}") && l.Contains("(3 members)")), TimeSpan.FromSeconds(60), "the coordinator up in the old cluster", n2);

            // and the lowest node restarted: it joins too, although it has the lowest address
            var n0b = Start(0, "-restarted");
            all.Add(n0b);
            ClusterHarness.WaitFor(() => n0b.Saw(Done), TimeSpan.FromSeconds(90), "the restarted lowest node to join", n0b);
            Assert.False(n0b.Saw(Forming), n0b.Log);
            ClusterHarness.WaitFor(() => n2.Lines.Any(l => l.Contains($"Member up: {Addr(0)}") && l.Contains("(4 members)")), TimeSpan.FromSeconds(60), "one cluster of four again", n2);
            Assert.False(n2.Process.HasExited || n3.Process.HasExited, "the nodes that stayed are still running");
        }
        catch { Show(); throw; }
    }

    [Fact]
    public void TheBootstrapEndpoint_UnderTls_AnswersOnlyTheClustersCertificates_AndOnlyAddresses()
    {
        var certs = Path.Combine(_dir, "certs");
        var ca = new TestCa(certs, "cluster");
        var stranger = new TestCa(certs, "stranger");
        var nodeId = ca.Issue("node"); var peerId = ca.Issue("peer"); var rogueId = stranger.Issue("rogue");
        var h = NewCluster();
        int port = ClusterHarness.FreePort(), mgmt = ClusterHarness.FreePort();
        // a cluster of one by discovery: its own endpoint the only contact point, one required
        var node = h.Start("node", port, TestCa.Env(nodeId, ca.CaPath), "--roles", "tile-worker", "--workers", "1", "--discovery", "config",
            "--contact-points", $"127.0.0.1:{mgmt}", "--management-port", mgmt.ToString(), "--required-contact-points", "1");
        ClusterHarness.WaitFor(() => node.Saw(Done), TimeSpan.FromSeconds(90), "the node to form its cluster", node);
        Assert.True(node.Saw(Forming), node.Log);

        var point = new ContactPoint("127.0.0.1", mgmt);
        TlsOptions Tls((string Cert, string Key) id, string caPath) => new() { Certificate = id.Cert, Key = id.Key, Ca = caPath };
        using (var peer = new BootstrapProbe(Tls(peerId, ca.CaPath), TimeSpan.FromSeconds(5)))
        {
            var answer = peer.ProbeAsync(point).GetAwaiter().GetResult();
            Assert.Equal($"akka.ssl.tcp://actorseg@127.0.0.1:{port}", answer.SelfNode.ToString());
            Assert.Equal([answer.SelfNode], answer.SeedNodes);
        }
        // a certificate of another CA, no certificate, plain HTTP: no answer
        using (var rogue = new BootstrapProbe(Tls(rogueId, ca.CaPath), TimeSpan.FromSeconds(5)))
            Assert.ThrowsAny<Exception>(() => rogue.ProbeAsync(point).GetAwaiter().GetResult());
        ClusterHarness.WaitFor(() => node.Saw("Bootstrap endpoint: refused a client certificate"), TimeSpan.FromSeconds(10), "the refusal in the log", node);
        using (var anon = new HttpClient(new SocketsHttpHandler { SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true } }) { Timeout = TimeSpan.FromSeconds(5) })
        {
            Assert.ThrowsAny<Exception>(() => anon.GetStringAsync($"https://127.0.0.1:{mgmt}{ManagementEndpoint.SeedNodesPath}").GetAwaiter().GetResult());
            Assert.ThrowsAny<Exception>(() => anon.GetStringAsync($"http://127.0.0.1:{mgmt}{ManagementEndpoint.SeedNodesPath}").GetAwaiter().GetResult());
        }
        // and a node that trusts another CA does not believe this endpoint either
        using (var misled = new BootstrapProbe(Tls(peerId, stranger.CaPath), TimeSpan.FromSeconds(5)))
            Assert.ThrowsAny<Exception>(() => misled.ProbeAsync(point).GetAwaiter().GetResult());
    }
}
