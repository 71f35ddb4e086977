using System.Buffers.Binary;
using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Zeiss CZI (ZISRAW) files, read here: the format of Zeiss's microscopes (ZEN) for fields, tiled mosaics and slide scans.
/// <para>A CZI file is a chain of segments: a file header that points at a directory of subblocks and at the metadata
/// (XML). Each subblock is one rectangle of one plane: its place in every dimension (X and Y in pixels, C the channel, Z,
/// T, S the scene, M its index in a mosaic, …), its pixel type and compression. The image read is level 0 (subblocks
/// stored at full size; a pyramid's subsampled ones are reduced levels) of the first focal plane and time point, and of
/// every scene where the scenes are parts of one slide (else of the first); its channels are the C indices, in order,
/// each a channel of the image. A mosaic's tiles are drawn in order of their M index, the higher on top (as ZEN draws
/// them); pixels no tile covers are background: 0, or white in a colour (brightfield) image.</para>
/// <para>Read: grey 8- and 16-bit and BGR 24- and 48-bit subblocks, uncompressed, JPEG XR (through jxrlib,
/// <see cref="JpegXr"/>) or Zstandard (both of ZEN's forms). Refused, with what to do instead: JPEG and LZW compression,
/// float and complex pixels, files of several parts. The pixel size is the metadata's Scaling (metres per pixel).</para>
/// Each instance is meant for one thread at a time; open one per worker.
/// </summary>
public sealed class CziSource : IRegionSource
{
    /// <summary>Where a subblock lies in the image and in the file.</summary>
    private sealed record Block(int X, int Y, int W, int H, int Channel, int M, int Order, long FilePosition, int Dimensions, int Compression)
    {
        /// <summary>Where its pixel data lie (read from its segment's header when first needed: a mosaic of many
        /// thousand tiles opens without a read per tile, which a network file system would make slow).</summary>
        public (long Offset, long Size)? Data;
    }

    private readonly FileStream _file;
    private readonly Block[] _blocks;           // in drawing order
    private readonly int[][] _buckets;          // per cell of a coarse grid over the image: the blocks that meet it, in drawing order
    private readonly int _cell, _gridW;
    private readonly int _bytesPerSample, _samplesPerPixel;
    /// <summary>This file's blocks in the process's cache of decoded blocks (<see cref="DecodedBlocks"/>), shared with
    /// every other reader of the file; the position is each block's.</summary>
    private readonly DecodedBlocks.Key _blockKey;
    private byte[] _packed = [], _unpack = [];

    public string Path { get; }
    public int Width { get; }
    public int Height { get; }
    public int Channels { get; }
    public int BitDepth => _bytesPerSample * 8;
    /// <summary>The pixel type the subblocks store (ZEN's name: Gray8, Gray16, Bgr24, Bgr48).</summary>
    public string PixelType { get; }
    /// <summary>The compressions of the subblocks read, by ZEN's name.</summary>
    public IReadOnlyList<string> Compressions { get; }
    /// <summary>How many subblocks make the image read (its tiles, over all its channels).</summary>
    public int Subblocks => _blocks.Length;
    /// <summary>The scenes the file holds.</summary>
    public int Scenes { get; }
    /// <summary>The file's scenes in order (series 0, 1, …): their S index and the size of the rectangle around their
    /// full-resolution tiles.</summary>
    public IReadOnlyList<(int S, long Width, long Height)> SceneList { get; }
    /// <summary>The scenes read: all of them where they lie together as parts of one slide (<see cref="ScenesTogether"/>),
    /// else the first.</summary>
    public int ScenesRead { get; }

    /// <summary>
    /// Whether a file's scenes are parts of one slide (a slide scan's tissue sections, each a scene, in the slide's
    /// coordinates) rather than positions far apart (a plate's wells, a stage's fields): the rectangle around them all is
    /// at most four times the area of their own rectangles together. Such scenes are read as one image, as ZEN shows
    /// the whole slide; the others are not (their rectangle would be mostly empty).
    /// </summary>
    private static bool ScenesTogether(List<Entry> full, List<int> scenes)
    {
        if (scenes.Count < 2) return false;
        double own = 0;
        foreach (var g in full.GroupBy(e => e.Index('S')))
            own += (double)(g.Max(e => (long)e.X + e.W) - g.Min(e => (long)e.X)) * (g.Max(e => (long)e.Y + e.H) - g.Min(e => (long)e.Y));
        double union = (double)(full.Max(e => (long)e.X + e.W) - full.Min(e => (long)e.X)) * (full.Max(e => (long)e.Y + e.H) - full.Min(e => (long)e.Y));
        return union <= 4 * own && union <= ImageLimits.MaxPixels;
    }
    /// <summary>The image's top-left corner in the file's pixel coordinates (a mosaic's need not start at 0).</summary>
    public (int X, int Y) Origin { get; }
    /// <summary>Microns per pixel from the metadata's Scaling, when it states one.</summary>
    public (double X, double Y)? MicronsPerPixel { get; }
    /// <summary>The channels' names in the metadata (empty where it names none).</summary>
    public IReadOnlyList<string> ChannelNames { get; }

