using ActorSeg.Core.IO;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ActorSeg.Core.Imaging;

/// <summary>Sample type of a TIFF written by <see cref="TiledTiffWriter"/>.</summary>
public enum TiffSampleType
{
    UInt8,
    UInt16,
    UInt32,
    Float32,
}

/// <summary>Tile compression of a TIFF written by <see cref="TiledTiffWriter"/>.</summary>
public enum TiffCompression
{
    /// <summary>Compression tag 1: tiles stored raw.</summary>
    None,

    /// <summary>Compression tag 8 (Adobe Deflate): each tile is a zlib stream.</summary>
    Deflate,
}

/// <summary>
/// A tile compressed by <see cref="TiledTiffWriter.EncodeTile{T}"/>, ready to be appended with
/// <see cref="TiledTiffWriter.WriteEncodedTile"/>. Holds a pooled buffer: dispose it after writing.
/// </summary>
public sealed class EncodedTile : IDisposable
{
    private byte[]? _buffer;

    internal EncodedTile(byte[] buffer, int length)
    {
        _buffer = buffer;
        Length = length;
    }

    /// <summary>Number of encoded bytes.</summary>
    public int Length { get; }

    /// <summary>The encoded bytes.</summary>
    public ReadOnlySpan<byte> Span =>
        _buffer is { } b ? b.AsSpan(0, Length) : throw new ObjectDisposedException(nameof(EncodedTile));

    public void Dispose()
    {
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null)
        {
            ArrayPool<byte>.Shared.Return(b);
        }
    }
}

/// <summary>
/// Streaming writer of a single-image tiled TIFF or BigTIFF (little-endian, chunky/interleaved samples), optionally with
/// reduced-resolution levels as SubIFDs of the image (an OME-TIFF pyramid) and an ImageDescription.
/// Tiles are compressed by the calling thread and appended to <c>path + ".partial"</c> in arrival order;
/// <see cref="Complete"/> writes the IFD and atomically renames the file to <c>path</c>. Disposing the
/// writer without a successful <see cref="Complete"/> deletes the partial file.
/// </summary>
/// <remarks>
/// <see cref="WriteTile{T}"/>, <see cref="EncodeTile{T}"/> and <see cref="WriteEncodedTile"/> are thread-safe
/// for distinct tiles. Memory use is independent of the image size apart from two 8-byte arrays per tile
/// (offsets and byte counts). Integer samples are written with the horizontal differencing predictor
/// (tag 317 = 2) when Deflate is used; float samples use no predictor.
/// </remarks>
public sealed class TiledTiffWriter : IDisposable
{
    private const ushort TagNewSubfileType = 254;
    private const ushort TagImageWidth = 256;
    private const ushort TagImageLength = 257;
    private const ushort TagBitsPerSample = 258;
    private const ushort TagCompression = 259;
    private const ushort TagPhotometric = 262;
    private const ushort TagImageDescription = 270;
    private const ushort TagSamplesPerPixel = 277;
    private const ushort TagXResolution = 282;
    private const ushort TagYResolution = 283;
    private const ushort TagPlanarConfiguration = 284;
    private const ushort TagResolutionUnit = 296;
    private const ushort TagPredictor = 317;
    private const ushort TagTileWidth = 322;
    private const ushort TagTileLength = 323;
    private const ushort TagTileOffsets = 324;
    private const ushort TagTileByteCounts = 325;
    private const ushort TagSubIfds = 330;
    private const ushort TagExtraSamples = 338;
    private const ushort TagSampleFormat = 339;

    private const ushort TypeAscii = 2;
    private const ushort TypeShort = 3;
    private const ushort TypeLong = 4;
    private const ushort TypeRational = 5;
    private const ushort TypeIfd = 13;
    private const ushort TypeLong8 = 16;
    private const ushort TypeIfd8 = 18;

    private const int StateEmpty = 0;
    private const int StateClaimed = 1;
    private const int StateWritten = 2;

