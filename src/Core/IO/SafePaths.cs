using System.Runtime.InteropServices;

namespace ActorSeg.Core.IO;

/// <summary>A path was refused: it escapes where it must stay, or something along it is not what was checked.</summary>
public sealed class UnsafePathException(string message) : IOException(message);

/// <summary>A file not moved into place because the work it belongs to has ended (<see cref="SafePaths.GuardPublishing"/>).</summary>
public sealed class PublishRefusedException(string message) : Exception(message);

/// <summary>An output folder that cannot be made where it was asked for (a file of that name, no permission, a path in a
/// file system that takes no folders): the same answer on every try, so a job fails at once instead of retrying.</summary>
public sealed class OutputFolderException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>
/// File-system checks that make a job's outputs impossible to redirect: canonical (symlink-free) paths, directories
/// created exclusively, a path re-checked where it is opened, and files written under a unique temporary name
/// (created with O_EXCL, so never through a planted link) then renamed into place (a rename replaces a link at the
/// destination instead of following it).
/// </summary>
public static class SafePaths
{
    /// <summary>Where set (<see cref="GuardPublishing"/>), asked before every file this flow of work moves into place.</summary>
    private static readonly AsyncLocal<Func<string?>?> Guard = new();

    /// <summary>
    /// Until the scope is disposed, every file this flow of work (and the tasks it starts) publishes through
    /// <see cref="WriteAtomic"/> or <see cref="Publish"/> is first checked with <paramref name="whyNot"/>: a reason stops it
    /// with <see cref="PublishRefusedException"/>, leaving the destination as it was. A painter or trainer whose job has
    /// ended while it worked (given up on at its deadline, and the job's earlier results put back) writes nothing over them.
    /// </summary>
    public static IDisposable GuardPublishing(Func<string?> whyNot)
    {
        var earlier = Guard.Value;
        Guard.Value = whyNot;
        return new GuardScope(earlier);
    }

    private sealed class GuardScope(Func<string?>? earlier) : IDisposable
    {
        public void Dispose() => Guard.Value = earlier;
    }

