using System.Net;
using ActorSeg.Cli;
using ActorSeg.Cli.Bootstrap;
using ActorSeg.Tests.Cluster;
using Akka.Actor;
using Akka.Configuration;
using Akka.Discovery;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>
/// The cluster bootstrap's decisions (Bootstrap/BootstrapDecider.cs) as a plain class, what it accepts from a contact
/// point, its settings, and the Kubernetes pod lookup against a stand-in API server.
/// </summary>
public class BootstrapTests : TempDirTest
{
    public BootstrapTests() : base("boot") { }

    private static readonly DateTime T0 = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    private static Address A(int port, string host = "10.0.0.1") => new("akka.tcp", "actorseg", host, port);
    private static ContactPoint P(int i) => new($"10.0.0.{i}", 8558);
    private static readonly BootstrapSettings Settings = new() { RequiredContactPoints = 2, StableMargin = TimeSpan.FromSeconds(5), AnswerFreshness = TimeSpan.FromSeconds(5) };

    /// <summary>Node i: cluster address 10.0.0.i:4053, contact point 10.0.0.i:8558.</summary>
    private static Address Node(int i) => A(4053, $"10.0.0.{i}");

    private static BootstrapDecider Decider(int self, params int[] discovered)
    {
        var d = new BootstrapDecider(Node(self), Settings);
        d.Discovered(discovered.Select(P), T0);
        return d;
    }

    private static ProbeAnswer Alone(int i) => new(Node(i), []);

    [Fact]
    public void NoClusterYet_TheLowestFormsIt_OnlyOnceEveryContactPointAnswered_AndTheSetIsStable()
    {
        Assert.IsType<BootstrapDecision.Wait>(new BootstrapDecider(Node(1), Settings).Decide(T0)); // discovery has not answered
        var deciders = new[] { Decider(1, 1, 2, 3), Decider(2, 1, 2, 3), Decider(3, 1, 2, 3) };
        var t = T0.AddSeconds(6);
        foreach (var d in deciders)
        {
            // two of three answered: the third might be in a cluster
            d.Answered(P(2), Alone(2), t); d.Answered(P(3), Alone(3), t);
            var w = Assert.IsType<BootstrapDecision.Wait>(d.Decide(t));
            Assert.Contains("10.0.0.1:8558", w.Reason);
            d.Answered(P(1), Alone(1), t);
        }
        // every node decides the same: only the lowest forms
        Assert.IsType<BootstrapDecision.Form>(deciders[0].Decide(t));
        Assert.IsType<BootstrapDecision.Wait>(deciders[1].Decide(t));
        Assert.IsType<BootstrapDecision.Wait>(deciders[2].Decide(t));

        // not before the stable margin; a change of the set starts it again
        var early = Decider(1, 1, 2);
        early.Answered(P(1), Alone(1), T0.AddSeconds(1)); early.Answered(P(2), Alone(2), T0.AddSeconds(1));
        Assert.Contains("stable margin", Assert.IsType<BootstrapDecision.Wait>(early.Decide(T0.AddSeconds(1))).Reason);
        Assert.IsType<BootstrapDecision.Form>(early.Decide(T0.AddSeconds(5)));
        early.Discovered([P(1), P(2), P(3)], T0.AddSeconds(5));
        early.Answered(P(3), Alone(3), T0.AddSeconds(5));
        Assert.IsType<BootstrapDecision.Wait>(early.Decide(T0.AddSeconds(6)));
        early.Answered(P(1), Alone(1), T0.AddSeconds(10)); early.Answered(P(2), Alone(2), T0.AddSeconds(10)); early.Answered(P(3), Alone(3), T0.AddSeconds(10));
        Assert.IsType<BootstrapDecision.Form>(early.Decide(T0.AddSeconds(10)));
        // the same set again is no change
        early.Discovered([P(3), P(2), P(1)], T0.AddSeconds(10));
        Assert.IsType<BootstrapDecision.Form>(early.Decide(T0.AddSeconds(10)));

        // fewer contact points than required: never forms, however long
        var alone = Decider(1, 1);
        alone.Answered(P(1), Alone(1), T0.AddSeconds(60));
        Assert.Contains("2 needed", Assert.IsType<BootstrapDecision.Wait>(alone.Decide(T0.AddSeconds(60))).Reason);
    }

