namespace ActorSeg.Cli;

/// <summary>
/// Confines paths that arrive from outside (the HTTP API) to configured data roots: no '..' escapes, no symlink
/// escapes (every existing component is resolved before the check), no relative paths.
/// </summary>
public sealed class DataRoots
{
    private readonly string[] _roots;

    public DataRoots(IEnumerable<string> roots)
    {
        _roots = roots.Select(r => RealPath(Path.GetFullPath(r)).TrimEnd('/')).Where(r => r.Length > 0).ToArray();
    }

    public IReadOnlyList<string> Roots => _roots;

    /// <summary>The real path of <paramref name="path"/> when it lies inside a root; otherwise an exception saying why.</summary>
    public string Confine(string path, string what)
    {
        if (_roots.Length == 0) throw new UnauthorizedAccessException("no data roots are configured (ACTORSEG_DATAROOTS): no path is accepted");
        if (string.IsNullOrWhiteSpace(path) || !Path.IsPathFullyQualified(path)) throw new ArgumentException($"{what} '{path}' must be an absolute path");
        if (path.Contains('\0')) throw new ArgumentException($"{what} contains a NUL character");
        var real = RealPath(Path.GetFullPath(path));
        if (!_roots.Any(r => real == r || real.StartsWith(r + "/", StringComparison.Ordinal)))
            throw new UnauthorizedAccessException($"{what} '{path}' resolves to '{real}', outside the data roots ({string.Join(", ", _roots)})");
        return real;
    }

    /// <summary>Resolves symbolic links in every existing component (like realpath); the missing tail is appended as is.</summary>
    public static string RealPath(string full)
    {
        var parts = full.Split('/', StringSplitOptions.RemoveEmptyEntries);
        string cur = "/";
        for (int i = 0; i < parts.Length; i++)
        {
            var next = Path.Combine(cur, parts[i]);
            FileSystemInfo fi = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (!fi.Exists) return Path.GetFullPath(Path.Combine(next, string.Join('/', parts.Skip(i + 1))));
            var target = fi.LinkTarget is null ? null : fi.ResolveLinkTarget(returnFinalTarget: true);
            cur = target is null ? next : RealPath(Path.GetFullPath(target.FullName));
        }
        return cur;
    }
}
