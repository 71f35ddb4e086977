using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// The layout tags of one page of a TIFF or BigTIFF (either byte order): size, samples, compression, and where its tiles or
/// strips lie. Read to check a file before libvips decodes it, because libtiff under libvips does not fail on everything
/// that is wrong: a compression it was built without and a height tag claiming more tiles than the file lists both come
/// back as pixels of 0, with no error. <see cref="LayoutProblem"/> names such damage; <see cref="SampleProblem"/> explains
/// a sample format ActorSeg does not take when libvips gives only "unable to call …".
/// </summary>
public sealed class TiffPageLayout
{
    /// <summary>The compressions the libtiff inside the bundled libvips decodes: none, CCITT RLE/G3/G4, LZW, old and new
    /// JPEG, deflate (Adobe and the old code), PackBits. (ZSTD, WebP, LZMA and JPEG 2000 are not built in: probed by
    /// writing and reading back through libvips.)</summary>
    public static readonly IReadOnlySet<long> DecodedCompressions = new HashSet<long> { 1, 2, 3, 4, 5, 6, 7, 8, 32773, 32946 };

    private static readonly Dictionary<long, string> CompressionNames = new()
    {
        [33003] = "Aperio JPEG 2000 YCbCr", [33005] = "Aperio JPEG 2000 RGB", [34712] = "JPEG 2000", [34925] = "LZMA",
        [50000] = "ZSTD", [50001] = "WebP", [50002] = "JPEG XL", [34887] = "LERC", [34892] = "lossy JPEG (DNG)",
    };

    private readonly Dictionary<int, long[]> _tags;
    public bool BigTiff { get; }
    public bool LittleEndian { get; }
    public long FileLength { get; }
    /// <summary>Where this directory starts in the file.</summary>
    public long DirectoryOffset { get; private init; }

    private TiffPageLayout(Dictionary<int, long[]> tags, bool big, bool le, long length)
    {
        _tags = tags; BigTiff = big; LittleEndian = le; FileLength = length;
    }

    public long One(int tag, long missing) => _tags.TryGetValue(tag, out var v) ? v[0] : missing;
    public long[]? All(int tag) => _tags.TryGetValue(tag, out var v) ? v : null;
    public long Width => One(256, -1);
    public long Height => One(257, -1);
    public long SamplesPerPixel => One(277, 1);
    public long Compression => One(259, 1);
    public bool Tiled => _tags.ContainsKey(322) || _tags.ContainsKey(323);
    /// <summary>Rows per strip as libtiff reads them: the whole image when the tag is absent, 0 or past the end.</summary>
    public long RowsPerStrip => One(278, Height) is var rps && rps > 0 && rps <= Height ? rps : Height;

    /// <summary>
    /// How many planes like this page are stored one after another from its first byte, as ImageJ and Fiji save a stack
    /// over 4 GB: one directory for the first plane, and the description's <c>images=N</c> planes following it raw, since a
    /// classic TIFF cannot point past 4 GB. Only an uncompressed single-sample page in contiguous strips, its directory
    /// written before its pixels, qualifies; the count is how many whole planes the file holds from there (at least 1; 1
    /// when the directory follows the pixels), 0 for any other page.
    /// </summary>
    public long ContiguousPlanes()
    {
        if (ContiguousPlaneBytes() is not { } bytes || All(273) is not { } offsets) return 0;
        // ImageJ writes its directory before the pixels; one written after them is another writer's file, whose bytes past
        // the first plane are no planes
        if (DirectoryOffset >= offsets[0]) return 1;
        return (FileLength - offsets[0]) / bytes;
    }

    /// <summary>The bytes of one plane when this page is an uncompressed single-sample grey page (black is zero) of 8-, 16-,
    /// 32- or 64-bit samples in strips that follow one another with no gap (see <see cref="ContiguousPlanes"/>); else null.</summary>
    public long? ContiguousPlaneBytes()
    {
        if (Compression != 1 || SamplesPerPixel != 1 || Tiled || One(262, -1) != 1) return null; // (black is zero)
        if (Width <= 0 || Height <= 0 || Width > ImageLimits.MaxSide || Height > ImageLimits.MaxSide) return null;
        if (All(258) is not [var bits] || bits is not (8 or 16 or 32 or 64) || One(339, 1) is not (1 or 2 or 3)) return null;
        if (All(273) is not { Length: > 0 } offsets || All(279) is not { } counts || counts.Length != offsets.Length) return null;
        long bytes = Width * Height * (bits / 8), at = offsets[0], sum = 0;
        for (int i = 0; i < offsets.Length; i++)
        {
            if (offsets[i] != at || counts[i] <= 0) return null;
            at += counts[i]; sum += counts[i];
        }
        return sum == bytes && offsets[0] > 0 && offsets[0] + bytes <= FileLength ? bytes : null;
    }

