using System.Numerics;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Refine;

/// <summary>
/// The boundary refinement's classifier, as a model file keeps it (JSON): a small per-pixel MLP (features → hidden →
/// hidden → classes, ReLU) over multi-scale intensity features and the coarse graph's context, applied to the pixels of
/// the nodes the coarse level is unsure about. Plain arrays, so a tile worker applies it without libtorch.
/// </summary>
public sealed record PixelRefinerSpec
{
    public string Format { get; init; } = "actorseg-refiner/1";
    public required int Channels { get; init; }
    public required int Classes { get; init; }
    public required int Hidden { get; init; }
    /// <summary>Gaussian scales of the intensity features, in pixels.</summary>
    public required double[] Sigmas { get; init; }
    /// <summary>Scale of the smoothed coarse probability field (a quarter of the seed spacing).</summary>
    public required double ContextSigma { get; init; }
    /// <summary>A node whose winning probability is below this is refined (besides every node with a neighbour of another class).</summary>
    public required double Threshold { get; init; }
    public required float[] FeatureMean { get; init; }
    public required float[] FeatureStd { get; init; }
    /// <summary>Row-major [in, out] weights and biases of the three layers.</summary>
    public required float[] W1 { get; init; }
    public required float[] B1 { get; init; }
    public required float[] W2 { get; init; }
    public required float[] B2 { get; init; }
    public required float[] W3 { get; init; }
    public required float[] B3 { get; init; }
    /// <summary>Pixel accuracy of the refined pixels on the validation fields, and of the coarse classes on the same pixels.</summary>
    public double ValidationAccuracy { get; init; }
    public double ValidationCoarseAccuracy { get; init; }
    public long TrainingPixels { get; init; }

    public const int MaxSigma = 64, MaxHidden = 1024;

    /// <summary>Features per pixel: per channel the value, its smoothings and two gradient magnitudes; per class the
    /// node's probability and the smoothed probability field.</summary>
    public static int FeatureCount(int channels, int sigmas, int classes) => channels * (1 + sigmas + 2) + 2 * classes;
    public int Features => FeatureCount(Channels, Sigmas.Length, Classes);

    /// <summary>Refuses a spec that cannot have come from training: wrong shapes, non-finite numbers, absurd scales.</summary>
    public void Validate(string source)
    {
        string? Bad()
        {
            if (Format != "actorseg-refiner/1") return $"unknown refiner format '{Format}'";
            if (Channels is < 1 or > Imaging.ImageLimits.MaxChannels) return $"{Channels} channels";
            if (Classes is < 2 or > 254) return $"{Classes} classes";
            if (Hidden is < 1 or > MaxHidden) return $"hidden width {Hidden}";
            if (Sigmas is null || Sigmas.Length is < 2 or > 8 || Sigmas.Any(s => !(s >= 0.5 && s <= MaxSigma))) return "the intensity scales must be 2 to 8 values in 0.5..64";
            if (!(ContextSigma >= 0.5 && ContextSigma <= MaxSigma)) return $"context scale {ContextSigma}";
            if (!(Threshold >= 0 && Threshold <= 1)) return $"threshold {Threshold}";
            int f = Features, h = Hidden, c = Classes;
            (string, float[]?, long)[] shapes = [("feature mean", FeatureMean, f), ("feature std", FeatureStd, f), ("W1", W1, (long)f * h), ("B1", B1, h),
                ("W2", W2, (long)h * h), ("B2", B2, h), ("W3", W3, (long)h * c), ("B3", B3, c)];
            foreach (var (name, a, n) in shapes)
            {
                if (a is null || a.Length != n) return $"{name} has {a?.Length ?? 0} values, not {n}";
                if (a.Any(v => !float.IsFinite(v))) return $"{name} holds a value that is not finite";
            }
            if (FeatureStd.Any(v => !(v > 0))) return "a feature standard deviation is not positive";
            return null;
        }
        if (Bad() is { } why) throw new InvalidDataException($"{source}: not a usable boundary refiner ({why})");
    }
}

/// <summary>A rectangle of image pixels.</summary>
public readonly record struct PixelRect(int X, int Y, int W, int H)
{
    public int Right => X + W;
    public int Bottom => Y + H;
    public long Pixels => (long)W * H;
    public PixelRect Grow(int by, int imageW, int imageH)
    {
        int x0 = Math.Max(0, X - by), y0 = Math.Max(0, Y - by), x1 = Math.Min(imageW, Right + by), y1 = Math.Min(imageH, Bottom + by);
        return new PixelRect(x0, y0, x1 - x0, y1 - y0);
    }
}

