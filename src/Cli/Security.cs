using System.CommandLine;
using System.Data.Common;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Remote.Transport.DotNetty;
using Microsoft.Extensions.Configuration;
using Serilog;

namespace ActorSeg.Cli;

/// <summary>
/// Mutual TLS on the cluster transport: this node's certificate and key (PEM files, a mounted Secret in Kubernetes)
/// and the cluster's CA. Every connection, in and out, must present a certificate that chains to that CA, or it is
/// refused and logged; with <see cref="ValidateHostname"/> the certificate of a node we connect to must also name the
/// host we dialled. Settings ACTORSEG_TLS__CERTIFICATE, __KEY, __CA, __VALIDATEHOSTNAME; flags --tls-cert, --tls-key, --tls-ca.
/// </summary>
public sealed record TlsOptions
{
    public string? Certificate { get; init; }
    public string? Key { get; init; }
    public string? Ca { get; init; }
    public bool ValidateHostname { get; init; }

    public bool Enabled => Certificate is not null || Key is not null || Ca is not null;

    public static TlsOptions From(IConfiguration c) => new()
    {
        Certificate = Blank(c["Tls:Certificate"]), Key = Blank(c["Tls:Key"]), Ca = Blank(c["Tls:Ca"]),
        ValidateHostname = c["Tls:ValidateHostname"] is { } v && bool.Parse(v),
    };

    private static string? Blank(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;

    public void Validate()
    {
        if (!Enabled) return;
        foreach (var (v, what, env) in new[] { (Certificate, "certificate", "CERTIFICATE"), (Key, "private key", "KEY"), (Ca, "CA bundle", "CA") })
        {
            if (v is null) throw new ArgumentException($"TLS needs a certificate, its private key and the cluster's CA: the {what} is missing (ACTORSEG_TLS__{env})");
            if (!File.Exists(v)) throw new ArgumentException($"{v}: TLS {what} file not found");
        }
        Load();
    }

    /// <summary>The node's certificate with its key, and the CA certificates peers must chain to.</summary>
    public (X509Certificate2 Certificate, X509Certificate2Collection Ca) Load()
    {
        X509Certificate2 cert;
        try
        {
            // through PKCS#12 so the private key is usable by the TLS stack on every platform
            using var pem = X509Certificate2.CreateFromPemFile(Certificate!, Key!);
            cert = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (CryptographicException e) { throw new ArgumentException($"{Certificate} / {Key}: not a PEM certificate with its private key: {e.Message}", e); }
        var ca = new X509Certificate2Collection();
        try { ca.ImportFromPemFile(Ca!); }
        catch (CryptographicException e) { throw new ArgumentException($"{Ca}: not a PEM CA bundle: {e.Message}", e); }
        if (ca.Count == 0) throw new ArgumentException($"{Ca}: no certificate in the CA bundle");
        if (DateTime.Now > cert.NotAfter) throw new ArgumentException($"{Certificate}: the certificate expired on {cert.NotAfter:u}");
        return (cert, ca);
    }

    /// <summary>The transport setup: mutual authentication on, our own chain check against the cluster CA.</summary>
    public DotNettySslSetup CreateSetup(string role)
    {
        var (cert, ca) = Load();
        var log = Log.ForContext("Role", role);
        return new DotNettySslSetup(cert, suppressValidation: false, requireMutualAuthentication: true, validateCertificateHostname: ValidateHostname,
            customValidator: Validator(ca, ValidateHostname, log));
    }

    public static CertificateValidationCallback Validator(X509Certificate2Collection ca, bool hostname, ILogger log) =>
        (cert, chain, peer, errors, _) =>
        {
            if (cert is null)
            {
                log.Warning("TLS: refused a connection with {Peer}: it presented no certificate", peer);
                return false;
            }
            if (hostname && errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
            {
                log.Warning("TLS: refused a connection with {Peer}: its certificate {Subject} does not name the host we connected to", peer, cert.Subject);
                return false;
            }
            if (ChainsTo(cert, chain, ca, out var status)) return true;
            log.Warning("TLS: refused a connection with {Peer}: certificate {Subject} (issuer {Issuer}) is not signed by the cluster's CA ({Status})",
                peer, cert.Subject, cert.Issuer, status);
            return false;
        };

    /// <summary>Whether <paramref name="cert"/> chains to one of the cluster's CA certificates (the intermediates the peer
    /// sent may help; the machine's trust store does not count). <paramref name="status"/> says why not.</summary>
    public static bool ChainsTo(X509Certificate cert, X509Chain? chain, X509Certificate2Collection ca, out string status)
    {
        using var c2 = new X509Certificate2(cert);
        using var own = new X509Chain();
        own.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        own.ChainPolicy.CustomTrustStore.AddRange(ca);
        own.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (chain is not null)
            foreach (var e in chain.ChainElements)
                if (!e.Certificate.Equals(c2)) own.ChainPolicy.ExtraStore.Add(e.Certificate);
        bool ok = own.Build(c2);
        status = ok ? "" : string.Join("; ", own.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0));
        return ok;
    }
}

/// <summary>Where a node can be reached from, and what follows from it.</summary>
public static class Exposure
{
    /// <summary>True for 127.0.0.0/8, ::1 and localhost: only this machine can connect.</summary>
    public static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip);

    /// <summary>Akka addresses carry the transport: akka.ssl.tcp with TLS, akka.tcp without. Accepts either and returns the one this node speaks.</summary>
    public static string Normalize(string address, bool tls)
    {
        if (!Address.TryParse(address, out var a) || a.Protocol is not ("akka.tcp" or "akka.ssl.tcp") || a.System != NodeHost.SystemName || a.Host is null || a.Port is null)
            throw new ArgumentException($"'{address}' is not an address like akka.tcp://{NodeHost.SystemName}@host:port (akka.ssl.tcp:// with TLS)");
        return new Address(tls ? "akka.ssl.tcp" : "akka.tcp", a.System, a.Host, a.Port).ToString();
    }
}

/// <summary>Secrets: never logged, never a placeholder.</summary>
public static class Secrets
{
    private static readonly string[] Placeholders = ["change-me", "changeme", "change-me-too", "change_me", "replace-me", "replaceme", "replace_me", "password", "secret", "example", "todo", "xxx", "placeholder"];

