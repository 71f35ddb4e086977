namespace ActorSeg.Tests.Cluster;

/// <summary>A test that starts real node processes: a temporary folder, and every process killed and the folder removed at the end.</summary>
public abstract class ClusterTestBase(string tag) : IDisposable
{
    protected readonly string _dir = TestPaths.NewTempDir(tag);
    private readonly List<ClusterHarness> _harnesses = new();

    public void Dispose()
    {
        foreach (var h in _harnesses) h.Dispose();
        try { Directory.Delete(_dir, true); } catch { }
        GC.SuppressFinalize(this);
    }

    protected ClusterHarness NewCluster()
    {
        var h = new ClusterHarness(_dir);
        _harnesses.Add(h);
        return h;
    }
}
