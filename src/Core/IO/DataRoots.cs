namespace ActorSeg.Core.IO;

/// <summary>
/// Confines paths that arrive from outside (any door: HTTP, cluster clients, batch, training, and the messages a worker
/// acts on) to configured data roots: no '..' escapes, no symlink escapes (every existing component is resolved
/// before the check), no relative paths. <see cref="Confine"/> returns the path's real path, which is what a job
/// should record: a symbolic link planted later anywhere along it is then caught by <see cref="SafePaths.CheckUnchanged"/>.
/// </summary>
public sealed class DataRoots
{
    private readonly string[] _roots;

    public DataRoots(IEnumerable<string> roots)
    {
        _roots = roots.Select(r => SafePaths.RealPath(Path.GetFullPath(r)).TrimEnd('/')).Where(r => r.Length > 0).ToArray();
    }

    public IReadOnlyList<string> Roots => _roots;
    public bool Any => _roots.Length > 0;

    /// <summary>The real path of <paramref name="path"/> when it lies inside a root; otherwise an exception saying why.</summary>
    public string Confine(string path, string what)
    {
        if (_roots.Length == 0) throw new UnauthorizedAccessException("no data roots are configured (ACTORSEG_DATAROOTS): no path is accepted");
        var real = SafePaths.Canonical(path, what);
        if (!Contains(real))
            throw new UnauthorizedAccessException($"{what} '{path}' resolves to '{real}', outside the data roots ({string.Join(", ", _roots)})");
        return real;
    }

    /// <summary>True when the (already canonical) path is a root or lies below one.</summary>
    public bool Contains(string real) => _roots.Any(r => SafePaths.IsWithin(real, r));
}
