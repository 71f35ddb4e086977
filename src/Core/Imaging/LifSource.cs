using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Leica LIF files (LAS X, LAS AF: Leica's confocal and widefield systems), read here.
/// <para>A LIF file is an XML header (UTF-16) that describes a tree of elements, then memory blocks, each named by an id
/// the XML's <c>Memory</c> elements refer to. An image element describes its channels (bits and byte offset of each) and
/// its dimensions (X = 1, Y = 2, Z = 3, T = 4, the wavelengths 5 and 9, a tile scan's tiles 10, …), each with its number
/// of elements, physical length and byte increment, so a sample's place in the block is the sum of each index times its
/// dimension's increment plus its channel's. The image read is the file's first image (others warned about), its
/// channels in order, at the first index of every dimension but X and Y (warned about); an XZ scan, which has no Y,
/// reads Z as its rows. Samples of 8 bits read as 8-bit, of 9 to 16 bits (a 12-bit camera's) as 16-bit.</para>
/// Each instance is meant for one thread at a time; open one per worker.
/// </summary>
public sealed class LifSource : IRegionSource
{
    private readonly FileStream _file;
    private readonly long _base;                 // the image's memory block's first byte
    private readonly long _xInc, _yInc;
    private readonly long[] _channelInc;
    private readonly int _bytes;
    private byte[] _row = [];

    public string Path { get; }
    public int Width { get; }
    public int Height { get; }
    public int Channels { get; }
    public int BitDepth => _bytes * 8;
    /// <summary>The image element's name (its path in the file's tree).</summary>
    public string ImageName { get; }
    /// <summary>How many images the file holds (the first is read unless one is chosen: <see cref="Open"/>).</summary>
    public int Images { get; }
    /// <summary>Microns per pixel from the X and Y dimensions' lengths, when the file states them in metres.</summary>
    public (double X, double Y)? MicronsPerPixel { get; }
    /// <summary>The bits each channel's samples hold (8, 12, 16).</summary>
    public IReadOnlyList<int> ChannelBits { get; }
    /// <summary>The other dimensions, whose first index is read (name and count).</summary>
    public IReadOnlyList<(string Name, int Count)> OtherDimensions { get; }

    /// <summary>True when the file starts as a LIF file does (its magic, then an XML header of Leica's container).</summary>
    public static bool IsLif(string path)
    {
        // a named pipe or a device is no file of any format: opening one to read would wait for a writer for ever
        if (!InputFiles.HasData(path)) return false;
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
            Span<byte> h = stackalloc byte[13 + 2 * 4];
            if (RandomAccess.Read(f.SafeFileHandle, h, 0) != h.Length) return false;
            return BinaryPrimitives.ReadInt32LittleEndian(h) == 0x70 && h[8] == 0x2A && Encoding.Unicode.GetString(h[13..]) == "<LMS";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <param name="image">which of the file's images (0 the first, in the file's order; see <see cref="Images"/>); −1:
    /// the first, with a warning when there are others</param>
    public static LifSource Open(string path, int page = 0, int image = -1)
    {
        if (page != 0)
            throw new InputFileException(path, $"level {page}: a LIF image has one resolution (--level 0)");
        if (image < -1) throw new InputFileException(path, $"image (series) {image} does not exist");
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.RandomAccess);
        try { return new LifSource(path, file, image); }
        catch { file.Dispose(); throw; }
    }

    /// <summary>The pixel size a LIF file's image states (its X and Y lengths; the first image's for −1).</summary>
    public static (double X, double Y)? PixelSizeOf(string path, int image = -1)
    {
        using var s = Open(path, 0, image);
        return s.MicronsPerPixel;
    }

    /// <summary>The file's images, in order: their names (as paths of the project's folders) and sizes.</summary>
    public IReadOnlyList<(string Name, long Width, long Height)> ImageList { get; }

    private static readonly Dictionary<int, string> DimensionNames = new()
    {
        [1] = "X", [2] = "Y", [3] = "focal planes (Z)", [4] = "time points (T)", [5] = "emission wavelengths (λ)", [6] = "rotations",
        [7] = "XT slices", [8] = "TSlices", [9] = "excitation wavelengths", [10] = "tiles of a tile scan (merge them in LAS X to read the whole)",
    };

    private LifSource(string path, FileStream file, int chosen)
    {
        Path = path; _file = file;
        long length = file.Length;
        // --- the XML header ---
        var head = Read(path, file, 0, 13, "its header");
        if (BinaryPrimitives.ReadInt32LittleEndian(head) != 0x70 || head[8] != 0x2A) throw new InputFileException(path, "not a LIF file (its first bytes are not Leica's)");
        long chars = BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(9));
        if (chars < 1 || 13 + 2 * chars > length || chars > 128 << 20)
            throw new InputFileException(path, $"LIF header claims {chars} characters of XML, past the file's end ({length} bytes): truncated or damaged");
        XDocument xml;
        try
        {
            var text = Encoding.Unicode.GetString(Read(path, file, 13, (int)(2 * chars), "its XML header"));
            using var reader = XmlReader.Create(new StringReader(text), new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null });
            xml = XDocument.Load(reader);
        }
        catch (XmlException e) { throw new InputFileException(path, $"LIF header is not well-formed XML ({e.Message})", e); }

        // --- the memory blocks, by id ---
        var blocks = new Dictionary<string, (long Offset, long Size)>(StringComparer.Ordinal);
        long pos = 13 + 2 * chars;
        while (pos < length)
        {
            var b = Read(path, file, pos, Math.Min(30, length - pos) is var n && n >= 18 ? (int)n : throw Cut(path, pos), "a memory block's header");
            if (BinaryPrimitives.ReadInt32LittleEndian(b) != 0x70 || b[8] != 0x2A)
            {
                if (b.All(x => x == 0)) { VipsWarnings.RaiseInput($"{path}: the LIF file ends in zeros at byte {pos} (truncated while saved?); the blocks after it are missing"); break; }
                throw new InputFileException(path, $"LIF memory block at byte {pos} does not start as one (damaged)");
            }
            long size; int at;
            if (b[13] == 0x2A) { size = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(9)); at = 14; }           // version 1: a 32-bit size
            else if (b[17] == 0x2A) { size = BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(9)); at = 18; }        // version 2: a 64-bit size
            else throw new InputFileException(path, $"LIF memory block at byte {pos}: its size is not followed by Leica's marker (damaged)");
            var idChars = BinaryPrimitives.ReadUInt32LittleEndian(Read(path, file, pos + at, 4, "a memory block's id"));
            if (idChars > 1024) throw new InputFileException(path, $"LIF memory block at byte {pos} claims an id of {idChars} characters (damaged)");
            string id = Encoding.Unicode.GetString(Read(path, file, pos + at + 4, (int)(2 * idChars), "a memory block's id"));
            long data = pos + at + 4 + 2 * idChars;
            if (size < 0 || data + size > length)
            {
                VipsWarnings.RaiseInput($"{path}: LIF memory block {id} at byte {pos} claims {size} bytes, past the file's end ({length} bytes): truncated");
                blocks[id] = (data, Math.Max(0, length - data));
                break;
            }
            blocks[id] = (data, size);
            pos = data + size;
        }

        // --- the images: elements whose Data holds an Image with its description, and whose memory is not empty ---
        var images = xml.Descendants("Element")
            .Where(e => e.Element("Data")?.Element("Image")?.Element("ImageDescription") is not null
                        && long.TryParse((string?)e.Element("Memory")?.Attribute("Size"), NumberStyles.Integer, CultureInfo.InvariantCulture, out long sz) && sz > 0)
            .ToList();
        Images = images.Count;
        if (images.Count == 0) throw new InputFileException(path, "LIF file holds no image (no element with an image description and pixels)");
        static string NameOf(XElement e) => string.Join("/", e.AncestorsAndSelf("Element").Reverse().Select(a => (string?)a.Attribute("Name") ?? "?"));
        static long Extent(XElement e, int dim) => long.TryParse((string?)e.Element("Data")?.Element("Image")?.Element("ImageDescription")?.Element("Dimensions")
            ?.Elements("DimensionDescription").FirstOrDefault(d => (string?)d.Attribute("DimID") == dim.ToString(CultureInfo.InvariantCulture))?.Attribute("NumberOfElements"),
            NumberStyles.Integer, CultureInfo.InvariantCulture, out long n) ? n : 0;
        ImageList = [.. images.Select(e => (NameOf(e), Extent(e, 1), Extent(e, 2) is > 0 and var y ? y : Extent(e, 3)))]; // (an XZ scan's rows are its Z)
        if (chosen >= images.Count)
            throw new InputFileException(path, $"holds {images.Count} image(s) (series 0..{images.Count - 1}); series {chosen} does not exist (actorseg info lists them)");
        var image = images[Math.Max(0, chosen)];
        ImageName = NameOf(image);
        if (images.Count > 1 && chosen < 0) VipsWarnings.RaiseInput($"{path}: a LIF file of {images.Count} images; the first ({ImageName}) is read (--series N reads image N; actorseg info lists them)");
        var desc = image.Element("Data")!.Element("Image")!.Element("ImageDescription")!;
        var channels = desc.Element("Channels")?.Elements("ChannelDescription").ToList() ?? [];
        var dims = desc.Element("Dimensions")?.Elements("DimensionDescription").ToList() ?? [];
        if (channels.Count == 0 || dims.Count == 0) throw new InputFileException(path, $"LIF image {ImageName} describes no channels or no dimensions (damaged)");
        if (channels.Count > ImageLimits.MaxChannels) throw new InputFileException(path, $"LIF image {ImageName} has {channels.Count} channels; at most {ImageLimits.MaxChannels} are read");
        ChannelBits = channels.Select(c => Int(path, c, "Resolution")).ToList();
        if (ChannelBits.Any(b => b < 1 || b > 16))
            throw new InputFileException(path, $"LIF image {ImageName} has channels of {string.Join(", ", ChannelBits)} bits: samples of 1 to 16 bits are read (float or 32-bit data: export to OME-TIFF)");
        var bytes = ChannelBits.Select(b => b <= 8 ? 1 : 2).Distinct().ToList();
        if (bytes.Count > 1) throw new InputFileException(path, $"LIF image {ImageName} mixes 8-bit and 16-bit channels: not read");
        _bytes = bytes[0];
        Channels = channels.Count;
        _channelInc = channels.Select(c => Long(path, c, "BytesInc")).ToArray();

        var ids = dims.Select(d => Int(path, d, "DimID")).ToList();
        if (ids.Distinct().Count() != ids.Count) throw new InputFileException(path, $"LIF image {ImageName} describes a dimension twice (damaged)");
        var byId = dims.Zip(ids).ToDictionary(p => p.Second, p => p.First);
        if (!byId.TryGetValue(1, out var dx)) throw new InputFileException(path, $"LIF image {ImageName} has no X dimension: not an image ActorSeg reads");
        XElement dy;
        if (byId.TryGetValue(2, out var y)) dy = y;
        else if (byId.TryGetValue(3, out var z))
        {
            dy = z;
            VipsWarnings.RaiseInput($"{path}: LIF image {ImageName} is an XZ scan (no Y dimension); its Z is read as the image's rows");
        }
        else throw new InputFileException(path, $"LIF image {ImageName} has no Y or Z dimension (a line scan?): not an image ActorSeg reads");
        long w = Long(path, dx, "NumberOfElements"), h = Long(path, dy, "NumberOfElements");
        if (w < 1 || h < 1 || w > ImageLimits.MaxSide || h > ImageLimits.MaxSide || w * h > ImageLimits.MaxPixels)
            throw new InputFileException(path, $"LIF image {ImageName} of {w} x {h} pixels: outside the sizes read");
        Width = (int)w; Height = (int)h;
        _xInc = Long(path, dx, "BytesInc"); _yInc = Long(path, dy, "BytesInc");
        OtherDimensions = dims.Where(d => d != dx && d != dy)
            .Select(d => (DimensionNames.GetValueOrDefault(Int(path, d, "DimID"), $"dimension {Int(path, d, "DimID")}"), Int(path, d, "NumberOfElements")))
            .Where(d => d.Item2 > 1).ToList();
        foreach (var (name, count) in OtherDimensions)
            VipsWarnings.RaiseInput($"{path}: LIF image {ImageName} has {count} {name}; the first is read");

        // --- its pixels: the block its Memory names, large enough for every sample read ---
        string blockId = (string?)image.Element("Memory")!.Attribute("MemoryBlockID") ?? "";
        if (!blocks.TryGetValue(blockId, out var block))
            throw new InputFileException(path, $"LIF image {ImageName}'s pixels (memory block {blockId}) are not in the file: truncated or damaged");
        // (bounded by the block's size as the XML declares it: a block cut short is said to be truncated, below)
        long declared = Math.Max(block.Size, long.Parse((string)image.Element("Memory")!.Attribute("Size")!, CultureInfo.InvariantCulture));
        if (_xInc < 0 || _yInc < 0 || _channelInc.Any(c => c < 0) || _xInc > declared || _yInc > declared || _channelInc.Any(c => c > declared))
            throw new InputFileException(path, $"LIF image {ImageName} has byte increments below 0 or beyond its memory block ({declared} bytes): damaged");
        long last;
        try { last = checked(_channelInc.Max() + (w - 1) * _xInc + (h - 1) * _yInc + _bytes); }
        catch (OverflowException) { last = long.MaxValue; } // (increments a damaged header made absurd: more than any block holds)
        if (last > block.Size)
            throw new InputFileException(path, $"LIF image {ImageName} needs {last} bytes of pixels, its memory block {blockId} holds {block.Size}: truncated or damaged");
        _base = block.Offset;

        double? sx = Microns(dx, w), sy = Microns(dy, h);
        MicronsPerPixel = sx is { } a && sy is { } c2 ? (a, c2) : null;
    }

    /// <summary>A dimension's pixel size: its length (first to last pixel, in metres) over its pixels less one.</summary>
    private static double? Microns(XElement d, long n)
    {
        if (n < 2 || (string?)d.Attribute("Unit") != "m") return null;
        if (!double.TryParse((string?)d.Attribute("Length"), NumberStyles.Float, CultureInfo.InvariantCulture, out double len) || !(len > 0) || !double.IsFinite(len)) return null;
        return len * 1e6 / (n - 1);
    }

    private static int Int(string path, XElement e, string name) => (int)Math.Clamp(Long(path, e, name), int.MinValue, int.MaxValue);

    private static long Long(string path, XElement e, string name) =>
        long.TryParse((string?)e.Attribute(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) ? v
            : throw new InputFileException(path, $"LIF {e.Name.LocalName} has no whole-number {name} (damaged)");

    private static InputFileException Cut(string path, long pos) => new(path, $"LIF file ends inside a memory block's header at byte {pos}: truncated");

    private static byte[] Read(string path, FileStream file, long at, int count, string what)
    {
        var b = new byte[count];
        if (RandomAccess.Read(file.SafeFileHandle, b, at) != count)
            throw new InputFileException(path, $"LIF {what} at byte {at} runs past the file's end ({file.Length} bytes): truncated");
        return b;
    }

    public void ReadRegion(int x, int y, int w, int h, Span<ushort> dest)
    {
        if (x < 0 || y < 0 || w < 0 || h < 0 || (long)x + w > Width || (long)y + h > Height)
            throw new ArgumentOutOfRangeException(nameof(x), $"region {x},{y} {w}x{h} outside the {Width}x{Height} image");
        int C = Channels;
        if (dest.Length < (long)w * h * C) throw new ArgumentException("destination too small", nameof(dest));
        if (w == 0 || h == 0) return;
        // a row's samples of one channel span (w - 1) × the X increment; channels side by side (interleaved) are read at once
        long lo = _channelInc.Min(), hi = _channelInc.Max();
        long span = hi - lo + (w - 1) * _xInc + _bytes;
        bool together = span <= 4L * w * C * _bytes;
        for (int r = 0; r < h; r++)
        {
            long rowAt = _base + (y + r) * _yInc + x * _xInc;
            var drow = dest.Slice(r * w * C, w * C);
            if (together)
            {
                var buf = Row((int)span);
                if (RandomAccess.Read(_file.SafeFileHandle, buf, rowAt + lo) != buf.Length) throw Shrank();
                for (int c = 0; c < C; c++) Put(buf, _channelInc[c] - lo, drow, c);
            }
            else
                for (int c = 0; c < C; c++)
                {
                    var buf = Row((int)((w - 1) * _xInc + _bytes));
                    if (RandomAccess.Read(_file.SafeFileHandle, buf, rowAt + _channelInc[c]) != buf.Length) throw Shrank();
                    Put(buf, 0, drow, c);
                }
        }
    }

    private void Put(ReadOnlySpan<byte> buf, long start, Span<ushort> drow, int c)
    {
        int C = Channels, n = drow.Length / C;
        if (_bytes == 1) for (int i = 0; i < n; i++) drow[i * C + c] = buf[(int)(start + i * _xInc)];
        else for (int i = 0; i < n; i++) drow[i * C + c] = BinaryPrimitives.ReadUInt16LittleEndian(buf[(int)(start + i * _xInc)..]);
    }

    private Span<byte> Row(int n)
    {
        if (_row.Length < n) _row = new byte[Math.Max(n, 4096)];
        return _row.AsSpan(0, n);
    }

    private InputFileException Shrank() => new(Path, "LIF pixels ended early while reading (the file shrank?)");

    public void Dispose() => _file.Dispose();
}
