using System.Buffers.Binary;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// A palette mask read back as its indices. Label masks are often saved with a palette (QuPath's labelled-image export,
/// CVAT, Pascal VOC: the index is the class id, the colour only shows it); libvips expands such an image to the palette's
/// colours, whose first band is no class id (a class drawn in pure green read as background). The colours libvips gives
/// are mapped back here: to the index that has that colour (the lowest, where several share it, with a warning unless they
/// are the padding at the palette's end), and to an error naming the colour and pixel where none has it.
/// </summary>
public sealed class PaletteIndex
{
    private readonly Dictionary<long, int> _rgb = new(), _grey = new();
    /// <summary>How many entries the palette has.</summary>
    public int Entries { get; }
    /// <summary>Colours that several entries share (not counting a padding run at the end): pixels of such a colour read
    /// as the lowest of those indices, which is said in a warning.</summary>
    public IReadOnlyList<string> Shared { get; }

    /// <param name="colours">per entry, the red, green and blue that libvips gives for it (8- or 16-bit values)</param>
    public PaletteIndex(IReadOnlyList<(int R, int G, int B)> colours)
    {
        Entries = colours.Count;
        // a palette is often padded to 256 (or 2^bits) entries with one colour, usually black, which an entry in use may
        // also have (background): a colour that several entries share reads as the lowest of them, the padding's silently
        int padding = colours.Count - 1; // where the run of one colour that ends the palette starts
        while (padding > 0 && colours[padding - 1] == colours[padding]) padding--;
        if (padding >= colours.Count - 1) padding = int.MaxValue; // a run of one entry is no padding
        var shared = new List<string>();
        for (int i = 0; i < colours.Count; i++)
        {
            var (r, g, b) = colours[i];
            if (!_rgb.TryAdd(RgbKey(r, g, b), i) && i < padding)
                shared.Add($"index {i} has the colour ({r}, {g}, {b}) of index {_rgb[RgbKey(r, g, b)]}");
            if (r == g && g == b) _grey.TryAdd(r, i);
        }
        Shared = shared;
    }

    private static long RgbKey(long r, long g, long b) => (r << 32) | (g << 16) | b;

    /// <summary>
    /// The palette of a mask, when it has one: a TIFF with a palette photometric and its colour map (the 8-bit colours
    /// libtiff under libvips makes of it: each 16-bit value's top byte, or its low byte when every top byte is zero, as old
    /// 8-bit maps are; 16-bit palettes keep their values), or a PNG that libvips marks as paletted (its PLTE chunk).
    /// </summary>
    /// <exception cref="InputFileException">a palette image whose palette cannot be read</exception>
    public static PaletteIndex? TryRead(string path, NetVips.Image decoded, bool isTiff, TiffPageLayout? directory)
    {
        if (isTiff)
        {
            if (directory is null || directory.One(262, -1) != 3) return null;
            int bits = (int)(directory.All(258)?[0] ?? 8);
            if (bits is < 1 or > 16) throw new InputFileException(path, $"a palette image of {bits}-bit samples");
            int len = 1 << bits;
            var map = directory.All(320);
            if (map is null || map.Length < 3 * len)
                throw new InputFileException(path, $"a palette image whose colour map holds {map?.Length ?? 0} values for {len} entries");
            bool topBytes = false;
            for (int i = 0; i < 3 * len; i++) topBytes |= (map[i] >> 8) != 0;
            long C(long v) => bits > 8 ? v : topBytes ? v >> 8 : v & 0xff;
            var colours = new (int, int, int)[len];
            for (int i = 0; i < len; i++) colours[i] = ((int)C(map[i]), (int)C(map[len + i]), (int)C(map[2 * len + i]));
            return Warned(new PaletteIndex(colours), path);
        }
        bool paletted;
        try { paletted = decoded.Contains("palette") && Convert.ToInt64(decoded.Get("palette")) != 0; }
        catch (NetVips.VipsException) { paletted = false; }
        if (!paletted || !decoded.Format.Equals(NetVips.Enums.BandFormat.Uchar)) return null;
        return PngPalette(path) is { } plte ? Warned(new PaletteIndex(plte), path) : throw new InputFileException(path, "a paletted PNG without a readable PLTE chunk");
    }

    private static PaletteIndex Warned(PaletteIndex p, string path)
    {
        if (p.Shared.Count > 0)
            VipsWarnings.RaiseInput($"{path}: its palette gives several indices one colour ({string.Join("; ", p.Shared.Take(5))}{(p.Shared.Count > 5 ? $"; {p.Shared.Count - 5} more" : "")}): " +
                               "pixels of such a colour read as the lowest of those indices");
        return p;
    }

    /// <summary>The colours of a PNG's PLTE chunk, or null when the file has none before its image data.</summary>
    private static (int, int, int)[]? PngPalette(string path)
    {
        using var f = File.OpenRead(path);
        Span<byte> head = stackalloc byte[8];
        if (f.ReadAtLeast(head, 8, throwOnEndOfStream: false) < 8) return null;
        for (int chunk = 0; chunk < 10_000; chunk++)
        {
            if (f.ReadAtLeast(head, 8, throwOnEndOfStream: false) < 8) return null;
            long length = BinaryPrimitives.ReadUInt32BigEndian(head);
            string type = System.Text.Encoding.ASCII.GetString(head[4..]);
            if (length > f.Length - f.Position) return null;
            if (type == "PLTE")
            {
                if (length % 3 != 0 || length == 0 || length > 3 * 256) return null;
                var data = new byte[length];
                f.ReadExactly(data);
                var colours = new (int, int, int)[length / 3];
                for (int i = 0; i < colours.Length; i++) colours[i] = (data[3 * i], data[3 * i + 1], data[3 * i + 2]);
                return colours;
            }
            if (type is "IDAT" or "IEND") return null;
            f.Position += length + 4; // the data and its CRC
        }
        return null;
    }

    /// <summary>Writes the index of each pixel's colour (<paramref name="colours"/>: <paramref name="bands"/> samples a pixel,
    /// RGB first, or grey when libvips gave fewer than three bands) into <paramref name="dest"/>.</summary>
    /// <param name="x0">the region's left column and <paramref name="y0"/> its top row, and <paramref name="w"/> its width: for messages</param>
    /// <exception cref="InputFileException">a colour that is no entry's</exception>
    public void Map(ReadOnlySpan<ushort> colours, int bands, Span<ushort> dest, string path, int x0, int y0, int w)
    {
        var map = bands >= 3 ? _rgb : _grey;
        long lastKey = -1; int last = 0;
        for (int i = 0; i < dest.Length; i++)
        {
            int p = i * bands;
            long key = bands >= 3 ? RgbKey(colours[p], colours[p + 1], colours[p + 2]) : colours[p];
            if (key != lastKey)
            {
                if (!map.TryGetValue(key, out last))
                    throw new InputFileException(path, $"pixel {x0 + i % w},{y0 + i / w} has the colour {Describe(colours.Slice(p, Math.Min(bands, 3)))}, " +
                                                       $"which is none of its palette's {Entries} colours (a palette mask is read by mapping each colour back to its index, the class id)");
                lastKey = key;
            }
            dest[i] = (ushort)last;
        }
    }

    private static string Describe(ReadOnlySpan<ushort> c) => c.Length >= 3 ? $"({c[0]}, {c[1]}, {c[2]})" : $"grey {c[0]}";
}
