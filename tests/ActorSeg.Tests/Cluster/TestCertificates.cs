using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ActorSeg.Tests.Cluster;

/// <summary>A throw-away certificate authority and certificates signed by it, written as PEM files (what cert-manager or openssl would give).</summary>
public sealed class TestCa
{
    private readonly X509Certificate2 _ca;
    private readonly string _dir;
    public string CaPath { get; }

    public TestCa(string dir, string name)
    {
        _dir = dir;
        Directory.CreateDirectory(dir);
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        _ca = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        CaPath = Path.Combine(dir, $"{name}-ca.crt");
        File.WriteAllText(CaPath, _ca.ExportCertificatePem());
    }

    /// <summary>A node or client certificate for 127.0.0.1 and localhost, for server and client authentication.</summary>
    public (string Cert, string Key) Issue(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback); san.AddDnsName("localhost");
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var serial = RandomNumberGenerator.GetBytes(12);
        using var cert = req.Create(_ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(10), serial);
        string c = Path.Combine(_dir, $"{name}.crt"), k = Path.Combine(_dir, $"{name}.key");
        File.WriteAllText(c, cert.ExportCertificatePem());
        File.WriteAllText(k, key.ExportPkcs8PrivateKeyPem());
        return (c, k);
    }

    /// <summary>The environment that gives a node or client this certificate and trusts <paramref name="trust"/>.</summary>
    public static Dictionary<string, string> Env((string Cert, string Key) id, string trust) => new()
    {
        ["ACTORSEG_TLS__CERTIFICATE"] = id.Cert, ["ACTORSEG_TLS__KEY"] = id.Key, ["ACTORSEG_TLS__CA"] = trust,
    };
}