    private static void CheckGuard(string destination)
    {
        if (Guard.Value?.Invoke() is { } why) throw new PublishRefusedException($"{destination} not written: {why}");
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
            if (!fi.Exists && fi.LinkTarget is null) return Path.GetFullPath(Path.Combine(next, string.Join('/', parts.Skip(i + 1))));
            if (fi.LinkTarget is not null)
            {
                var target = fi.ResolveLinkTarget(returnFinalTarget: true);
                if (target is null || !target.Exists) throw new UnsafePathException($"{next} is a symbolic link to something that does not exist");
                cur = RealPath(Path.GetFullPath(target.FullName));
            }
            else cur = next;
        }
        return cur;
    }

    /// <summary>The real path of an absolute path given from outside; an exception naming <paramref name="what"/> when it is unusable.</summary>
    public static string Canonical(string path, string what)
    {
        if (string.IsNullOrWhiteSpace(path) || !Path.IsPathFullyQualified(path)) throw new ArgumentException($"{what} '{path}' must be an absolute path");
        if (path.Contains('\0')) throw new ArgumentException($"{what} contains a NUL character");
        // a newline or another control character in a path would split the log line, the CSV row and the report that name it
        if (path.FirstOrDefault(char.IsControl) is var c and not '\0')
            throw new ArgumentException($"{what} '{string.Concat(path.Select(ch => char.IsControl(ch) ? $"\\u{(int)ch:X4}" : ch.ToString()))}' contains a control character (U+{(int)c:X4}): rename it");
        return RealPath(Path.GetFullPath(path));
    }

    /// <summary>True when <paramref name="inner"/> is <paramref name="outer"/> or lies below it (both canonical).</summary>
    public static bool IsWithin(string inner, string outer)
    {
        outer = outer.TrimEnd('/');
        return inner == outer || outer.Length == 0 || inner.StartsWith(outer + "/", StringComparison.Ordinal);
    }

    /// <summary>
    /// Checked where a recorded (canonical) path is about to be written: no component of it may have become a symbolic
    /// link since it was recorded. Throws <see cref="UnsafePathException"/> naming the path.
    /// </summary>
    public static void CheckUnchanged(string path, string what)
    {
        string real;
        try { real = RealPath(Path.GetFullPath(path)); }
        catch (UnsafePathException e) { throw new UnsafePathException($"{what} {path}: {e.Message}"); }
        if (real != Path.GetFullPath(path).TrimEnd('/') && real != Path.GetFullPath(path))
            throw new UnsafePathException($"{what} {path} now resolves to {real} (a symbolic link along it): refused");
    }

    /// <summary>Creates <paramref name="dir"/> and its missing parents; refuses when any component is a symbolic link.</summary>
    public static void EnsureDirectory(string dir, string what)
    {
        CheckUnchanged(dir, what);
        if (File.Exists(dir)) throw new OutputFolderException($"{what} {dir} cannot be created: a file of that name is there");
        try { Directory.CreateDirectory(dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not UnsafePathException)
        {
            // the runtime's own message may name only a component of the path ("Could not find file '/proc/x'"); a missing
            // parent that cannot be made, a file along the path or no permission stays so, anything else may pass (a full
            // disk, a network file system's hiccup)
            var message = $"{what} {dir} cannot be created: {e.Message}";
            if (e is UnauthorizedAccessException or FileNotFoundException or DirectoryNotFoundException || File.Exists(dir) || AFileAlong(dir))
                throw new OutputFolderException(message, e);
            throw new IOException(message, e);
        }
        CheckUnchanged(dir, what);
    }

    /// <summary>Creates <paramref name="dir"/> as <see cref="EnsureDirectory"/> does and checks that a file can be written
    /// in it (one is created and removed): a read-only folder is named before the work whose results go there, not after.</summary>
    public static void EnsureWritableDirectory(string dir, string what)
    {
        EnsureDirectory(dir, what);
        var probe = Path.Combine(dir, $".actorseg-probe-{Guid.NewGuid():N}");
        try { using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { } }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputFolderException($"{what} {dir} cannot be written to: {e.Message}", e);
        }
    }

    /// <summary>Checks, before the work that makes it, that the file <paramref name="path"/> can be written: not a folder,
    /// in a folder that exists or can be made, and that can be written to.</summary>
    public static void EnsureWritableFile(string path, string what)
    {
        if (Directory.Exists(path)) throw new OutputFolderException($"{what} {path} is a folder: give the path of the file to write");
        EnsureWritableDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!, $"the folder of {what}");
    }

    /// <summary>Whether some existing component of <paramref name="dir"/> is a file (so no folder can be made under it).</summary>
    private static bool AFileAlong(string dir)
    {
        for (var p = Path.GetFullPath(dir); !string.IsNullOrEmpty(p); p = Path.GetDirectoryName(p))
            if (File.Exists(p)) return true;
        return false;
    }

    [DllImport("libc", SetLastError = true, EntryPoint = "mkdir")]
    private static extern int Mkdir(string path, uint mode);

    [DllImport("libc", SetLastError = true, EntryPoint = "geteuid")]
    private static extern uint GetEuid();

    private const int EEXIST = 17;

    /// <summary>
    /// Creates a job's private folder. A folder that does not exist is made with mkdir (atomic: it fails if anything
    /// appeared there). An existing one is accepted only when <paramref name="mayExist"/> (the same job resuming) and it
    /// is a real directory of this user, never a symbolic link or someone else's folder. Returns true when it was made now.
    /// </summary>
    /// <param name="parentWhat">what to call the folder that holds it where that cannot be made (default: <paramref name="what"/>)</param>
    public static bool CreatePrivateDirectory(string dir, bool mayExist, string what, string? parentWhat = null)
    {
        var parent = Path.GetDirectoryName(Path.GetFullPath(dir))!;
        EnsureDirectory(parent, parentWhat ?? what);
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            if (Mkdir(dir, Convert.ToUInt32("750", 8)) == 0) return true;
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EEXIST) throw new IOException($"{what} {dir} cannot be created: {new System.ComponentModel.Win32Exception(errno).Message} (errno {errno})");
        }
        else if (!Directory.Exists(dir) && !File.Exists(dir)) { Directory.CreateDirectory(dir); return true; }
        var fi = new DirectoryInfo(dir);
        if (fi.LinkTarget is not null) throw new UnsafePathException($"{what} {dir} exists as a symbolic link: refused");
        if (!fi.Exists) throw new UnsafePathException($"{what} {dir} exists and is not a directory: refused");
        if (!mayExist) throw new UnsafePathException($"{what} {dir} already exists: refused (it must be created by this job)");
        if ((OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) && Owner(dir) is { } uid && uid != GetEuid())
            throw new UnsafePathException($"{what} {dir} belongs to uid {uid}, not to this process (uid {GetEuid()}): refused");
        return false;
    }

    [DllImport("libc", SetLastError = true, EntryPoint = "lstat")]
    private static extern unsafe int Lstat(string path, byte* buf);

    /// <summary>The owner of a path (lstat), or null where it cannot be told.</summary>
    private static unsafe uint? Owner(string path)
    {
        // struct stat: st_uid sits after dev, ino, nlink and mode on x86-64, after dev, ino, mode and nlink on arm64
        int offset = RuntimeInformation.ProcessArchitecture switch { Architecture.X64 => 28, Architecture.Arm64 => 24, _ => -1 };
        if (!OperatingSystem.IsLinux() || offset < 0) return null;
        byte* buf = stackalloc byte[256];
        try { if (Lstat(path, buf) != 0) return null; }
        catch (EntryPointNotFoundException) { return null; }
        return *(uint*)(buf + offset);
    }

    /// <summary>
    /// Writes <paramref name="path"/> atomically and without following links: the content goes to a new file with a
    /// unique name in the same folder (created exclusively), is flushed to disk, then renamed over the destination; the
    /// folder is flushed too, so a journaled result survives a power cut. The folder is checked first.
    /// </summary>
    public static void WriteAtomic(string path, Action<Stream> write, string what = "output")
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        CheckUnchanged(dir, what + " folder");
        var tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.partial");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            CheckGuard(full);
            File.Move(tmp, full, overwrite: true);
            FlushDirectory(dir);
        }
        catch (IOException e) when (e.GetType() == typeof(IOException))
        {
            // (a full disk, a quota, an I/O error): said of the file and what it is, not of the temporary name
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            var reason = e.Message.Replace($" : '{tmp}'", "", StringComparison.Ordinal).Replace(tmp, full, StringComparison.Ordinal);
            throw new IOException($"{what} {full} cannot be written: {reason}", e);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>For writers that take a file name (libvips' savers): <paramref name="write"/> writes a new file with a
    /// unique name beside <paramref name="path"/> (ending in <paramref name="extension"/>, which tells the saver the
    /// format), which is then moved into place; on failure nothing is left behind.</summary>
    public static void WriteByName(string path, string extension, Action<string> write, string what = "output")
    {
        var tmp = $"{path}.{Guid.NewGuid():N}.partial{extension}";
        try
        {
            write(tmp);
            Publish(tmp, path, what);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes, string what = "output")
    {
        var copy = bytes.ToArray();
        WriteAtomic(path, s => s.Write(copy), what);
    }

    public static void WriteAllText(string path, string text, string what = "output") =>
        WriteAtomic(path, s => { using var w = new StreamWriter(s, leaveOpen: true); w.Write(text); }, what);

    /// <summary>Moves a finished file into place (same file system) and flushes it and the destination folder to disk.
    /// With <paramref name="flush"/> false the move is still atomic (a reader sees the old file or the whole new one) but
    /// nothing waits for the disk: only for files whose checksum is verified before they are trusted, so that a power cut
    /// that loses them costs a recomputation, never a wrong result (tile results: the stitch checks every one).</summary>
    public static void Publish(string source, string destination, string what = "output", bool flush = true)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(destination))!;
        CheckUnchanged(dir, what + " folder");
        if (flush) using (var fs = new FileStream(source, FileMode.Open, FileAccess.ReadWrite, FileShare.Read)) fs.Flush(flushToDisk: true);
        try { CheckGuard(destination); }
        catch (PublishRefusedException)
        {
            try { File.Delete(source); } catch (IOException) { } catch (UnauthorizedAccessException) { } // refused: nothing of it is left
            throw;
        }
        File.Move(source, destination, overwrite: true);
        if (flush) FlushDirectory(dir);
    }

    [DllImport("libc", SetLastError = true, EntryPoint = "open")]
    private static extern int Open(string path, int flags);
    [DllImport("libc", SetLastError = true, EntryPoint = "fsync")]
    private static extern int Fsync(int fd);
    [DllImport("libc", SetLastError = true, EntryPoint = "close")]
    private static extern int Close(int fd);

    /// <summary>fsync of a folder, so a rename in it is durable (best effort where the OS does not support it).</summary>
    public static void FlushDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = Open(dir, 0x10000 /* O_RDONLY|O_DIRECTORY */);
        if (fd < 0) return;
        try { Fsync(fd); } finally { Close(fd); }
    }
}
