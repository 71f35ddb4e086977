using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;

namespace ActorSeg.Core.IO;

/// <summary>
/// Writes a NumPy <c>.npz</c> archive: a zip of <c>.npy</c> entries (format 1.0, little-endian, C order, data
/// aligned to 64 bytes within each entry). Written to <c>path + ".partial"</c> and renamed atomically by
/// <see cref="Complete"/>; disposing without <see cref="Complete"/> deletes the partial file.
/// The zip is written here rather than through <see cref="ZipArchive"/> so that an entry's Deflate stream can be made on
/// every core: the entry is cut into fixed 1 MiB pieces, each compressed on its own and ended with a sync flush (the
/// pieces concatenate into one valid Deflate stream, as pigz makes them). The pieces do not depend on the number of
/// cores, so the same arrays give the same bytes on any machine. Entries and archives past 4 GiB get ZIP64 records.
/// Not thread-safe.
/// </summary>
public sealed class NpzWriter : IDisposable
{
    // 2000-01-01 12:00:00 in MS-DOS form: same arrays => byte-identical archive
    private const ushort DosTime = 12 << 11, DosDate = ((2000 - 1980) << 9) | (1 << 5) | 1;
    private const int Piece = 1 << 20;
    private const uint Max32 = uint.MaxValue;
    private readonly string _partialPath;
    private readonly CompressionLevel _level;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private readonly List<Entry> _entries = [];
    private FileStream? _file;
    private SyncFlushPieces.PieceBuffer[]? _pieceBuffers;
    private bool _completed;

    private readonly record struct Entry(byte[] Name, uint Crc, long Compressed, long Uncompressed, long Offset, ushort Method);

    /// <summary>Entries at least this long get ZIP64 sizes in their local header (tests lower it).</summary>
    internal long Zip64EntryThreshold { get; init; } = 0xF000_0000L;

    /// <summary>Sizes and offsets from this value on go into ZIP64 fields of the central directory, and an archive whose
    /// central directory starts or ends past it gets the ZIP64 end records (the format's limit; tests lower it).</summary>
    internal long Zip64FieldLimit { get; init; } = Max32;

    /// <summary>How many pieces are compressed at once (the result does not depend on it).</summary>
    internal int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>Creates the archive; <paramref name="compress"/> selects Deflate (<see cref="CompressionLevel.Fastest"/>) or stored entries.</summary>
    public NpzWriter(string path, bool compress = true)
        : this(path, compress ? CompressionLevel.Fastest : CompressionLevel.NoCompression)
    {
    }