    [Fact]
    public void AClusterExists_ItIsJoined_EvenByTheLowest_AndNeverThroughThisNodesOwnAddress()
    {
        // node 1 (the lowest) restarted; nodes 2 and 3 are a cluster: it joins them, at once, without the stable margin
        var d = Decider(1, 1, 2, 3);
        d.Answered(P(2), new ProbeAnswer(Node(2), [Node(3), Node(2), Node(1)]), T0);
        var j = Assert.IsType<BootstrapDecision.JoinSeeds>(d.Decide(T0));
        Assert.Equal([Node(2), Node(3)], j.Seeds); // its own (old incarnation's) address left out, lowest first

        // a restarted node 2 while the lowest (1) is down and silent: it joins 3's cluster rather than forming one
        var r = Decider(2, 1, 2, 3);
        r.Answered(P(2), Alone(2), T0.AddSeconds(10));
        r.Failed(P(1));
        r.Answered(P(3), new ProbeAnswer(Node(3), [Node(3)]), T0.AddSeconds(10));
        Assert.Equal([Node(3)], Assert.IsType<BootstrapDecision.JoinSeeds>(r.Decide(T0.AddSeconds(10))).Seeds);

        // a cluster whose only member listed is this node's own address is no cluster to join
        var own = Decider(2, 2, 3);
        own.Answered(P(2), Alone(2), T0.AddSeconds(6)); own.Answered(P(3), new ProbeAnswer(Node(3), [Node(2)]), T0.AddSeconds(6));
        Assert.IsType<BootstrapDecision.Form>(own.Decide(T0.AddSeconds(6)));

        // at most MaxSeeds members, from every answer
        var many = Decider(1, 1, 2);
        many.Answered(P(2), new ProbeAnswer(Node(2), Enumerable.Range(10, 20).Select(Node).ToList()), T0);
        Assert.Equal(Settings.MaxSeeds, Assert.IsType<BootstrapDecision.JoinSeeds>(many.Decide(T0)).Seeds.Count);
    }

    [Fact]
    public void OldOrFailedAnswers_AndAnswersOfContactPointsNoLongerFound_DoNotCount()
    {
        var d = Decider(2, 1, 2);
        d.Answered(P(1), new ProbeAnswer(Node(1), [Node(1)]), T0);
        Assert.IsType<BootstrapDecision.JoinSeeds>(d.Decide(T0.AddSeconds(5)));
        Assert.IsType<BootstrapDecision.Wait>(d.Decide(T0.AddSeconds(6))); // stale: it may have left since
        d.Answered(P(1), new ProbeAnswer(Node(1), [Node(1)]), T0.AddSeconds(6));
        d.Failed(P(1));
        Assert.IsType<BootstrapDecision.Wait>(d.Decide(T0.AddSeconds(6)));
        d.Answered(P(1), new ProbeAnswer(Node(1), [Node(1)]), T0.AddSeconds(7));
        d.Discovered([P(2), P(3)], T0.AddSeconds(7)); // node 1's pod is gone
        Assert.IsType<BootstrapDecision.Wait>(d.Decide(T0.AddSeconds(7)));
    }

    [Fact]
    public void ProbeAnswers_AreAcceptedOnlyAsAddressesOfThisCluster_OfBoundedSize()
    {
        var ok = ProbeAnswer.Parse("""{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053","seedNodes":["akka.tcp://actorseg@10.0.0.3:4053","akka.tcp://actorseg@pod-1.svc:4053"],"extra":1}""", tls: false);
        Assert.Equal(Node(2), ok.SelfNode);
        Assert.Equal([Node(3), new Address("akka.tcp", "actorseg", "pod-1.svc", 4053)], ok.SeedNodes);
        var tls = ProbeAnswer.Parse("""{"selfNode":"akka.ssl.tcp://actorseg@10.0.0.2:4053","seedNodes":[]}""", tls: true);
        Assert.Equal("akka.ssl.tcp", tls.SelfNode.Protocol);
        // a round trip through the endpoint's JSON
        Assert.Equal(ok.SeedNodes, ProbeAnswer.Parse(ok.ToJson(), false).SeedNodes);

        string[] bad =
        [
            "", "not json", "[]", """{"seedNodes":[]}""", """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053"}""",
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053","seedNodes":"akka.tcp://actorseg@10.0.0.3:4053"}""",
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053","seedNodes":[3]}""",
            """{"selfNode":"akka.ssl.tcp://actorseg@10.0.0.2:4053","seedNodes":[]}""",              // another transport than ours
            """{"selfNode":"akka.tcp://other@10.0.0.2:4053","seedNodes":[]}""",                    // another actor system
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2","seedNodes":[]}""",                       // no port
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053/user/x","seedNodes":[]}""",          // a path
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053","seedNodes":["http://10.0.0.3:80"]}""",
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053","seedNodes":[[[[["deep"]]]]]}""",
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053","seedNodes":[""" + string.Join(",", Enumerable.Range(1, 33).Select(i => $"\"akka.tcp://actorseg@10.0.1.{i}:4053\"")) + "]}",
            """{"selfNode":"akka.tcp://actorseg@10.0.0.2:4053","seedNodes":[],"pad":" """ + new string('x', ProbeAnswer.MaxBytes) + "\"}",
        ];
        foreach (var b in bad) Assert.Throws<FormatException>(() => ProbeAnswer.Parse(b, tls: false));
    }

