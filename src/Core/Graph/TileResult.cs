using ActorSeg.Core.IO;
using System.Runtime.InteropServices;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Graph;

[Flags]
public enum OpenFlags : byte
{
    None = 0,
    /// <summary>Touches a side of the core that another tile continues.</summary>
    Border = 1,
    /// <summary>A complete small component whose merge the tile could not decide alone.</summary>
    Deferred = 2,
}

/// <summary>
/// The partial graph of one tile. The tile splits its core into fragments (4-connected pieces of one superpixel),
/// settles every merge it can decide alone, and hands the stitcher:
/// <list type="bullet">
/// <item><b>groups</b>: fragments already known to end in the same node, with their statistics, and either final
/// features (the group can no longer change) or their raw values, in raster order (it may still merge);</item>
/// <item><b>open fragments</b>: pieces whose component or merge only the stitcher can settle (they touch a tile side, or
/// their merge target is ambiguous inside the tile), with directed adjacency records to every neighbouring fragment;</item>
/// <item><b>group adjacency</b> for the region adjacency graph, and the four <b>sides</b> of the core.</item>
/// </list>
/// </summary>
public sealed class TileResult
{
    public const int Magic = 0x47505341; // "ASPG"
    public const int Version = 3;

    public int TileId;
    public PixelRect Core;
    public int Channels;
    /// <summary>Value planes per pixel: the raw channels, then any derived planes (texture).</summary>
    public int Planes;
    public int Fragments;
    public int Groups;

    // per group
    public long[] GMinLinear = [];
    public int[] GArea = [];
    public long[] GSumX = [];
    public long[] GSumY = [];
    public int[] GBBox = [];             // 4 per group: x0, y0, x1 (inclusive), y1
    public int[] GClassOffsets = [];     // Groups + 1 (CSR over the classes present)
    public byte[] GClassIds = [];
    public int[] GClassCounts = [];
    public int[] GFeatureRow = [];       // row in Features, or -1 when the values are shipped
    public float[] Features = [];        // rows × (11 × channels)
    public long[] GValueOffsets = [];    // in pixels; -1 when not shipped
    public ushort[] Values = [];         // per shipped group: plane 0, plane 1, ... (each in raster order)
    /// <summary>How many entries of <see cref="Values"/> are the tile's (the builder keeps them in a worker's reused
    /// buffer, which may be longer); -1: the whole array.</summary>
    public int ValueCount = -1;
    private ReadOnlySpan<ushort> ValueSpan => ValueCount < 0 ? Values : Values.AsSpan(0, ValueCount);

    // group adjacency inside the core (unordered, A < B)
    public int[] GAdjA = [];
    public int[] GAdjB = [];
    public int[] GAdjLength = [];
    public long[] GAdjAbsDiff = [];      // channels per pair: Σ |a − b| over boundary pixel pairs

    // open fragments
    public int Open;
    public int[] OGroup = [];
    public int[] OArea = [];
    public OpenFlags[] OFlags = [];
    // directed adjacency records from an open fragment to a neighbouring fragment
    public int[] RFrom = [];             // open index
    public int[] RToOpen = [];           // open index of the neighbour, or -1 when it is closed
    public int[] RToFragment = [];       // the neighbour's fragment id (identifies closed neighbours)
    public int[] RToGroup = [];
    public int[] RLength = [];
    public long[] RFirst = [];           // first (raster order) pixel of the neighbour along this boundary

    // the four sides of the core: open fragment index, seed and raw values of each pixel on it
    public int[][] SideOpen = new int[4][];
    public int[][] SideSeed = new int[4][];
    public ushort[][] SideValues = new ushort[4][];

    public const int Top = 0, Bottom = 1, Left = 2, Right = 3;

    /// <summary>The partial graph of a tile whose core is all glass: no fragments, no groups, every side pixel glass.</summary>
    public static TileResult Glass(TileSpec tile, int channels, int planes)
    {
        var t = new TileResult { TileId = tile.Id, Core = tile.Core, Channels = channels, Planes = planes, GClassOffsets = [0] };
        for (int s = 0; s < 4; s++)
        {
            int len = s is Top or Bottom ? tile.Core.W : tile.Core.H;
            t.SideOpen[s] = new int[len]; Array.Fill(t.SideOpen[s], -1);
            t.SideSeed[s] = new int[len]; Array.Fill(t.SideSeed[s], FragmentBuilder.Glass);
            t.SideValues[s] = new ushort[len * channels];
        }
        return t;
    }

    public ReadOnlySpan<ushort> ValuesOf(int g, int c)
    {
        long off = GValueOffsets[g];
        if (off < 0) throw new InvalidOperationException($"group {g} of tile {TileId} was not shipped");
        return ValueSpan.Slice((int)(off * Planes + (long)c * GArea[g]), GArea[g]);
    }

    // ---- serialization: a compact little-endian binary file ----