    public static bool IsPlaceholder(string value) =>
        Placeholders.Contains(value.Trim(), StringComparer.OrdinalIgnoreCase)
        || value.Trim().StartsWith("change-me", StringComparison.OrdinalIgnoreCase) || value.Trim().StartsWith("changeme", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether a connection-string key holds a secret, however it is spelt (Password, PWD, pass word, SslPassword, …).</summary>
    public static bool IsSecretKey(string key)
    {
        var k = new string(key.Where(char.IsLetterOrDigit).ToArray()).ToLowerInvariant();
        return k is "pwd" or "pass" or "passwd" or "token" or "apikey" || k.Contains("password") || k.Contains("secret");
    }

    /// <summary>The connection string with every secret value replaced by ***; an unparseable one is not shown at all.</summary>
    public static string Redact(string connectionString)
    {
        var b = new DbConnectionStringBuilder();
        try { b.ConnectionString = connectionString; }
        catch (ArgumentException) { return "(a connection string that cannot be parsed; not shown)"; }
        foreach (var key in b.Keys.Cast<string>().ToList())
            if (IsSecretKey(key)) b[key] = "***";
        return b.ConnectionString;
    }

    /// <summary>The password of a connection string, whatever its key is called; null when it has none.</summary>
    public static string? PasswordOf(string connectionString)
    {
        var b = new DbConnectionStringBuilder();
        try { b.ConnectionString = connectionString; } catch (ArgumentException) { return null; }
        return b.Keys.Cast<string>().Where(IsSecretKey).Select(k => b[k]?.ToString()).FirstOrDefault(v => !string.IsNullOrEmpty(v));
    }
}

/// <summary>Who may give a worker or trainer work: the coordinator singleton, on a member of this cluster with the coordinator role.</summary>
public static class CoordinatorIdentity
{
    public static Func<IActorRef, bool> For(ActorSystem system)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var singleton = NodeHost.CoordinatorSingletonPath.Trim('/').Split('/');
        return sender =>
        {
            if (!sender.Path.Elements.SequenceEqual(singleton)) return false;
            var a = sender.Path.Address;
            if (a.HasLocalScope || a.Equals(cluster.SelfAddress)) return cluster.SelfMember.HasRole(NodeRoles.Coordinator);
            var m = cluster.State.Members.FirstOrDefault(x => x.Address.Equals(a));
            return m is not null && m.HasRole(NodeRoles.Coordinator) && !cluster.State.Unreachable.Contains(m)
                && m.Status is Akka.Cluster.MemberStatus.Up or Akka.Cluster.MemberStatus.Leaving or Akka.Cluster.MemberStatus.Exiting;
        };
    }
}

/// <summary>The TLS flags every command that talks to the cluster takes (node, submit, submit-train, status, batch).</summary>
public sealed class TlsFlags
{
    public required Option<string?> Cert, Key, Ca;

    public static TlsFlags Create() => new()
    {
        Cert = new Option<string?>("--tls-cert") { Description = "This node's or client's certificate (PEM), signed by the cluster's CA: turns on mutual TLS. Env ACTORSEG_TLS__CERTIFICATE." },
        Key = new Option<string?>("--tls-key") { Description = "Its private key (PEM). Env ACTORSEG_TLS__KEY." },
        Ca = new Option<string?>("--tls-ca") { Description = "The cluster's CA certificate(s) (PEM): peers must present a certificate it signed. Env ACTORSEG_TLS__CA." },
    };

    public void AddTo(Command c) { c.Options.Add(Cert); c.Options.Add(Key); c.Options.Add(Ca); }

    public void AddTo(ParseResult pr, IDictionary<string, string?> flags)
    {
        flags["Tls:Certificate"] = pr.GetValue(Cert); flags["Tls:Key"] = pr.GetValue(Key); flags["Tls:Ca"] = pr.GetValue(Ca);
    }

    /// <summary>A client's TLS settings: the flags, else the ACTORSEG_TLS__* environment.</summary>
    public TlsOptions Read(ParseResult pr)
    {
        var flags = new Dictionary<string, string?>();
        AddTo(pr, flags);
        var c = new ConfigurationBuilder().AddEnvironmentVariables("ACTORSEG_").AddInMemoryCollection(flags.Where(kv => kv.Value is not null)).Build();
        var t = TlsOptions.From(c);
        t.Validate();
        return t;
    }
}
