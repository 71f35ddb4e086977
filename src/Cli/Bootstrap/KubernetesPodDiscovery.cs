using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Akka.Actor;
using Akka.Discovery;
using Akka.Event;

namespace ActorSeg.Cli.Bootstrap;

/// <summary>
/// Akka.Discovery method "actorseg-kubernetes": the running pods that match a label selector in the pod's namespace,
/// from the Kubernetes API (GET /api/v1/namespaces/NS/pods?labelSelector=…, with the pod's service account token and
/// CA), each as its pod IP and the port of its container port named like the lookup's port name. What
/// Akka.Discovery.KubernetesApi does, without its client library: Akka.Discovery.KubernetesApi 1.5.73 needs
/// KubernetesClient 17.0.14, which is not served here, and with the 19.0.2 that is, every lookup throws
/// MissingMethodException (V1PodList's constructor changed). The service account needs get/list/watch on pods (a Role
/// and RoleBinding, deploy/k8s/base/rbac.yaml).
/// <code>
/// akka.discovery.actorseg-kubernetes {
///   class = "ActorSeg.Cli.Bootstrap.KubernetesPodDiscovery, actorseg"
///   pod-label-selector = "actorseg/cluster=actorseg"
///   pod-namespace = ""            # empty: the service account's namespace (pod-namespace-path)
///   # the defaults: where every pod finds them
///   api-service-host-env-name = KUBERNETES_SERVICE_HOST, api-service-port-env-name = KUBERNETES_SERVICE_PORT
///   api-token-path = /var/run/secrets/kubernetes.io/serviceaccount/token, api-ca-path = …/ca.crt, pod-namespace-path = …/namespace
/// }
/// </code>
/// </summary>
public sealed class KubernetesPodDiscovery : ServiceDiscovery
{
    private const string ServiceAccount = "/var/run/secrets/kubernetes.io/serviceaccount/";
    /// <summary>The most bytes a pod list may have (a few hundred pods of ordinary size fit).</summary>
    public const int MaxResponseBytes = 16 * 1024 * 1024;
    private readonly ILoggingAdapter _log;
    private readonly string _selector, _hostEnv, _portEnv, _tokenPath, _caPath, _namespace;
    private readonly Lazy<HttpClient> _http;

    public KubernetesPodDiscovery(ExtendedActorSystem system) : this(system, system.Settings.Config.GetConfig("akka.discovery.actorseg-kubernetes")) { }

    public KubernetesPodDiscovery(ExtendedActorSystem system, Akka.Configuration.Config config)
    {
        _log = Akka.Event.Logging.GetLogger(system, this);
        string S(string key, string d) => config?.GetString(key, null) is { Length: > 0 } v ? v : d;
        _selector = S("pod-label-selector", "actorseg/cluster=actorseg");
        _hostEnv = S("api-service-host-env-name", "KUBERNETES_SERVICE_HOST");
        _portEnv = S("api-service-port-env-name", "KUBERNETES_SERVICE_PORT");
        _tokenPath = S("api-token-path", ServiceAccount + "token");
        _caPath = S("api-ca-path", ServiceAccount + "ca.crt");
        var nsPath = S("pod-namespace-path", ServiceAccount + "namespace");
        _namespace = S("pod-namespace", File.Exists(nsPath) ? File.ReadAllText(nsPath).Trim() : "default");
        _http = new Lazy<HttpClient>(CreateClient);
    }