/// <summary>
/// Computes the refinement's per-pixel features and applies its MLP. Every feature of a pixel is the same float
/// sequence whatever region it is computed in (the smoothings reflect only at the image's own borders, and the region
/// reaches <see cref="Halo"/> pixels past the block), so a mask refined tile by tile is the mask refined whole.
/// </summary>
public sealed class PixelRefiner
{
    public PixelRefinerSpec Spec { get; }
    private readonly float[][] _kernels;
    private readonly float[] _contextKernel;
    private readonly float[] _invStd;
    /// <summary>Pixels of context a block needs on every side.</summary>
    public int Halo { get; }
    public int Features => Spec.Features;

    public PixelRefiner(PixelRefinerSpec spec)
    {
        spec.Validate("refiner");
        Spec = spec;
        _kernels = spec.Sigmas.Select(Gaussian.Kernel).ToArray();
        _contextKernel = Gaussian.Kernel(spec.ContextSigma);
        _invStd = spec.FeatureStd.Select(s => 1f / s).ToArray();
        // the widest smoothing plus one pixel for the gradients, and the context field
        Halo = Math.Max(_kernels.Max(k => k.Length / 2) + 1, _contextKernel.Length / 2);
    }

    /// <summary>Which nodes are refined: those with a region-adjacency neighbour of another class, and those whose winning
    /// probability is below <paramref name="threshold"/>.</summary>
    public static bool[] Flags(ReadOnlySpan<byte> classOfNode, ReadOnlySpan<float> probs, int classes, ReadOnlySpan<long> ragEdgeIndex, double threshold)
    {
        int n = classOfNode.Length;
        if (probs.Length != (long)n * classes) throw new ArgumentException($"{probs.Length} probabilities for {n} nodes of {classes} classes");
        if (ragEdgeIndex.Length % 2 != 0) throw new ArgumentException("region-adjacency edges are not 2 × E");
        var flag = new bool[n];
        for (int v = 0; v < n; v++)
        {
            float best = 0;
            for (int c = 0; c < classes; c++) best = Math.Max(best, probs[v * classes + c]);
            if (best < threshold) flag[v] = true;
        }
        int e = ragEdgeIndex.Length / 2;
        for (int i = 0; i < e; i++)
        {
            long a = ragEdgeIndex[i], b = ragEdgeIndex[e + i];
            if ((ulong)a >= (ulong)n || (ulong)b >= (ulong)n) throw new InvalidDataException($"region-adjacency edge {i} joins node {a} and {b}, but the graph has {n} nodes");
            if (classOfNode[(int)a] != classOfNode[(int)b]) { flag[a] = true; flag[b] = true; }
        }
        return flag;
    }

    /// <summary>
    /// The features of every pixel of <paramref name="core"/>, row-major, <see cref="Features"/> per pixel.
    /// <paramref name="region"/> must be <paramref name="core"/> grown by <see cref="Halo"/> (clipped to the image);
    /// <paramref name="raw"/> holds its samples (channels interleaved) and <paramref name="nodeIds"/> its node ids
    /// (<see cref="IO.GraphOutputs.NoNode"/> outside the tissue).
    /// </summary>
    public void ComputeFeatures(PixelRect region, PixelRect core, int imageW, int imageH, ReadOnlySpan<ushort> raw, ReadOnlySpan<uint> nodeIds,
        ReadOnlySpan<float> nodeProbs, ReadOnlySpan<double> mean, ReadOnlySpan<double> std, Span<float> features)
    {
        var s = Spec;
        int C = s.Channels, K = s.Classes, F = Features, rw = region.W, rh = region.H, rn = rw * rh;
        if (region != core.Grow(Halo, imageW, imageH)) throw new ArgumentException($"region {region} is not core {core} grown by the halo {Halo}");
        if (raw.Length != (long)rn * C || nodeIds.Length != rn) throw new ArgumentException("region buffers do not match the region");
        if (mean.Length != C || std.Length != C) throw new ArgumentException($"image statistics for {mean.Length} channels, the refiner takes {C}");
        if (features.Length < core.Pixels * F) throw new ArgumentException("feature buffer too small");
        int nodes = nodeProbs.Length / K;
        var plane = new float[rn]; var smooth = new float[rn]; var tmp = new float[rn];
        int ox = core.X - region.X, oy = core.Y - region.Y, cw = core.W, ch = core.H;
        int perChannel = 1 + s.Sigmas.Length + 2;
        for (int c = 0; c < C; c++)
        {
            float m = (float)mean[c], inv = std[c] > 0 ? (float)(1.0 / std[c]) : 1f; // a constant image has no spread
            for (int i = 0; i < rn; i++) plane[i] = (raw[i * C + c] - m) * inv;
            int fb = c * perChannel;
            Put(plane, fb, features, F, rw, ox, oy, cw, ch);
            for (int k = 0; k < _kernels.Length; k++)
            {
                Gaussian.Blur(plane, smooth, tmp, rw, rh, _kernels[k]);
                Put(smooth, fb + 1 + k, features, F, rw, ox, oy, cw, ch);
                if (k < 2) Gradient(smooth, fb + 1 + s.Sigmas.Length + k, features, F, rw, ox, oy, core, imageW, imageH);
            }
        }
        // the coarse context: the node's own probabilities and the smoothed probability field
        int cb = C * perChannel;
        for (int k = 0; k < K; k++)
        {
            for (int i = 0; i < rn; i++)
            {
                uint id = nodeIds[i];
                plane[i] = id == IO.GraphOutputs.NoNode ? 0f : id < (uint)nodes ? nodeProbs[(int)id * K + k] : throw new InvalidDataException($"node id {id} in the node map, but the graph has {nodes} nodes");
            }
            Put(plane, cb + k, features, F, rw, ox, oy, cw, ch);
            Gaussian.Blur(plane, smooth, tmp, rw, rh, _contextKernel);
            Put(smooth, cb + K + k, features, F, rw, ox, oy, cw, ch);
        }

    }

