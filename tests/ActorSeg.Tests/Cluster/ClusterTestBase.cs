namespace ActorSeg.Tests.Cluster;

/// <summary>A test that starts real node processes: a temporary folder, and every process killed and the folder removed at the end.</summary>
public abstract class ClusterTestBase(string tag) : TempDirTest(tag)
{
    private readonly List<ClusterHarness> _harnesses = new();

    public override void Dispose()
    {
        foreach (var h in _harnesses) h.Dispose();
        base.Dispose();
    }

    protected ClusterHarness NewCluster()
    {
        var h = new ClusterHarness(_dir);
        _harnesses.Add(h);
        return h;
    }

    /// <summary>A node's /metrics page (Prometheus text format), or null while it does not answer.</summary>
    protected static string? ScrapeMetrics(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        try { return http.GetStringAsync($"http://127.0.0.1:{port}/metrics").Result; }
        catch (Exception) { return null; }
    }

    /// <summary>The sum of a metric's samples whose label set contains <paramref name="labels"/> (e.g. kind="tile"); 0 when absent.</summary>
    protected static double MetricValue(string? page, string name, string labels = "")
    {
        double sum = 0;
        foreach (var line in (page ?? "").Split('\n'))
        {
            if (line.StartsWith('#') || !line.StartsWith(name)) continue;
            var rest = line[name.Length..];
            if (rest.Length > 0 && rest[0] != ' ' && rest[0] != '{') continue; // a longer name
            if (labels.Length > 0 && !rest.Contains(labels)) continue;
            sum += double.Parse(rest[(rest.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }
        return sum;
    }
}
