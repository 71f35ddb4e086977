using System.Buffers.Binary;
using System.Text;

namespace ActorSeg.Tests.IO;

/// <summary>One subblock for <see cref="CziWriter"/>: its rectangle in the file's pixel coordinates, its plane indices and
/// its samples (row-major, a colour block's as R, G, B; stored as the file's B, G, R). A subsampled (pyramid) block has a
/// stored size smaller than its size, and <paramref name="Samples"/> of the stored size.</summary>
internal sealed record CziBlock(int X, int Y, int W, int H, ushort[] Samples, int C = 0, int M = -1, int Z = 0, int S = -1,
    int StoredW = 0, int StoredH = 0, int Compression = 0, bool HiLo = false, int EncodedH = 0);

/// <summary>
/// Writes CZI (ZISRAW) files for the tests, as ZEN lays them out: the file header, the metadata (XML with the Scaling and
/// channel names), the subblocks, then the subblock directory; every segment a multiple of 32 bytes.
/// </summary>
internal static class CziWriter
{
    public const int Gray8 = 0, Gray16 = 1, Bgr24 = 3, Bgr48 = 4, Gray32Float = 2;
    public const int Uncompressed = 0, JpegXr = 4, Zstd0 = 5, Zstd1 = 6;

    public static void Write(string path, int pixelType, IReadOnlyList<CziBlock> blocks, double? metresPerPixel = null, string[]? channelNames = null,
        bool withDirectory = true)
    {
        using var f = new MemoryStream();
        var fileHeader = new byte[512];
        WriteSegment(f, "ZISRAWFILE", fileHeader); // rewritten below with the positions
        long metaPos = f.Position;
        var xml = new StringBuilder("<ImageDocument><Metadata>");
        if (metresPerPixel is { } m)
            xml.Append($"<Scaling><Items><Distance Id=\"X\"><Value>{m:R}</Value><DefaultUnitFormat>µm</DefaultUnitFormat></Distance><Distance Id=\"Y\"><Value>{m:R}</Value></Distance></Items></Scaling>");
        xml.Append("<Information><Image>");
        if (channelNames is not null)
            xml.Append("<Dimensions><Channels>").Append(string.Concat(channelNames.Select((n, i) => $"<Channel Id=\"Channel:{i}\" Name=\"{n}\"><Fluor>x</Fluor></Channel>"))).Append("</Channels></Dimensions>");
        xml.Append("</Image></Information></Metadata></ImageDocument>");
        var xmlBytes = Encoding.UTF8.GetBytes(xml.ToString());
        var meta = new byte[256 + xmlBytes.Length];
        BinaryPrimitives.WriteInt32LittleEndian(meta, xmlBytes.Length);
        xmlBytes.CopyTo(meta, 256);
        WriteSegment(f, "ZISRAWMETADATA", meta);

        var entries = new List<byte[]>();
        foreach (var b in blocks)
        {
            long at = f.Position;
            var entry = Entry(b, pixelType, at);
            var pixels = Encode(b, pixelType);
            int header = Math.Max(256, 16 + entry.Length);
            var data = new byte[header + pixels.Length];
            BinaryPrimitives.WriteInt32LittleEndian(data, 0);                  // metadata size
            BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(4), 0);        // attachment size
            BinaryPrimitives.WriteInt64LittleEndian(data.AsSpan(8), pixels.Length);
            entry.CopyTo(data, 16);
            pixels.CopyTo(data, header);
            WriteSegment(f, "ZISRAWSUBBLOCK", data);
            entries.Add(entry);
        }
        long dirPos = 0;
        if (withDirectory)
        {
            dirPos = f.Position;
            var dir = new byte[128 + entries.Sum(e => e.Length)];
            BinaryPrimitives.WriteInt32LittleEndian(dir, entries.Count);
            int o = 128;
            foreach (var e in entries) { e.CopyTo(dir, o); o += e.Length; }
            WriteSegment(f, "ZISRAWDIRECTORY", dir);
        }
        // the file header: version 1.0, one part, where the directory and metadata are
        BinaryPrimitives.WriteInt32LittleEndian(fileHeader, 1);
        Guid.NewGuid().TryWriteBytes(fileHeader.AsSpan(16)); Guid.NewGuid().TryWriteBytes(fileHeader.AsSpan(32));
        BinaryPrimitives.WriteInt64LittleEndian(fileHeader.AsSpan(52), dirPos);
        BinaryPrimitives.WriteInt64LittleEndian(fileHeader.AsSpan(60), metaPos);
        f.Position = 32; f.Write(fileHeader);
        File.WriteAllBytes(path, f.ToArray());
    }

    private static void WriteSegment(Stream f, string id, byte[] data)
    {
        long allocated = (data.Length + 31) / 32 * 32;
        var head = new byte[32];
        Encoding.ASCII.GetBytes(id).CopyTo(head, 0);
        BinaryPrimitives.WriteInt64LittleEndian(head.AsSpan(16), allocated);
        BinaryPrimitives.WriteInt64LittleEndian(head.AsSpan(24), data.Length);
        f.Write(head); f.Write(data); f.Write(new byte[allocated - data.Length]);
    }

    /// <summary>The directory entry (schema DV) of a block whose segment starts at <paramref name="at"/>.</summary>
    private static byte[] Entry(CziBlock b, int pixelType, long at)
    {
        var dims = new List<(char D, int Start, int Size, int Stored)>
        {
            ('X', b.X, b.W, b.StoredW > 0 ? b.StoredW : b.W), ('Y', b.Y, b.H, b.StoredH > 0 ? b.StoredH : b.H), ('C', b.C, 1, 1), ('Z', b.Z, 1, 1), ('T', 0, 1, 1),
        };
        if (b.M >= 0) dims.Add(('M', b.M, 1, 1));
        if (b.S >= 0) dims.Add(('S', b.S, 1, 1));
        var e = new byte[32 + 20 * dims.Count];
        e[0] = (byte)'D'; e[1] = (byte)'V';
        BinaryPrimitives.WriteInt32LittleEndian(e.AsSpan(2), pixelType);
        BinaryPrimitives.WriteInt64LittleEndian(e.AsSpan(6), at);
        BinaryPrimitives.WriteInt32LittleEndian(e.AsSpan(14), 0);
        BinaryPrimitives.WriteInt32LittleEndian(e.AsSpan(18), b.Compression);
        e[22] = (byte)(b.StoredW > 0 && b.StoredW != b.W ? 2 : 0);
        BinaryPrimitives.WriteInt32LittleEndian(e.AsSpan(28), dims.Count);
        for (int i = 0; i < dims.Count; i++)
        {
            var d = e.AsSpan(32 + 20 * i, 20);
            d[0] = (byte)dims[i].D;
            BinaryPrimitives.WriteInt32LittleEndian(d[4..], dims[i].Start);
            BinaryPrimitives.WriteInt32LittleEndian(d[8..], dims[i].Size);
            BinaryPrimitives.WriteSingleLittleEndian(d[12..], dims[i].Start);
            BinaryPrimitives.WriteInt32LittleEndian(d[16..], dims[i].Stored);
        }
        return e;
    }

    /// <summary>The block's pixel bytes as stored: little-endian, colour as B, G, R; then compressed.</summary>
    private static byte[] Encode(CziBlock b, int pixelType)
    {
        int spp = pixelType is Bgr24 or Bgr48 ? 3 : 1, bps = pixelType is Gray16 or Bgr48 ? 2 : pixelType == Gray32Float ? 4 : 1;
        int n = b.Samples.Length / spp;
        var raw = new byte[b.Samples.Length * bps];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < spp; k++)
            {
                ushort v = b.Samples[i * spp + (spp == 3 ? 2 - k : k)];
                int at = (i * spp + k) * bps;
                if (bps == 1) raw[at] = (byte)v;
                else if (bps == 2) BinaryPrimitives.WriteUInt16LittleEndian(raw.AsSpan(at), v);
                else BinaryPrimitives.WriteSingleLittleEndian(raw.AsSpan(at), v);
            }
        switch (b.Compression)
        {
            case Uncompressed: return raw;
            case Zstd0: return Zstd(raw);
            case Zstd1:
                if (b.HiLo)
                {
                    var packed = new byte[raw.Length];
                    int half = raw.Length / 2;
                    for (int i = 0; i < half; i++) { packed[i] = raw[2 * i]; packed[half + i] = raw[2 * i + 1]; }
                    return [3, 1, 1, .. Zstd(packed)];
                }
                return [1, .. Zstd(raw)];
            case JpegXr: return Jxr(b, spp, bps);
            default: return [.. Enumerable.Range(0, 64).Select(i => (byte)(i * 37))]; // a codec the reader does not know: any bytes
        }
    }

    /// <summary>The block as lossless JPEG XR, encoded by jxrlib's own encoder (JxrEncApp, Debian's libjxr-tools) from an
    /// uncompressed TIFF of its samples.</summary>
    internal static byte[] Jxr(CziBlock b, int spp, int bps)
    {
        var dir = Directory.CreateTempSubdirectory("czi-jxr").FullName;
        try
        {
            string tif = Path.Combine(dir, "in.tif"), jxr = Path.Combine(dir, "out.jxr");
            var bytes = new byte[b.Samples.Length * bps];
            for (int i = 0; i < b.Samples.Length; i++)
                if (bps == 1) bytes[i] = (byte)b.Samples[i]; else BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), b.Samples[i]);
            // the stored size (a subsampled block's), or fewer rows (EncodedH: as ZEN writes some pyramid edge tiles)
            int w = b.StoredW > 0 ? b.StoredW : b.W, h = b.EncodedH > 0 ? b.EncodedH : b.StoredH > 0 ? b.StoredH : b.H;
            using (var img = NetVips.Image.NewFromMemory(bytes, w, h, spp, bps == 1 ? NetVips.Enums.BandFormat.Uchar : NetVips.Enums.BandFormat.Ushort))
                img.Tiffsave(tif);
            var psi = new System.Diagnostics.ProcessStartInfo("JxrEncApp", ["-i", tif, "-o", jxr, "-q", "1"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = System.Diagnostics.Process.Start(psi)!;
            string log = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0 || !File.Exists(jxr)) throw new InvalidOperationException($"JxrEncApp failed ({p.ExitCode}): {log}");
            return File.ReadAllBytes(jxr);
        }
        finally { Directory.Delete(dir, true); }
    }

    private static byte[] Zstd(byte[] raw)
    {
        using var z = new ZstdSharp.Compressor(3);
        return z.Wrap(raw).ToArray();
    }
}
