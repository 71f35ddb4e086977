using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using Vips = NetVips;

namespace ActorSeg.Core.Refine;

/// <summary>A node-label map (nodes.tif, one uint32 band) read region by region, in any order.</summary>
public sealed class NodeMapReader : IDisposable
{
    private readonly Vips.Image _map;
    public string Path { get; }
    public int Width => _map.Width;
    public int Height => _map.Height;

    public NodeMapReader(string path)
    {
        Path = path;
        try { _map = Vips.Image.NewFromFile(path, access: Vips.Enums.Access.Random, failOn: Vips.Enums.FailOn.Error); }
        catch (Vips.VipsException e) { throw new InputFileException(path, $"not a readable node map ({e.Message.Split('\n')[0]})", e); }
        if (_map.Format != Vips.Enums.BandFormat.Uint || _map.Bands != 1) { _map.Dispose(); throw new InputFileException(path, "not a node-label map (expected one uint32 band)"); }
    }

    public void Read(PixelRect r, Span<uint> dest)
    {
        using var crop = _map.Crop(r.X, r.Y, r.W, r.H);
        var a = crop.WriteToMemory<uint>();
        a.AsSpan().CopyTo(dest);
    }

    public void Dispose() => _map.Dispose();
}

/// <summary>
/// One image refined block by block: each block reads its pixels and node ids with the refiner's halo, and only the
/// pixels of flagged nodes go through the classifier (the others keep their node's class and probability).
/// </summary>
public sealed class RefineBlocks
{
    private readonly PixelRefiner _refiner;
    private readonly IRegionSource _image;
    private readonly NodeMapReader _map;
    private readonly double[] _mean, _std;
    private readonly byte[] _classOfNode;
    private readonly float[] _probs;
    private readonly bool[] _flag;
    public int Width { get; }
    public int Height { get; }
    private long _refined, _changed;
    private readonly object _read = new();
    /// <summary>Pixels that went through the classifier, and of those the ones whose class it changed.</summary>
    public long RefinedPixels => Interlocked.Read(ref _refined);
    public long ChangedPixels => Interlocked.Read(ref _changed);

    public RefineBlocks(PixelRefiner refiner, IRegionSource image, NodeMapReader map, double[] imageMean, double[] imageStd,
        byte[] classOfNode, float[] probs, bool[] flag)
    {
        if (image.Width != map.Width || image.Height != map.Height)
            throw new InputFileException(map.Path, $"node map is {map.Width}x{map.Height}, the image {image.Width}x{image.Height}");
        if (image.Channels != refiner.Spec.Channels)
            throw new InvalidDataException($"the refiner was trained on {refiner.Spec.Channels}-channel images, the image has {image.Channels}");
        if (probs.Length != (long)classOfNode.Length * refiner.Spec.Classes || flag.Length != classOfNode.Length)
            throw new ArgumentException("node classes, probabilities and flags do not match");
        _refiner = refiner; _image = image; _map = map; _mean = imageMean; _std = imageStd;
        _classOfNode = classOfNode; _probs = probs; _flag = flag;
        Width = image.Width; Height = image.Height;
    }

    /// <summary>
    /// The refined class (and the probability of that class × 255, when <paramref name="probByte"/> is not empty) of
    /// every pixel of <paramref name="core"/>, row-major. Pixels without a node (glass) are class 0, probability 0.
    /// Blocks may be painted from several threads at once (the reads take turns).
    /// </summary>
    public void Paint(PixelRect core, Span<byte> cls, Span<byte> probByte)
    {
        int n = core.W * core.H, K = _refiner.Spec.Classes;
        var ids = new uint[n];
        lock (_read) _map.Read(core, ids);
        bool any = false;
        for (int i = 0; i < n; i++)
        {
            uint id = ids[i];
            if (id == GraphOutputs.NoNode) { cls[i] = 0; if (!probByte.IsEmpty) probByte[i] = 0; continue; }
            if (id >= (uint)_classOfNode.Length) throw new InputFileException(_map.Path, $"node id {id} but the graph has {_classOfNode.Length} nodes");
            byte c = _classOfNode[id];
            cls[i] = c;
            if (!probByte.IsEmpty) probByte[i] = ToByte(_probs[(int)id * K + c]);
            any |= _flag[id];
        }
        if (!any) return;
        var features = Features(core, out _);
        int F = _refiner.Features;
        var scratch = new float[_refiner.ScratchLength];
        long refined = 0, changed = 0;
        for (int i = 0; i < n; i++)
        {
            uint id = ids[i];
            if (id == GraphOutputs.NoNode || !_flag[id]) continue;
            var (c, p) = _refiner.Classify(features.AsSpan(i * F, F), scratch);
            refined++;
            if (c != cls[i]) changed++;
            cls[i] = c;
            if (!probByte.IsEmpty) probByte[i] = ToByte(p);
        }
        Interlocked.Add(ref _refined, refined);
        Interlocked.Add(ref _changed, changed);
    }

    /// <summary>The features of the pixels of flagged nodes in <paramref name="core"/> (for training), with their index in the block and their node.</summary>
    public (float[] Features, int[] Pixels, uint[] Nodes) FlaggedFeatures(PixelRect core)
    {
        int n = core.W * core.H, F = _refiner.Features;
        var ids = new uint[n];
        lock (_read) _map.Read(core, ids);
        var pick = new List<int>();
        for (int i = 0; i < n; i++) if (ids[i] != GraphOutputs.NoNode && ids[i] < (uint)_flag.Length && _flag[ids[i]]) pick.Add(i);
        if (pick.Count == 0) return ([], [], []);
        var all = Features(core, out _);
        var f = new float[pick.Count * F];
        for (int j = 0; j < pick.Count; j++) all.AsSpan(pick[j] * F, F).CopyTo(f.AsSpan(j * F, F));
        return (f, pick.ToArray(), pick.Select(i => ids[i]).ToArray());
    }

    private float[] Features(PixelRect core, out PixelRect region)
    {
        region = core.Grow(_refiner.Halo, Width, Height);
        var raw = new ushort[region.Pixels * _image.Channels];
        var rids = new uint[region.Pixels];
        lock (_read)
        {
            _image.ReadRegion(region.X, region.Y, region.W, region.H, raw);
            _map.Read(region, rids);
        }
        var features = new float[core.Pixels * _refiner.Features];
        _refiner.ComputeFeatures(region, core, Width, Height, raw, rids, _probs, _mean, _std, features);
        return features;
    }

    private static byte ToByte(float p) => MaskPainter.ProbabilityByte(p);

    /// <summary>Blocks of at most <paramref name="size"/>² covering the image in raster order.</summary>
    public static IEnumerable<PixelRect> Blocks(int width, int height, int size)
    {
        for (int y = 0; y < height; y += size)
            for (int x = 0; x < width; x += size)
                yield return new PixelRect(x, y, Math.Min(size, width - x), Math.Min(size, height - y));
    }
}
