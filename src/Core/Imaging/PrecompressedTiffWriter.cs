using System.Buffers.Binary;
using System.Text;

namespace ActorSeg.Core.Imaging;

/// <summary>One tiled directory (image) of a <see cref="PrecompressedTiffWriter"/>: its size, tiling and the tags that
/// say how its already-compressed tiles are to be decoded.</summary>
/// <param name="Compression">TIFF Compression tag value, any (e.g. Aperio's 33003/33005 for JPEG 2000 codestreams)</param>
/// <param name="Photometric">PhotometricInterpretation: 2 RGB, 6 YCbCr, 1 grey</param>
/// <param name="Description">ImageDescription (ASCII), or null</param>
/// <param name="PixelSizeMicrons">X/YResolution in pixels per centimetre, when given</param>
/// <param name="YCbCrSubsampling">YCbCrSubsampling (horizontal, vertical), for Photometric 6</param>
public sealed record TiffDirectory(int Width, int Height, int TileSize, ushort Compression, ushort Photometric, int SamplesPerPixel = 3, int BitsPerSample = 8,
    string? Description = null, double? PixelSizeMicrons = null, (ushort H, ushort V)? YCbCrSubsampling = null);

/// <summary>
/// Writes a little-endian TIFF or BigTIFF of several tiled directories (a pyramid, as whole-slide formats keep it) whose
/// tiles the caller has already compressed with whatever codec the directory's Compression tag names: the writer only
/// places bytes and writes the directories. Tiles of one directory are appended as they come (any order), then
/// <see cref="EndDirectory"/> writes its IFD after them and links it from the previous one, so memory holds only the
/// tile offsets and byte counts of the directory being written. The stream must be writable and seekable.
/// </summary>
public sealed class PrecompressedTiffWriter
{
    private const ushort TypeAscii = 2, TypeShort = 3, TypeLong = 4, TypeRational = 5, TypeLong8 = 16;
    private readonly Stream _s;
    private readonly bool _big;
    private long _nextIfdPointer; // where the offset of the next IFD goes (the header's, then each IFD's last field)
    private TiffDirectory? _dir;
    private long[] _offsets = [], _counts = [];
    private int _tilesAcross, _written;
    private long _end; // bytes written so far (the stream's length)

