using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace ActorSeg.Tests.IO;

/// <summary>One image of a <see cref="LifWriter"/> file: its channels' bits and byte offsets, its dimensions (DimID,
/// count, byte increment, length in metres) and the bytes of its memory block.</summary>
internal sealed record LifImage(string Name, int[] ChannelBits, long[] ChannelInc, (int Id, int Count, long Inc, double Length)[] Dims, byte[] Memory);

/// <summary>
/// Writes Leica LIF files for the tests as LAS X lays them out: a magic, the XML header in UTF-16, then one memory block per
/// image (a 64-bit size in version 2, 32-bit in version 1), each named by the id its image's Memory element gives.
/// The layout was checked against two files LAS X wrote (readlif's test files) and readlif itself.
/// </summary>
internal static class LifWriter
{
    /// <summary>A one-channel image of <paramref name="w"/> × <paramref name="h"/> 16-bit samples (of
    /// <paramref name="bits"/> significant bits) at <paramref name="um"/> µm per pixel.</summary>
    public static LifImage OneChannel(string name, int w, int h, double um, ushort[] samples, int bits = 12)
    {
        var mem = new byte[w * h * 2];
        Buffer.BlockCopy(samples, 0, mem, 0, mem.Length);
        return new LifImage(name, [bits], [0], [(1, w, 2, (w - 1) * um * 1e-6), (2, h, 2L * w, (h - 1) * um * 1e-6)], mem);
    }

    public static void Write(string path, IReadOnlyList<LifImage> images, int version = 2)
    {
        var I = CultureInfo.InvariantCulture;
        var xml = new StringBuilder($"<LMSDataContainerHeader Version=\"{version}\"><Element Name=\"project\" Visibility=\"1\"><Data><Experiment Path=\"C:\\x\"/></Data><Memory Size=\"0\" MemoryBlockID=\"MemBlock_0\"/><Children>");
        for (int i = 0; i < images.Count; i++)
        {
            var im = images[i];
            xml.Append(I, $"<Element Name=\"{im.Name}\" Visibility=\"1\"><Data><Image><ImageDescription><Channels>");
            for (int c = 0; c < im.ChannelBits.Length; c++)
                xml.Append(I, $"<ChannelDescription DataType=\"0\" ChannelTag=\"0\" Resolution=\"{im.ChannelBits[c]}\" LUTName=\"Gray\" BytesInc=\"{im.ChannelInc[c]}\" BitInc=\"0\"/>");
            xml.Append("</Channels><Dimensions>");
            foreach (var d in im.Dims)
                xml.Append(I, $"<DimensionDescription DimID=\"{d.Id}\" NumberOfElements=\"{d.Count}\" Origin=\"0\" Length=\"{d.Length:E6}\" Unit=\"{(d.Id == 4 ? "s" : "m")}\" BitInc=\"0\" BytesInc=\"{d.Inc}\"/>");
            xml.Append(I, $"</Dimensions></ImageDescription></Image></Data><Memory Size=\"{im.Memory.Length}\" MemoryBlockID=\"MemBlock_{100 + i}\"/><Children/></Element>");
        }
        xml.Append("</Children></Element></LMSDataContainerHeader>");
        using var f = new MemoryStream();
        var text = Encoding.Unicode.GetBytes(xml.ToString());
        Int(f, 0x70); Int(f, text.Length + 5); f.WriteByte(0x2A); Int(f, text.Length / 2); f.Write(text);
        Block(f, "MemBlock_0", [], version); // the project's empty block, as LAS X writes one
        for (int i = 0; i < images.Count; i++) Block(f, $"MemBlock_{100 + i}", images[i].Memory, version);
        File.WriteAllBytes(path, f.ToArray());
    }

    private static void Block(Stream f, string id, byte[] data, int version)
    {
        var name = Encoding.Unicode.GetBytes(id);
        Int(f, 0x70); Int(f, 0); f.WriteByte(0x2A);
        if (version == 1) Int(f, data.Length);
        else { var b = new byte[8]; BinaryPrimitives.WriteInt64LittleEndian(b, data.Length); f.Write(b); }
        f.WriteByte(0x2A); Int(f, id.Length); f.Write(name); f.Write(data);
    }

    private static void Int(Stream f, int v) { var b = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, v); f.Write(b); }
}
