using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.IO.Compression;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Region reads of the commonest microscopy TIFF page, decoded here instead of through libvips: tiled, chunky, unsigned
/// 8- or 16-bit samples, uncompressed or deflate (with or without the horizontal predictor), classic or BigTIFF, either
/// byte order. Deflate goes through .NET's zlib-ng, about twice as fast here as the system zlib libvips uses, and the
/// samples go straight into the caller's buffer. Any other page (strips, JPEG, LZW, palette, floats, …) is left to
/// libvips: <see cref="TryOpen"/> returns null for it. The samples are the ones libvips reads, value for value
/// (TiffTilesTests compares the two on every layout this reads).
/// </summary>
public sealed class TiffTiles : IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly long _fileLength;
    private readonly long[] _offsets, _counts;
    private readonly int _tw, _th, _tilesAcross, _spp, _bytes;
    private readonly bool _deflate, _predictor, _swap;
    public string Path { get; }
    public int Width { get; }
    public int Height { get; }

    private TiffTiles(string path, SafeFileHandle file, long fileLength, int width, int height, int tw, int th, int spp, int bytes,
        bool deflate, bool predictor, bool swap, long[] offsets, long[] counts)
    {
        Path = path; _file = file; _fileLength = fileLength; Width = width; Height = height; _tw = tw; _th = th; _spp = spp; _bytes = bytes;
        _deflate = deflate; _predictor = predictor; _swap = swap; _offsets = offsets; _counts = counts;
        _tilesAcross = (width + tw - 1) / tw;
    }

    /// <summary>The page's tiles, when this reader handles its layout and it agrees with what libvips found
    /// (<paramref name="width"/> × <paramref name="height"/>, <paramref name="bands"/> samples of 8 or 16 bits); else null.
    /// A malformed directory also gives null: libvips then reads the file, and reports what is wrong with it.</summary>
    public static TiffTiles? TryOpen(string path, int page, int width, int height, int bands, bool wide)
    {
        SafeFileHandle? file = null;
        try
        {
            file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            var t = Parse(path, file, page, width, height, bands, wide);
            if (t is null) file.Dispose();
            return t;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or OverflowException or ArgumentException)
        {
            file?.Dispose();
            return null;
        }
    }

    private static TiffTiles? Parse(string path, SafeFileHandle file, int page, int width, int height, int bands, bool wide)
    {
        long length = RandomAccess.GetLength(file);
        Span<byte> head = stackalloc byte[16];
        if (length < 16 || RandomAccess.Read(file, head, 0) != 16) return null;
        bool le = head[0] == 'I' && head[1] == 'I', be = head[0] == 'M' && head[1] == 'M';
        if (!le && !be) return null;
        ushort U16(ReadOnlySpan<byte> b) => le ? BinaryPrimitives.ReadUInt16LittleEndian(b) : BinaryPrimitives.ReadUInt16BigEndian(b);
        uint U32(ReadOnlySpan<byte> b) => le ? BinaryPrimitives.ReadUInt32LittleEndian(b) : BinaryPrimitives.ReadUInt32BigEndian(b);
        ulong U64(ReadOnlySpan<byte> b) => le ? BinaryPrimitives.ReadUInt64LittleEndian(b) : BinaryPrimitives.ReadUInt64BigEndian(b);
        int magic = U16(head[2..]);
        bool big = magic == 43;
        if (!big && magic != 42) return null;
        if (big && (U16(head[4..]) != 8 || U16(head[6..]) != 0)) return null;
        long ifd = big ? (long)U64(head[8..]) : U32(head[4..]);
        // the page's directory: follow the chain (a loop or an offset outside the file ends it)
        var seen = new HashSet<long>();
        for (int p = 0; ; p++)
        {
            if (ifd <= 0 || ifd >= length || !seen.Add(ifd)) return null;
            if (p == page) break;
            long count = ReadCount(ifd);
            long next = ifd + (big ? 8 : 2) + count * (big ? 20 : 12);
            ifd = ReadOffset(next);
        }
        long n = ReadCount(ifd);
        if (n <= 0 || n > 4096) return null;
        int entry = big ? 20 : 12;
        var dir = new byte[n * entry];
        if (RandomAccess.Read(file, dir, ifd + (big ? 8 : 2)) != dir.Length) return null;
        var tags = new Dictionary<int, long[]>();
        for (int i = 0; i < n; i++)
        {
            var e = dir.AsSpan(i * entry, entry);
            int tag = U16(e), type = U16(e[2..]);
            long cnt = big ? (long)U64(e[4..]) : U32(e[4..]);
            int size = type switch { 3 => 2, 4 => 4, 16 => 8, 1 => 1, _ => 0 }; // SHORT, LONG, LONG8, BYTE
            if (size == 0 || cnt <= 0 || cnt > 1 << 26) continue; // tags of other types are none this reader needs
            if (tag is not (256 or 257 or 258 or 259 or 262 or 277 or 284 or 317 or 322 or 323 or 324 or 325 or 339)) continue;
            // one value, or one per sample (at most 16): a directory that claims more for these is not one this reads
            if (tag is not (324 or 325) && cnt > 16) return null;
            long bytesLen = cnt * size;
            byte[] raw;
            if (bytesLen <= (big ? 8 : 4)) raw = e.Slice(big ? 12 : 8, (int)bytesLen).ToArray();
            else
            {
                long at = big ? (long)U64(e[12..]) : U32(e[8..]);
                if (at <= 0 || at + bytesLen > length) return null;
                raw = new byte[bytesLen];
                if (RandomAccess.Read(file, raw, at) != raw.Length) return null;
            }
            var values = new long[cnt];
            for (int k = 0; k < cnt; k++)
                values[k] = size switch { 1 => raw[k], 2 => U16(raw.AsSpan(k * 2)), 4 => U32(raw.AsSpan(k * 4)), _ => (long)U64(raw.AsSpan(k * 8)) };
            tags[tag] = values;
        }
        long One(int tag, long missing) => tags.TryGetValue(tag, out var v) ? v[0] : missing;
        long w = One(256, -1), h = One(257, -1), spp = One(277, 1), tw = One(322, -1), th = One(323, -1);
        long compression = One(259, 1), photometric = One(262, -1), planar = One(284, 1), predictor = One(317, 1);
        if (w != width || h != height || spp != bands || spp < 1 || spp > 16) return null;
        if (tw <= 0 || th <= 0 || tw % 16 != 0 || th % 16 != 0 || tw > 1 << 14 || th > 1 << 14) return null;
        if (compression is not (1 or 8 or 32946) || predictor is not (1 or 2) || (planar != 1 && spp > 1)) return null;
        if (photometric is not (1 or 2) || (photometric == 2 && spp < 3)) return null;
        int bits = wide ? 16 : 8;
        if (!tags.TryGetValue(258, out var bps) || bps.Any(b => b != bits)) return null;
        if (tags.TryGetValue(339, out var fmt) && fmt.Any(f => f != 1)) return null;
        long tiles = (w + tw - 1) / tw * ((h + th - 1) / th);
        if (!tags.TryGetValue(324, out var offsets) || !tags.TryGetValue(325, out var counts) || offsets.Length != tiles || counts.Length != tiles) return null;
        return new TiffTiles(path, file, length, (int)w, (int)h, (int)tw, (int)th, (int)spp, bits / 8, compression != 1, predictor == 2,
            swap: bits == 16 && (le != BitConverter.IsLittleEndian), offsets, counts);

        long ReadCount(long at)
        {
            Span<byte> b = stackalloc byte[8];
            int need = big ? 8 : 2;
            if (at + need > length || RandomAccess.Read(file, b[..need], at) != need) throw new InvalidDataException("directory outside the file");
            return big ? (long)U64(b) : U16(b);
        }
        long ReadOffset(long at)
        {
            Span<byte> b = stackalloc byte[8];
            int need = big ? 8 : 4;
            if (at + need > length || RandomAccess.Read(file, b[..need], at) != need) throw new InvalidDataException("directory outside the file");
            return big ? (long)U64(b) : U32(b);
        }
    }

    /// <summary>Whether every tile the region meets has data (a sparse tile, offset or length 0, is left to libvips).</summary>
    public bool Covers(int x, int y, int w, int h)
    {
        for (int ty = y / _th; ty <= (y + h - 1) / _th; ty++)
            for (int tx = x / _tw; tx <= (x + w - 1) / _tw; tx++)
            {
                int i = ty * _tilesAcross + tx;
                if (_offsets[i] <= 0 || _counts[i] <= 0) return false;
            }
        return true;
    }

    /// <summary>
    /// Writes the first <paramref name="keep"/> samples of each pixel of the region into <paramref name="dest"/> (row-major,
    /// samples interleaved, 8-bit ones widened). Throws <see cref="InvalidDataException"/> naming the tile when one cannot
    /// be decoded (cut short, corrupt, or a length past the end of the file).
    /// </summary>
    public void ReadRegion(int x, int y, int w, int h, int keep, Span<ushort> dest)
    {
        int rowBytes = _tw * _spp * _bytes, tileBytes = rowBytes * _th;
        byte[] tile = ArrayPool<byte>.Shared.Rent(tileBytes);
        byte[] packed = [];
        try
        {
            for (int ty = y / _th; ty <= (y + h - 1) / _th; ty++)
                for (int tx = x / _tw; tx <= (x + w - 1) / _tw; tx++)
                {
                    int i = ty * _tilesAcross + tx;
                    long off = _offsets[i], len = _counts[i];
                    if (off <= 0 || len <= 0 || off + len > _fileLength || len > tileBytes + (tileBytes >> 4) + (1 << 16))
                        throw new InvalidDataException($"tile {i} (column {tx}, row {ty}) has offset {off} and length {len}, outside the file's {_fileLength} bytes or larger than a tile can be");
                    var data = tile.AsSpan(0, tileBytes);
                    if (_deflate)
                    {
                        if (packed.Length < len) { if (packed.Length > 0) ArrayPool<byte>.Shared.Return(packed); packed = ArrayPool<byte>.Shared.Rent((int)len); }
                        if (RandomAccess.Read(_file, packed.AsSpan(0, (int)len), off) != len) throw new InvalidDataException($"tile {i} is cut short");
                        Inflate(packed, (int)len, data, i);
                    }
                    else if (len < tileBytes || RandomAccess.Read(_file, data, off) != tileBytes) throw new InvalidDataException($"tile {i} is cut short");
                    // the rows of this tile inside the region
                    int x0 = Math.Max(x, tx * _tw), x1 = Math.Min(x + w, Math.Min(Width, (tx + 1) * _tw));
                    int y0 = Math.Max(y, ty * _th), y1 = Math.Min(y + h, Math.Min(Height, (ty + 1) * _th));
                    for (int yy = y0; yy < y1; yy++)
                    {
                        var row = data.Slice((yy - ty * _th) * rowBytes, rowBytes);
                        var to = dest.Slice(((yy - y) * w + (x0 - x)) * keep, (x1 - x0) * keep);
                        int from = (x0 - tx * _tw) * _spp;
                        if (_bytes == 1) Row(row, from, to, x1 - x0, keep);
                        else
                        {
                            var wide = MemoryMarshal.Cast<byte, ushort>(row);
                            if (_swap) for (int k = 0; k < from + (x1 - x0) * _spp; k++) wide[k] = BinaryPrimitives.ReverseEndianness(wide[k]);
                            Row(wide, from, to, x1 - x0, keep);
                        }
                    }
                }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(tile);
            if (packed.Length > 0) ArrayPool<byte>.Shared.Return(packed);
        }
    }

    /// <summary>Whether deflate tiles go through libdeflate (the system's libdeflate0, which libtiff needs): a whole-buffer
    /// decoder 1.3-1.7× as fast here as the zlib-ng stream, with the same bytes out. Off where the library is missing
    /// (then the zlib-ng stream decodes) and in tests that compare the two.</summary>
    internal static bool UseLibDeflate { get; set; } = LibDeflate.Available;

    private static void Inflate(byte[] packed, int len, Span<byte> data, int tile)
    {
        if (UseLibDeflate)
        {
            switch (LibDeflate.ZlibDecompress(packed.AsSpan(0, len), data, out int written))
            {
                case LibDeflate.Success when written == data.Length: return;
                case LibDeflate.Success: throw new InvalidDataException($"tile {tile} decompresses to {written} bytes, not {data.Length}");
                case LibDeflate.BadData: throw new InvalidDataException($"tile {tile} is not a valid deflate stream (corrupt data or checksum)");
                // a stream longer than the tile: the stream decoder below takes the tile's bytes and ignores the rest, as it always did
            }
        }
        try
        {
            using var z = new ZLibStream(new MemoryStream(packed, 0, len, writable: false), CompressionMode.Decompress);
            int got = 0;
            while (got < data.Length)
            {
                int r = z.Read(data[got..]);
                if (r == 0) break;
                got += r;
            }
            if (got < data.Length) throw new InvalidDataException($"tile {tile} decompresses to {got} bytes, not {data.Length}");
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith("tile ", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"tile {tile} is not a valid deflate stream ({e.Message})", e);
        }
    }

    /// <summary>One tile row of 8- or 16-bit samples into the region's columns: with the predictor, each sample is the
    /// running sum of the differences from the tile's first column (wrapping at the sample's width), accumulated on the
    /// way; the kept samples of each pixel widened to 16 bits.</summary>
    private void Row<T>(Span<T> row, int from, Span<ushort> to, int pixels, int keep) where T : unmanaged, IBinaryInteger<T>
    {
        int end = from + pixels * _spp;
        if (_spp == 1)
        {
            ref T r = ref MemoryMarshal.GetReference(row);
            ref ushort t = ref MemoryMarshal.GetReference(to);
            if (!_predictor) { for (int k = from; k < end; k++) Unsafe.Add(ref t, k - from) = ushort.CreateTruncating(Unsafe.Add(ref r, k)); return; }
            if (Sse2.IsSupported && Ssse3.IsSupported)
            {
                if (typeof(T) == typeof(byte)) { PredictRow8(MemoryMarshal.Cast<T, byte>(row), from, end, to); return; }
                if (typeof(T) == typeof(ushort)) { PredictRow16(MemoryMarshal.Cast<T, ushort>(row), from, end, to); return; }
            }
            T acc = T.Zero;
            int j = 0;
            for (; j < from; j++) acc += Unsafe.Add(ref r, j);
            for (; j < end; j++) { acc += Unsafe.Add(ref r, j); Unsafe.Add(ref t, j - from) = ushort.CreateTruncating(acc); }
            return;
        }
        if (_spp == 3)
        {
            // colour: three running sums (one per channel, each wrapping as the scalar sum does), widened on the way
            ref T r = ref MemoryMarshal.GetReference(row);
            ref ushort t = ref MemoryMarshal.GetReference(to);
            T a0 = T.Zero, a1 = T.Zero, a2 = T.Zero;
            int k = 0;
            if (_predictor)
                for (; k < from; k += 3) { a0 += Unsafe.Add(ref r, k); a1 += Unsafe.Add(ref r, k + 1); a2 += Unsafe.Add(ref r, k + 2); }
            else k = from;
            for (int o = 0; k < end; k += 3, o += keep)
            {
                if (_predictor) { a0 += Unsafe.Add(ref r, k); a1 += Unsafe.Add(ref r, k + 1); a2 += Unsafe.Add(ref r, k + 2); }
                else { a0 = Unsafe.Add(ref r, k); a1 = Unsafe.Add(ref r, k + 1); a2 = Unsafe.Add(ref r, k + 2); }
                Unsafe.Add(ref t, o) = ushort.CreateTruncating(a0);
                if (keep > 1) Unsafe.Add(ref t, o + 1) = ushort.CreateTruncating(a1);
                if (keep > 2) Unsafe.Add(ref t, o + 2) = ushort.CreateTruncating(a2);
            }
            return;
        }
        if (_predictor) for (int k = _spp; k < end; k++) row[k] += row[k - _spp];
        var src = row[from..end];
        for (int p = 0; p < pixels; p++)
            for (int c = 0; c < keep; c++) to[p * keep + c] = ushort.CreateTruncating(src[p * _spp + c]);
    }

    /// <summary>
    /// The predictor's running sum over one row of single 8-bit samples, 16 at a time: within a vector by four shifted
    /// adds (each lane then holds the sum of itself and every lane below it, modulo 256 as the scalar sum wraps), plus the
    /// sum so far broadcast from the vector before. Columns before <paramref name="from"/> are summed, not stored. The
    /// same samples as the scalar loop.
    /// </summary>
    private static void PredictRow8(ReadOnlySpan<byte> row, int from, int end, Span<ushort> to)
    {
        ref byte r = ref MemoryMarshal.GetReference(row);
        ref ushort t = ref MemoryMarshal.GetReference(to);
        var last = Vector128.Create((byte)15);
        var carry = Vector128<byte>.Zero;
        int j = 0;
        for (; j + 16 <= from; j += 16) carry = Vector128.Shuffle(Prefix8(Vector128.LoadUnsafe(ref r, (nuint)j)) + carry, last);
        byte acc = carry.GetElement(0);
        for (; j < from; j++) acc += Unsafe.Add(ref r, j);
        carry = Vector128.Create(acc);
        for (; j + 16 <= end; j += 16)
        {
            var v = Prefix8(Vector128.LoadUnsafe(ref r, (nuint)j)) + carry;
            Vector128.WidenLower(v).StoreUnsafe(ref t, (nuint)(j - from));
            Vector128.WidenUpper(v).StoreUnsafe(ref t, (nuint)(j - from + 8));
            carry = Vector128.Shuffle(v, last);
        }
        acc = carry.GetElement(0);
        for (; j < end; j++) { acc += Unsafe.Add(ref r, j); Unsafe.Add(ref t, j - from) = acc; }
    }

    /// <summary><see cref="PredictRow8"/> for 16-bit samples (modulo 65,536), 8 at a time.</summary>
    private static void PredictRow16(ReadOnlySpan<ushort> row, int from, int end, Span<ushort> to)
    {
        ref ushort r = ref MemoryMarshal.GetReference(row);
        ref ushort t = ref MemoryMarshal.GetReference(to);
        var last = Vector128.Create((ushort)7);
        var carry = Vector128<ushort>.Zero;
        int j = 0;
        for (; j + 8 <= from; j += 8) carry = Vector128.Shuffle(Prefix16(Vector128.LoadUnsafe(ref r, (nuint)j)) + carry, last);
        ushort acc = carry.GetElement(0);
        for (; j < from; j++) acc += Unsafe.Add(ref r, j);
        carry = Vector128.Create(acc);
        for (; j + 8 <= end; j += 8)
        {
            var v = Prefix16(Vector128.LoadUnsafe(ref r, (nuint)j)) + carry;
            v.StoreUnsafe(ref t, (nuint)(j - from));
            carry = Vector128.Shuffle(v, last);
        }
        acc = carry.GetElement(0);
        for (; j < end; j++) { acc += Unsafe.Add(ref r, j); Unsafe.Add(ref t, j - from) = acc; }
    }

    /// <summary>Lane k becomes the sum (modulo 256) of lanes 0..k.</summary>
    private static Vector128<byte> Prefix8(Vector128<byte> v)
    {
        v += Sse2.ShiftLeftLogical128BitLane(v, 1);
        v += Sse2.ShiftLeftLogical128BitLane(v, 2);
        v += Sse2.ShiftLeftLogical128BitLane(v, 4);
        return v + Sse2.ShiftLeftLogical128BitLane(v, 8);
    }

    /// <summary>Lane k becomes the sum (modulo 65,536) of lanes 0..k.</summary>
    private static Vector128<ushort> Prefix16(Vector128<ushort> v)
    {
        v += Sse2.ShiftLeftLogical128BitLane(v.AsByte(), 2).AsUInt16();
        v += Sse2.ShiftLeftLogical128BitLane(v.AsByte(), 4).AsUInt16();
        return v + Sse2.ShiftLeftLogical128BitLane(v.AsByte(), 8).AsUInt16();
    }

    public void Dispose() => _file.Dispose();
}