    private readonly object _appendLock = new();
    private readonly string _partialPath;
    private readonly int[] _state;
    private readonly long[] _offsets;
    private readonly long[] _byteCounts;
    // the tiles of every level in the three arrays above, level k's from _levelBase[k]; its size and tile grid
    private readonly int[] _levelBase, _levelWidth, _levelHeight, _levelAcross, _levelDown;
    private readonly int _bytesPerSample;
    private readonly int _samplesPerTile;
    private readonly bool _usePredictor;
    private readonly long _maxOffset;
    private SafeFileHandle? _handle;
    private long _nextOffset;
    private int _written;
    private volatile bool _faulted;
    private bool _completed;
    private bool _disposed;

    /// <summary>Creates the writer and the file <c>path + ".partial"</c>.</summary>
    /// <param name="path">Final path; created only by <see cref="Complete"/>.</param>
    /// <param name="width">Image width in pixels (&gt; 0).</param>
    /// <param name="height">Image height in pixels (&gt; 0).</param>
    /// <param name="channels">Samples per pixel (1..255); 3 is written as RGB, anything else as grey (+ extra samples).</param>
    /// <param name="type">Sample type.</param>
    /// <param name="tileSize">Tile width and height; a positive multiple of 16 (TIFF requirement).</param>
    /// <param name="compression">Tile compression.</param>
    /// <param name="bigTiff">BigTIFF (64-bit offsets) when true; classic TIFF refuses images that could exceed 4 GiB.</param>
    /// <param name="pixelSizeMicrons">When given, X/YResolution are written in pixels per centimetre.</param>
    public TiledTiffWriter(
        string path,
        int width,
        int height,
        int channels,
        TiffSampleType type,
        int tileSize = 256,
        TiffCompression compression = TiffCompression.Deflate,
        bool bigTiff = true,
        double? pixelSizeMicrons = null,
        int levels = 1,
        string? description = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(channels, 255);
        if (tileSize <= 0 || tileSize % 16 != 0 || tileSize > 65520)
        {
            throw new ArgumentOutOfRangeException(nameof(tileSize), tileSize, "Tile size must be a positive multiple of 16 (at most 65520).");
        }

        if (!Enum.IsDefined(type))
        {
            throw new ArgumentOutOfRangeException(nameof(type));
        }

        if (!Enum.IsDefined(compression))
        {
            throw new ArgumentOutOfRangeException(nameof(compression));
        }

        if (levels < 1 || levels > 31)
        {
            throw new ArgumentOutOfRangeException(nameof(levels), levels, "Levels must be in [1, 31].");
        }

        if (pixelSizeMicrons is { } px && (!double.IsFinite(px) || px <= 0))
        {
            throw new ArgumentOutOfRangeException(nameof(pixelSizeMicrons), px, "Pixel size must be a positive finite number.");
        }

        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("TiledTiffWriter writes little-endian TIFF from native memory and needs a little-endian machine.");
        }

        Path = path;
        Width = width;
        Height = height;
        Channels = channels;
        SampleType = type;
        TileSize = tileSize;
        Compression = compression;
        BigTiff = bigTiff;
        PixelSizeMicrons = pixelSizeMicrons;
        TilesAcross = (width + tileSize - 1) / tileSize;
        TilesDown = (height + tileSize - 1) / tileSize;

        Levels = levels;
        Description = description;
        _levelBase = new int[levels + 1];
        _levelWidth = new int[levels];
        _levelHeight = new int[levels];
        _levelAcross = new int[levels];
        _levelDown = new int[levels];
        long tileCount = 0;
        for (int k = 0; k < levels; k++)
        {
            // level k: every 2^k-th pixel's worth, ⌈size / 2^k⌉
            _levelWidth[k] = (int)(((long)width + (1L << k) - 1) >> k);
            _levelHeight[k] = (int)(((long)height + (1L << k) - 1) >> k);
            _levelAcross[k] = (_levelWidth[k] + tileSize - 1) / tileSize;
            _levelDown[k] = (_levelHeight[k] + tileSize - 1) / tileSize;
            tileCount += (long)_levelAcross[k] * _levelDown[k];
            _levelBase[k + 1] = (int)Math.Min(tileCount, int.MaxValue);
        }