    private static NodeOptions Options(Dictionary<string, string?> settings) => NodeOptions.From(NodeCommand.BuildConfiguration(null, settings));

    [Fact]
    public void DiscoverySettings_AreChecked_AndSeedsStayTheDefault()
    {
        var none = Options(new() { ["Roles"] = "tile-worker" });
        Assert.False(none.Discovery.Enabled);
        Assert.Equal("", none.Discovery.Hocon());
        var config = Options(new() { ["Roles"] = "tile-worker", ["Discovery:Method"] = "config", ["Discovery:ContactPoints"] = "127.0.0.1:8558, 127.0.0.1:8559", ["ManagementPort"] = "8559" });
        Assert.True(config.Discovery.IsConfig);
        Assert.Contains("\"127.0.0.1:8558\", \"127.0.0.1:8559\"", config.Discovery.Hocon());
        var k8s = Options(new() { ["Roles"] = "tile-worker", ["Discovery:Method"] = "kubernetes", ["Discovery:ServiceName"] = "blue" });
        Assert.Contains("pod-label-selector = \"actorseg/cluster=blue\"", k8s.Discovery.Hocon());
        Assert.Equal(8558, k8s.ManagementPort);

        void Refused(string expect, Dictionary<string, string?> s) => Assert.Contains(expect, Assert.Throws<ArgumentException>(() => Options(s)).Message);
        Refused("not both", new() { ["Discovery:Method"] = "config", ["Discovery:ContactPoints"] = "127.0.0.1:8558", ["Seeds"] = "akka.tcp://actorseg@127.0.0.1:4053" });
        Refused("contact points", new() { ["Discovery:Method"] = "config" });
        Refused("is not a contact point", new() { ["Discovery:Method"] = "config", ["Discovery:ContactPoints"] = "127.0.0.1" });
        Refused("is not a contact point", new() { ["Discovery:Method"] = "config", ["Discovery:ContactPoints"] = "127.0.0.1:99999" });
        Refused("none, config or kubernetes", new() { ["Discovery:Method"] = "dns" });
        Refused("already the node's", new() { ["Discovery:Method"] = "kubernetes", ["ManagementPort"] = "4053" });
        Refused("is not a selector", new() { ["Discovery:Method"] = "kubernetes", ["Discovery:LabelSelector"] = "app={1" });
    }

    private const string PodList = """
        {"kind":"PodList","apiVersion":"v1","items":[
          {"metadata":{"name":"a"},"spec":{"containers":[{"name":"node","ports":[{"name":"akka","containerPort":4053},{"name":"management","containerPort":8558}]}]},"status":{"phase":"Running","podIP":"10.1.0.5"}},
          {"metadata":{"name":"pending"},"spec":{"containers":[{"name":"node","ports":[{"name":"management","containerPort":8558}]}]},"status":{"phase":"Pending","podIP":"10.1.0.6"}},
          {"metadata":{"name":"deleted","deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{"containers":[{"name":"node","ports":[{"name":"management","containerPort":8558}]}]},"status":{"phase":"Running","podIP":"10.1.0.7"}},
          {"metadata":{"name":"no-ip"},"spec":{"containers":[{"name":"node","ports":[{"name":"management","containerPort":8558}]}]},"status":{"phase":"Running"}},
          {"metadata":{"name":"no-port"},"spec":{"containers":[{"name":"node"}]},"status":{"phase":"Running","podIP":"10.1.0.8"}},
          {"metadata":{"name":"b"},"spec":{"containers":[{"name":"sidecar"},{"name":"node","ports":[{"name":"management","containerPort":9558}]}]},"status":{"phase":"Running","podIP":"10.1.0.9"}}
        ]}
        """;

