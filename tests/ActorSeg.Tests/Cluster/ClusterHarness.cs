using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace ActorSeg.Tests.Cluster;

/// <summary>
/// Real ActorSeg nodes as separate OS processes on 127.0.0.1 (the program the user runs, `actorseg node`), with
/// their logs captured; every process is killed when the harness is disposed.
/// </summary>
public sealed class ClusterHarness : IDisposable
{
    public sealed class NodeProcess
    {
        public required string Name;
        public required int Port;
        public required Process Process;
        public readonly ConcurrentQueue<string> Lines = new();
        public string Address => $"akka.tcp://actorseg@127.0.0.1:{Port}";
        public string Log => string.Join('\n', Lines);
        public bool Saw(string text) => Lines.Any(l => l.Contains(text, StringComparison.Ordinal));
        public void Kill() { try { Process.Kill(true); Process.WaitForExit(10_000); } catch (InvalidOperationException) { } }
    }

    private readonly List<NodeProcess> _all = new();
    public string Dir { get; }
    public Dictionary<string, string> Env { get; } = new()
    {
        ["ACTORSEG_LOG_FORMAT"] = "text",
        ["ACTORSEG_DOWNAFTERSECONDS"] = "4",
        ["ACTORSEG_HEARTBEATPAUSESECONDS"] = "3",
    };

    public ClusterHarness(string dir) { Dir = dir; }

    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int p = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return p;
    }

    public NodeProcess Start(string name, int port, IDictionary<string, string>? env = null, params string[] args) =>
        Run(name, port, env, ["node", "--port", port.ToString(), .. args]);

    public NodeProcess Run(string name, int port, IDictionary<string, string>? env, string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(TestPaths.CliDll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in Env) psi.Environment[k] = v;
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        var p = Process.Start(psi)!;
        var n = new NodeProcess { Name = name, Port = port, Process = p };
        var file = Path.Combine(Dir, $"{name}-{p.Id}.log");
        var writer = new StreamWriter(file) { AutoFlush = true };
        void Add(string? line)
        {
            if (line is null) return;
            n.Lines.Enqueue(line);
            lock (writer) writer.WriteLine(line);
        }
        p.OutputDataReceived += (_, e) => Add(e.Data);
        p.ErrorDataReceived += (_, e) => Add(e.Data);
        p.BeginOutputReadLine(); p.BeginErrorReadLine();
        lock (_all) _all.Add(n);
        return n;
    }

    public static void WaitFor(Func<bool> condition, TimeSpan timeout, string what, NodeProcess? show = null)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > timeout) throw new TimeoutException($"timed out after {timeout.TotalSeconds:F0}s waiting for {what}" + (show is null ? "" : "\n--- log of " + show.Name + ":\n" + show.Log));
            Thread.Sleep(100);
        }
    }

    public void Dispose()
    {
        lock (_all) foreach (var n in _all) n.Kill();
    }
}