    /// <summary>The offsets of the page's SubIFDs (tag 330: an OME-TIFF pyramid's reduced-resolution levels), or null.</summary>
    public long[]? SubIfds => All(330);

    /// <summary>The most SubIFDs of one page this reads (an OME pyramid has one per halving: 20 go from 2^20 px to 1).</summary>
    public const int MaxSubIfds = 32;

    /// <summary>Page <paramref name="page"/>'s directory (or, with <paramref name="subIfd"/> ≥ 0, that SubIFD of it), or null
    /// when the file is not a TIFF or its directory chain or entries are malformed (libvips then reads the header and says
    /// what is wrong).</summary>
    public static TiffPageLayout? TryRead(string path, int page, int subIfd = -1)
    {
        try
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            return Read(file, page, subIfd);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or OverflowException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>How many pages (directories) the file's chain holds, up to 100,000; 0 when it is not a readable TIFF.</summary>
    public static int CountPages(string path)
    {
        try
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            int n = 0;
            foreach (var _ in Chain(file)) if (++n >= 100_000) break;
            return n;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or OverflowException or ArgumentException)
        {
            return 0;
        }
    }

    private readonly record struct Header(bool Le, bool Big, long Length, long FirstIfd)
    {
        public ushort U16(ReadOnlySpan<byte> b) => Le ? BinaryPrimitives.ReadUInt16LittleEndian(b) : BinaryPrimitives.ReadUInt16BigEndian(b);
        public uint U32(ReadOnlySpan<byte> b) => Le ? BinaryPrimitives.ReadUInt32LittleEndian(b) : BinaryPrimitives.ReadUInt32BigEndian(b);
        public ulong U64(ReadOnlySpan<byte> b) => Le ? BinaryPrimitives.ReadUInt64LittleEndian(b) : BinaryPrimitives.ReadUInt64BigEndian(b);

        /// <summary>The directory's entry count (its first field).</summary>
        public long Count(SafeFileHandle file, long at)
        {
            Span<byte> b = stackalloc byte[8];
            int need = Big ? 8 : 2;
            if (at + need > Length || RandomAccess.Read(file, b[..need], at) != need) throw new InvalidDataException("directory outside the file");
            return Big ? (long)U64(b) : U16(b);
        }

        /// <summary>The offset of the directory after the one at <paramref name="at"/>.</summary>
        public long Next(SafeFileHandle file, long at)
        {
            long next = at + (Big ? 8 : 2) + Count(file, at) * (Big ? 20 : 12);
            Span<byte> b = stackalloc byte[8];
            int need = Big ? 8 : 4;
            if (next + need > Length || RandomAccess.Read(file, b[..need], next) != need) throw new InvalidDataException("directory outside the file");
            return Big ? (long)U64(b) : U32(b);
        }
    }

    private static Header? ReadHeader(SafeFileHandle file)
    {
        long length = RandomAccess.GetLength(file);
        Span<byte> head = stackalloc byte[16];
        if (length < 16 || RandomAccess.Read(file, head, 0) != 16) return null;
        bool le = head[0] == 'I' && head[1] == 'I', be = head[0] == 'M' && head[1] == 'M';
        if (!le && !be) return null;
        var h = new Header(le, false, length, 0);
        int magic = h.U16(head[2..]);
        bool big = magic == 43;
        if (!big && magic != 42) return null;
        if (big && (h.U16(head[4..]) != 8 || h.U16(head[6..]) != 0)) return null;
        return h with { Big = big, FirstIfd = big ? (long)h.U64(head[8..]) : h.U32(head[4..]) };
    }

    /// <summary>The offsets of the file's directories in chain order; a loop or an offset outside the file ends it.</summary>
    private static IEnumerable<long> Chain(SafeFileHandle file)
    {
        if (ReadHeader(file) is not { } h) yield break;
        var seen = new HashSet<long>();
        for (long ifd = h.FirstIfd; ifd > 0 && ifd < h.Length && seen.Add(ifd); ifd = h.Next(file, ifd)) yield return ifd;
    }

    /// <inheritdoc cref="TryRead"/>
    /// <exception cref="InvalidDataException">a directory offset points outside the file</exception>
    public static TiffPageLayout? Read(SafeFileHandle file, int page, int subIfd = -1)
    {
        if (page < 0 || ReadHeader(file) is not { } h) return null;
        long ifd = Chain(file).Skip(page).FirstOrDefault(-1);
        if (ifd < 0) return null;
        if (subIfd < 0) return ReadAt(file, h, ifd);
        // a SubIFD of the page: its offset from the page's tag 330
        if (ReadAt(file, h, ifd)?.SubIfds is not { } subs || subIfd >= subs.Length) return null;
        long at = subs[subIfd];
        if (at <= 0 || at >= h.Length) throw new InvalidDataException("SubIFD outside the file");
        return ReadAt(file, h, at);
    }

