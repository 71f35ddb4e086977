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
    /// <param name="noNode">the class written for pixels without a node (glass): 0 in a mask; an evaluation passes a
    /// value no class has, to leave them out as the coarse node histograms do</param>
    public void Paint(PixelRect core, Span<byte> cls, Span<byte> probByte, byte noNode = 0)
    {
        // the node ids of the block with the refiner's halo, read once: the core's are a window of them
        var region = core.Grow(_refiner.Halo, Width, Height);
        var rids = new uint[region.Pixels];
        lock (_read) _map.Read(region, rids);
        PaintFrom(core, region, rids, null, cls, probByte, noNode);
    }

    /// <summary>
    /// The blocks of one band of rows [<paramref name="y0"/>, y0 + <paramref name="height"/>), <paramref name="block"/>
    /// pixels wide (the last narrower), painted into <paramref name="cls"/>[b] and <paramref name="probByte"/>[b] (each
    /// block's pixels row-major), exactly as <see cref="Paint"/> paints each block; the band's pixels and node ids are read
    /// once with the halo rows above and below, and the blocks refined on every core.
    /// </summary>
    public void PaintBand(int y0, int height, int block, byte[][] cls, byte[][]? probByte)
    {
        int cols = (Width + block - 1) / block, C = _image.Channels;
        // a few blocks more than there are cores at a time: memory stays bounded however wide the image is
        int chunk = Math.Max(8, 2 * Environment.ProcessorCount);
        for (int c0 = 0; c0 < cols; c0 += chunk)
        {
            int c1 = Math.Min(cols, c0 + chunk);
            var band = new PixelRect(c0 * block, y0, Math.Min(Width, c1 * block) - c0 * block, height).Grow(_refiner.Halo, Width, Height);
            var ids = new uint[band.Pixels];
            lock (_read) _map.Read(band, ids);
            ushort[]? raw = null;
            if (AnyFlagged(ids))
            {
                raw = new ushort[band.Pixels * C];
                lock (_read) _image.ReadRegion(band.X, band.Y, band.W, band.H, raw);
            }
            Parallel.For(c0, c1, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, bc =>
            {
                var core = new PixelRect(bc * block, y0, Math.Min(block, Width - bc * block), height);
                var region = core.Grow(_refiner.Halo, Width, Height);
                // the block's region, cut out of the band's (which holds all of it)
                var rids = new uint[region.Pixels];
                ushort[]? rraw = raw is null ? null : new ushort[region.Pixels * C];
                for (int y = 0; y < region.H; y++)
                {
                    int src = (region.Y - band.Y + y) * band.W + region.X - band.X;
                    ids.AsSpan(src, region.W).CopyTo(rids.AsSpan(y * region.W, region.W));
                    if (rraw is not null) raw!.AsSpan(src * C, region.W * C).CopyTo(rraw.AsSpan(y * region.W * C, region.W * C));
                }
                PaintFrom(core, region, rids, rraw, cls[bc], probByte is null ? default : probByte[bc]);
            });
        }
    }

    private bool AnyFlagged(uint[] ids)
    {
        foreach (var id in ids) if (id < (uint)_flag.Length && _flag[id]) return true;
        return false;
    }

    /// <summary>Paints <paramref name="core"/> from its region's node ids (and pixels, when already read; else read here if needed).</summary>
    private void PaintFrom(PixelRect core, PixelRect region, uint[] rids, ushort[]? raw, Span<byte> cls, Span<byte> probByte, byte noNode = 0)
    {
        int K = _refiner.Spec.Classes;
        int ox = core.X - region.X, oy = core.Y - region.Y, rw = region.W;
        // the nodes' own classes, and the pixels of flagged nodes, in one pass
        var pick = new List<int>();
        for (int y = 0; y < core.H; y++)
            for (int x = 0; x < core.W; x++)
            {
                int i = y * core.W + x;
                uint id = rids[(oy + y) * rw + ox + x];
                if (id == GraphOutputs.NoNode) { cls[i] = noNode; if (!probByte.IsEmpty) probByte[i] = 0; continue; }
                if (id >= (uint)_classOfNode.Length) throw new InputFileException(_map.Path, $"node id {id} but the graph has {_classOfNode.Length} nodes");
                byte c = _classOfNode[id];
                cls[i] = c;
                if (!probByte.IsEmpty) probByte[i] = ToByte(_probs[(int)id * K + c]);
                if (_flag[id]) pick.Add(i);
            }
        if (pick.Count == 0) return;
        if (raw is null)
        {
            raw = new ushort[region.Pixels * _image.Channels];
            lock (_read) _image.ReadRegion(region.X, region.Y, region.W, region.H, raw);
        }
        int F = _refiner.Features;
        var pixels = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(pick);
        var features = new float[(long)pixels.Length * F];
        FeaturesAt(region, core, raw, rids, pixels, features);
        var newClass = new byte[pixels.Length]; var newProb = new float[pixels.Length];
        _refiner.ClassifyMany(features, newClass, newProb);
        long changed = 0;
        for (int j = 0; j < pixels.Length; j++)
        {
            int i = pixels[j];
            if (newClass[j] != cls[i]) changed++;
            cls[i] = newClass[j];
            if (!probByte.IsEmpty) probByte[i] = ToByte(newProb[j]);
        }
        long refined = pixels.Length;
        Interlocked.Add(ref _refined, refined);
        Interlocked.Add(ref _changed, changed);
    }

    /// <summary>The features of the pixels of flagged nodes in <paramref name="core"/> (for training), with their index in the block and their node.</summary>
    public (float[] Features, int[] Pixels, uint[] Nodes) FlaggedFeatures(PixelRect core)
    {
        int F = _refiner.Features;
        var region = core.Grow(_refiner.Halo, Width, Height);
        var rids = new uint[region.Pixels];
        lock (_read) _map.Read(region, rids);
        int ox = core.X - region.X, oy = core.Y - region.Y;
        var pick = new List<int>(); var nodes = new List<uint>();
        for (int y = 0; y < core.H; y++)
            for (int x = 0; x < core.W; x++)
            {
                uint id = rids[(oy + y) * region.W + ox + x];
                if (id != GraphOutputs.NoNode && id < (uint)_flag.Length && _flag[id]) { pick.Add(y * core.W + x); nodes.Add(id); }
            }
        if (pick.Count == 0) return ([], [], []);
        var raw = new ushort[region.Pixels * _image.Channels];
        lock (_read) _image.ReadRegion(region.X, region.Y, region.W, region.H, raw);
        var f = new float[(long)pick.Count * F];
        FeaturesAt(region, core, raw, rids, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(pick), f);
        return (f, pick.ToArray(), nodes.ToArray());
    }

    /// <summary>The refiner's features at <paramref name="pixels"/>. They read the node ids of the whole region, the halo's
    /// too (their probabilities are context), so an id the graph does not have anywhere in it is the node map's fault and
    /// is reported naming the map, whichever block meets it first.</summary>
    private void FeaturesAt(PixelRect region, PixelRect core, ushort[] raw, uint[] rids, ReadOnlySpan<int> pixels, float[] features)
    {
        try { _refiner.ComputeFeaturesAt(region, core, Width, Height, raw, rids, _probs, _mean, _std, pixels, features); }
        catch (InvalidDataException e) { throw new InputFileException(_map.Path, e.Message, e); }
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
