using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.IO.Compression;
using ActorSeg.Core.IO;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Region reads of the commonest microscopy TIFF page, decoded here instead of through libvips: tiled or striped, chunky
/// or in separate planes (tiled separate planes, which libvips refuses, included),
/// unsigned 8- or 16-bit samples, uncompressed or deflate (with or without the horizontal predictor), classic or BigTIFF,
/// either byte order. Deflate goes through libdeflate or .NET's zlib-ng, faster here than the zlib libvips uses, the
/// samples go straight into the caller's buffer, and every deflate stream's Adler-32 is checked: libtiff stops inflating
/// when a tile or strip is full and never looks at it, so a flipped bit can come back from libvips as wrong pixels
/// without an error. A strip is read as a tile as wide as the image (at most 32 MiB of samples; a page in larger strips
/// is left to libvips). Any other page (JPEG, LZW, palette, floats, …) is left to libvips: <see cref="TryOpen"/> returns
/// null for it. The samples are the ones libvips reads, value for value
/// (TiffTilesTests compares the two on every layout this reads).
/// </summary>
public sealed class TiffTiles : IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly long _fileLength;
    private readonly long[] _offsets, _counts;
    private readonly int _tw, _th, _tilesAcross, _spp, _bytes;
    private readonly bool _deflate, _predictor, _swap;
    /// <summary>Strips: a tile as wide as the image, the last one holding only the rows left (tiles are always whole).</summary>
    private readonly bool _strips;
    /// <summary>Separate planes (PlanarConfiguration 2): every tile holds one sample of its pixels, the tiles of sample 0
    /// first, then those of sample 1, … (libvips refuses such pages when they are tiled).</summary>
    private readonly bool _planar;
    private readonly int _tilesPerPlane;
    public string Path { get; }
    public int Width { get; }
    public int Height { get; }

    private TiffTiles(string path, SafeFileHandle file, long fileLength, int width, int height, int tw, int th, int spp, int bytes,
        bool deflate, bool predictor, bool swap, long[] offsets, long[] counts, bool strips, bool planar)
    {
        _strips = strips; _planar = planar;
        _tilesPerPlane = (width + tw - 1) / tw * ((height + th - 1) / th);
        Path = path; _file = file; _fileLength = fileLength; Width = width; Height = height; _tw = tw; _th = th; _spp = spp; _bytes = bytes;
        _deflate = deflate; _predictor = predictor; _swap = swap; _offsets = offsets; _counts = counts;
        _tilesAcross = (width + tw - 1) / tw;
    }

    /// <summary>The page's tiles, when this reader handles its layout and it agrees with what libvips found
    /// (<paramref name="width"/> × <paramref name="height"/>, <paramref name="bands"/> samples of 8 or 16 bits); else null.
    /// A malformed directory also gives null: libvips then reads the file, and reports what is wrong with it.</summary>
    /// <param name="layout">the page's directory when the caller has read it already (else it is read here)</param>
    public static TiffTiles? TryOpen(string path, int page, int width, int height, int bands, bool wide, TiffPageLayout? layout = null)
    {
        SafeFileHandle? file = null;
        try
        {
            file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            var t = Parse(path, file, layout ?? TiffPageLayout.Read(file, page), width, height, bands, wide);
            if (t is null) file.Dispose();
            return t;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or OverflowException or ArgumentException)
        {
            file?.Dispose();
            return null;
        }
    }

    /// <summary>
    /// Plane <paramref name="plane"/> of an 8- or 16-bit unsigned stack stored raw from page 0's first byte (ImageJ's layout
    /// over 4 GB, <see cref="TiffPageLayout.ContiguousPlanes"/>): one uncompressed strip, read row by row like any other
    /// (<see cref="ReadRawRows"/>); null for any other page, or a plane past the end of the file.
    /// </summary>
    public static TiffTiles? ContiguousPlane(string path, TiffPageLayout page0, int plane)
    {
        if (page0.ContiguousPlaneBytes() is not { } bytes || page0.All(273) is not { } first || plane < 0 || plane >= page0.ContiguousPlanes()) return null;
        long bits = page0.One(258, 8);
        if (bits is not (8 or 16) || page0.One(339, 1) != 1) return null;
        int w = (int)page0.Width, h = (int)page0.Height, bpp = (int)bits / 8;
        SafeFileHandle? file = null;
        try
        {
            file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            return new TiffTiles(path, file, page0.FileLength, w, h, w, h, 1, bpp, deflate: false, predictor: false,
                swap: bpp == 2 && page0.LittleEndian != BitConverter.IsLittleEndian, [first[0] + plane * bytes], [bytes], strips: true, planar: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            file?.Dispose();
            return null;
        }
    }


    private static TiffTiles? Parse(string path, SafeFileHandle file, TiffPageLayout? d, int width, int height, int bands, bool wide)
    {
        if (d is null) return null;
        long w = d.Width, h = d.Height, spp = d.SamplesPerPixel, tw = d.One(322, -1), th = d.One(323, -1);
        long compression = d.Compression, photometric = d.One(262, -1), planar = d.One(284, 1), predictor = d.One(317, 1);
        if (w != width || h != height || spp != bands || spp < 1 || spp > 16) return null;
        bool strips = !d.Tiled;
        if (strips)
        {
            // a strip: a tile as wide as the image and RowsPerStrip high (the whole image when the tag is absent)
            tw = w; th = d.RowsPerStrip;
            // a strip is decoded whole into a buffer, unless it is uncompressed chunky data without the predictor: then each
            // row's own bytes are read (ReadRawRows), and a strip as large as the image (ImageJ's) costs no buffer
            bool raw = compression == 1 && predictor == 1 && planar != 2;
            if (!raw && tw * th * (planar == 2 ? 1 : spp) * (wide ? 2 : 1) > 32 << 20) return null;
        }
        else if (tw <= 0 || th <= 0 || tw % 16 != 0 || th % 16 != 0 || tw > 1 << 14 || th > 1 << 14) return null;
        if (compression is not (1 or 8 or 32946) || predictor is not (1 or 2) || planar is not (1 or 2)) return null;
        bool separate = planar == 2 && spp > 1;
        if (photometric is not (1 or 2) || (photometric == 2 && spp < 3)) return null;
        int bits = wide ? 16 : 8;
        if (d.All(258) is not { } bps || bps.Any(b => b != bits)) return null;
        if (d.All(339) is { } fmt && fmt.Any(f => f != 1)) return null;
        long tiles = (w + tw - 1) / tw * ((h + th - 1) / th) * (separate ? spp : 1);
        if (d.All(strips ? 273 : 324) is not { } offsets || d.All(strips ? 279 : 325) is not { } counts || offsets.Length != tiles || counts.Length != tiles) return null;
        return new TiffTiles(path, file, d.FileLength, (int)w, (int)h, (int)tw, (int)th, (int)spp, bits / 8, compression != 1, predictor == 2,
            swap: bits == 16 && (d.LittleEndian != BitConverter.IsLittleEndian), offsets, counts, strips, separate);
    }

    /// <summary>Whether every tile the region meets has data (a sparse tile, offset or length 0, is left to libvips).</summary>
    public bool Covers(int x, int y, int w, int h)
    {
        for (int p = 0; p < (_planar ? _spp : 1); p++)
            for (int ty = y / _th; ty <= (y + h - 1) / _th; ty++)
                for (int tx = x / _tw; tx <= (x + w - 1) / _tw; tx++)
                {
                    int i = p * _tilesPerPlane + ty * _tilesAcross + tx;
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
        if (_planar) { ReadPlanes(x, y, w, h, keep, dest); return; }
        if (_strips && !_deflate && !_predictor) { ReadRawRows(x, y, w, h, keep, dest); return; }
        int rowBytes = _tw * _spp * _bytes, tileBytes = rowBytes * _th;
        byte[] tile = ArrayPool<byte>.Shared.Rent(tileBytes);
        byte[] packed = [];
        try
        {
            for (int ty = y / _th; ty <= (y + h - 1) / _th; ty++)
                for (int tx = x / _tw; tx <= (x + w - 1) / _tw; tx++)
                {
                    int i = ty * _tilesAcross + tx;
                    var data = Decode(i, ty, _strips ? $"strip {i}" : $"tile {i} (column {tx}, row {ty})", tile, rowBytes, tileBytes, ref packed);
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

    /// <summary>The region from uncompressed strips: of each row, only the region's own bytes are read (a strip holds whole
    /// image rows, and ImageJ keeps a page in one strip: reading the strips whole would read the image's full width for a
    /// narrow region).</summary>
    private void ReadRawRows(int x, int y, int w, int h, int keep, Span<ushort> dest)
    {
        int pixel = _spp * _bytes, rowBytes = _tw * pixel, segment = w * pixel;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(segment);
        try
        {
            var seg = buffer.AsSpan(0, segment);
            for (int yy = y; yy < y + h; yy++)
            {
                int s = yy / _th;
                long off = _offsets[s], len = _counts[s], need = (long)Math.Min(_th, Height - s * _th) * rowBytes;
                if (off <= 0 || len < need || off + need > _fileLength)
                    throw new InvalidDataException($"strip {s} has offset {off} and length {len}, outside the file's {_fileLength} bytes or shorter than its {need} bytes of rows");
                if (RandomAccess.Read(_file, seg, off + (long)(yy - s * _th) * rowBytes + (long)x * pixel) != segment) throw new InvalidDataException($"strip {s} is cut short");
                var to = dest.Slice((yy - y) * w * keep, w * keep);
                if (_bytes == 1) Row(seg, 0, to, w, keep);
                else
                {
                    var wide = MemoryMarshal.Cast<byte, ushort>(seg);
                    if (_swap) for (int k = 0; k < wide.Length; k++) wide[k] = BinaryPrimitives.ReverseEndianness(wide[k]);
                    Row(wide, 0, to, w, keep);
                }
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buffer); }
    }

    /// <summary>Chunk <paramref name="i"/> (<paramref name="what"/> names it in errors) read and decoded into
    /// <paramref name="tile"/>: a whole tile, or the rows the image has left in the last strip. <paramref name="packed"/> is
    /// the compressed bytes' pooled buffer, grown as needed.</summary>
    private Span<byte> Decode(int i, int ty, string what, byte[] tile, int rowBytes, int tileBytes, ref byte[] packed)
    {
        long off = _offsets[i], len = _counts[i];
        if (off <= 0 || len <= 0 || off + len > _fileLength || len > tileBytes + (tileBytes >> 4) + (1 << 16))
            throw new InvalidDataException($"{what} has offset {off} and length {len}, outside the file's {_fileLength} bytes or larger than a {Unit} can be");
        var data = tile.AsSpan(0, _strips ? rowBytes * Math.Min(_th, Height - ty * _th) : tileBytes);
        if (_deflate)
        {
            if (packed.Length < len) { if (packed.Length > 0) ArrayPool<byte>.Shared.Return(packed); packed = ArrayPool<byte>.Shared.Rent((int)len); }
            if (RandomAccess.Read(_file, packed.AsSpan(0, (int)len), off) != len) throw new InvalidDataException($"{Unit} {i} is cut short");
            Inflate(packed, (int)len, data, $"{Unit} {i}");
        }
        else if (len < data.Length || RandomAccess.Read(_file, data, off) != data.Length) throw new InvalidDataException($"{Unit} {i} is cut short");
        return data;
    }

    /// <summary>The region from separate planes: each kept sample's tiles decoded in turn (one sample a pixel, the predictor
    /// summing along each tile row of that sample) and their values placed at that sample's position in every pixel.</summary>
    private void ReadPlanes(int x, int y, int w, int h, int keep, Span<ushort> dest)
    {
        int rowBytes = _tw * _bytes, tileBytes = rowBytes * _th;
        byte[] tile = ArrayPool<byte>.Shared.Rent(tileBytes);
        ushort[] values = ArrayPool<ushort>.Shared.Rent(_tw);
        byte[] packed = [];
        try
        {
            for (int p = 0; p < keep; p++)
                for (int ty = y / _th; ty <= (y + h - 1) / _th; ty++)
                    for (int tx = x / _tw; tx <= (x + w - 1) / _tw; tx++)
                    {
                        int i = p * _tilesPerPlane + ty * _tilesAcross + tx;
                        var data = Decode(i, ty, $"{Unit} {i} (sample {p}, column {tx}, row {ty})", tile, rowBytes, tileBytes, ref packed);
                        int x0 = Math.Max(x, tx * _tw), x1 = Math.Min(x + w, Math.Min(Width, (tx + 1) * _tw));
                        int y0 = Math.Max(y, ty * _th), y1 = Math.Min(y + h, Math.Min(Height, (ty + 1) * _th));
                        int from = x0 - tx * _tw, end = x1 - tx * _tw;
                        for (int yy = y0; yy < y1; yy++)
                        {
                            var row = data.Slice((yy - ty * _th) * rowBytes, rowBytes);
                            if (_bytes == 1)
                            {
                                byte acc = 0;
                                for (int k = 0; k < end; k++) { acc = _predictor ? (byte)(acc + row[k]) : row[k]; values[k] = acc; }
                            }
                            else
                            {
                                var wide = MemoryMarshal.Cast<byte, ushort>(row);
                                ushort acc = 0;
                                for (int k = 0; k < end; k++)
                                {
                                    ushort v = _swap ? BinaryPrimitives.ReverseEndianness(wide[k]) : wide[k];
                                    acc = _predictor ? (ushort)(acc + v) : v;
                                    values[k] = acc;
                                }
                            }
                            var to = dest.Slice(((yy - y) * w + (x0 - x)) * keep);
                            for (int k = from, o = p; k < end; k++, o += keep) to[o] = values[k];
                        }
                    }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(tile);
            ArrayPool<ushort>.Shared.Return(values);
            if (packed.Length > 0) ArrayPool<byte>.Shared.Return(packed);
        }
    }

    /// <summary>Whether deflate tiles go through libdeflate (the system's libdeflate0, which libtiff needs): a whole-buffer
    /// decoder 1.3-1.7× as fast here as the zlib-ng stream, with the same bytes out. Off where the library is missing
    /// (then the zlib-ng stream decodes) and in tests that compare the two.</summary>
    internal static bool UseLibDeflate { get; set; } = LibDeflate.Available;

    private string Unit => _strips ? "strip" : "tile";

    /// <param name="tile">what the stream is, for messages ("tile 5", "strip 3")</param>
    private static void Inflate(byte[] packed, int len, Span<byte> data, string tile)
    {
        if (UseLibDeflate)
        {
            switch (LibDeflate.ZlibDecompress(packed.AsSpan(0, len), data, out int written))
            {
                case LibDeflate.Success when written == data.Length: return;
                case LibDeflate.Success: throw new InvalidDataException($"{tile} decompresses to {written} bytes, not {data.Length}");
                case LibDeflate.BadData: throw new InvalidDataException($"{tile} is not a valid deflate stream (corrupt data or checksum)");
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
            if (got < data.Length) throw new InvalidDataException($"{tile} decompresses to {got} bytes, not {data.Length}");
            // one more read reaches the stream's end, where zlib checks the Adler-32 (more data than the tile holds is ignored)
            Span<byte> rest = stackalloc byte[64];
            z.Read(rest);
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(tile, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{tile} is not a valid deflate stream ({InflateErrors.Why(e)})", e);
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