    /// <summary>
    /// The resolution levels of a TIFF whose first page keeps its reduced-resolution images as SubIFDs (an OME-TIFF pyramid,
    /// as QuPath, bfconvert -pyramid, raw2ometiff and libvips write them): 1 + the SubIFDs of page 0 that are each smaller
    /// than the one before (taken in order, up to the first that is not, or cannot be read); 1 for every other file.
    /// </summary>
    public static int ResolutionLevels(string path) => Levels(path).Length;

    /// <summary>The width and height of each resolution level (<see cref="ResolutionLevels"/>), level 0 first; empty when
    /// the file is not a readable TIFF.</summary>
    public static (long Width, long Height)[] Levels(string path) => Shrinking(path, subIfds: true);

    /// <summary>
    /// The levels of a TIFF pyramid kept as pages (libvips' <c>tiffsave --pyramid</c>, ActorSeg's own <c>mask.tif</c>, the
    /// generic tiled TIFFs OpenSlide reads): page 0 and the pages after it, in chain order, each smaller than the one
    /// before (up to the first that is not, e.g. the next channel of an OME-TIFF or the next slice of a stack). One level
    /// for every other file; none for a file that is no readable TIFF.
    /// </summary>
    public static (long Width, long Height)[] PageLevels(string path) => Shrinking(path, subIfds: false);