    [Fact]
    public void KubernetesPods_AreTheRunningOnes_WithTheNamedPort()
    {
        var t = KubernetesPodDiscovery.Targets(PodList, "management");
        Assert.Equal(["10.1.0.5:8558", "10.1.0.9:9558"], t.Select(x => $"{x.Host}:{x.Port}"));
        Assert.Throws<FormatException>(() => KubernetesPodDiscovery.Targets("{\"kind\":\"Status\"}", "management"));
        Assert.Throws<FormatException>(() => KubernetesPodDiscovery.Targets("<html>", "management"));
    }

    [Fact]
    public async Task KubernetesLookup_AsksTheApiServer_WithTheServiceAccount_AndTrustsOnlyItsCa()
    {
        var certs = Path.Combine(_dir, "certs");
        var ca = new TestCa(certs, "kube");
        var other = new TestCa(certs, "other");
        var good = ca.Issue("apiserver");
        var forged = other.Issue("forged");
        File.WriteAllText(Path.Combine(_dir, "token"), "sa-token-1\n");
        string? seenAuth = null, seenQuery = null, seenPath = null;
        bool forbid = false;

        async Task<WebApplication> Api((string Cert, string Key) id, int port)
        {
            var wb = WebApplication.CreateSlimBuilder();
            wb.Logging.ClearProviders();
            using var pem = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(id.Cert, id.Key);
            var cert = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12(pem.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12), null);
            wb.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, l => l.UseHttps(cert)));
            var app = wb.Build();
            app.MapGet("/api/v1/namespaces/{ns}/pods", (HttpContext h) =>
            {
                seenAuth = h.Request.Headers.Authorization; seenQuery = h.Request.Query["labelSelector"]; seenPath = h.Request.Path;
                return forbid ? Results.StatusCode(403) : Results.Text(PodList, "application/json");
            });
            await app.StartAsync();
            return app;
        }

        int port = ClusterHarness.FreePort(), forgedPort = ClusterHarness.FreePort();
        await using var api = await Api(good, port);
        await using var fake = await Api(forged, forgedPort);
        string hostVar = "ACTORSEG_TEST_K8S_HOST_" + Guid.NewGuid().ToString("N"), portVar = hostVar + "_PORT";
        Environment.SetEnvironmentVariable(hostVar, "127.0.0.1");
        ActorSystem Sys(int p, string name)
        {
            Environment.SetEnvironmentVariable(portVar + name, p.ToString());
            return ActorSystem.Create(name, ConfigurationFactory.ParseString($$"""
                akka.loglevel = OFF
                akka.discovery.method = actorseg-kubernetes
                akka.discovery.actorseg-kubernetes {
                  class = "{{typeof(KubernetesPodDiscovery).AssemblyQualifiedName}}"
                  pod-label-selector = "actorseg/cluster=actorseg"
                  pod-namespace = "ns1"
                  api-service-host-env-name = {{hostVar}}
                  api-service-port-env-name = {{portVar + name}}
                  api-token-path = "{{Path.Combine(_dir, "token")}}"
                  api-ca-path = "{{ca.CaPath}}"
                }
                """));
        }
        using var sys = Sys(port, "good");
        var lookup = new Lookup("actorseg", "management", "tcp");
        var r = await Discovery.Get(sys).Default.Lookup(lookup, TimeSpan.FromSeconds(10));
        Assert.Equal(["10.1.0.5:8558", "10.1.0.9:9558"], r.Addresses.Select(x => $"{x.Host}:{x.Port}"));
        Assert.Equal("Bearer sa-token-1", seenAuth);
        Assert.Equal("actorseg/cluster=actorseg", seenQuery);
        Assert.Equal("/api/v1/namespaces/ns1/pods", seenPath);

        forbid = true;
        var e = await Assert.ThrowsAnyAsync<Exception>(() => Discovery.Get(sys).Default.Lookup(lookup, TimeSpan.FromSeconds(10)));
        Assert.Contains("Role", e.Message);

        // an API server whose certificate another CA signed is not believed
        seenPath = null;
        using var sys2 = Sys(forgedPort, "forged");
        await Assert.ThrowsAnyAsync<Exception>(() => Discovery.Get(sys2).Default.Lookup(lookup, TimeSpan.FromSeconds(10)));
        Assert.Null(seenPath);
        await sys.Terminate(); await sys2.Terminate();
    }
}
