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
    public int F => FeatureNames.Length;
    public int E => EdgeWeight.Length;

    public static readonly string[] EdgeModes = ["knn", "knn-scaled", "rag"];

    /// <param name="edges">knn: the published kNN graph weighted exp(−d); knn-scaled: the same edges weighted
    /// exp(−d / mean spacing); rag: region adjacency, each node's incoming weights proportional to shared boundary
    /// length and summing to 1</param>
    public static GraphSample Load(string path, string edges)
    {
        IReadOnlyDictionary<string, NpyArray> npz;
        try { npz = NpzReader.Read(path); }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException)
        { throw new InvalidDataException($"{path}: not a readable graph ({e.Message})", e); }
        NpyArray Need(string key) => npz.TryGetValue(key, out var a) ? a : throw new InvalidDataException($"{path}: graph has no '{key}' array (not written by actorseg graph?)");
        var x = Need("x");
        int n = x.Shape[0];
        long[] ei; float[] w;
        switch (edges)
        {
            case "knn": ei = Need("edge_index").AsSpan<long>().ToArray(); w = Need("edge_weight").AsSpan<float>().ToArray(); break;
            case "knn-scaled": ei = Need("edge_index").AsSpan<long>().ToArray(); w = Need("edge_weight_scaled").AsSpan<float>().ToArray(); break;
            case "rag":
                ei = Need("rag_edge_index").AsSpan<long>().ToArray();
                var len = Need("rag_boundary_length").AsSpan<int>();
                int e = len.Length;
                var total = new double[n];
                for (int i = 0; i < e; i++) total[ei[e + i]] += len[i];
                w = new float[e];
                for (int i = 0; i < e; i++) w[i] = (float)(len[i] / total[ei[e + i]]);
                break;
            default: throw new ArgumentException($"edges must be one of {string.Join(", ", EdgeModes)} (got '{edges}')");
        }
        long[]? y = npz.TryGetValue("y", out var ya) ? ya.AsSpan<long>().ToArray() : null;
        long[]? hist = null; int classes = 0;
        if (npz.TryGetValue("class_hist", out var ha)) { hist = ha.AsSpan<long>().ToArray(); classes = ha.Shape[1]; }
        foreach (var v in ei) if (v < 0 || v >= n) throw new InvalidDataException($"{path}: edge refers to node {v} of {n}");
        return new GraphSample
        {
            Path = path, Nodes = n, FeatureNames = Need("feature_names").Strings(), X = x.AsSpan<float>().ToArray(),
            EdgeIndex = ei, EdgeWeight = w, Y = y, ClassHist = hist, Classes = classes,
            SeedSpacing = npz.TryGetValue("seed_spacing", out var sp) ? sp.Scalar<double>() : 0,
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
