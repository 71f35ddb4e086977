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
}