/// <summary>libdeflate's whole-buffer zlib decoder, when the system has the library (Debian: libdeflate0). One decompressor
/// per thread, kept for the thread's life (a few KB).</summary>
internal static unsafe class LibDeflate
{
    public const int Success = 0, BadData = 1, ShortOutput = 2, InsufficientSpace = 3, Unavailable = -1;
    private static readonly delegate* unmanaged<IntPtr> Alloc;
    private static readonly delegate* unmanaged<IntPtr, byte*, nuint, byte*, nuint, nuint*, int> Decompress;
    [ThreadStatic] private static IntPtr t_decompressor;

    public static bool Available { get; }

    static LibDeflate()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libdeflate.so.0", out var lib)) return;
        if (!NativeLibrary.TryGetExport(lib, "libdeflate_alloc_decompressor", out var alloc)
            || !NativeLibrary.TryGetExport(lib, "libdeflate_zlib_decompress", out var decompress)) return;
        Alloc = (delegate* unmanaged<IntPtr>)alloc;
        Decompress = (delegate* unmanaged<IntPtr, byte*, nuint, byte*, nuint, nuint*, int>)decompress;
        Available = true;
    }

    /// <summary>Decodes the zlib stream <paramref name="src"/> into <paramref name="dest"/>; returns libdeflate's result
    /// (<see cref="Success"/> with the bytes <paramref name="written"/>, <see cref="BadData"/>, <see cref="InsufficientSpace"/>)
    /// or <see cref="Unavailable"/>.</summary>
    public static int ZlibDecompress(ReadOnlySpan<byte> src, Span<byte> dest, out int written)
    {
        written = 0;
        if (!Available) return Unavailable;
        if (t_decompressor == IntPtr.Zero && (t_decompressor = Alloc()) == IntPtr.Zero) return Unavailable;
        nuint actual = 0;
        int rc;
        fixed (byte* s = src)
        fixed (byte* d = dest)
            rc = Decompress(t_decompressor, s, (nuint)src.Length, d, (nuint)dest.Length, &actual);
        written = (int)actual;
        return rc;
    }
}