    /// <summary>Page 0's size, then those of the directories after it (page 0's SubIFDs, or the pages of the chain) while
    /// each is smaller than the one before (up to the first that is not, or cannot be read); empty for a file that is no
    /// readable TIFF.</summary>
    private static (long Width, long Height)[] Shrinking(string path, bool subIfds)
    {
        try
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            if (ReadHeader(file) is not { } h) return [];
            long first = Chain(file).FirstOrDefault(-1);
            if (first < 0 || ReadAt(file, h, first) is not { } page0 || page0.Width <= 0 || page0.Height <= 0) return [];
            var levels = new List<(long, long)> { (page0.Width, page0.Height) };
            foreach (var at in subIfds ? page0.SubIfds ?? [] : Chain(file).Skip(1))
            {
                if (levels.Count > MaxSubIfds || at <= 0 || at >= h.Length) break;
                TiffPageLayout? d;
                try { d = ReadAt(file, h, at); }
                catch (InvalidDataException) { break; }
                var (pw, ph) = levels[^1];
                if (d is null || d.Width <= 0 || d.Height <= 0 || d.Width > pw || d.Height > ph || (d.Width == pw && d.Height == ph)) break;
                if (!SameShape(page0.Width, page0.Height, d.Width, d.Height)) break; // a label, a macro or another image, not a level
                levels.Add((d.Width, d.Height));
            }
            return levels.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or OverflowException or ArgumentException)
        {
            return [];
        }
    }

    /// <summary>
    /// Whether a w × h directory can be a reduced level of a W × H image: both sides shrunk by one factor, each side
    /// rounded to a whole pixel in any way (so |w·H − W·h| ≤ H + W), with a pixel more of slack for levels halved one from
    /// the other. A slide's label or macro photograph, or another image stored after the first, has another shape.
    /// </summary>
    internal static bool SameShape(long W, long H, long w, long h) => Math.Abs(w * H - W * h) <= 2 * (W + H);

    private static TiffPageLayout? ReadAt(SafeFileHandle file, Header h, long ifd)
    {
        bool big = h.Big;
        long length = h.Length;
        long n = h.Count(file, ifd);
        if (n <= 0 || n > 4096) return null;
        int entry = big ? 20 : 12;
        var dir = new byte[n * entry];
        if (RandomAccess.Read(file, dir, ifd + (big ? 8 : 2)) != dir.Length) return null;
        var tags = new Dictionary<int, long[]>();
        for (int i = 0; i < n; i++)
        {
            var e = dir.AsSpan(i * entry, entry);
            int tag = h.U16(e), type = h.U16(e[2..]);
            long cnt = big ? (long)h.U64(e[4..]) : h.U32(e[4..]);
            int size = type switch { 3 => 2, 4 or 13 => 4, 16 or 18 => 8, 1 => 1, _ => 0 }; // SHORT, LONG or IFD, LONG8 or IFD8, BYTE
            if (size == 0 || cnt <= 0 || cnt > 1 << 26) continue; // tags of other types are none this reads
            if (tag is not (256 or 257 or 258 or 259 or 262 or 273 or 277 or 278 or 279 or 284 or 317 or 320 or 322 or 323 or 324 or 325 or 330 or 338 or 339)) continue;
            // SubIFDs (330): one offset per reduced level; more than this reads are not followed
            if (tag == 330 && cnt > MaxSubIfds) cnt = MaxSubIfds;
            // a colour map (320): three values per palette entry, at most 2^16 entries
            if (tag == 320 && cnt > 3 << 16) return null;
            // one value, or one per sample (at most 16): a directory that claims more for these is not one this reads
            if (tag is not (273 or 279 or 320 or 324 or 325 or 330) && cnt > 16) return null;
            long bytesLen = cnt * size;
            byte[] raw;
            if (bytesLen <= (big ? 8 : 4)) raw = e.Slice(big ? 12 : 8, (int)bytesLen).ToArray();
            else
            {
                long at = big ? (long)h.U64(e[12..]) : h.U32(e[8..]);
                if (at <= 0 || at + bytesLen > length) return null;
                raw = new byte[bytesLen];
                if (RandomAccess.Read(file, raw, at) != raw.Length) return null;
            }
            var values = new long[cnt];
            for (int k = 0; k < cnt; k++)
                values[k] = size switch { 1 => raw[k], 2 => h.U16(raw.AsSpan(k * 2)), 4 => h.U32(raw.AsSpan(k * 4)), _ => (long)h.U64(raw.AsSpan(k * 8)) };
            tags[tag] = values;
        }
        return new TiffPageLayout(tags, big, h.Le, length) { DirectoryOffset = ifd };
    }

    /// <summary>What makes the page's pixel data unreadable, or null: a compression libtiff here cannot decode, fewer
    /// tile or strip offsets than the image size needs, or a tile or strip past the end of the file.</summary>
    public string? LayoutProblem()
    {
        long c = Compression;
        if (!DecodedCompressions.Contains(c))
            return $"compression {c}{(CompressionNames.TryGetValue(c, out var name) ? $" ({name})" : "")} is not one this build decodes (none, LZW, JPEG, deflate, PackBits, CCITT)";
        long w = Width, h = Height, spp = SamplesPerPixel;
        if (w <= 0 || h <= 0) return null; // libvips names a missing size
        if (c == 6) return null; // old-style JPEG may point at one JPEG stream instead of strips: libtiff's own business
        long planes = One(284, 1) == 2 ? Math.Max(1, spp) : 1;
        string unit; long needed;
        int offsetsTag, countsTag;
        if (Tiled)
        {
            long tw = One(322, -1), th = One(323, -1);
            if (tw <= 0 || th <= 0) return $"tile size {tw}x{th} is not positive";
            needed = (w + tw - 1) / tw * ((h + th - 1) / th) * planes;
            unit = $"tiles of {tw}x{th}";
            offsetsTag = 324; countsTag = 325;
        }
        else
        {
            long rps = RowsPerStrip;
            needed = (h + rps - 1) / rps * planes;
            unit = $"strips of {rps} rows";
            offsetsTag = 273; countsTag = 279;
        }
        string what = Tiled ? "tile" : "strip";
        var offsets = All(offsetsTag);
        var counts = All(countsTag);
        if (offsets is null) return $"the directory lists no {what} offsets";
        if (offsets.Length < needed)
            return $"the directory lists {offsets.Length} {what} offsets, but a {w}x{h} image in {unit} needs {needed} (a width or height larger than the data?)";
        if (counts is null) return null; // libtiff estimates missing byte counts of uncompressed data
        if (counts.Length < needed)
            return $"the directory lists {counts.Length} {what} byte counts, but a {w}x{h} image in {unit} needs {needed}";
        for (int i = 0; i < needed; i++)
            if (offsets[i] > 0 && counts[i] > 0 && offsets[i] + counts[i] > FileLength)
                return $"{what} {i} lies at bytes {offsets[i]}..{offsets[i] + counts[i]}, past the end of the {FileLength}-byte file (truncated?)";
        return null;
    }

    /// <summary>Why the page's samples are not ones ActorSeg reads (8-, 16- or 32-bit integers, 32-bit floating point), or null.</summary>
    public string? SampleProblem()
    {
        var bits = All(258) ?? [1];
        long format = One(339, 1);
        string kind = format switch { 2 => "signed integer", 3 => "floating-point", 1 => "unsigned integer", _ => $"sample format {format}" };
        if (format is 1 or 2 && bits.All(b => b is 8 or 16 or 32)) return null;
        if (format == 3 && bits.All(b => b == 32)) return null;
        return $"unsupported sample format: {bits[0]}-bit {kind} samples (ActorSeg reads 8-, 16- and 32-bit integer and 32-bit floating-point images; " +
               $"convert it, e.g. to 32-bit floats{(format == 3 && bits[0] == 64 ? " (NumPy: .astype(np.float32))" : "")} or to 16 bits)";
    }
}