    /// <summary>HTTPS to the API server whose certificate chains to the service account's CA and names the host dialled.</summary>
    private HttpClient CreateClient()
    {
        var ca = new X509Certificate2Collection();
        if (File.Exists(_caPath)) ca.ImportFromPemFile(_caPath);
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false, UseProxy = false, UseCookies = false, ConnectTimeout = TimeSpan.FromSeconds(5),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
                    cert is not null && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None
                    && (errors == SslPolicyErrors.None && ca.Count == 0 || ca.Count > 0 && TlsOptions.ChainsTo(cert, chain, ca, out string _)),
            },
        };
        return new HttpClient(handler) { MaxResponseContentBufferSize = MaxResponseBytes };
    }

    public override async Task<Resolved> Lookup(Lookup lookup, TimeSpan resolveTimeout)
    {
        var host = Environment.GetEnvironmentVariable(_hostEnv);
        var port = Environment.GetEnvironmentVariable(_portEnv);
        if (string.IsNullOrWhiteSpace(host) || string.IsNullOrWhiteSpace(port))
            throw new InvalidOperationException($"not in a Kubernetes pod: {_hostEnv} or {_portEnv} is not set");
        if (!File.Exists(_tokenPath)) throw new InvalidOperationException($"no service account token at {_tokenPath} (automountServiceAccountToken off?)");
        // read every time: the kubelet rotates projected tokens
        var token = (await File.ReadAllTextAsync(_tokenPath)).Trim();
        var uri = new UriBuilder("https", host, int.Parse(port, System.Globalization.CultureInfo.InvariantCulture),
            $"/api/v1/namespaces/{Uri.EscapeDataString(_namespace)}/pods") { Query = "labelSelector=" + Uri.EscapeDataString(_selector) }.Uri;
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        using var cts = new CancellationTokenSource(resolveTimeout);
        string body;
        try
        {
            using var response = await _http.Value.SendAsync(request, cts.Token);
            body = await response.Content.ReadAsStringAsync(cts.Token);
            if (response.StatusCode == HttpStatusCode.Forbidden)
                throw new InvalidOperationException($"the Kubernetes API forbids listing pods in namespace {_namespace}: give the pod's service account get/list/watch on pods (a Role and RoleBinding)");
            if (response.StatusCode != HttpStatusCode.OK)
                throw new InvalidOperationException($"the Kubernetes API answered HTTP {(int)response.StatusCode} to the pod list of namespace {_namespace}");
        }
        catch (OperationCanceledException) { throw new TimeoutException($"the Kubernetes API did not answer within {resolveTimeout.TotalSeconds:F0}s"); }
        var targets = Targets(body, lookup.PortName);
        if (targets.Count == 0)
            _log.Warning("No running pod in namespace {0} matches {1} with a container port named {2}", _namespace, _selector, lookup.PortName ?? "(any)");
        return new Resolved(lookup.ServiceName, targets);
    }

    /// <summary>The pods of a pod list that are running, not being deleted, have an IP and (given a port name) a container
    /// port of that name: their IP and that port. Throws <see cref="FormatException"/> when the list is not one.</summary>
    public static List<ResolvedTarget> Targets(string podList, string? portName)
    {
        var result = new List<ResolvedTarget>();
        try
        {
            using var doc = JsonDocument.Parse(podList, new JsonDocumentOptions { MaxDepth = 64 });
            if (!doc.RootElement.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Array)
                throw new FormatException("the Kubernetes API's answer is not a pod list");
            foreach (var pod in items.EnumerateArray())
            {
                if (pod.TryGetProperty("metadata", out var meta) && meta.TryGetProperty("deletionTimestamp", out var del) && del.ValueKind != JsonValueKind.Null) continue;
                if (!pod.TryGetProperty("status", out var status)) continue;
                if (!(status.TryGetProperty("phase", out var phase) && phase.ValueKind == JsonValueKind.String && phase.GetString() == "Running")) continue;
                if (!(status.TryGetProperty("podIP", out var ipe) && ipe.ValueKind == JsonValueKind.String && IPAddress.TryParse(ipe.GetString(), out var ip))) continue;
                int? port = null;
                if (portName is not null)
                {
                    if (!pod.TryGetProperty("spec", out var spec) || !spec.TryGetProperty("containers", out var containers) || containers.ValueKind != JsonValueKind.Array) continue;
                    foreach (var c in containers.EnumerateArray())
                    {
                        if (!c.TryGetProperty("ports", out var ports) || ports.ValueKind != JsonValueKind.Array) continue;
                        foreach (var p in ports.EnumerateArray())
                            if (p.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() == portName
                                && p.TryGetProperty("containerPort", out var cp) && cp.TryGetInt32(out var v) && v is > 0 and <= 65535)
                            { port = v; break; }
                        if (port is not null) break;
                    }
                    if (port is null) continue;
                }
                result.Add(new ResolvedTarget(ip.ToString(), port, ip));
            }
        }
        catch (JsonException e) { throw new FormatException($"the Kubernetes API's answer is not JSON: {e.Message}"); }
        return result;
    }
}
