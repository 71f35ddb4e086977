using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace ActorSeg.Core.IO;

/// <summary>
/// The framing of ActorSeg's own binary files that users keep and copy (trained models): a first line naming the format
/// and its version, the XxHash3-64 of everything after it, then the body. A file whose body changed by a byte (a partial
/// copy, a bad disk, a hand edit) is refused before any of it is used, instead of loading weights or settings that are
/// silently wrong. Files written before the checksum (the same format name without a version) are still read, unchecked.
/// </summary>
public static class SealedFile
{
    private const int HashBytes = 8;

    /// <summary>Writes <paramref name="magic"/>, the body's checksum and the body that <paramref name="body"/> writes, to a
    /// new file beside <paramref name="path"/> that is then moved into place (nothing half-written is ever left at
    /// <paramref name="path"/>, nor any temporary file on failure).</summary>
    public static void Write(string path, string magic, Action<BinaryWriter> body, string what)
    {
        var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true)) body(w);
        var data = ms.GetBuffer().AsSpan(0, (int)ms.Length);
        Span<byte> hash = stackalloc byte[HashBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(hash, XxHash3.HashToUInt64(data));
        var tmp = $"{path}.{Guid.NewGuid():N}.partial";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                fs.Write(Encoding.ASCII.GetBytes(magic));
                fs.Write(hash);
                fs.Write(data);
            }
            SafePaths.Publish(tmp, path, what);
        }
        finally
        {
            // a failed write (disk full, a folder gone) leaves no partial file behind
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>
    /// Opens <paramref name="path"/> positioned at its body. A file that starts with <paramref name="magic"/> has its
    /// checksum verified first (the whole file is read once for it); one that starts with <paramref name="legacyMagic"/>
    /// (written before the checksum) is opened as it is. Anything else is refused as not a <paramref name="what"/>.
    /// </summary>
    /// <exception cref="InvalidDataException">not such a file, or its checksum does not match (the message names the file)</exception>
    public static FileStream OpenBody(string path, string magic, string legacyMagic, string what)
    {
        var fs = File.OpenRead(path);
        try
        {
            var m = Encoding.ASCII.GetBytes(magic);
            var legacy = Encoding.ASCII.GetBytes(legacyMagic);
            var head = new byte[Math.Max(m.Length, legacy.Length) + HashBytes];
            int got = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            if (got >= m.Length + HashBytes && head.AsSpan(0, m.Length).SequenceEqual(m))
            {
                ulong want = BinaryPrimitives.ReadUInt64LittleEndian(head.AsSpan(m.Length, HashBytes));
                long body = m.Length + HashBytes;
                fs.Position = body;
                var h = new XxHash3();
                h.Append(fs);
                if (h.GetCurrentHashAsUInt64() != want)
                    throw new InvalidDataException($"{path}: damaged {what}: its checksum does not match its contents " +
                                                   $"({fs.Length:N0} bytes; a partial copy, or bytes changed since it was written)");
                fs.Position = body;
                return fs;
            }
            if (got >= legacy.Length && head.AsSpan(0, legacy.Length).SequenceEqual(legacy))
            {
                fs.Position = legacy.Length;
                return fs;
            }
            throw new InvalidDataException($"{path}: not an ActorSeg {what} file");
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }
}