    public void Write(Stream stream)
    {
        using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        w.Write(Magic); w.Write(Version);
        w.Write(TileId); w.Write(Core.X); w.Write(Core.Y); w.Write(Core.W); w.Write(Core.H);
        w.Write(Channels); w.Write(Planes); w.Write(Fragments); w.Write(Groups); w.Write(Open);
        Put(w, GMinLinear); Put(w, GArea); Put(w, GSumX); Put(w, GSumY); Put(w, GBBox);
        Put(w, GClassOffsets); Put(w, GClassIds); Put(w, GClassCounts);
        Put(w, GFeatureRow); Put(w, Features);
        Put(w, GAdjA); Put(w, GAdjB); Put(w, GAdjLength); Put(w, GAdjAbsDiff);
        Put(w, OGroup); Put(w, OArea); Put(w, MemoryMarshal.Cast<OpenFlags, byte>(OFlags.AsSpan()));
        Put(w, RFrom); Put(w, RToOpen); Put(w, RToFragment); Put(w, RToGroup); Put(w, RLength); Put(w, RFirst);
        for (int s = 0; s < 4; s++) { Put(w, SideOpen[s]); Put(w, SideSeed[s]); Put(w, SideValues[s]); }
        Put(w, GValueOffsets); Put(w, ValueSpan); // last: readers that skip values stop early
        w.Write(~Magic);
    }

    /// <summary>Reads a partial graph; <paramref name="withValues"/> = false leaves out the bulky shipped values.</summary>
    public static TileResult Read(Stream stream, string name, bool withValues = true)
    {
        try
        {
            using var r = new BinaryReader(stream, System.Text.Encoding.UTF8, leaveOpen: true);
            if (r.ReadInt32() != Magic) throw new InvalidDataException("not an ActorSeg partial graph");
            int ver = r.ReadInt32();
            if (ver != Version) throw new InvalidDataException($"partial graph version {ver}, expected {Version}");
            var t = new TileResult
            {
                TileId = r.ReadInt32(),
                Core = new PixelRect(r.ReadInt32(), r.ReadInt32(), r.ReadInt32(), r.ReadInt32()),
                Channels = r.ReadInt32(), Planes = r.ReadInt32(), Fragments = r.ReadInt32(), Groups = r.ReadInt32(), Open = r.ReadInt32(),
            };
            t.GMinLinear = Get<long>(r); t.GArea = Get<int>(r); t.GSumX = Get<long>(r); t.GSumY = Get<long>(r); t.GBBox = Get<int>(r);
            t.GClassOffsets = Get<int>(r); t.GClassIds = Get<byte>(r); t.GClassCounts = Get<int>(r);
            t.GFeatureRow = Get<int>(r); t.Features = Get<float>(r);
            t.GAdjA = Get<int>(r); t.GAdjB = Get<int>(r); t.GAdjLength = Get<int>(r); t.GAdjAbsDiff = Get<long>(r);
            t.OGroup = Get<int>(r); t.OArea = Get<int>(r); t.OFlags = MemoryMarshal.Cast<byte, OpenFlags>(Get<byte>(r)).ToArray();
            t.RFrom = Get<int>(r); t.RToOpen = Get<int>(r); t.RToFragment = Get<int>(r); t.RToGroup = Get<int>(r); t.RLength = Get<int>(r); t.RFirst = Get<long>(r);
            for (int s = 0; s < 4; s++) { t.SideOpen[s] = Get<int>(r); t.SideSeed[s] = Get<int>(r); t.SideValues[s] = Get<ushort>(r); }
            t.GValueOffsets = Get<long>(r);
            if (withValues)
            {
                t.Values = Get<ushort>(r);
                if (r.ReadInt32() != ~Magic) throw new InvalidDataException("trailer missing (truncated file?)");
            }
            if (t.GMinLinear.Length != t.Groups || t.GArea.Length != t.Groups || t.GClassOffsets.Length != t.Groups + 1
                || t.OGroup.Length != t.Open || t.GValueOffsets.Length != t.Groups || t.SideOpen[Top].Length != t.Core.W || t.SideOpen[Left].Length != t.Core.H)
                throw new InvalidDataException("inconsistent array lengths");
            return t;
        }
        catch (EndOfStreamException e) { throw new InvalidDataException($"{name}: partial graph is truncated", e); }
        catch (InvalidDataException e) when (!e.Message.StartsWith(name)) { throw new InvalidDataException($"{name}: {e.Message}", e); }
    }

    public static TileResult ReadFile(string path, bool withValues = true)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        return Read(fs, path, withValues);
    }

    public void WriteFile(string path)
    {
        var tmp = $"{path}.{Guid.NewGuid():N}.partial"; // unique: a re-run tile may be written by two workers at once
        using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            Write(fs);
        // not flushed to disk: the coordinator journals the file's checksum, and the stitch checks every tile's result
        // and labels against it before use; one lost to a power cut is computed again
        SafePaths.Publish(tmp, path, "tile result", flush: false);
    }

    private static void Put<T>(BinaryWriter w, T[] a) where T : unmanaged => Put(w, (ReadOnlySpan<T>)a);
    private static void Put<T>(BinaryWriter w, ReadOnlySpan<T> a) where T : unmanaged
    {
        w.Write(a.Length);
        w.Write(MemoryMarshal.AsBytes(a));
    }

    private static T[] Get<T>(BinaryReader r) where T : unmanaged
    {
        int n = r.ReadInt32();
        if (n < 0 || n > 1 << 30) throw new InvalidDataException($"bad array length {n}");
        var a = new T[n];
        var bytes = MemoryMarshal.AsBytes(a.AsSpan());
        int got = 0;
        while (got < bytes.Length)
        {
            int k = r.BaseStream.Read(bytes[got..]);
            if (k <= 0) throw new EndOfStreamException();
            got += k;
        }
        return a;
    }
}
