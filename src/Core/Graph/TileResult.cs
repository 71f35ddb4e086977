using System.Runtime.InteropServices;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Graph;

[Flags]
public enum FragmentFlags : byte
{
    None = 0,
    /// <summary>Touches a side of the core that another tile continues.</summary>
    Border = 1,
    /// <summary>A complete component smaller than the minimum size (will be merged into a neighbour).</summary>
    Small = 2,
    /// <summary>Its values travel to the stitcher (it may merge with other fragments).</summary>
    Shipped = 4,
}

/// <summary>
/// The partial graph of one tile: connected pieces ("fragments") of superpixels inside the tile's core,
/// with everything the stitcher needs to build the global graph exactly.
/// </summary>
public sealed class TileResult
{
    public const int Magic = 0x47505341; // "ASPG"
    public const int Version = 1;

    public int TileId;
    public PixelRect Core;
    public int Channels;
    public int Fragments;

    // per fragment
    public long[] MinLinear = [];
    public int[] Area = [];
    public long[] SumX = [];
    public long[] SumY = [];
    public int[] BBox = [];              // 4 per fragment: x0, y0, x1 (inclusive), y1
    public int[] Seed = [];              // global SLIC seed id
    public FragmentFlags[] Flags = [];

    // class histogram (CSR): classes present per fragment
    public int[] ClassOffsets = [];      // Fragments + 1
    public byte[] ClassIds = [];
    public int[] ClassCounts = [];

    // features of fragments that are complete nodes (not shipped); FeatureRow[f] = -1 for shipped ones
    public int[] FeatureRow = [];
    public float[] Features = [];        // rows × (11 × channels)

    // sorted raw values of shipped fragments: channel c of fragment f at ValueOffsets[f]*C + c*Area[f]
    public long[] ValueOffsets = [];     // Fragments (+1), in pixels, -1 for not shipped
    public ushort[] Values = [];

    // adjacency inside the core (each unordered pair once, A < B)
    public int[] AdjA = [];
    public int[] AdjB = [];
    public int[] AdjLength = [];
    public long[] AdjAbsDiff = [];       // channels per pair: Σ |a - b| over the boundary pixel pairs

    // the four sides of the core: fragment, seed and raw values of each pixel on it
    public int[][] SideFragment = new int[4][];
    public int[][] SideSeed = new int[4][];
    public ushort[][] SideValues = new ushort[4][];

    public const int Top = 0, Bottom = 1, Left = 2, Right = 3;

    public ReadOnlySpan<ushort> ValuesOf(int f, int c)
    {
        long off = ValueOffsets[f];
        if (off < 0) throw new InvalidOperationException($"fragment {f} of tile {TileId} was not shipped");
        return Values.AsSpan((int)(off * Channels + (long)c * Area[f]), Area[f]);
    }

    // ---- serialization: a compact little-endian binary file ----

    public void Write(Stream stream)
    {
        using var w = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
        w.Write(Magic); w.Write(Version);
        w.Write(TileId); w.Write(Core.X); w.Write(Core.Y); w.Write(Core.W); w.Write(Core.H);
        w.Write(Channels); w.Write(Fragments);
        Put(w, MinLinear); Put(w, Area); Put(w, SumX); Put(w, SumY); Put(w, BBox); Put(w, Seed);
        Put(w, MemoryMarshal.Cast<FragmentFlags, byte>(Flags.AsSpan()).ToArray());
        Put(w, ClassOffsets); Put(w, ClassIds); Put(w, ClassCounts);
        Put(w, FeatureRow); Put(w, Features);
        Put(w, ValueOffsets); Put(w, Values);
        Put(w, AdjA); Put(w, AdjB); Put(w, AdjLength); Put(w, AdjAbsDiff);
        for (int s = 0; s < 4; s++) { Put(w, SideFragment[s]); Put(w, SideSeed[s]); Put(w, SideValues[s]); }
        w.Write(~Magic);
    }

    /// <summary>Reads a partial graph; <paramref name="withValues"/> = false skips the bulky shipped values.</summary>
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
                Channels = r.ReadInt32(),
                Fragments = r.ReadInt32(),
            };
            t.MinLinear = Get<long>(r); t.Area = Get<int>(r); t.SumX = Get<long>(r); t.SumY = Get<long>(r);
            t.BBox = Get<int>(r); t.Seed = Get<int>(r);
            t.Flags = MemoryMarshal.Cast<byte, FragmentFlags>(Get<byte>(r)).ToArray();
            t.ClassOffsets = Get<int>(r); t.ClassIds = Get<byte>(r); t.ClassCounts = Get<int>(r);
            t.FeatureRow = Get<int>(r); t.Features = Get<float>(r);
            t.ValueOffsets = Get<long>(r);
            if (withValues) t.Values = Get<ushort>(r); else Skip<ushort>(r);
            t.AdjA = Get<int>(r); t.AdjB = Get<int>(r); t.AdjLength = Get<int>(r); t.AdjAbsDiff = Get<long>(r);
            for (int s = 0; s < 4; s++) { t.SideFragment[s] = Get<int>(r); t.SideSeed[s] = Get<int>(r); t.SideValues[s] = Get<ushort>(r); }
            if (r.ReadInt32() != ~Magic) throw new InvalidDataException("trailer missing (truncated file?)");
            if (t.MinLinear.Length != t.Fragments || t.Area.Length != t.Fragments || t.ClassOffsets.Length != t.Fragments + 1)
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
        var tmp = path + ".partial";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            Write(fs);
        File.Move(tmp, path, overwrite: true);
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

    private static void Skip<T>(BinaryReader r) where T : unmanaged
    {
        int n = r.ReadInt32();
        if (n < 0) throw new InvalidDataException($"bad array length {n}");
        long bytes = (long)n * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        if (r.BaseStream.CanSeek) r.BaseStream.Seek(bytes, SeekOrigin.Current);
        else { var buf = new byte[65536]; while (bytes > 0) { int k = r.BaseStream.Read(buf, 0, (int)Math.Min(buf.Length, bytes)); if (k <= 0) throw new EndOfStreamException(); bytes -= k; } }
    }
}