    private static void Put(float[] src, int f, Span<float> features, int F, int rw, int ox, int oy, int cw, int ch)
    {
        for (int y = 0; y < ch; y++)
        {
            int srow = (oy + y) * rw + ox, drow = y * cw;
            for (int x = 0; x < cw; x++) features[(drow + x) * F + f] = src[srow + x];
        }
    }

    /// <summary>Half the central-difference gradient magnitude of <paramref name="g"/> at every core pixel (one-sided at the image's borders).</summary>
    private static void Gradient(float[] g, int f, Span<float> features, int F, int rw, int ox, int oy, PixelRect core, int imageW, int imageH)
    {
        int cw = core.W, ch = core.H;
        for (int y = 0; y < ch; y++)
        {
            int ry = oy + y, gy = core.Y + y;
            int up = gy > 0 ? ry - 1 : ry, down = gy < imageH - 1 ? ry + 1 : ry;
            for (int x = 0; x < cw; x++)
            {
                int rx = ox + x, gx = core.X + x;
                int left = gx > 0 ? rx - 1 : rx, right = gx < imageW - 1 ? rx + 1 : rx;
                float dx = g[ry * rw + right] - g[ry * rw + left], dy = g[down * rw + rx] - g[up * rw + rx];
                features[(y * cw + x) * F + f] = MathF.Sqrt(dx * dx + dy * dy) * 0.5f;
            }
        }
    }

    /// <summary>Classifies one pixel's features: the winning class and its probability.</summary>
    public (byte Class, float Probability) Classify(ReadOnlySpan<float> x, Span<float> scratch)
    {
        var s = Spec;
        int F = Features, H = s.Hidden, K = s.Classes;
        var h1 = scratch[..H]; var h2 = scratch.Slice(H, H); var o = scratch.Slice(2 * H, K);
        Layer(x, F, s.W1, s.B1, h1, H, normalise: true);
        Relu(h1);
        Layer(h1, H, s.W2, s.B2, h2, H, normalise: false);
        Relu(h2);
        Layer(h2, H, s.W3, s.B3, o, K, normalise: false);
        int best = 0;
        for (int k = 1; k < K; k++) if (o[k] > o[best]) best = k;
        float sum = 0;
        for (int k = 0; k < K; k++) sum += MathF.Exp(o[k] - o[best]);
        return ((byte)best, 1f / sum);
    }

    /// <summary>Floats of scratch <see cref="Classify"/> needs.</summary>
    public int ScratchLength => 2 * Spec.Hidden + Spec.Classes;

    private void Layer(ReadOnlySpan<float> input, int nIn, float[] w, float[] b, Span<float> output, int nOut, bool normalise)
    {
        b.AsSpan().CopyTo(output);
        int vw = Vector<float>.Count;
        for (int i = 0; i < nIn; i++)
        {
            float xi = normalise ? (input[i] - Spec.FeatureMean[i]) * _invStd[i] : input[i];
            if (xi == 0) continue;
            var row = w.AsSpan(i * nOut, nOut);
            int j = 0;
            var xv = new Vector<float>(xi);
            for (; j + vw <= nOut; j += vw) (new Vector<float>(output.Slice(j, vw)) + xv * new Vector<float>(row.Slice(j, vw))).CopyTo(output.Slice(j, vw));
            for (; j < nOut; j++) output[j] += xi * row[j];
        }
    }

    private static void Relu(Span<float> v)
    {
        for (int i = 0; i < v.Length; i++) if (v[i] < 0) v[i] = 0;
    }
}
