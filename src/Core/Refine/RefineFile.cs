using System.Text;
using System.Text.Json;
using ActorSeg.Core.IO;
using ActorSeg.Core.Imaging;

namespace ActorSeg.Core.Refine;

/// <summary>
/// What the trainer hands the painting worker for one image when the model refines boundaries (refine.bin in the job's
/// graph folder): the refiner, the image's per-channel statistics, and one byte per node (1 = its pixels are refined).
/// A magic line, the JSON header's length and the header, then the flags. Checked in full when read.
/// </summary>
public static class RefineFile
{
    public const string FileName = "refine.bin";
    private static readonly byte[] Magic = Encoding.ASCII.GetBytes("ACTORSEG-REFINE\n");

    public sealed record Header(PixelRefinerSpec Refiner, double[] Mean, double[] Std, int Nodes);

    public static void Write(string path, PixelRefinerSpec refiner, double[] mean, double[] std, ReadOnlySpan<bool> flags)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(new Header(refiner, mean, std, flags.Length));
        var bytes = new byte[Magic.Length + 4 + json.Length + flags.Length];
        Magic.CopyTo(bytes, 0);
        BitConverter.TryWriteBytes(bytes.AsSpan(Magic.Length), json.Length);
        json.CopyTo(bytes, Magic.Length + 4);
        for (int i = 0; i < flags.Length; i++) bytes[Magic.Length + 4 + json.Length + i] = flags[i] ? (byte)1 : (byte)0;
        SafePaths.WriteAllBytes(path, bytes, "refinement");
    }

    /// <summary>Reads and checks the file against the graph it belongs to (<paramref name="nodes"/> nodes of
    /// <paramref name="classes"/> classes, <paramref name="channels"/> channels).</summary>
    public static (PixelRefiner Refiner, double[] Mean, double[] Std, bool[] Flags) Read(string path, int nodes, int classes, int channels)
    {
        var bytes = File.ReadAllBytes(path);
        string Bad(string why) => throw new InputFileException(path, $"not a usable refinement file ({why})");
        if (bytes.Length < Magic.Length + 4 || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic)) Bad("no refinement header");
        int len = BitConverter.ToInt32(bytes, Magic.Length);
        if (len <= 0 || len > bytes.Length - Magic.Length - 4) Bad($"header length {len}");
        Header? h;
        try { h = JsonSerializer.Deserialize<Header>(bytes.AsSpan(Magic.Length + 4, len)); }
        catch (JsonException e) { Bad(e.Message); return default; }
        if (h?.Refiner is null || h.Mean is null || h.Std is null) { Bad("incomplete header"); return default; }
        try { h.Refiner.Validate(path); }
        catch (InvalidDataException e) { throw new InputFileException(path, e.Message, e); }
        if (h.Nodes != nodes) Bad($"flags for {h.Nodes} nodes, the graph has {nodes}");
        if (h.Refiner.Classes != classes) Bad($"a refiner of {h.Refiner.Classes} classes for nodes of {classes}");
        if (h.Refiner.Channels != channels || h.Mean.Length != channels || h.Std.Length != channels) Bad($"statistics for {h.Mean.Length} channels, the image has {channels}");
        if (h.Mean.Concat(h.Std).Any(v => !double.IsFinite(v))) Bad("image statistics that are not finite");
        int off = Magic.Length + 4 + len;
        if (bytes.Length - off != nodes) Bad($"{bytes.Length - off} flag bytes for {nodes} nodes");
        var flags = new bool[nodes];
        for (int i = 0; i < nodes; i++)
        {
            byte b = bytes[off + i];
            if (b > 1) Bad($"flag {b} for node {i}");
            flags[i] = b == 1;
        }
        return (new PixelRefiner(h.Refiner), h.Mean, h.Std, flags);
    }
}