    private const int CziMaxSubblocks = 10_000_000;

    /// <summary>True when the file starts as a CZI file does ("ZISRAWFILE"), whatever its name.</summary>
    public static bool IsCzi(string path)
    {
        // a named pipe or a device is no file of any format: opening one to read would wait for a writer for ever
        if (!InputFiles.HasData(path)) return false;
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
            Span<byte> id = stackalloc byte[16];
            return f.Length >= 32 && RandomAccess.Read(f.SafeFileHandle, id, 0) == 16 && SegmentId(id) == "ZISRAWFILE";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Opens pyramid level <paramref name="level"/> (0: full resolution; see <see cref="Levels"/>) of the first scene.</summary>
    /// <param name="scene">which scene alone (0 the first, in the order of their S index); −1: the scenes of one slide
    /// together, or the first of scenes far apart (<see cref="ScenesTogether"/>)</param>
    public static CziSource Open(string path, int level = 0, int scene = -1)
    {
        if (level < 0) throw new InputFileException(path, $"level {level} does not exist");
        if (scene < -1) throw new InputFileException(path, $"scene (series) {scene} does not exist");
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.RandomAccess);
        try { return new CziSource(path, file, level, scene); }
        catch { file.Dispose(); throw; }
    }

    /// <summary>The pixel size a CZI file's metadata states (without reading its subblock directory).</summary>
    public static (double X, double Y)? PixelSizeOf(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.RandomAccess);
        var header = FileHeader(path, file);
        return ParseMetadata(path, file, header.MetadataPosition).Microns;
    }

    /// <summary>The pyramid's levels (level 0 first): the full-resolution subblocks, then each subsampling factor of the
    /// subsampled ones (ZEN's pyramids: 2 or 3 per level), as the size of the image at that factor.</summary>
    public IReadOnlyList<(long Width, long Height)> Levels { get; }

    /// <summary>The levels of a CZI file's pyramid (<see cref="Levels"/>).</summary>
    public static (long Width, long Height)[] LevelsOf(string path, int scene = -1)
    {
        using var c = Open(path, 0, scene);
        return [.. c.Levels];
    }

    /// <summary>A subblock's subsampling factor, in thousandths (1000: full resolution).</summary>
    private static long FactorKey(Entry e) => (long)Math.Round(1000.0 * e.W / e.StoredW);

    private CziSource(string path, FileStream file, int level, int scene)
    {
        Path = path; _file = file;
        long length = file.Length;
        _blockKey = new DecodedBlocks.Key(System.IO.Path.GetFullPath(path), length, File.GetLastWriteTimeUtc(path).Ticks, 0);
        var header = FileHeader(path, file);
        if (header.DirectoryPosition <= 0)
            throw new InputFileException(path, "CZI file without a subblock directory (a file whose writing did not finish?)");

        // --- the subblock directory ---
        var dirData = SegmentData(path, file, header.DirectoryPosition, "ZISRAWDIRECTORY", "the subblock directory");
        if (dirData.Used < 128 || dirData.Used > 256L << 20)
            throw new InputFileException(path, $"CZI subblock directory of {dirData.Used} bytes (damaged)");
        // the whole directory in one read (a mosaic's can hold tens of thousands of entries)
        var dir = ReadExactly(path, file, dirData.Offset, (int)dirData.Used, "the subblock directory");
        int count = BinaryPrimitives.ReadInt32LittleEndian(dir);
        if (count < 0 || count > CziMaxSubblocks || (long)count * 72 > dir.Length)
            throw new InputFileException(path, $"CZI subblock directory claims {count} subblocks, which its {dir.Length} bytes cannot hold (damaged)");
        int pos = 128;
        var entries = new List<Entry>(count);
        for (int i = 0; i < count; i++)
        {
            var e = ReadEntry(path, dir, pos, $"subblock directory entry {i}");
            pos += e.Size;
            entries.Add(e);
        }
        if (entries.Count == 0) throw new InputFileException(path, "CZI file holds no subblocks (no image)");
        if (entries.Any(e => e.FilePart != 0))
            throw new InputFileException(path, "a CZI file of several parts (its subblocks are in other files of the set): not read; save it as one file in ZEN, or export it to OME-TIFF");

        // --- level 0: subblocks stored at full size (a pyramid's subsampled subblocks have a smaller stored size) ---
        var full = entries.Where(e => e.W == e.StoredW && e.H == e.StoredH).ToList();
        if (full.Count == 0) throw new InputFileException(path, "CZI file holds only subsampled (pyramid) subblocks, no full-resolution ones (damaged)");
        // the first scene, focal plane, time point (and every other plane index ZEN may add): the smallest of each, at
        // full resolution; the pyramid's subblocks of the same plane make its reduced levels
        var scenes = full.Select(e => e.Index('S')).Distinct().OrderBy(s => s).ToList();
        Scenes = scenes.Count;
        SceneList = [.. full.GroupBy(e => e.Index('S')).OrderBy(g => g.Key)
            .Select(g => (g.Key, g.Max(e => (long)e.X + e.W) - g.Min(e => (long)e.X), g.Max(e => (long)e.Y + e.H) - g.Min(e => (long)e.Y)))];
        if (scene >= scenes.Count)
            throw new InputFileException(path, $"holds {scenes.Count} scene(s) (series 0..{scenes.Count - 1}); series {scene} does not exist (actorseg info lists them)");
        ScenesRead = scene < 0 && ScenesTogether(full, scenes) ? scenes.Count : 1;
        if (scenes.Count > 1 && level == 0 && scene < 0)
            VipsWarnings.RaiseInput(ScenesRead > 1
                ? $"{path}: a CZI file of {scenes.Count} scenes, read together in the slide's coordinates (the pixels between them are background; --series N reads scene N alone)"
                : $"{path}: a CZI file of {scenes.Count} scenes far apart (positions of a plate or stage, not parts of one slide); the first (S={scenes[0]}) is read (--series N reads scene N; actorseg info lists them)");
        if (ScenesRead == 1)
        {
            int s = scenes[Math.Max(0, scene)];
            full = full.Where(e => e.Index('S') == s).ToList();
            entries = entries.Where(e => e.Index('S') == s).ToList();
        }
        var plane = entries;
        foreach (char d in "ZTRIHVB")
        {
            var values = full.Select(e => e.Index(d)).Distinct().OrderBy(v => v).ToList();
            if (values.Count > 1 && level == 0)
                VipsWarnings.RaiseInput($"{path}: {values.Count} {DimensionName(d)} in the CZI file; the first ({d}={values[0]}) is read");
            full = full.Where(e => e.Index(d) == values[0]).ToList();
            plane = plane.Where(e => e.Index(d) == values[0]).ToList();
        }
        // the pyramid: one level per subsampling factor (level 0 the full-resolution subblocks)
        var factors = plane.Select(FactorKey).Where(f => f > 1000).Distinct().Order().ToList();
        factors.Insert(0, 1000);
        if (level >= factors.Count)
            throw new InputFileException(path, $"has {factors.Count} resolution level(s) (0..{factors.Count - 1}: the full resolution{(factors.Count > 1 ? $" and {factors.Count - 1} of its pyramid" : "")}); level {level} does not exist");
        double factor = factors[level] / 1000.0;
        var chosen = level == 0 ? full : plane.Where(e => FactorKey(e) == factors[level]).ToList();

        // --- pixel type, channels ---
        var types = full.Select(e => e.PixelType).Distinct().ToList();
        if (types.Count > 1) throw new InputFileException(path, $"CZI subblocks of several pixel types ({string.Join(", ", types.Select(PixelTypeName))}) in one image: not read");
        PixelType = PixelTypeName(types[0]);
        (_bytesPerSample, _samplesPerPixel) = types[0] switch
        {
            0 => (1, 1), 1 => (2, 1), 3 => (1, 3), 4 => (2, 3),
            _ => throw new InputFileException(path, $"CZI pixel type {PixelType} is not read (grey 8- and 16-bit and BGR 24- and 48-bit are): export the image to OME-TIFF (ZEN, or bfconvert)"),
        };
        var cs = full.Select(e => e.Index('C')).Distinct().OrderBy(c => c).ToList();
        if (_samplesPerPixel == 3 && cs.Count > 1)
            throw new InputFileException(path, $"a colour (BGR) CZI image of {cs.Count} channels: not read (one colour channel is)");
        Channels = _samplesPerPixel == 3 ? 3 : cs.Count;
        if (Channels > ImageLimits.MaxChannels)
            throw new InputFileException(path, $"a CZI image of {Channels} channels; at most {ImageLimits.MaxChannels} are read");
        var compressions = full.Select(e => e.Compression).Distinct().OrderBy(c => c).ToList();
        foreach (int c in compressions)
            if (c is not (0 or 4 or 5 or 6))
                throw new InputFileException(path, $"CZI subblocks compressed with {CompressionName(c)} are not read (uncompressed, JPEG XR and Zstandard are): " +
                                                   "export the image to OME-TIFF (ZEN's export, or bfconvert), or save it from ZEN uncompressed or with Zstandard");
        Compressions = compressions.Select(CompressionName).ToList();

        // --- the image's extent: the union of the subblocks' rectangles ---
        long x0 = full.Min(e => (long)e.X), y0 = full.Min(e => (long)e.Y);
        long x1 = full.Max(e => (long)e.X + e.W), y1 = full.Max(e => (long)e.Y + e.H);
        long w = x1 - x0, h = y1 - y0;
        if (w < 1 || h < 1 || w > ImageLimits.MaxSide || h > ImageLimits.MaxSide || w * h > ImageLimits.MaxPixels)
            throw new InputFileException(path, $"CZI image of {w} x {h} pixels: outside the sizes read (1 to {ImageLimits.MaxSide} a side, {ImageLimits.MaxPixels} pixels)");
        // a reduced level: the full extent divided by the level's factor, rounded up (as ZEN's pyramid tiles are)
        Levels = factors.Select(f => ((long)Math.Ceiling(w * 1000.0 / f), (long)Math.Ceiling(h * 1000.0 / f))).ToList();
        (Width, Height) = ((int)Levels[level].Width, (int)Levels[level].Height);
        Origin = ((int)x0, (int)y0);
        if (chosen.Select(e => e.PixelType).Distinct().Count() > 1 || chosen.Any(e => e.PixelType != types[0]))
            throw new InputFileException(path, $"CZI pyramid level {level} stores another pixel type than level 0: not read");
        foreach (int c in chosen.Select(e => e.Compression).Distinct())
            if (c is not (0 or 4 or 5 or 6)) throw new InputFileException(path, $"CZI pyramid level {level}'s subblocks are compressed with {CompressionName(c)}, which is not read");

        // --- the subblocks read (where their pixel data lie is read when a region first needs them); a reduced level's
        // are placed at their full-resolution place divided by the factor, at their stored size ---
        var blocks = new List<Block>(chosen.Count);
        foreach (var (e, order) in chosen.Select((e, i) => (e, i)))
        {
            if (e.FilePosition < 0 || e.FilePosition + 32 + 256 > length)
                throw new InputFileException(path, $"CZI subblock of {e.W} x {e.H} at {e.X},{e.Y} should be at byte {e.FilePosition}, outside the file ({length} bytes): truncated or damaged");
            int c = cs.IndexOf(e.Index('C'));
            if (c < 0 && _samplesPerPixel == 1) continue; // a channel that has no full-resolution subblock
            double fx = Math.Floor((e.X - x0) / factor), fy = Math.Floor((e.Y - y0) / factor);
            if (fx >= Width || fy >= Height || fx + e.StoredW <= 0 || fy + e.StoredH <= 0) continue; // outside this level
            int bx = (int)fx, by = (int)fy;
            blocks.Add(new Block(bx, by, e.StoredW, e.StoredH, _samplesPerPixel == 3 ? 0 : c, e.Index('M'), order, e.FilePosition, e.Dimensions, e.Compression));
        }
        // drawing order: by mosaic index, the higher on top; the directory's order among equals
        _blocks = blocks.OrderBy(b => b.M).ThenBy(b => b.Order).ToArray();

        // a coarse grid over the image, each cell listing the blocks that meet it (a region asks only its cells' blocks)
        _cell = Math.Max(256, (int)Math.Min(1 << 16, Math.Ceiling(Math.Sqrt((double)Width * Height / Math.Max(1, _blocks.Length)))));
        _gridW = (Width + _cell - 1) / _cell;
        int gridH = (Height + _cell - 1) / _cell;
        var lists = new List<int>?[(long)_gridW * gridH > 4_000_000 ? throw new InputFileException(path, "CZI image too large for its subblock index") : _gridW * gridH];
        for (int b = 0; b < _blocks.Length; b++)
        {
            var k = _blocks[b];
            if (k.X >= Width || k.Y >= Height) continue; // (a reduced level's rounding)
            if ((long)k.X + k.W <= 0 || (long)k.Y + k.H <= 0) continue; // (a pyramid tile outside level 0's extent)
            for (int gy = Math.Max(0, k.Y) / _cell; gy <= Math.Min(gridH - 1, (int)(((long)k.Y + k.H - 1) / _cell)); gy++)
                for (int gx = Math.Max(0, k.X) / _cell; gx <= Math.Min(_gridW - 1, (int)(((long)k.X + k.W - 1) / _cell)); gx++)
                    (lists[gy * _gridW + gx] ??= new List<int>()).Add(b);
        }
        _buckets = lists.Select(l => l?.ToArray() ?? []).ToArray();

        var meta = ParseMetadata(path, file, header.MetadataPosition);
        MicronsPerPixel = meta.Microns;
        ChannelNames = meta.Channels.Count == cs.Count ? meta.Channels : [];
    }

    public void ReadRegion(int x, int y, int w, int h, Span<ushort> dest)
    {
        if (x < 0 || y < 0 || w < 0 || h < 0 || (long)x + w > Width || (long)y + h > Height)
            throw new ArgumentOutOfRangeException(nameof(x), $"region {x},{y} {w}x{h} outside the {Width}x{Height} image");
        int C = Channels;
        if (dest.Length < (long)w * h * C) throw new ArgumentException("destination too small", nameof(dest));
        // background (where no tile lies): black for fluorescence, white for a colour camera's brightfield, as glass
        if (_samplesPerPixel == 3) dest[..(w * h * C)].Fill(_bytesPerSample == 1 ? (ushort)255 : ushort.MaxValue);
        else dest[..(w * h * C)].Clear();
        if (w == 0 || h == 0) return;
        // the blocks of the region's cells, each once, in drawing order
        var pick = new SortedSet<int>();
        for (int gy = y / _cell; gy <= (y + h - 1) / _cell; gy++)
            for (int gx = x / _cell; gx <= (x + w - 1) / _cell; gx++)
                foreach (int b in _buckets[gy * _gridW + gx]) pick.Add(b);
        int spp = _samplesPerPixel, bps = _bytesPerSample;
        byte[]? row = null;
        foreach (int b in pick)
        {
            var k = _blocks[b];
            int ix0 = Math.Max(x, k.X), iy0 = Math.Max(y, k.Y), ix1 = Math.Min(x + w, k.X + k.W), iy1 = Math.Min(y + h, k.Y + k.H);
            if (ix0 >= ix1 || iy0 >= iy1) continue;
            int n = ix1 - ix0, rowBytes = n * spp * bps;
            var (dataOffset, _) = DataOf(k);
            using var lease = k.Compression == 0 ? null : Decoded(b);
            byte[]? whole = lease?.Pixels;
            if (whole is null && (row is null || row.Length < rowBytes)) row = new byte[Math.Max(rowBytes, 4096)];
            for (int yy = iy0; yy < iy1; yy++)
            {
                long at = ((long)(yy - k.Y) * k.W + (ix0 - k.X)) * spp * bps;
                ReadOnlySpan<byte> src;
                if (whole is not null) src = whole.AsSpan((int)at, rowBytes);
                else
                {
                    var span = row.AsSpan(0, rowBytes);
                    if (RandomAccess.Read(_file.SafeFileHandle, span, dataOffset + at) != rowBytes)
                        throw new InputFileException(Path, $"CZI subblock at byte {k.FilePosition} ended early while reading (the file shrank?)");
                    src = span;
                }
                var dst = dest.Slice(((yy - y) * w + (ix0 - x)) * C, n * C);
                Put(src, dst, n, C, k.Channel, spp, bps);
            }
        }
    }

    /// <summary>Where block <paramref name="k"/>'s pixel data lie: read from its segment's header the first time, checked
    /// against the segment and the file.</summary>
    private (long Offset, long Size) DataOf(Block k)
    {
        if (k.Data is { } known) return known;
        string what = $"the subblock at byte {k.FilePosition} ({k.W} x {k.H} at {k.X + Origin.X},{k.Y + Origin.Y})";
        var seg = SegmentData(Path, _file, k.FilePosition, "ZISRAWSUBBLOCK", what);
        var head = ReadExactly(Path, _file, seg.Offset, 16, what);
        int metaSize = BinaryPrimitives.ReadInt32LittleEndian(head), attSize = BinaryPrimitives.ReadInt32LittleEndian(head.AsSpan(4));
        long dataSize = BinaryPrimitives.ReadInt64LittleEndian(head.AsSpan(8));
        long dataOffset = seg.Offset + Math.Max(256, 48 + 20 * k.Dimensions) + (long)metaSize;
        long stored = (long)k.W * k.H * _bytesPerSample * _samplesPerPixel;
        if (metaSize < 0 || attSize < 0 || dataSize < 0 || dataOffset + dataSize > seg.Offset + seg.Used || dataOffset + dataSize > _file.Length)
            throw new InputFileException(Path, $"CZI {what} claims pixel data past its segment or the file's end ({_file.Length} bytes): the file is truncated or damaged");
        if (k.Compression == 0 && dataSize < stored)
            throw new InputFileException(Path, $"CZI {what} holds {dataSize} bytes of pixels where {stored} are needed (damaged)");
        k.Data = (dataOffset, dataSize);
        return (dataOffset, dataSize);
    }

    /// <summary>One row of a block into the region's interleaved samples: a grey block into its channel, a BGR block as RGB.</summary>
    private static void Put(ReadOnlySpan<byte> src, Span<ushort> dst, int n, int C, int channel, int spp, int bps)
    {
        if (spp == 1)
        {
            if (bps == 1) for (int i = 0; i < n; i++) dst[i * C + channel] = src[i];
            else for (int i = 0; i < n; i++) dst[i * C + channel] = BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(2 * i));
            return;
        }
        // B, G, R stored: R first as read
        if (bps == 1)
            for (int i = 0; i < n; i++) { dst[3 * i] = src[3 * i + 2]; dst[3 * i + 1] = src[3 * i + 1]; dst[3 * i + 2] = src[3 * i]; }
        else
            for (int i = 0; i < n; i++)
            {
                dst[3 * i] = BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(6 * i + 4));
                dst[3 * i + 1] = BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(6 * i + 2));
                dst[3 * i + 2] = BinaryPrimitives.ReadUInt16LittleEndian(src.Slice(6 * i));
            }
    }

    /// <summary>A compressed block's pixels, decoded (kept for the next regions that meet it, within a budget).</summary>
    private DecodedBlocks.Lease Decoded(int b)
    {
        var k = _blocks[b];
        var (offset, size) = DataOf(k);
        long expected = (long)k.W * k.H * _samplesPerPixel * _bytesPerSample;
        if (size > int.MaxValue || expected > int.MaxValue)
            throw new InputFileException(Path, $"CZI subblock at byte {k.FilePosition} ({k.W} x {k.H}) is too large to decode whole");
        return DecodedBlocks.Get(_blockKey with { Position = k.FilePosition }, (int)expected, pixels =>
        {
            if (_packed.Length < size) _packed = new byte[size];
            var packed = _packed.AsSpan(0, (int)size);
            if (RandomAccess.Read(_file.SafeFileHandle, packed, offset) != packed.Length)
                throw new InputFileException(Path, $"CZI subblock at byte {k.FilePosition} ended early while reading (the file shrank?)");
            string what = $"subblock at byte {k.FilePosition} ({k.W} x {k.H} at {k.X + Origin.X},{k.Y + Origin.Y})";
            var dest = pixels.AsSpan(0, (int)expected);
            if (k.Compression == 4)
            {
                if (!JpegXr.Decode(packed, k.W, k.H, _bytesPerSample, _samplesPerPixel, dest, out string? problem, out bool isShort))
                    throw new InputFileException(Path, $"CZI {what}: {problem}");
                if (isShort) WarnShort();
            }
            else
            {
                if (k.Compression == 6 && _unpack.Length < expected) _unpack = new byte[expected];
                if (DecodeZstd(Path, packed, k.Compression, dest, _bytesPerSample, what, _unpack)) WarnShort();
            }
        });
    }

    /// <summary>
    /// Zstandard as ZEN writes it: "zstd0" is one Zstandard frame; "zstd1" starts with a header (its length, 1 or 3, then
    /// chunks: type 1 says whether 16-bit samples were stored as all their low bytes, then all their high bytes).
    /// </summary>
    /// <param name="pixels">receives the decoded samples (exactly its length)</param>
    /// <param name="scratch">as long as <paramref name="pixels"/> at least, for zstd1's low/high byte packing</param>
    /// <returns>true when the data held fewer or more bytes than the subblock's size (read as ZEN's reader does: the rest
    /// 0, or the excess dropped)</returns>
    internal static bool DecodeZstd(string path, ReadOnlySpan<byte> packed, int compression, Span<byte> pixels, int bytesPerSample, string what, byte[] scratch)
    {
        bool hiLo = false;
        if (compression == 6)
        {
            if (packed.Length < 1) throw new InputFileException(path, $"CZI {what}: empty zstd1 data");
            int headerSize = packed[0];
            if (headerSize == 3 && packed.Length >= 3 && packed[1] == 1) hiLo = (packed[2] & 1) != 0;
            else if (headerSize != 1) throw new InputFileException(path, $"CZI {what}: zstd1 header of {headerSize} bytes, not understood (damaged, or a newer ZEN)");
            packed = packed[headerSize..];
        }
        int expected = pixels.Length;
        if (hiLo && bytesPerSample != 2) throw new InputFileException(path, $"CZI {what}: low/high byte packing on 8-bit samples (damaged)");
        var into = hiLo ? scratch.AsSpan(0, expected) : pixels;
        int got;
        ulong size;
        try
        {
            using var z = new ZstdSharp.Decompressor();
            size = ZstdSharp.Decompressor.GetDecompressedSize(packed);
            // libCZI's rule for a size that differs (a writer's rounding on pyramid edge tiles): fewer bytes are the first
            // ones and the rest 0, more are cut; but the packed halves of zstd1's byte packing only fit at the exact size
            if (size == (ulong)expected) got = z.Unwrap(packed, into);
            else if (!hiLo && size > 0 && size < (ulong)expected) { into.Clear(); got = z.Unwrap(packed, into[..(int)size]); }
            else if (!hiLo && size > (ulong)expected && size <= 2 * (ulong)expected)
            {
                var whole = new byte[size];
                if (z.Unwrap(packed, whole) != whole.Length) throw new InputFileException(path, $"CZI {what}: its Zstandard data ended early (damaged)");
                whole.AsSpan(0, expected).CopyTo(into);
                got = expected;
            }
            else throw new InputFileException(path, $"CZI {what}: its Zstandard data holds {size} bytes where the subblock's {expected} are expected (damaged)");
        }
        catch (Exception e) when (e is not InputFileException) { throw new InputFileException(path, $"CZI {what}: its Zstandard data cannot be decoded ({e.Message}): damaged", e); }
        if ((ulong)got != Math.Min(size, (ulong)expected)) throw new InputFileException(path, $"CZI {what}: decoded {got} bytes where {Math.Min(size, (ulong)expected)} are expected (damaged)");
        if (hiLo)
        {
            int half = expected / 2;
            for (int i = 0; i < half; i++) { pixels[2 * i] = into[i]; pixels[2 * i + 1] = into[half + i]; }
        }
        return size != (ulong)expected;
    }

    /// <summary>Says once per file that some compressed subblocks held another size than their stored size.</summary>
    private void WarnShort() =>
        VipsWarnings.RaiseInput($"{Path}: some compressed CZI subblocks hold fewer or more pixels than their stored size (ZEN rounds the stored size of some pyramid edge tiles); they are read as ZEN reads them: the pixels they hold, the rest 0");

    public void Dispose() => _file.Dispose();

    // ------------------------------------------------------------------ the file's structure

    private readonly record struct Header(long DirectoryPosition, long MetadataPosition);

    private static Header FileHeader(string path, FileStream file)
    {
        var seg = SegmentData(path, file, 0, "ZISRAWFILE", "the file header");
        var b = ReadExactly(path, file, seg.Offset, 80, "the file header");
        int major = BinaryPrimitives.ReadInt32LittleEndian(b);
        if (major != 1) VipsWarnings.RaiseInput($"{path}: CZI format version {major}.{BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(4))} (1.x is known); read as 1.x");
        return new Header(BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(52)), BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(60)));
    }

    /// <summary>The data of the segment at <paramref name="at"/> (after its 32-byte header), checked to be of
    /// <paramref name="id"/> and inside the file.</summary>
    private static (long Offset, long Used) SegmentData(string path, FileStream file, long at, string id, string what)
    {
        if (at < 0 || at + 32 > file.Length) throw new InputFileException(path, $"CZI {what} should be at byte {at}, outside the file ({file.Length} bytes): truncated or damaged");
        var h = ReadExactly(path, file, at, 32, what);
        string got = SegmentId(h.AsSpan(0, 16));
        if (got != id) throw new InputFileException(path, $"CZI {what} at byte {at} is a '{Printable(got)}' segment, not {id} (damaged, or not a CZI file)");
        long used = BinaryPrimitives.ReadInt64LittleEndian(h.AsSpan(24)), allocated = BinaryPrimitives.ReadInt64LittleEndian(h.AsSpan(16));
        if (used <= 0) used = allocated; // (writers may leave the used size 0)
        if (used < 0 || at + 32 + used > file.Length) throw new InputFileException(path, $"CZI {what} at byte {at} claims {used} bytes, past the file's end ({file.Length} bytes): truncated");
        return (at + 32, used);
    }

    private static string SegmentId(ReadOnlySpan<byte> id)
    {
        int n = id.IndexOf((byte)0); if (n < 0) n = id.Length;
        return System.Text.Encoding.ASCII.GetString(id[..n]);
    }

    private static string Printable(string s) => new(s.Select(c => c is >= ' ' and < (char)127 ? c : '?').ToArray());

    private static byte[] ReadExactly(string path, FileStream file, long at, int count, string what)
    {
        var b = new byte[count];
        if (at < 0 || RandomAccess.Read(file.SafeFileHandle, b, at) != count)
            throw new InputFileException(path, $"CZI {what} at byte {at} runs past the file's end ({file.Length} bytes): truncated");
        return b;
    }

    /// <summary>One entry of the subblock directory (schema "DV"): pixel type, place, compression and dimensions.</summary>
    private sealed class Entry
    {
        public int PixelType, FilePart, Compression, Dimensions, Size;
        public long FilePosition;
        public int X, Y, W, H, StoredW, StoredH;
        public Dictionary<char, int> Starts = new();
        public int Index(char d) => Starts.TryGetValue(d, out int v) ? v : 0;
    }

    private static Entry ReadEntry(string path, byte[] dir, int pos, string what)
    {
        if (pos + 32 > dir.Length) throw new InputFileException(path, $"CZI {what} lies past the directory's end (damaged)");
        var head = dir.AsSpan(pos, 32);
        if (head[0] != 'D' || head[1] != 'V') throw new InputFileException(path, $"CZI {what} has schema '{Printable(System.Text.Encoding.ASCII.GetString(head[..2]))}', not DV (damaged)");
        var e = new Entry
        {
            PixelType = BinaryPrimitives.ReadInt32LittleEndian(head[2..]),
            FilePosition = BinaryPrimitives.ReadInt64LittleEndian(head[6..]),
            FilePart = BinaryPrimitives.ReadInt32LittleEndian(head[14..]),
            Compression = BinaryPrimitives.ReadInt32LittleEndian(head[18..]),
            Dimensions = BinaryPrimitives.ReadInt32LittleEndian(head[28..]),
        };
        if (e.Dimensions < 2 || e.Dimensions > 32) throw new InputFileException(path, $"CZI {what} claims {e.Dimensions} dimensions (damaged)");
        e.Size = 32 + 20 * e.Dimensions;
        if (pos + e.Size > dir.Length) throw new InputFileException(path, $"CZI {what} lies past the directory's end (damaged)");
        bool x = false, y = false;
        for (int i = 0; i < e.Dimensions; i++)
        {
            var d = dir.AsSpan(pos + 32 + 20 * i, 20);
            char name = (char)d[0];
            int start = BinaryPrimitives.ReadInt32LittleEndian(d[4..]), size = BinaryPrimitives.ReadInt32LittleEndian(d[8..]), stored = BinaryPrimitives.ReadInt32LittleEndian(d[16..]);
            if (name == 'X') { e.X = start; e.W = size; e.StoredW = stored; x = true; }
            else if (name == 'Y') { e.Y = start; e.H = size; e.StoredH = stored; y = true; }
            else e.Starts[name] = start;
        }
        if (!x || !y) throw new InputFileException(path, $"CZI {what} has no X or Y dimension (damaged)");
        if (e.W < 1 || e.H < 1 || e.StoredW < 1 || e.StoredH < 1 || e.W > ImageLimits.MaxSide || e.H > ImageLimits.MaxSide)
            throw new InputFileException(path, $"CZI {what} claims a {e.W} x {e.H} subblock stored as {e.StoredW} x {e.StoredH} (damaged)");
        return e;
    }

    /// <summary>The metadata's pixel size (Scaling, metres per pixel, as µm) and channel names.</summary>
    private static ((double X, double Y)? Microns, List<string> Channels) ParseMetadata(string path, FileStream file, long at)
    {
        if (at <= 0) return (null, []);
        var seg = SegmentData(path, file, at, "ZISRAWMETADATA", "metadata");
        var sizes = ReadExactly(path, file, seg.Offset, 8, "metadata");
        int xmlSize = BinaryPrimitives.ReadInt32LittleEndian(sizes);
        if (xmlSize <= 0) return (null, []);
        if (xmlSize > 256 << 20 || seg.Offset + 256 + xmlSize > file.Length)
            throw new InputFileException(path, $"CZI metadata claims {xmlSize} bytes of XML, past the file's end or beyond 256 MiB (damaged)");
        var xml = ReadExactly(path, file, seg.Offset + 256, xmlSize, "metadata");
        double? sx = null, sy = null;
        var channels = new List<string>();
        try
        {
            using var reader = XmlReader.Create(new MemoryStream(xml), new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, IgnoreComments = true });
            var doc = System.Xml.Linq.XDocument.Load(reader);
            foreach (var d in doc.Descendants("Distance").Where(d => d.Parent?.Name == "Items" && d.Parent.Parent?.Name == "Scaling"))
            {
                string? id = (string?)d.Attribute("Id");
                if (id is not ("X" or "Y") || d.Element("Value")?.Value is not { } text) continue;
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double m) || !(m > 0) || !double.IsFinite(m)) continue;
                if (id == "X") sx = m * 1e6; else sy = m * 1e6;
            }
            var image = doc.Descendants("Information").Elements("Image").FirstOrDefault();
            foreach (var ch in image?.Element("Dimensions")?.Element("Channels")?.Elements("Channel") ?? [])
                channels.Add((string?)ch.Attribute("Name") ?? (string?)ch.Attribute("Id") ?? "");
        }
        catch (XmlException e) { throw new InputFileException(path, $"CZI metadata is not well-formed XML ({e.Message})", e); }
        (double, double)? microns = sx is { } a && sy is { } b ? (a, b) : sx is { } c && sy is null ? (c, c) : null;
        return (microns, channels);
    }

    private static string DimensionName(char d) => d switch
    {
        'Z' => "focal planes (Z)", 'T' => "time points (T)", 'R' => "rotations (R)", 'I' => "illuminations (I)",
        'H' => "phases (H)", 'V' => "views (V)", 'B' => "blocks (B)", _ => $"indices of dimension {d}",
    };

    private static string PixelTypeName(int t) => t switch
    {
        0 => "Gray8", 1 => "Gray16", 2 => "Gray32Float", 3 => "Bgr24", 4 => "Bgr48", 8 => "Bgr96Float", 9 => "Bgra32",
        10 => "Gray64ComplexFloat", 11 => "Bgr192ComplexFloat", 12 => "Gray32", 13 => "Gray64", _ => $"unknown ({t})",
    };

    private static string CompressionName(int c) => c switch
    {
        0 => "no compression", 1 => "JPEG", 2 => "LZW", 3 => "lossless JPEG", 4 => "JPEG XR", 5 => "Zstandard (zstd0)", 6 => "Zstandard (zstd1)",
        >= 100 and < 1000 => $"a camera's raw format ({c})", >= 1000 => $"a system's raw format ({c})", _ => $"compression {c}",
    };
}
