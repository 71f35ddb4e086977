using System.Net;
using System.Net.Sockets;

namespace ActorSeg.Tests.Cluster;

/// <summary>
/// A TCP forwarder on 127.0.0.1 in front of a real server (PostgreSQL), that can be cut: every open connection is
/// reset and new ones are refused until it is restored — a database outage as a client sees it, without touching the
/// server other tests use.
/// </summary>
public sealed class TcpOutage : IDisposable
{
    private readonly IPEndPoint _upstream;
    private readonly List<TcpClient> _open = new();
    private TcpListener? _listener;
    private readonly CancellationTokenSource _stop = new();
    public int Port { get; }

    public TcpOutage(string host, int port)
    {
        _upstream = new IPEndPoint(Dns.GetHostAddresses(host).First(a => a.AddressFamily == AddressFamily.InterNetwork), port);
        Port = ClusterHarness.FreePort();
        Restore();
    }

    public void Restore()
    {
        lock (_open)
        {
            if (_listener is not null) return;
            _listener = new TcpListener(IPAddress.Loopback, Port);
            _listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            _listener.Start();
            var l = _listener;
            _ = Task.Run(() => Accept(l));
        }
    }

    public void Cut()
    {
        lock (_open)
        {
            _listener?.Stop();
            _listener = null;
            foreach (var c in _open) { try { c.Client.LingerState = new LingerOption(true, 0); c.Close(); } catch { } }
            _open.Clear();
        }
    }

    private async Task Accept(TcpListener l)
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try { inbound = await l.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; } // stopped: the outage, or the end
            var outbound = new TcpClient();
            try { await outbound.ConnectAsync(_upstream, _stop.Token); }
            catch (Exception) { inbound.Close(); continue; }
            lock (_open) { _open.Add(inbound); _open.Add(outbound); }
            _ = Pump(inbound, outbound);
            _ = Pump(outbound, inbound);
        }
    }

    private static async Task Pump(TcpClient from, TcpClient to)
    {
        var buf = new byte[1 << 16];
        try
        {
            var a = from.GetStream(); var b = to.GetStream();
            int n;
            while ((n = await a.ReadAsync(buf)) > 0) await b.WriteAsync(buf.AsMemory(0, n));
        }
        catch (Exception) { }
        finally { try { from.Close(); to.Close(); } catch { } }
    }

    public void Dispose() { _stop.Cancel(); Cut(); }
}
