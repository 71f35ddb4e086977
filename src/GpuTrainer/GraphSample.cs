using ActorSeg.Core.IO;

namespace ActorSeg.GpuTrainer;

/// <summary>One image's graph as written by <c>actorseg graph</c>, with the edge set a model trains on.</summary>
public sealed class GraphSample
{
    public required string Path { get; init; }
    public required int Nodes { get; init; }
    public required string[] FeatureNames { get; init; }
    public required float[] X { get; init; }            // N × F
    public required long[] EdgeIndex { get; init; }     // 2 × E
    public required float[] EdgeWeight { get; init; }   // E
    public long[]? Y { get; init; }                     // N, −1 = unlabelled
    public long[]? ClassHist { get; init; }             // N × Classes
    public int Classes { get; init; }
    /// <summary>The SLIC seed spacing the graph was built with (0 when unknown).</summary>
    public double SeedSpacing { get; init; }
    /// <summary>µm per pixel (x, y) of the image the graph was built from, as the graph itself records it
    /// (<c>image_microns_per_pixel</c>, since 2026-12-07); null where it records none.</summary>
    public (double X, double Y)? MicronsPerPixel { get; init; }
    public int F => FeatureNames.Length;
    public int E => EdgeWeight.Length;

    public static readonly string[] EdgeModes = ["knn", "knn-scaled", "rag"];

    /// <param name="edges">knn: the published kNN graph weighted exp(−d); knn-scaled: the same edges weighted
    /// exp(−d / mean spacing); rag: region adjacency, each node's incoming weights proportional to shared boundary
    /// length and summing to 1</param>
    /// <summary>The most classes a graph or model may have: mask class ids are 0..254 (255 is "unlabelled").</summary>
    public const int MaxClasses = 255;

    /// <exception cref="InvalidDataException">The file is not a graph, or its arrays disagree in shape, type or range:
    /// the message names the file, the array and the first bad value.</exception>
    public static GraphSample Load(string path, string edges)
    {
        if (!EdgeModes.Contains(edges)) throw new ArgumentException($"edges must be one of {string.Join(", ", EdgeModes)} (got '{edges}')");
        IReadOnlyDictionary<string, NpyArray> npz;
        try { npz = NpzReader.Read(path); }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException)
        { throw new InvalidDataException($"{path}: not a readable graph ({e.Message})", e); }
        InvalidDataException Bad(string what) => new($"{path}: {what}");
        NpyArray Need(string key) => npz.TryGetValue(key, out var a) ? a : throw Bad($"graph has no '{key}' array (not written by actorseg graph?)");
        T[] Read<T>(string key, NpyArray a, params int[] shape) where T : unmanaged
        {
            if (!a.Shape.SequenceEqual(shape))
                throw Bad($"'{key}' has shape ({string.Join(", ", a.Shape)}), expected ({string.Join(", ", shape)})");
            try { return a.AsSpan<T>().ToArray(); }
            catch (InvalidOperationException) { throw Bad($"'{key}' is of dtype '{a.Dtype}', expected {typeof(T).Name}"); }
        }

        string[] names;
        try { names = Need("feature_names").Strings(); }
        catch (InvalidOperationException e) { throw Bad($"'feature_names' is not a string array ({e.Message})"); }
        if (names.Length == 0 || names.Any(string.IsNullOrWhiteSpace) || names.Distinct(StringComparer.Ordinal).Count() != names.Length)
            throw Bad($"'feature_names' must be distinct non-empty names (got [{string.Join(", ", names)}])");
        var xa = Need("x");
        if (xa.Shape.Length != 2) throw Bad($"'x' has shape ({string.Join(", ", xa.Shape)}), expected (nodes, {names.Length})");
        int n = xa.Shape[0];
        var x = Read<float>("x", xa, n, names.Length);
        for (int i = 0; i < x.Length; i++)
            if (!float.IsFinite(x[i])) throw Bad($"'x' holds {x[i]} at node {i / names.Length}, feature {names[i % names.Length]}");

