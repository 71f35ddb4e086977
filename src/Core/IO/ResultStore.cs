using System.IO.Hashing;
using ActorSeg.Messages;

namespace ActorSeg.Core.IO;

/// <summary>
/// Where partial graphs, graphs, class files and masks live between roles. Messages carry <see cref="ResultRef"/>s
/// (location, length, checksum), never the data. The default is a directory on a volume every node mounts at the same
/// path; the interface is what an object-storage backend would implement.
/// </summary>
public interface IResultStore
{
    /// <summary>Describes a file already written (atomically) at <paramref name="path"/>: its length and checksum.</summary>
    ResultRef Describe(string path);

    /// <summary>Null when the referenced data is present and intact, else why it is not.</summary>
    string? Check(ResultRef r);

    /// <summary>A cheap check (present, right length) for the hot path; the checksum is verified before the data is used.</summary>
    string? CheckPresent(ResultRef r);
}

public sealed class ResultStoreException(string message) : IOException(message);

public sealed class DirectoryResultStore : IResultStore
{
    public static readonly DirectoryResultStore Instance = new();

    public ResultRef Describe(string path)
    {
        var full = Path.GetFullPath(path);
        using var fs = new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return new ResultRef(full, fs.Length, Hash(fs));
    }

    public string? Check(ResultRef r)
    {
        try
        {
            if (CheckPresent(r) is { } why) return why;
            using var fs = new FileStream(r.Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
            var h = Hash(fs);
            return h == r.Checksum ? null : $"{r.Path}: result file fails its checksum (xxh3 {h}, expected {r.Checksum})";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"{r.Path}: result file cannot be read: {e.Message}";
        }
    }

    public string? CheckPresent(ResultRef r)
    {
        if (!Path.IsPathFullyQualified(r.Path)) return $"{r.Path}: not an absolute path in the result store";
        var fi = new FileInfo(r.Path);
        if (!fi.Exists) return $"{r.Path}: result file is missing";
        return fi.Length != r.Length ? $"{r.Path}: result file is {fi.Length} bytes, expected {r.Length}" : null;
    }

    public void Verify(ResultRef r)
    {
        if (Check(r) is { } why) throw new ResultStoreException(why);
    }

    private static string Hash(Stream s)
    {
        var h = new XxHash3();
        h.Append(s);
        return Convert.ToHexStringLower(h.GetCurrentHash());
    }
}