        if (tileCount > Array.MaxLength)
        {
            throw new ArgumentException($"Image {width}x{height} with tile size {tileSize} needs {tileCount} tiles; too many.");
        }

        _bytesPerSample = type switch
        {
            TiffSampleType.UInt8 => 1,
            TiffSampleType.UInt16 => 2,
            _ => 4,
        };
        long samplesPerTile = (long)tileSize * tileSize * channels;
        if (samplesPerTile * _bytesPerSample > Array.MaxLength / 2)
        {
            throw new ArgumentException($"A {tileSize}x{tileSize}x{channels} tile is too large.", nameof(tileSize));
        }

        _samplesPerTile = (int)samplesPerTile;
        _usePredictor = compression == TiffCompression.Deflate && type != TiffSampleType.Float32;
        _maxOffset = bigTiff ? long.MaxValue : uint.MaxValue;

        if (!bigTiff)
        {
            // Worst case: every tile incompressible (zlib adds ~0.1% + a few bytes) plus the IFD and its arrays.
            long rawTile = samplesPerTile * _bytesPerSample;
            long worstTile = compression == TiffCompression.Deflate ? rawTile + (rawTile >> 8) + 64 : rawTile;
            long worst = 16 + (tileCount * worstTile) + (tileCount * 8) + 4096;
            if (worst > uint.MaxValue)
            {
                throw new ArgumentException(
                    $"Image {width}x{height}x{channels} ({type}) may exceed the 4 GiB offset limit of classic TIFF; use bigTiff: true.");
            }
        }

        _state = new int[tileCount];
        _offsets = new long[tileCount];
        _byteCounts = new long[tileCount];

