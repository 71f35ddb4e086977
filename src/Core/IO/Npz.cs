using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;

namespace ActorSeg.Core.IO;

/// <summary>
/// Writes a NumPy <c>.npz</c> archive: a zip of <c>.npy</c> entries (format 1.0, little-endian, C order, data
/// aligned to 64 bytes within each entry). Written to <c>path + ".partial"</c> and renamed atomically by
/// <see cref="Complete"/>; disposing without <see cref="Complete"/> deletes the partial file.
/// Not thread-safe.
/// </summary>
public sealed class NpzWriter : IDisposable
{
    private static readonly DateTimeOffset FixedTimestamp = new(2000, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly string _partialPath;
    private readonly CompressionLevel _level;
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private FileStream? _file;
    private ZipArchive? _zip;
    private bool _completed;

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
        try
        {
            _zip = new ZipArchive(_file, ZipArchiveMode.Create, leaveOpen: true);
        }
        catch
        {
            _file.Dispose();
            _file = null;
            TryDelete(_partialPath);
            throw;
        }
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

        var zip = _zip ?? throw new ObjectDisposedException(nameof(NpzWriter));
        var file = _file ?? throw new ObjectDisposedException(nameof(NpzWriter));
        zip.Dispose(); // writes the central directory
        _zip = null;
        file.Flush(flushToDisk: true);
        file.Dispose();
        _file = null;
        SafePaths.Publish(_partialPath, Path, "npz");
        _completed = true;
    }

    public void Dispose()
    {
        if (_zip is not null)
        {
            try
            {
                _zip.Dispose();
            }
            catch (IOException)
            {
            }
            catch (InvalidDataException)
            {
            }

            _zip = null;
        }

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
        var zip = _zip ?? throw new ObjectDisposedException(nameof(NpzWriter));
        if (_completed)
        {
            throw new InvalidOperationException($"NPZ '{Path}' is already completed.");
        }

        if (!_names.Add(name))
        {
            throw new ArgumentException($"Array '{name}' was already added to '{Path}'.", nameof(name));
        }

        byte[] header = Npy.BuildHeader(descr, shape);
        ZipArchiveEntry entry = zip.CreateEntry(name + ".npy", _level);
        entry.LastWriteTime = FixedTimestamp; // same arrays => byte-identical archive
        using Stream s = entry.Open();
        s.Write(header);
        const int chunk = 1 << 20;
        for (int off = 0; off < data.Length; off += chunk)
        {
            s.Write(data.Slice(off, Math.Min(chunk, data.Length - off)));
        }
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
                    using Stream s = entry.Open();
                    result[name] = Npy.ReadArray(s, entry.Length);
                }
                catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException or IOException or FormatException)
                {
                    throw new InvalidDataException($"'{path}', entry '{entry.FullName}': {ex.Message}", ex);
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