    /// <summary>Creates the archive with the given zip compression level (np.load reads all of them).</summary>
    public NpzWriter(string path, CompressionLevel level)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("NpzWriter writes little-endian data from native memory and needs a little-endian machine.");
        }

        Path = path;
        _level = level;
        _partialPath = $"{path}.{Guid.NewGuid():N}.partial"; // unique and created exclusively: never written through a planted link
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }

        _file = new FileStream(_partialPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16);
    }

    public string Path { get; }

    /// <summary>Adds an array. The product of <paramref name="shape"/> must equal the data length (no shape: 1-D).</summary>
    /// <exception cref="ArgumentException">Unsupported element type, bad shape, or duplicate name.</exception>
    public void Add<T>(string name, ReadOnlySpan<T> data, params int[] shape)
        where T : unmanaged
    {
        string descr = Npy.DescrOf<T>(name);
        shape = shape is null || shape.Length == 0 ? [data.Length] : shape;
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException($"Array '{name}': negative dimension in shape ({string.Join(", ", shape)}).", nameof(shape));
            }

            count *= d;
        }

        if (count != data.Length)
        {
            throw new ArgumentException(
                $"Array '{name}': shape ({string.Join(", ", shape)}) holds {count} elements but the data has {data.Length}.", nameof(shape));
        }

        WriteEntry(name, descr, shape, MemoryMarshal.AsBytes(data));
    }

    /// <summary>Adds a 0-d array (shape <c>()</c>).</summary>
    public void AddScalar<T>(string name, T value)
        where T : unmanaged
    {
        string descr = Npy.DescrOf<T>(name);
        WriteEntry(name, descr, [], MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));
    }

    /// <summary>Adds a 1-D unicode array (<c>&lt;U{maxlen}</c>, UTF-32LE, NUL-padded); no pickle needed to load it.</summary>
    public void AddStrings(string name, IReadOnlyList<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        int maxLen = 1;
        for (int i = 0; i < values.Count; i++)
        {
            string s = values[i] ?? throw new ArgumentException($"Array '{name}': element {i} is null.", nameof(values));
            int runes = 0;
            foreach (Rune _ in s.EnumerateRunes())
            {
                runes++;
            }

            maxLen = Math.Max(maxLen, runes);
        }

        long bytes = (long)values.Count * maxLen * 4;
        if (bytes > Array.MaxLength)
        {
            throw new ArgumentException($"Array '{name}' is too large ({bytes} bytes).", nameof(values));
        }

        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)bytes);
        try
        {
            Span<byte> data = buffer.AsSpan(0, (int)bytes);
            data.Clear();
            for (int i = 0; i < values.Count; i++)
            {
                Span<byte> slot = data.Slice(i * maxLen * 4, maxLen * 4);
                int k = 0;
                foreach (Rune r in values[i].EnumerateRunes())
                {
                    BinaryPrimitives.WriteInt32LittleEndian(slot[(k * 4)..], r.Value);
                    k++;
                }
            }

            WriteEntry(name, "<U" + maxLen.ToString(CultureInfo.InvariantCulture), [values.Count], data);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Finishes the zip, flushes it to disk and renames <c>path + ".partial"</c> to <c>path</c>.</summary>
    public void Complete()
    {
        if (_completed)
        {
            throw new InvalidOperationException($"NPZ '{Path}' is already completed.");
        }

        var file = _file ?? throw new ObjectDisposedException(nameof(NpzWriter));
        WriteCentralDirectory(file);
        file.Flush(flushToDisk: true);
        file.Dispose();
        _file = null;
        SafePaths.Publish(_partialPath, Path, "npz");
        _completed = true;
    }

    public void Dispose()
    {
        _file?.Dispose();
        _file = null;
        if (!_completed)
        {
            TryDelete(_partialPath);
        }
    }

    private void WriteEntry(string name, string descr, int[] shape, ReadOnlySpan<byte> data)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var file = _file ?? throw new ObjectDisposedException(nameof(NpzWriter));
        if (_completed)
        {
            throw new InvalidOperationException($"NPZ '{Path}' is already completed.");
        }

        if (!_names.Add(name))
        {
            throw new ArgumentException($"Array '{name}' was already added to '{Path}'.", nameof(name));
        }

        byte[] header = Npy.BuildHeader(descr, shape);
        byte[] entryName = Encoding.UTF8.GetBytes(name + ".npy");
        long uncompressed = header.Length + (long)data.Length;
        bool zip64 = uncompressed >= Zip64EntryThreshold;
        ushort method = _level == CompressionLevel.NoCompression ? (ushort)0 : (ushort)8;
        long offset = file.Position;

        // the local header, its checksum and compressed size filled in once the data is written
        WriteLocalHeader(file, entryName, method, 0, 0, uncompressed, zip64);
        var crc = new Crc32();
        crc.Append(header);
        crc.Append(data);
        long compressed;
        if (method == 0)
        {
            file.Write(header);
            file.Write(data);
            compressed = uncompressed;
        }
        else
        {
            compressed = Deflate(file, header, data);
        }

        uint crcValue = crc.GetCurrentHashAsUInt32();
        if (!zip64 && compressed >= Max32)
        {
            throw new IOException($"Array '{name}' in '{Path}': its compressed entry ({compressed} bytes) is too large for a zip entry without ZIP64.");
        }

        long end = file.Position;
        file.Position = offset;
        WriteLocalHeader(file, entryName, method, crcValue, compressed, uncompressed, zip64);
        file.Position = end;
        _entries.Add(new Entry(entryName, crcValue, compressed, uncompressed, offset, method));
    }

    /// <summary>Writes the Deflate stream of header + data; returns its length.</summary>
    private unsafe long Deflate(FileStream file, byte[] header, ReadOnlySpan<byte> data)
    {
        long start = file.Position;
        if (!SyncFlushPieces.Supported)
        {
            using (var d = new DeflateStream(file, _level, leaveOpen: true))
            {
                d.Write(header);
                d.Write(data);
            }

            return file.Position - start;
        }

        // the header is a piece of its own; then the data in 1 MiB pieces, in batches of a few per core
        int pieces = (int)((data.Length + (long)Piece - 1) / Piece);
        file.Write(SyncFlushPieces.Compress(header, _level, last: pieces == 0));
        if (pieces == 0)
        {
            return file.Position - start;
        }

        // a few pieces per core at a time, each into a buffer of its own that is kept for the next entries (fresh memory
        // costs a page fault per 4 KiB, as much as compressing it)
        int batch = Math.Max(1, Parallelism) * 4;
        _pieceBuffers ??= new SyncFlushPieces.PieceBuffer[batch];
        var lengths = new int[batch];
        fixed (byte* p = data)
        {
            nint address = (nint)p;
            int length = data.Length;
            for (int first = 0; first < pieces; first += batch)
            {
                int count = Math.Min(batch, pieces - first), b0 = first;
                Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Parallelism) }, i =>
                {
                    long off = (long)(b0 + i) * Piece;
                    int len = (int)Math.Min(Piece, length - off);
                    var buffer = _pieceBuffers[i] ??= new SyncFlushPieces.PieceBuffer(Piece + (Piece >> 3));
                    lengths[i] = SyncFlushPieces.Compress(new ReadOnlySpan<byte>((byte*)(address + (nint)off), len), _level, last: b0 + i == pieces - 1, buffer);
                });
                for (int i = 0; i < count; i++)
                {
                    file.Write(_pieceBuffers[i].Buffer, 0, lengths[i]);
                }
            }
        }

        return file.Position - start;
    }

    private static void WriteLocalHeader(Stream s, byte[] name, ushort method, uint crc, long compressed, long uncompressed, bool zip64)
    {
        Span<byte> h = stackalloc byte[30 + 20];
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x04034b50);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], zip64 ? (ushort)45 : (ushort)20); // version needed
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], 0); // flags
        BinaryPrimitives.WriteUInt16LittleEndian(h[8..], method);
        BinaryPrimitives.WriteUInt16LittleEndian(h[10..], DosTime);
        BinaryPrimitives.WriteUInt16LittleEndian(h[12..], DosDate);
        BinaryPrimitives.WriteUInt32LittleEndian(h[14..], crc);
        BinaryPrimitives.WriteUInt32LittleEndian(h[18..], zip64 ? Max32 : (uint)compressed);
        BinaryPrimitives.WriteUInt32LittleEndian(h[22..], zip64 ? Max32 : (uint)uncompressed);
        BinaryPrimitives.WriteUInt16LittleEndian(h[26..], (ushort)name.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(h[28..], zip64 ? (ushort)20 : (ushort)0);
        s.Write(h[..30]);
        s.Write(name);
        if (zip64)
        {
            // the ZIP64 extra field: both sizes, as a local header must give them
            BinaryPrimitives.WriteUInt16LittleEndian(h[30..], 0x0001);
            BinaryPrimitives.WriteUInt16LittleEndian(h[32..], 16);
            BinaryPrimitives.WriteInt64LittleEndian(h[34..], uncompressed);
            BinaryPrimitives.WriteInt64LittleEndian(h[42..], compressed);
            s.Write(h[30..50]);
        }
    }

    private void WriteCentralDirectory(FileStream file)
    {
        long cdStart = file.Position;
        Span<byte> h = stackalloc byte[46];
        Span<byte> extra = stackalloc byte[28];
        foreach (var e in _entries)
        {
            // ZIP64 extra field: only the values that do not fit, in the order the format fixes
            int x = 4;
            bool bigU = e.Uncompressed >= Zip64FieldLimit, bigC = e.Compressed >= Zip64FieldLimit, bigO = e.Offset >= Zip64FieldLimit;
            if (bigU) { BinaryPrimitives.WriteInt64LittleEndian(extra[x..], e.Uncompressed); x += 8; }
            if (bigC) { BinaryPrimitives.WriteInt64LittleEndian(extra[x..], e.Compressed); x += 8; }
            if (bigO) { BinaryPrimitives.WriteInt64LittleEndian(extra[x..], e.Offset); x += 8; }
            bool any = x > 4;
            BinaryPrimitives.WriteUInt16LittleEndian(extra, 0x0001);
            BinaryPrimitives.WriteUInt16LittleEndian(extra[2..], (ushort)(x - 4));

            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 45); // made by: version 4.5, MS-DOS attributes
            BinaryPrimitives.WriteUInt16LittleEndian(h[6..], any || e.Uncompressed >= Zip64EntryThreshold ? (ushort)45 : (ushort)20);
            BinaryPrimitives.WriteUInt16LittleEndian(h[8..], 0);
            BinaryPrimitives.WriteUInt16LittleEndian(h[10..], e.Method);
            BinaryPrimitives.WriteUInt16LittleEndian(h[12..], DosTime);
            BinaryPrimitives.WriteUInt16LittleEndian(h[14..], DosDate);
            BinaryPrimitives.WriteUInt32LittleEndian(h[16..], e.Crc);
            BinaryPrimitives.WriteUInt32LittleEndian(h[20..], bigC ? Max32 : (uint)e.Compressed);
            BinaryPrimitives.WriteUInt32LittleEndian(h[24..], bigU ? Max32 : (uint)e.Uncompressed);
            BinaryPrimitives.WriteUInt16LittleEndian(h[28..], (ushort)e.Name.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h[30..], any ? (ushort)x : (ushort)0);
            BinaryPrimitives.WriteUInt16LittleEndian(h[32..], 0); // comment
            BinaryPrimitives.WriteUInt16LittleEndian(h[34..], 0); // disk
            BinaryPrimitives.WriteUInt16LittleEndian(h[36..], 0); // internal attributes
            BinaryPrimitives.WriteUInt32LittleEndian(h[38..], 0); // external attributes
            BinaryPrimitives.WriteUInt32LittleEndian(h[42..], bigO ? Max32 : (uint)e.Offset);
            file.Write(h);
            file.Write(e.Name);
            if (any) file.Write(extra[..x]);
        }

        long cdEnd = file.Position, cdSize = cdEnd - cdStart;
        bool zip64 = _entries.Count >= 0xFFFF || cdStart >= Zip64FieldLimit || cdSize >= Zip64FieldLimit;
        Span<byte> z = stackalloc byte[56 + 20];
        if (zip64)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(z, 0x06064b50); // ZIP64 end of central directory record
            BinaryPrimitives.WriteInt64LittleEndian(z[4..], 56 - 12);
            BinaryPrimitives.WriteUInt16LittleEndian(z[12..], 45);
            BinaryPrimitives.WriteUInt16LittleEndian(z[14..], 45);
            BinaryPrimitives.WriteUInt32LittleEndian(z[16..], 0);
            BinaryPrimitives.WriteUInt32LittleEndian(z[20..], 0);
            BinaryPrimitives.WriteInt64LittleEndian(z[24..], _entries.Count);
            BinaryPrimitives.WriteInt64LittleEndian(z[32..], _entries.Count);
            BinaryPrimitives.WriteInt64LittleEndian(z[40..], cdSize);
            BinaryPrimitives.WriteInt64LittleEndian(z[48..], cdStart);
            BinaryPrimitives.WriteUInt32LittleEndian(z[56..], 0x07064b50); // its locator
            BinaryPrimitives.WriteUInt32LittleEndian(z[60..], 0);
            BinaryPrimitives.WriteInt64LittleEndian(z[64..], cdEnd);
            BinaryPrimitives.WriteUInt32LittleEndian(z[72..], 1);
            file.Write(z);
        }

        Span<byte> eocd = stackalloc byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(eocd, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(eocd[4..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(eocd[6..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(eocd[8..], zip64 ? (ushort)0xFFFF : (ushort)_entries.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(eocd[10..], zip64 ? (ushort)0xFFFF : (ushort)_entries.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(eocd[12..], zip64 ? Max32 : (uint)cdSize);
        BinaryPrimitives.WriteUInt32LittleEndian(eocd[16..], zip64 ? Max32 : (uint)cdStart);
        BinaryPrimitives.WriteUInt16LittleEndian(eocd[20..], 0);
        file.Write(eocd);
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>
/// Pieces of one Deflate stream compressed apart. Every piece but the last ends with a sync flush (an empty stored
/// block: 00 00 FF FF), so it ends on a byte boundary and the next piece can follow it; the last piece ends the stream.
/// <see cref="DeflateStream.Flush()"/> makes that sync flush; disposing then adds an empty final block (03 00), which is
/// cut from every piece but the last. Whether the runtime's zlib does exactly that is checked once; if it does not,
/// <see cref="Supported"/> is false and callers compress in one stream.
/// </summary>
internal static class SyncFlushPieces
{
    private static readonly byte[] FinalEmptyBlock = [0x03, 0x00];
    private static readonly byte[] SyncMarker = [0x00, 0x00, 0xFF, 0xFF];

    public static bool Supported { get; } = Probe();

    /// <summary>Compresses <paramref name="data"/> into <paramref name="output"/>, which is reset first and grows when it
    /// must (kept by the caller for the next piece); returns the piece's length.</summary>
    public static int Compress(ReadOnlySpan<byte> data, CompressionLevel level, bool last, PieceBuffer output)
    {
        output.Reset();
        using (var d = new DeflateStream(output, level, leaveOpen: true))
        {
            d.Write(data);
            d.Flush();
        }

        var bytes = output.Written;
        if (!bytes.EndsWith(FinalEmptyBlock) || !bytes[..^FinalEmptyBlock.Length].EndsWith(SyncMarker))
        {
            throw new InvalidOperationException("the runtime's Deflate did not end a flushed piece with a sync flush and an empty final block");
        }

        return last ? bytes.Length : bytes.Length - FinalEmptyBlock.Length;
    }

    public static byte[] Compress(ReadOnlySpan<byte> data, CompressionLevel level, bool last)
    {
        var output = new PieceBuffer(data.Length / 2 + 64);
        int length = Compress(data, level, last, output);
        return output.Written[..length].ToArray();
    }

    /// <summary>A write-only stream into one array that is kept between pieces (fresh memory costs a page fault per
    /// 4 KiB on first touch).</summary>
    public sealed class PieceBuffer(int capacity) : Stream
    {
        private byte[] _buffer = new byte[Math.Max(16, capacity)];
        private int _length;

        public byte[] Buffer => _buffer;
        public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, _length);
        public void Reset() => _length = 0;

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_length + buffer.Length > _buffer.Length)
            {
                Array.Resize(ref _buffer, (int)Math.Min(Array.MaxLength, Math.Max(_length + (long)buffer.Length, _buffer.Length * 3L / 2)));
            }

            buffer.CopyTo(_buffer.AsSpan(_length));
            _length += buffer.Length;
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void WriteByte(byte value) => Write([value]);
        public override void Flush() { }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private static bool Probe()
    {
        try
        {
            var a = new byte[70_000];
            var b = new byte[3_000];
            for (int i = 0; i < a.Length; i++) a[i] = (byte)(i * 7 % 13);
            for (int i = 0; i < b.Length; i++) b[i] = (byte)(i % 5);
            var joined = new MemoryStream();
            joined.Write(Compress(a, CompressionLevel.Fastest, last: false));
            joined.Write(Compress(b, CompressionLevel.Fastest, last: true));
            joined.Position = 0;
            using var inflate = new DeflateStream(joined, CompressionMode.Decompress);
            var back = new MemoryStream();
            inflate.CopyTo(back);
            return back.ToArray().AsSpan().SequenceEqual([.. a, .. b]);
        }
        catch (InvalidOperationException)
        {
            return false;
        }
        catch (InvalidDataException)
        {
            return false;
        }
    }
}

/// <summary>One array read from a <c>.npy</c> entry: NumPy dtype string (normalised to little-endian), shape and raw bytes.</summary>
public sealed record NpyArray(string Dtype, int[] Shape, byte[] Data)
{
    /// <summary>Number of elements (product of the shape; 1 for a 0-d array).</summary>
    public long Length
    {
        get
        {
            long n = 1;
            foreach (int d in Shape)
            {
                n *= d;
            }

            return n;
        }
    }

    /// <summary>Bytes per element.</summary>
    public int ItemSize => Npy.ItemSize(Dtype);

    /// <summary>The data as <typeparamref name="T"/>; the dtype must match T exactly (e.g. '&lt;f4' for float).</summary>
    /// <exception cref="InvalidOperationException">The dtype does not match <typeparamref name="T"/>.</exception>
    public ReadOnlySpan<T> AsSpan<T>()
        where T : unmanaged
    {
        string want = Npy.DescrOf<T>("(read)");
        if (!Npy.SameDtype(want, Dtype))
        {
            throw new InvalidOperationException($"Array of dtype '{Dtype}' cannot be read as {typeof(T).Name} ('{want}').");
        }

        return MemoryMarshal.Cast<byte, T>(Data);
    }

    /// <summary>The single value of a 0-d (or 1-element) array.</summary>
    public T Scalar<T>()
        where T : unmanaged
    {
        ReadOnlySpan<T> span = AsSpan<T>();
        if (span.Length != 1)
        {
            throw new InvalidOperationException($"Array of shape ({string.Join(", ", Shape)}) is not a scalar.");
        }

        return span[0];
    }

    /// <summary>The elements of a unicode ('&lt;U{n}') array, trailing NULs removed, in C order.</summary>
    /// <exception cref="InvalidOperationException">The dtype is not a unicode string type.</exception>
    public string[] Strings()
    {
        if (!Npy.TryParseUnicode(Dtype, out int chars))
        {
            throw new InvalidOperationException($"Array of dtype '{Dtype}' is not a unicode string array.");
        }

        long n = Length;
        var result = new string[n];
        var sb = new StringBuilder(chars);
        for (long i = 0; i < n; i++)
        {
            sb.Clear();
            ReadOnlySpan<byte> slot = Data.AsSpan((int)(i * chars * 4), chars * 4);
            for (int k = 0; k < chars; k++)
            {
                int cp = BinaryPrimitives.ReadInt32LittleEndian(slot[(k * 4)..]);
                if (cp == 0)
                {
                    break;
                }

                if (!Rune.IsValid(cp))
                {
                    throw new InvalidDataException($"Element {i} holds an invalid code point 0x{cp:X}.");
                }

                sb.Append(new Rune(cp).ToString());
            }

            result[i] = sb.ToString();
        }

        return result;
    }
}

/// <summary>Reads NumPy <c>.npz</c> archives (stored or deflated entries; .npy format 1.0, 2.0 and 3.0).</summary>
public static class NpzReader
{
    /// <summary>Reads every <c>.npy</c> entry of the archive, keyed by name without the <c>.npy</c> suffix.</summary>
    /// <exception cref="InvalidDataException">The file or an entry is corrupt (message names the file and entry).</exception>
    /// <exception cref="NotSupportedException">An entry uses an unsupported dtype or Fortran order.</exception>
    public static IReadOnlyDictionary<string, NpyArray> Read(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var result = new Dictionary<string, NpyArray>(StringComparer.Ordinal);
        ZipArchive zip;
        Imaging.InputFiles.RefuseNonRegular(path, "not a readable .npz archive");
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try
        {
            zip = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: false);
        }
        catch (InvalidDataException ex)
        {
            file.Dispose();
            throw new InvalidDataException($"'{path}' is not a valid npz (zip) archive: {ex.Message}", ex);
        }

        using (zip)
        {
            foreach (ZipArchiveEntry entry in zip.Entries)
            {
                if (!entry.FullName.EndsWith(".npy", StringComparison.Ordinal))
                {
                    continue;
                }

                string name = entry.FullName[..^4];
                try
                {
                    using var s = new Crc32Stream(entry.Open());
                    result[name] = Npy.ReadArray(s, entry.Length);
                    // the zip's CRC-32 of the entry, which ZipArchive does not check: a byte changed on disk in a stored
                    // entry, or one that still inflates, would otherwise be read as a different graph
                    s.ReadToEnd();
                    if (s.Crc != entry.Crc32)
                        throw new InvalidDataException($"damaged: its CRC-32 is {s.Crc:x8} where the archive says {entry.Crc32:x8} (bytes changed since it was written)");
                }
                catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException or IOException or FormatException)
                {
                    throw new InvalidDataException($"'{path}', entry '{entry.FullName}': {InflateErrors.Why(ex)}", ex);
                }
                catch (NotSupportedException ex)
                {
                    throw new NotSupportedException($"'{path}', entry '{entry.FullName}': {ex.Message}", ex);
                }
            }
        }

        return result;
    }
}

/// <summary>What a decompressor's exception means, in words that fit a damaged file.</summary>
internal static class InflateErrors
{
    /// <summary>.NET's inflater reports any invalid block type as "The archive entry was compressed using an unsupported
    /// compression method", which reads as if the file used a format it does not: it means the data is corrupt.</summary>
    public static string Why(Exception e) =>
        e.Message.Contains("unsupported compression method", StringComparison.OrdinalIgnoreCase) ? "corrupt compressed data" : e.Message;
}

/// <summary>A read-only stream that computes the CRC-32 (zip's) of what is read through it.</summary>
internal sealed class Crc32Stream(Stream inner) : Stream
{
    private readonly System.IO.Hashing.Crc32 _crc = new();
    public uint Crc => _crc.GetCurrentHashAsUInt32();

    public override int Read(Span<byte> buffer)
    {
        int n = inner.Read(buffer);
        _crc.Append(buffer[..n]);
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    /// <summary>Reads (and checksums) whatever the reader left unread.</summary>
    public void ReadToEnd()
    {
        var buf = new byte[1 << 14];
        while (Read(buf) > 0) { }
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    protected override void Dispose(bool disposing) { if (disposing) inner.Dispose(); base.Dispose(disposing); }
}

/// <summary>A single NumPy <c>.npy</c> file (format 1.0, little-endian, C order), written atomically (<see cref="SafePaths.WriteAtomic"/>): <c>np.load(path)</c>.</summary>
public static class NpyFile
{
    public static void Write<T>(string path, ReadOnlySpan<T> data, int[] shape, string what = "array")
        where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("NpyFile writes little-endian data from native memory.");
        long count = 1;
        foreach (int d in shape) count *= d;
        if (count != data.Length) throw new ArgumentException($"{path}: shape ({string.Join(", ", shape)}) holds {count} elements but the data has {data.Length}.", nameof(shape));
        var header = Npy.BuildHeader(Npy.DescrOf<T>(path), shape);
        var bytes = MemoryMarshal.AsBytes(data).ToArray();
        SafePaths.WriteAtomic(path, s => { s.Write(header); s.Write(bytes); }, what);
    }

    /// <exception cref="InvalidDataException">Not a readable .npy file (the message names it).</exception>
    public static NpyArray Read(string path)
    {
        Imaging.InputFiles.RefuseNonRegular(path, "not a readable .npy file");
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        try { return Npy.ReadArray(s, s.Length); }
        catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException or FormatException)
        {
            throw new InvalidDataException($"'{path}': {ex.Message}", ex);
        }
    }
}

/// <summary>.npy header and dtype helpers.</summary>
internal static class Npy
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public static string DescrOf<T>(string name)
        where T : unmanaged
    {
        if (typeof(T) == typeof(byte)) return "|u1";
        if (typeof(T) == typeof(sbyte)) return "|i1";
        if (typeof(T) == typeof(short)) return "<i2";
        if (typeof(T) == typeof(ushort)) return "<u2";
        if (typeof(T) == typeof(int)) return "<i4";
        if (typeof(T) == typeof(uint)) return "<u4";
        if (typeof(T) == typeof(long)) return "<i8";
        if (typeof(T) == typeof(ulong)) return "<u8";
        if (typeof(T) == typeof(Half)) return "<f2";
        if (typeof(T) == typeof(float)) return "<f4";
        if (typeof(T) == typeof(double)) return "<f8";
        if (typeof(T) == typeof(bool)) return "|b1";
        throw new ArgumentException($"Array '{name}': element type {typeof(T).Name} has no NumPy dtype mapping.");
    }

    public static bool SameDtype(string a, string b) => Normalise(a) == Normalise(b);

    public static int ItemSize(string dtype)
    {
        string d = Normalise(dtype);
        if (TryParseUnicode(d, out int chars))
        {
            return chars * 4;
        }

        return d[1..] switch
        {
            "u1" or "i1" or "b1" => 1,
            "u2" or "i2" or "f2" => 2,
            "u4" or "i4" or "f4" => 4,
            "u8" or "i8" or "f8" => 8,
            _ => throw new NotSupportedException($"Unsupported dtype '{dtype}'."),
        };
    }

    public static bool TryParseUnicode(string dtype, out int chars)
    {
        chars = 0;
        string d = Normalise(dtype);
        return d.Length > 2 && d[1] == 'U' && int.TryParse(d.AsSpan(2), NumberStyles.None, CultureInfo.InvariantCulture, out chars) && chars > 0;
    }

    public static byte[] BuildHeader(string descr, int[] shape)
    {
        string shapeText = shape.Length switch
        {
            0 => "()",
            1 => $"({shape[0].ToString(CultureInfo.InvariantCulture)},)",
            _ => "(" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + ")",
        };
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shapeText}, }}";
        int unpadded = Magic.Length + 2 + 2 + dict.Length + 1; // + '\n'
        int total = (unpadded + 63) / 64 * 64;
        int headerLen = total - Magic.Length - 4;
        if (headerLen > ushort.MaxValue)
        {
            throw new ArgumentException($"Shape has too many dimensions for an .npy 1.0 header ({shape.Length}).");
        }

        byte[] h = new byte[total];
        Magic.CopyTo(h);
        h[6] = 1;
        h[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(8), (ushort)headerLen);
        int n = Encoding.ASCII.GetBytes(dict, h.AsSpan(10));
        h.AsSpan(10 + n, total - 10 - n - 1).Fill((byte)' ');
        h[total - 1] = (byte)'\n';
        return h;
    }

    public static NpyArray ReadArray(Stream s, long entryLength)
    {
        Span<byte> pre = stackalloc byte[12];
        s.ReadExactly(pre[..8]);
        if (!pre[..6].SequenceEqual(Magic))
        {
            throw new InvalidDataException("Not an .npy stream (bad magic).");
        }

        byte major = pre[6];
        int headerLen;
        if (major == 1)
        {
            s.ReadExactly(pre.Slice(8, 2));
            headerLen = BinaryPrimitives.ReadUInt16LittleEndian(pre[8..]);
        }
        else if (major is 2 or 3)
        {
            s.ReadExactly(pre.Slice(8, 4));
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(pre[8..]);
            if (len > 1 << 24)
            {
                throw new InvalidDataException($"Implausible .npy header length {len}.");
            }

            headerLen = (int)len;
        }
        else
        {
            throw new NotSupportedException($".npy format version {major}.{pre[7]} is not supported.");
        }

        byte[] hb = new byte[headerLen];
        s.ReadExactly(hb);
        string header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(hb);
        (string descr, bool fortran, int[] shape) = ParseHeader(header);
        if (fortran && shape.Length > 1)
        {
            throw new NotSupportedException("Fortran-order arrays are not supported.");
        }

        char order = descr.Length > 0 ? descr[0] : '?';
        int itemSize = ItemSize(descr);
        string kind = Normalise(descr)[1..];
        long count = 1;
        foreach (int d in shape)
        {
            count *= d;
        }

        long bytes = count * itemSize;
        if (bytes > Array.MaxLength)
        {
            throw new NotSupportedException($"Array of {bytes} bytes exceeds the 2 GiB limit of NpyArray.");
        }

        if (entryLength >= 0 && bytes > entryLength)
        {
            throw new InvalidDataException($"Entry holds {entryLength} bytes but shape ({string.Join(", ", shape)}) x {itemSize} needs {bytes} data bytes.");
        }

        byte[] data = GC.AllocateUninitializedArray<byte>((int)bytes);
        try
        {
            s.ReadExactly(data);
        }
        catch (EndOfStreamException)
        {
            throw new InvalidDataException($"Data is truncated: expected {bytes} bytes for shape ({string.Join(", ", shape)}).");
        }

        int swapSize = kind.StartsWith('U') ? 4 : itemSize;
        if (order == '>' && swapSize > 1)
        {
            SwapBytes(data, swapSize);
        }

        return new NpyArray(Normalise(descr), shape, data);
    }

    /// <summary>Little-endian canonical form: '&lt;' for multi-byte kinds, '|' for single-byte ones.</summary>
    private static string Normalise(string dtype)
    {
        if (dtype.Length < 2)
        {
            throw new NotSupportedException($"Unsupported dtype '{dtype}'.");
        }

        char first = dtype[0];
        string rest = first is '<' or '>' or '|' or '=' ? dtype[1..] : dtype;
        if (rest is "u1" or "i1" or "b1")
        {
            return "|" + rest;
        }

        if (rest is "?")
        {
            return "|b1";
        }

        if (rest.Length >= 2 && (rest[0] is 'u' or 'i' or 'f' or 'U'))
        {
            return "<" + rest;
        }

        throw new NotSupportedException($"Unsupported dtype '{dtype}'.");
    }

    private static void SwapBytes(Span<byte> data, int size)
    {
        for (int i = 0; i + size <= data.Length; i += size)
        {
            data.Slice(i, size).Reverse();
        }
    }

    /// <summary>Parses the Python-literal dict of an .npy header: {'descr': ..., 'fortran_order': ..., 'shape': (...)}.</summary>
    private static (string Descr, bool Fortran, int[] Shape) ParseHeader(string header)
    {
        string? descr = null;
        bool? fortran = null;
        int[]? shape = null;
        var p = new Parser(header);
        p.Expect('{');
        while (true)
        {
            p.SkipWs();
            if (p.TryConsume('}'))
            {
                break;
            }

            string key = p.ReadQuoted();
            p.Expect(':');
            switch (key)
            {
                case "descr":
                    p.SkipWs();
                    if (p.Peek() == '[')
                    {
                        throw new NotSupportedException("Structured dtypes are not supported.");
                    }

                    descr = p.ReadQuoted();
                    break;
                case "fortran_order":
                    fortran = p.ReadBool();
                    break;
                case "shape":
                    shape = p.ReadShape();
                    break;
                default:
                    throw new InvalidDataException($"Unexpected key '{key}' in .npy header.");
            }

            p.SkipWs();
            if (!p.TryConsume(','))
            {
                p.Expect('}');
                break;
            }
        }

        if (descr is null || fortran is null || shape is null)
        {
            throw new InvalidDataException($"Incomplete .npy header: {header.Trim()}");
        }

        return (descr, fortran.Value, shape);
    }

    private ref struct Parser(string text)
    {
        private readonly string _text = text;
        private int _pos;

        public void SkipWs()
        {
            while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos]))
            {
                _pos++;
            }
        }

        public char Peek() => _pos < _text.Length ? _text[_pos] : '\0';

        public bool TryConsume(char c)
        {
            SkipWs();
            if (Peek() == c)
            {
                _pos++;
                return true;
            }

            return false;
        }

        public void Expect(char c)
        {
            if (!TryConsume(c))
            {
                throw new InvalidDataException($"Malformed .npy header: expected '{c}' at {_pos} in: {_text.Trim()}");
            }
        }

        public string ReadQuoted()
        {
            SkipWs();
            char q = Peek();
            if (q is not ('\'' or '"'))
            {
                throw new InvalidDataException($"Malformed .npy header: expected a string at {_pos} in: {_text.Trim()}");
            }

            int end = _text.IndexOf(q, _pos + 1);
            if (end < 0)
            {
                throw new InvalidDataException("Malformed .npy header: unterminated string.");
            }

            string s = _text.Substring(_pos + 1, end - _pos - 1);
            _pos = end + 1;
            return s;
        }

        public bool ReadBool()
        {
            SkipWs();
            if (string.CompareOrdinal(_text, _pos, "True", 0, 4) == 0)
            {
                _pos += 4;
                return true;
            }

            if (string.CompareOrdinal(_text, _pos, "False", 0, 5) == 0)
            {
                _pos += 5;
                return false;
            }

            throw new InvalidDataException($"Malformed .npy header: expected True/False at {_pos}.");
        }

        public int[] ReadShape()
        {
            Expect('(');
            var dims = new List<int>(4);
            while (true)
            {
                if (TryConsume(')'))
                {
                    break;
                }

                SkipWs();
                int start = _pos;
                while (_pos < _text.Length && (char.IsAsciiDigit(_text[_pos]) || _text[_pos] == 'L'))
                {
                    _pos++;
                }

                ReadOnlySpan<char> digits = _text.AsSpan(start, _pos - start).TrimEnd('L');
                if (!int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int d))
                {
                    throw new InvalidDataException($"Malformed or too large dimension in .npy shape at {start}.");
                }

                dims.Add(d);
                if (!TryConsume(','))
                {
                    Expect(')');
                    break;
                }
            }

            return [.. dims];
        }
    }
}