        _partialPath = $"{path}.{Guid.NewGuid():N}.partial"; // unique and created exclusively: never written through a planted link
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir))
        {
            Directory.CreateDirectory(dir);
        }

        _handle = File.OpenHandle(_partialPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        try
        {
            Span<byte> header = stackalloc byte[16];
            header.Clear();
            header[0] = (byte)'I';
            header[1] = (byte)'I';
            if (bigTiff)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(header[2..], 43);
                BinaryPrimitives.WriteUInt16LittleEndian(header[4..], 8);
                BinaryPrimitives.WriteUInt16LittleEndian(header[6..], 0);
                // header[8..16]: first IFD offset, patched by Complete().
                RandomAccess.Write(_handle, header, 0);
                _nextOffset = 16;
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(header[2..], 42);
                RandomAccess.Write(_handle, header[..8], 0);
                _nextOffset = 8;
            }
        }
        catch
        {
            _handle.Dispose();
            _handle = null;
            TryDelete(_partialPath);
            throw;
        }
    }

    public string Path { get; }

    public int Width { get; }

    public int Height { get; }

    public int Channels { get; }

    public TiffSampleType SampleType { get; }

    public int TileSize { get; }

    public TiffCompression Compression { get; }

    public bool BigTiff { get; }

    public double? PixelSizeMicrons { get; }

    /// <summary>Resolution levels: level 0 is the image, level k is ⌈size / 2^k⌉, written as SubIFDs of level 0
    /// (reduced-resolution images, NewSubfileType 1), as OME-TIFF pyramids are.</summary>
    public int Levels { get; }

    /// <summary>ImageDescription of level 0 (e.g. OME-XML), written as UTF-8; none when null.</summary>
    public string? Description { get; }

    /// <summary>Width of level <paramref name="level"/> in pixels.</summary>
    public int LevelWidth(int level) => _levelWidth[level];

    /// <summary>Height of level <paramref name="level"/> in pixels.</summary>
    public int LevelHeight(int level) => _levelHeight[level];

    /// <summary>Tile columns of level <paramref name="level"/>.</summary>
    public int TilesAcrossAt(int level) => _levelAcross[level];

    /// <summary>Tile rows of level <paramref name="level"/>.</summary>
    public int TilesDownAt(int level) => _levelDown[level];

    /// <summary>Number of tile columns.</summary>
    public int TilesAcross { get; }

    /// <summary>Number of tile rows.</summary>
    public int TilesDown { get; }

    /// <summary>Number of samples a tile must contain: TileSize * TileSize * Channels.</summary>
    public int SamplesPerTile => _samplesPerTile;

    /// <summary>Number of tiles written so far.</summary>
    public int TilesWritten => Volatile.Read(ref _written);

    /// <summary>zlib level used for Deflate tiles. Default <see cref="CompressionLevel.Fastest"/>.</summary>
    public CompressionLevel DeflateLevel { get; init; } = CompressionLevel.Fastest;

    /// <summary>
    /// Compresses and appends one tile. <paramref name="tile"/> holds exactly <see cref="SamplesPerTile"/> samples,
    /// row-major with interleaved channels; edge tiles are padded by the caller. <typeparamref name="T"/> must be
    /// as wide as the sample type (e.g. <see cref="ushort"/> for UInt16); its bits are written as-is.
    /// </summary>
    /// <exception cref="InvalidOperationException">The tile was already written, or the writer is completed.</exception>
    public void WriteTile<T>(int tileCol, int tileRow, ReadOnlySpan<T> tile)
        where T : unmanaged => WriteTile(0, tileCol, tileRow, tile);

    /// <summary>Compresses and appends one tile of level <paramref name="level"/> (see the level-0 overload).</summary>
    public void WriteTile<T>(int level, int tileCol, int tileRow, ReadOnlySpan<T> tile)
        where T : unmanaged
    {
        int index = TileIndex(level, tileCol, tileRow);
        ValidateTile(tile);
        Claim(index, tileCol, tileRow);
        try
        {
            if (Compression == TiffCompression.None)
            {
                Append(index, MemoryMarshal.AsBytes(tile));
            }
            else
            {
                using var encoded = EncodeCore(tile);
                Append(index, encoded.Span);
            }
        }
        catch
        {
            Unclaim(index);
            throw;
        }
    }

    /// <summary>
    /// Compresses a tile without writing it (thread-safe, no writer state touched). Use with
    /// <see cref="WriteEncodedTile"/> to control the order in which tiles are appended (e.g. for byte-identical output).
    /// </summary>
    public EncodedTile EncodeTile<T>(ReadOnlySpan<T> tile)
        where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ValidateTile(tile);
        if (Compression == TiffCompression.None)
        {
            ReadOnlySpan<byte> raw = MemoryMarshal.AsBytes(tile);
            byte[] buffer = ArrayPool<byte>.Shared.Rent(raw.Length);
            raw.CopyTo(buffer);
            return new EncodedTile(buffer, raw.Length);
        }

        return EncodeCore(tile);
    }

    /// <summary>Appends a tile produced by <see cref="EncodeTile{T}"/> of this writer (or of one with identical settings).</summary>
    /// <exception cref="InvalidOperationException">The tile was already written, or the writer is completed.</exception>
    public void WriteEncodedTile(int tileCol, int tileRow, EncodedTile encoded) => WriteEncodedTile(0, tileCol, tileRow, encoded);

    /// <summary>Appends an encoded tile of level <paramref name="level"/>.</summary>
    public void WriteEncodedTile(int level, int tileCol, int tileRow, EncodedTile encoded)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        int index = TileIndex(level, tileCol, tileRow);
        Claim(index, tileCol, tileRow);
        try
        {
            Append(index, encoded.Span);
        }
        catch
        {
            Unclaim(index);
            throw;
        }
    }

    /// <summary>
    /// Writes the IFD and renames <c>path + ".partial"</c> to <c>path</c> (replacing an existing file).
    /// </summary>
    /// <exception cref="InvalidOperationException">Some tiles are missing, a write failed, or already completed.</exception>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_appendLock)
        {
            if (_completed)
            {
                throw new InvalidOperationException($"TIFF '{Path}' is already completed.");
            }

            if (_faulted)
            {
                throw new InvalidOperationException($"TIFF '{Path}': a tile write failed earlier; the file cannot be completed.");
            }

            int missing = 0;
            int firstMissing = -1;
            for (int i = 0; i < _state.Length; i++)
            {
                if (Volatile.Read(ref _state[i]) != StateWritten)
                {
                    missing++;
                    if (firstMissing < 0)
                    {
                        firstMissing = i;
                    }
                }
            }

            if (missing > 0)
            {
                int lv = 0;
                while (firstMissing >= _levelBase[lv + 1])
                {
                    lv++;
                }

                int at = firstMissing - _levelBase[lv];
                throw new InvalidOperationException(
                    $"TIFF '{Path}': {missing} of {_state.Length} tiles are missing; the first is column {at % _levelAcross[lv]}, row {at / _levelAcross[lv]}{(Levels > 1 ? $" of level {lv}" : "")}.");
            }

            var handle = _handle ?? throw new ObjectDisposedException(nameof(TiledTiffWriter));
            // the reduced levels' IFDs first (each ending the chain of its own), then level 0's, which points at them
            long end = _nextOffset;
            var subIfds = new long[Levels - 1];
            for (int k = 1; k < Levels; k++)
            {
                long at = (end + 7) & ~7L;
                byte[] sub = BuildIfd(k, at, null);
                WriteIfd(handle, sub, at);
                subIfds[k - 1] = at;
                end = at + sub.Length;
            }

            long ifdOffset = (end + 7) & ~7L;
            byte[] ifd = BuildIfd(0, ifdOffset, subIfds);
            WriteIfd(handle, ifd, ifdOffset);
            Span<byte> ptr = stackalloc byte[8];
            if (BigTiff)
            {
                BinaryPrimitives.WriteInt64LittleEndian(ptr, ifdOffset);
                RandomAccess.Write(handle, ptr, 8);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(ptr, (uint)ifdOffset);
                RandomAccess.Write(handle, ptr[..4], 4);
            }

            RandomAccess.FlushToDisk(handle);
            handle.Dispose();
            _handle = null;
            SafePaths.Publish(_partialPath, Path, "image");
            _completed = true;
        }
    }

    private void WriteIfd(SafeFileHandle handle, byte[] ifd, long offset)
    {
        if (offset + ifd.Length > _maxOffset)
        {
            throw new IOException($"TIFF '{Path}' exceeds the 4 GiB limit of classic TIFF; use BigTIFF.");
        }

        RandomAccess.Write(handle, ifd, offset);
    }

    /// <summary>Closes the file; deletes <c>path + ".partial"</c> unless <see cref="Complete"/> succeeded.</summary>
    public void Dispose()
    {
        lock (_appendLock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _handle?.Dispose();
            _handle = null;
            if (!_completed)
            {
                TryDelete(_partialPath);
            }
        }
    }

    private int TileIndex(int level, int tileCol, int tileRow)
    {
        if ((uint)level >= (uint)Levels)
        {
            throw new ArgumentOutOfRangeException(nameof(level), level, $"Level must be in [0, {Levels}).");
        }

        if ((uint)tileCol >= (uint)_levelAcross[level])
        {
            throw new ArgumentOutOfRangeException(nameof(tileCol), tileCol, $"Tile column must be in [0, {_levelAcross[level]}).");
        }

        if ((uint)tileRow >= (uint)_levelDown[level])
        {
            throw new ArgumentOutOfRangeException(nameof(tileRow), tileRow, $"Tile row must be in [0, {_levelDown[level]}).");
        }

        return _levelBase[level] + (tileRow * _levelAcross[level]) + tileCol;
    }

    private void ValidateTile<T>(ReadOnlySpan<T> tile)
        where T : unmanaged
    {
        if (Unsafe.SizeOf<T>() != _bytesPerSample)
        {
            throw new ArgumentException(
                $"Sample type {typeof(T).Name} ({Unsafe.SizeOf<T>()} bytes) does not match the TIFF sample type {SampleType} ({_bytesPerSample} bytes).");
        }

        if (tile.Length != _samplesPerTile)
        {
            throw new ArgumentException(
                $"A tile must hold exactly {_samplesPerTile} samples ({TileSize}x{TileSize}x{Channels}), got {tile.Length}.", nameof(tile));
        }
    }

    private void Claim(int index, int tileCol, int tileRow)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            throw new InvalidOperationException($"TIFF '{Path}' is already completed.");
        }

        if (Interlocked.CompareExchange(ref _state[index], StateClaimed, StateEmpty) != StateEmpty)
        {
            throw new InvalidOperationException($"TIFF '{Path}': tile (column {tileCol}, row {tileRow}) was already written.");
        }
    }

    private void Unclaim(int index) => Interlocked.CompareExchange(ref _state[index], StateEmpty, StateClaimed);

    private void Append(int index, ReadOnlySpan<byte> data)
    {
        lock (_appendLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var handle = _handle ?? throw new ObjectDisposedException(nameof(TiledTiffWriter));
            long offset = _nextOffset;
            if (offset + data.Length > _maxOffset)
            {
                throw new IOException($"TIFF '{Path}' exceeds the 4 GiB limit of classic TIFF; use BigTIFF.");
            }

            try
            {
                RandomAccess.Write(handle, data, offset);
            }
            catch
            {
                _faulted = true;
                throw;
            }

            _nextOffset = offset + data.Length + (data.Length & 1); // keep tiles word-aligned
            _offsets[index] = offset;
            _byteCounts[index] = data.Length;
            Volatile.Write(ref _state[index], StateWritten);
            _written++;
        }
    }

    private EncodedTile EncodeCore<T>(ReadOnlySpan<T> tile)
        where T : unmanaged
    {
        ReadOnlySpan<byte> raw = MemoryMarshal.AsBytes(tile);
        byte[]? scratch = null;
        try
        {
            if (_usePredictor)
            {
                scratch = ArrayPool<byte>.Shared.Rent(raw.Length);
                Span<byte> diff = scratch.AsSpan(0, raw.Length);
                raw.CopyTo(diff);
                switch (_bytesPerSample)
                {
                    case 1:
                        HorizontalDifference(diff, TileSize, Channels);
                        break;
                    case 2:
                        HorizontalDifference(MemoryMarshal.Cast<byte, ushort>(diff), TileSize, Channels);
                        break;
                    default:
                        HorizontalDifference(MemoryMarshal.Cast<byte, uint>(diff), TileSize, Channels);
                        break;
                }

                raw = diff;
            }

            using var sink = new PooledBufferStream((raw.Length / 2) + 1024);
            using (var z = new ZLibStream(sink, DeflateLevel, leaveOpen: true))
            {
                z.Write(raw);
            }

            return sink.Detach();
        }
        finally
        {
            if (scratch is not null)
            {
                ArrayPool<byte>.Shared.Return(scratch);
            }
        }
    }

    /// <summary>TIFF predictor 2: each sample minus the same channel of the previous pixel, per row, modulo 2^bits.</summary>
    private static void HorizontalDifference<TS>(Span<TS> samples, int tileSize, int channels)
        where TS : unmanaged, System.Numerics.IBinaryInteger<TS>
    {
        int rowLen = tileSize * channels;
        for (int start = 0; start < samples.Length; start += rowLen)
        {
            Span<TS> row = samples.Slice(start, rowLen);
            for (int i = rowLen - 1; i >= channels; i--)
            {
                row[i] -= row[i - channels];
            }
        }
    }

    private byte[] BuildIfd(int level, long ifdOffset, long[]? subIfds)
    {
        bool big = BigTiff;
        int entrySize = big ? 20 : 12;
        int inlineSize = big ? 8 : 4;
        ushort bits = (ushort)(_bytesPerSample * 8);
        ushort sampleFormat = SampleType == TiffSampleType.Float32 ? (ushort)3 : (ushort)1;
        ushort photometric = Channels == 3 ? (ushort)2 : (ushort)1;
        int extraSamples = Channels == 3 ? 0 : Channels - 1;

        var entries = new List<IfdEntry>(24);
        if (level > 0)
        {
            entries.Add(IfdEntry.Scalar(TagNewSubfileType, TypeLong, 1)); // a reduced-resolution version of level 0
        }

        entries.Add(IfdEntry.Scalar(TagImageWidth, TypeLong, (uint)_levelWidth[level]));
        entries.Add(IfdEntry.Scalar(TagImageLength, TypeLong, (uint)_levelHeight[level]));
        entries.Add(IfdEntry.Shorts(TagBitsPerSample, Repeat(bits, Channels)));
        entries.Add(IfdEntry.Scalar(TagCompression, TypeShort, Compression == TiffCompression.Deflate ? 8u : 1u));
        entries.Add(IfdEntry.Scalar(TagPhotometric, TypeShort, photometric));
        if (level == 0 && Description is { } description)
        {
            byte[] text = new byte[System.Text.Encoding.UTF8.GetByteCount(description) + 1]; // NUL-terminated
            System.Text.Encoding.UTF8.GetBytes(description, text);
            entries.Add(new IfdEntry(TagImageDescription, TypeAscii, text.Length, text));
        }

        entries.Add(IfdEntry.Scalar(TagSamplesPerPixel, TypeShort, (uint)Channels));

        if (PixelSizeMicrons is { } px)
        {
            (uint num, uint den) = ToRational(10_000.0 / (px * (1 << level)));
            entries.Add(IfdEntry.Rational(TagXResolution, num, den));
            entries.Add(IfdEntry.Rational(TagYResolution, num, den));
        }

        entries.Add(IfdEntry.Scalar(TagPlanarConfiguration, TypeShort, 1));
        if (PixelSizeMicrons is not null)
        {
            entries.Add(IfdEntry.Scalar(TagResolutionUnit, TypeShort, 3)); // centimetre
        }

        if (_usePredictor)
        {
            entries.Add(IfdEntry.Scalar(TagPredictor, TypeShort, 2));
        }

        entries.Add(IfdEntry.Scalar(TagTileWidth, TypeLong, (uint)TileSize));
        entries.Add(IfdEntry.Scalar(TagTileLength, TypeLong, (uint)TileSize));
        int first = _levelBase[level], count = _levelBase[level + 1] - first;
        entries.Add(IfdEntry.Offsets(TagTileOffsets, _offsets.AsSpan(first, count), big));
        entries.Add(IfdEntry.Offsets(TagTileByteCounts, _byteCounts.AsSpan(first, count), big));
        if (subIfds is { Length: > 0 })
        {
            var sub = IfdEntry.Offsets(TagSubIfds, subIfds, big);
            entries.Add(sub with { Type = big ? TypeIfd8 : TypeIfd });
        }
        if (extraSamples > 0)
        {
            entries.Add(IfdEntry.Shorts(TagExtraSamples, Repeat(0, extraSamples)));
        }

        entries.Add(IfdEntry.Shorts(TagSampleFormat, Repeat(sampleFormat, Channels)));

        long headerSize = (big ? 8 : 2) + ((long)entries.Count * entrySize) + (big ? 8 : 4);
        long total = headerSize;
        foreach (var e in entries)
        {
            if (e.Payload.Length > inlineSize)
            {
                total = ((total + 7) & ~7L) + e.Payload.Length;
            }
        }

        if (total > Array.MaxLength)
        {
            throw new InvalidOperationException($"TIFF '{Path}': the IFD would be too large ({total} bytes).");
        }

        byte[] buf = new byte[total];
        Span<byte> span = buf;
        int pos = 0;
        if (big)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(span, (ulong)entries.Count);
            pos = 8;
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)entries.Count);
            pos = 2;
        }

        long extra = headerSize;
        foreach (var e in entries)
        {
            Span<byte> entry = span.Slice(pos, entrySize);
            BinaryPrimitives.WriteUInt16LittleEndian(entry, e.Tag);
            BinaryPrimitives.WriteUInt16LittleEndian(entry[2..], e.Type);
            if (big)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(entry[4..], (ulong)e.Count);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(entry[4..], (uint)e.Count);
            }

            Span<byte> value = entry[(big ? 12 : 8)..];
            if (e.Payload.Length <= inlineSize)
            {
                e.Payload.CopyTo(value);
            }
            else
            {
                extra = (extra + 7) & ~7L;
                e.Payload.CopyTo(span[(int)extra..]);
                long abs = ifdOffset + extra;
                if (big)
                {
                    BinaryPrimitives.WriteInt64LittleEndian(value, abs);
                }
                else
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(value, checked((uint)abs));
                }

                extra += e.Payload.Length;
            }

            pos += entrySize;
        }

        // Next-IFD offset stays 0: one image (its reduced levels hang off it as SubIFDs).
        return buf;
    }

    private static ushort[] Repeat(ushort value, int count)
    {
        var a = new ushort[count];
        a.AsSpan().Fill(value);
        return a;
    }

    private static (uint Num, uint Den) ToRational(double value)
    {
        uint den = 1;
        while (den < 1_000_000_000 && value * den * 10 < uint.MaxValue && Math.Abs((value * den) - Math.Round(value * den)) > 1e-9 * value * den)
        {
            den *= 10;
        }

        double num = Math.Round(value * den);
        num = Math.Clamp(num, 1, uint.MaxValue);
        return ((uint)num, den);
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

    private readonly record struct IfdEntry(ushort Tag, ushort Type, long Count, byte[] Payload)
    {
        public static IfdEntry Scalar(ushort tag, ushort type, uint value)
        {
            byte[] p;
            if (type == TypeShort)
            {
                p = new byte[2];
                BinaryPrimitives.WriteUInt16LittleEndian(p, checked((ushort)value));
            }
            else
            {
                p = new byte[4];
                BinaryPrimitives.WriteUInt32LittleEndian(p, value);
            }

            return new IfdEntry(tag, type, 1, p);
        }

        public static IfdEntry Shorts(ushort tag, ushort[] values)
        {
            byte[] p = new byte[values.Length * 2];
            for (int i = 0; i < values.Length; i++)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(p.AsSpan(i * 2), values[i]);
            }

            return new IfdEntry(tag, TypeShort, values.Length, p);
        }

        public static IfdEntry Rational(ushort tag, uint num, uint den)
        {
            byte[] p = new byte[8];
            BinaryPrimitives.WriteUInt32LittleEndian(p, num);
            BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), den);
            return new IfdEntry(tag, TypeRational, 1, p);
        }

        public static IfdEntry Offsets(ushort tag, ReadOnlySpan<long> values, bool big)
        {
            if (big)
            {
                byte[] p = new byte[values.Length * 8];
                MemoryMarshal.AsBytes(values).CopyTo(p);
                return new IfdEntry(tag, TypeLong8, values.Length, p);
            }
            else
            {
                byte[] p = new byte[values.Length * 4];
                for (int i = 0; i < values.Length; i++)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(i * 4), checked((uint)values[i]));
                }

                return new IfdEntry(tag, TypeLong, values.Length, p);
            }
        }
    }

    /// <summary>Write-only stream over a growable <see cref="ArrayPool{T}"/> buffer.</summary>
    private sealed class PooledBufferStream : Stream
    {
        private byte[]? _buffer;
        private int _length;

        public PooledBufferStream(int initialCapacity) => _buffer = ArrayPool<byte>.Shared.Rent(initialCapacity);

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _length;

        public override long Position
        {
            get => _length;
            set => throw new NotSupportedException();
        }

        public EncodedTile Detach()
        {
            byte[] b = _buffer ?? throw new ObjectDisposedException(nameof(PooledBufferStream));
            _buffer = null;
            return new EncodedTile(b, _length);
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            byte[] b = _buffer ?? throw new ObjectDisposedException(nameof(PooledBufferStream));
            if (_length + buffer.Length > b.Length)
            {
                byte[] bigger = ArrayPool<byte>.Shared.Rent(Math.Max(b.Length * 2, _length + buffer.Length));
                b.AsSpan(0, _length).CopyTo(bigger);
                ArrayPool<byte>.Shared.Return(b);
                _buffer = b = bigger;
            }

            buffer.CopyTo(b.AsSpan(_length));
            _length += buffer.Length;
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void WriteByte(byte value) => Write([value]);

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (_buffer is { } b)
            {
                _buffer = null;
                ArrayPool<byte>.Shared.Return(b);
            }

            base.Dispose(disposing);
        }
    }
}