    public PrecompressedTiffWriter(Stream stream, bool bigTiff)
    {
        if (!stream.CanSeek || !stream.CanWrite) throw new ArgumentException("the stream must be writable and seekable", nameof(stream));
        _s = stream; _big = bigTiff;
        Span<byte> h = stackalloc byte[16];
        h.Clear();
        h[0] = h[1] = (byte)'I';
        if (bigTiff)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(h[2..], 43);
            BinaryPrimitives.WriteUInt16LittleEndian(h[4..], 8);
            _s.Write(h);
            _nextIfdPointer = 8; _end = 16;
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(h[2..], 42);
            _s.Write(h[..8]);
            _nextIfdPointer = 4; _end = 8;
        }
    }

    public void BeginDirectory(TiffDirectory d)
    {
        if (_dir is not null) throw new InvalidOperationException("the previous directory is not ended");
        if (d.Width <= 0 || d.Height <= 0 || d.TileSize <= 0 || d.TileSize % 16 != 0)
            throw new ArgumentException($"a {d.Width}x{d.Height} directory with {d.TileSize}-pixel tiles (a positive multiple of 16) is not writable", nameof(d));
        _dir = d;
        _tilesAcross = (d.Width + d.TileSize - 1) / d.TileSize;
        long n = (long)_tilesAcross * ((d.Height + d.TileSize - 1) / d.TileSize);
        _offsets = new long[n]; _counts = new long[n]; _written = 0;
    }

    /// <summary>Appends one compressed tile of the current directory (a tile covers TileSize² pixels, edge tiles included).</summary>
    public void WriteTile(int col, int row, ReadOnlySpan<byte> data)
    {
        var d = _dir ?? throw new InvalidOperationException("no directory begun");
        int i = row * _tilesAcross + col;
        if (col < 0 || col >= _tilesAcross || row < 0 || i >= _offsets.Length) throw new ArgumentOutOfRangeException(nameof(col), $"tile ({col}, {row}) outside the {d.Width}x{d.Height} directory");
        if (_counts[i] != 0) throw new InvalidOperationException($"tile ({col}, {row}) was already written");
        if (data.IsEmpty) throw new ArgumentException("an empty tile", nameof(data));
        long at = Align(_end, 2); // word-aligned
        CheckOffset(at + data.Length);
        _s.Position = at;
        _s.Write(data);
        _end = at + data.Length;
        _offsets[i] = at; _counts[i] = data.Length; _written++;
    }

    /// <summary>Writes the current directory's IFD after its tiles and links it into the chain.</summary>
    public void EndDirectory()
    {
        var d = _dir ?? throw new InvalidOperationException("no directory begun");
        if (_written != _offsets.Length) throw new InvalidOperationException($"{_offsets.Length - _written} of {_offsets.Length} tiles of the {d.Width}x{d.Height} directory are missing");
        var e = new List<(ushort Tag, ushort Type, long Count, byte[] Payload)>
        {
            (256, TypeLong, 1, U32(d.Width)), (257, TypeLong, 1, U32(d.Height)),
            (258, TypeShort, d.SamplesPerPixel, Shorts(Enumerable.Repeat((ushort)d.BitsPerSample, d.SamplesPerPixel))),
            (259, TypeShort, 1, Shorts([d.Compression])), (262, TypeShort, 1, Shorts([d.Photometric])),
        };
        if (d.Description is { } desc) { var a = Encoding.ASCII.GetBytes(desc + "\0"); e.Add((270, TypeAscii, a.Length, a)); }
        e.Add((277, TypeShort, 1, Shorts([(ushort)d.SamplesPerPixel])));
        if (d.PixelSizeMicrons is { } um)
        {
            var r = new byte[8];
            BinaryPrimitives.WriteUInt32LittleEndian(r, (uint)Math.Round(10_000.0 / um * 1000)); // pixels per centimetre, in thousandths
            BinaryPrimitives.WriteUInt32LittleEndian(r.AsSpan(4), 1000);
            e.Add((282, TypeRational, 1, r)); e.Add((283, TypeRational, 1, r));
        }
        e.Add((284, TypeShort, 1, Shorts([1])));
        if (d.PixelSizeMicrons is not null) e.Add((296, TypeShort, 1, Shorts([3])));
        e.Add((322, TypeLong, 1, U32(d.TileSize))); e.Add((323, TypeLong, 1, U32(d.TileSize)));
        e.Add((324, _big ? TypeLong8 : TypeLong, _offsets.Length, Offsets(_offsets)));
        e.Add((325, _big ? TypeLong8 : TypeLong, _counts.Length, Offsets(_counts)));
        if (d.YCbCrSubsampling is { } ss) e.Add((530, TypeShort, 2, Shorts([ss.H, ss.V])));

        int entry = _big ? 20 : 12, inline = _big ? 8 : 4;
        long ifd = Align(_end, 8);
        long head = (_big ? 8 : 2) + (long)e.Count * entry + (_big ? 8 : 4);
        long total = head;
        foreach (var x in e) if (x.Payload.Length > inline) total = Align(total, 8) + x.Payload.Length;
        CheckOffset(ifd + total);
        var buf = new byte[total];
        var span = buf.AsSpan();
        if (_big) BinaryPrimitives.WriteUInt64LittleEndian(span, (ulong)e.Count); else BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)e.Count);
        int pos = _big ? 8 : 2;
        long extra = head;
        foreach (var (tag, type, count, payload) in e) // already in ascending tag order, as TIFF requires
        {
            var en = span.Slice(pos, entry);
            BinaryPrimitives.WriteUInt16LittleEndian(en, tag);
            BinaryPrimitives.WriteUInt16LittleEndian(en[2..], type);
            if (_big) BinaryPrimitives.WriteUInt64LittleEndian(en[4..], (ulong)count); else BinaryPrimitives.WriteUInt32LittleEndian(en[4..], (uint)count);
            var value = en[(_big ? 12 : 8)..];
            if (payload.Length <= inline) payload.CopyTo(value);
            else
            {
                extra = Align(extra, 8);
                payload.CopyTo(span[(int)extra..]);
                WriteOffset(value, ifd + extra);
                extra += payload.Length;
            }
            pos += entry;
        }
        // the next-IFD field (at pos) stays 0 until another directory follows
        _s.Position = ifd;
        _s.Write(buf);
        _end = ifd + buf.Length;
        Span<byte> p = stackalloc byte[8];
        WriteOffset(p, ifd);
        _s.Position = _nextIfdPointer;
        _s.Write(p[..(_big ? 8 : 4)]);
        _nextIfdPointer = ifd + pos;
        _dir = null;
    }

    private void WriteOffset(Span<byte> dest, long value)
    {
        if (_big) BinaryPrimitives.WriteInt64LittleEndian(dest, value); else BinaryPrimitives.WriteUInt32LittleEndian(dest, checked((uint)value));
    }

    private void CheckOffset(long end)
    {
        if (!_big && end > uint.MaxValue) throw new IOException("the file outgrows the 4 GiB of classic TIFF; write it as BigTIFF");
    }

    private byte[] Offsets(long[] values)
    {
        var p = new byte[values.Length * (_big ? 8 : 4)];
        for (int i = 0; i < values.Length; i++) WriteOffset(p.AsSpan(i * (_big ? 8 : 4)), values[i]);
        return p;
    }

    private static long Align(long v, int a) => (v + a - 1) / a * a;

    private static byte[] U32(int v)
    {
        var p = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(p, (uint)v);
        return p;
    }

    private static byte[] Shorts(IEnumerable<ushort> values)
    {
        var v = values.ToArray();
        var p = new byte[v.Length * 2];
        for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteUInt16LittleEndian(p.AsSpan(i * 2), v[i]);
        return p;
    }
}