        long[] EdgeIndex(string key)
        {
            var a = Need(key);
            if (a.Shape.Length != 2 || a.Shape[0] != 2) throw Bad($"'{key}' has shape ({string.Join(", ", a.Shape)}), expected (2, edges)");
            var ei = Read<long>(key, a, 2, a.Shape[1]);
            foreach (var v in ei) if (v < 0 || v >= n) throw Bad($"edge refers to node {v} of {n}");
            return ei;
        }
        float[] Weights(string key, int e)
        {
            var w = Read<float>(key, Need(key), e);
            foreach (var v in w) if (!(float.IsFinite(v) && v >= 0)) throw Bad($"'{key}' holds the edge weight {v}");
            return w;
        }
        long[] ei; float[] w;
        switch (edges)
        {
            case "knn": ei = EdgeIndex("edge_index"); w = Weights("edge_weight", ei.Length / 2); break;
            case "knn-scaled": ei = EdgeIndex("edge_index"); w = Weights("edge_weight_scaled", ei.Length / 2); break;
            default:
                ei = EdgeIndex("rag_edge_index");
                int e = ei.Length / 2;
                var len = Read<int>("rag_boundary_length", Need("rag_boundary_length"), e);
                var total = new double[n];
                for (int i = 0; i < e; i++)
                {
                    if (len[i] <= 0) throw Bad($"'rag_boundary_length' holds {len[i]} for edge {i} (a shared boundary is at least 1 px)");
                    total[ei[e + i]] += len[i];
                }
                w = new float[e];
                for (int i = 0; i < e; i++) w[i] = (float)(len[i] / total[ei[e + i]]);
                break;
        }

        long[]? hist = null; int classes = 0;
        if (npz.TryGetValue("class_hist", out var ha))
        {
            classes = ha.Shape.Length == 2 ? ha.Shape[1] : 0;
            if (classes < 1 || classes > MaxClasses) throw Bad($"'class_hist' has shape ({string.Join(", ", ha.Shape)}), expected (nodes, classes) with 1..{MaxClasses} classes");
            hist = Read<long>("class_hist", ha, n, classes);
            for (int i = 0; i < hist.Length; i++)
                if (hist[i] < 0) throw Bad($"'class_hist' holds {hist[i]} pixels of class {i % classes} at node {i / classes}");
        }
        long[]? y = null;
        if (npz.TryGetValue("y", out var ya))
        {
            y = Read<long>("y", ya, n);
            long top = hist is null ? MaxClasses : classes;
            for (int v = 0; v < n; v++)
                if (y[v] < -1 || y[v] >= top)
                    throw Bad($"'y' holds the label {y[v]} at node {v}: labels are -1 (unlabelled) or a class id 0..{top - 1}{(hist is null ? "" : $" ('class_hist' has {classes} classes)")}");
        }
        double spacing = 0;
        if (npz.TryGetValue("seed_spacing", out var sp))
        {
            try { spacing = sp.Scalar<double>(); }
            catch (InvalidOperationException e) { throw Bad($"'seed_spacing' is not a float64 scalar ({e.Message})"); }
            if (!(double.IsFinite(spacing) && spacing >= 0)) throw Bad($"'seed_spacing' is {spacing}");
        }
        (double, double)? mpp = null;
        if (npz.TryGetValue(Core.IO.GraphOutputs.PixelSizeArray, out var ua))
        {
            var um = Read<double>(Core.IO.GraphOutputs.PixelSizeArray, ua, 2);
            if (!(double.IsFinite(um[0]) && um[0] > 0 && double.IsFinite(um[1]) && um[1] > 0))
                throw Bad($"'{Core.IO.GraphOutputs.PixelSizeArray}' is [{um[0]}, {um[1]}], not two positive sizes");
            mpp = (um[0], um[1]);
        }
        return new GraphSample
        {
            Path = path, Nodes = n, FeatureNames = names, X = x,
            EdgeIndex = ei, EdgeWeight = w, Y = y, ClassHist = hist, Classes = classes, SeedSpacing = spacing, MicronsPerPixel = mpp,
        };
    }

    /// <summary>Graph files under a directory (every graph.npz or *.npz), or the files themselves.</summary>
    public static List<string> Discover(IEnumerable<string> inputs)
    {
        var list = new List<string>();
        foreach (var p in inputs)
        {
            if (Directory.Exists(p))
            {
                var found = Directory.GetFiles(p, "*.npz", SearchOption.AllDirectories).Where(f => !f.Contains($"{System.IO.Path.DirectorySeparatorChar}.work-")).Order(StringComparer.Ordinal).ToList();
                if (found.Count == 0) throw new FileNotFoundException($"{p}: no .npz graphs in this directory");
                list.AddRange(found);
            }
            else if (File.Exists(p)) list.Add(p);
            else throw new FileNotFoundException($"{p}: no such file or directory");
        }
        return list;
    }
}
