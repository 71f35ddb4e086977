using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Numerics;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Refine;

/// <summary>The training graphs give the boundary refinement nothing (or too little) to learn from: the coarse model stands
/// alone, which <c>train</c> reports as a warning unless <c>--refine</c> required the refinement. Bad input, like
/// <see cref="InvalidDataException"/> (which is sealed): permanent, and one line to the user.</summary>
public sealed class RefinerNotTrainableException(string message) : Exception(message);

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
    /// <summary>Classes whose nodes are all refined, whatever their neighbours and probabilities: those that hid a large
    /// share of another class's pixels inside sure nodes on the training graphs (a line or fibre a few pixels wide
    /// running through them, which no superpixel paints). Empty for models trained before this existed.</summary>
    public int[] RefineClasses { get; init; } = [];
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
            if (RefineClasses is null || RefineClasses.Any(k => k < 0 || k >= Classes) || RefineClasses.Distinct().Count() != RefineClasses.Length)
                return $"classes refined whole [{string.Join(", ", RefineClasses ?? [])}]: each must be a distinct class id below {Classes}";
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

    /// <summary>Which nodes <paramref name="spec"/> refines (<see cref="Flags(ReadOnlySpan{byte}, ReadOnlySpan{float}, int, ReadOnlySpan{long}, double, ReadOnlySpan{int})"/>).</summary>
    public static bool[] Flags(PixelRefinerSpec spec, ReadOnlySpan<byte> classOfNode, ReadOnlySpan<float> probs, ReadOnlySpan<long> ragEdgeIndex) =>
        Flags(classOfNode, probs, spec.Classes, ragEdgeIndex, spec.Threshold, spec.RefineClasses);

    /// <summary>Which nodes are refined: those with a region-adjacency neighbour of another class, those whose winning
    /// probability is below <paramref name="threshold"/>, and those called one of <paramref name="refineClasses"/>.</summary>
    public static bool[] Flags(ReadOnlySpan<byte> classOfNode, ReadOnlySpan<float> probs, int classes, ReadOnlySpan<long> ragEdgeIndex, double threshold,
        ReadOnlySpan<int> refineClasses = default)
    {
        int n = classOfNode.Length;
        if (probs.Length != (long)n * classes) throw new ArgumentException($"{probs.Length} probabilities for {n} nodes of {classes} classes");
        if (ragEdgeIndex.Length % 2 != 0) throw new ArgumentException("region-adjacency edges are not 2 × E");
        var flag = new bool[n];
        for (int v = 0; v < n; v++)
        {
            float best = 0;
            for (int c = 0; c < classes; c++) best = Math.Max(best, probs[v * classes + c]);
            if (best < threshold || refineClasses.Contains(classOfNode[v])) flag[v] = true;
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
        var all = new int[core.Pixels];
        for (int i = 0; i < all.Length; i++) all[i] = i;
        ComputeFeaturesAt(region, core, imageW, imageH, raw, nodeIds, nodeProbs, mean, std, all, features);
    }

    /// <summary>
    /// The same values as <see cref="ComputeFeatures"/> for the core pixels <paramref name="pixels"/> only (indices into the
    /// core, row-major): pixel j's features at j × <see cref="Features"/>. The smoothings still cover the region; only the
    /// gathering is limited to the pixels asked for.
    /// </summary>
    public void ComputeFeaturesAt(PixelRect region, PixelRect core, int imageW, int imageH, ReadOnlySpan<ushort> raw, ReadOnlySpan<uint> nodeIds,
        ReadOnlySpan<float> nodeProbs, ReadOnlySpan<double> mean, ReadOnlySpan<double> std, ReadOnlySpan<int> pixels, Span<float> features)
    {
        var s = Spec;
        int C = s.Channels, K = s.Classes, F = Features, rw = region.W, rh = region.H, rn = rw * rh;
        if (region != core.Grow(Halo, imageW, imageH)) throw new ArgumentException($"region {region} is not core {core} grown by the halo {Halo}");
        if (raw.Length != (long)rn * C || nodeIds.Length != rn) throw new ArgumentException("region buffers do not match the region");
        if (mean.Length != C || std.Length != C) throw new ArgumentException($"image statistics for {mean.Length} channels, the refiner takes {C}");
        if (features.Length < (long)pixels.Length * F) throw new ArgumentException("feature buffer too small");
        int nodes = nodeProbs.Length / K, m = pixels.Length;
        int ox = core.X - region.X, oy = core.Y - region.Y, cw = core.W;
        // each pixel's place in the region, and its neighbours' for the gradients (one-sided at the image's borders)
        var at = new int[m]; var left = new int[m]; var right = new int[m]; var up = new int[m]; var down = new int[m];
        for (int j = 0; j < m; j++)
        {
            int i = pixels[j];
            if ((uint)i >= (uint)core.Pixels) throw new ArgumentOutOfRangeException(nameof(pixels), $"pixel {i} is not in the {core.W}x{core.H} core");
            int y = i / cw, x = i - y * cw, ry = oy + y, rx = ox + x, gx = core.X + x, gy = core.Y + y;
            at[j] = ry * rw + rx;
            left[j] = at[j] - (gx > 0 ? 1 : 0); right[j] = at[j] + (gx < imageW - 1 ? 1 : 0);
            up[j] = at[j] - (gy > 0 ? rw : 0); down[j] = at[j] + (gy < imageH - 1 ? rw : 0);
        }
        var plane = new float[rn]; var smooth = new float[rn];
        int perChannel = 1 + s.Sigmas.Length + 2;
        for (int c = 0; c < C; c++)
        {
            float mu = (float)mean[c], inv = std[c] > 0 ? (float)(1.0 / std[c]) : 1f; // a constant image has no spread
            for (int i = 0; i < rn; i++) plane[i] = (raw[i * C + c] - mu) * inv;
            int fb = c * perChannel;
            Gather(plane, at, features, F, fb);
            for (int k = 0; k < _kernels.Length; k++)
            {
                Gaussian.Blur(plane, smooth, rw, rh, _kernels[k]);
                Gather(smooth, at, features, F, fb + 1 + k);
                if (k < 2)
                {
                    int f = fb + 1 + s.Sigmas.Length + k;
                    // half the central-difference gradient magnitude
                    for (int j = 0; j < m; j++)
                    {
                        float dx = smooth[right[j]] - smooth[left[j]], dy = smooth[down[j]] - smooth[up[j]];
                        features[j * F + f] = MathF.Sqrt(dx * dx + dy * dy) * 0.5f;
                    }
                }
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
            Gather(plane, at, features, F, cb + k);
            Gaussian.Blur(plane, smooth, rw, rh, _contextKernel);
            Gather(smooth, at, features, F, cb + K + k);
        }
    }

    private static void Gather(float[] src, int[] at, Span<float> features, int F, int f)
    {
        for (int j = 0; j < at.Length; j++) features[j * F + f] = src[at[j]];
    }

    /// <summary>Classifies one pixel's features: the winning class and its probability.</summary>
    public (byte Class, float Probability) Classify(ReadOnlySpan<float> x, Span<float> scratch)
    {
        var s = Spec;
        int F = Features, H = s.Hidden, K = s.Classes;
        if (x.Length < F || scratch.Length < ScratchLength) throw new ArgumentException("feature or scratch buffer too small");
        var xn = scratch[..F]; var h1 = scratch.Slice(F, H); var h2 = scratch.Slice(F + H, H); var o = scratch.Slice(F + 2 * H, K);
        for (int i = 0; i < F; i++) xn[i] = (x[i] - s.FeatureMean[i]) * _invStd[i];
        Layer(xn, s.W1, s.B1, h1);
        Relu(h1);
        Layer(h1, s.W2, s.B2, h2);
        Relu(h2);
        Layer(h2, s.W3, s.B3, o);
        int best = 0;
        for (int k = 1; k < K; k++) if (o[k] > o[best]) best = k;
        float sum = 0;
        for (int k = 0; k < K; k++) sum += MathF.Exp(o[k] - o[best]);
        return ((byte)best, 1f / sum);
    }

    /// <summary>
    /// <see cref="Classify"/> for many pixels (features interleaved, <see cref="Features"/> per pixel): a vector of pixels
    /// at a time, each lane computing exactly what <see cref="Classify"/> computes for its pixel (the same operations in
    /// the same order), many hidden units at once.
    /// </summary>
    public void ClassifyMany(ReadOnlySpan<float> features, Span<byte> classes, Span<float> probabilities)
    {
        var s = Spec;
        int F = Features, H = s.Hidden, K = s.Classes, vw = Vector<float>.Count;
        int m = features.Length / F;
        if (features.Length != m * F || classes.Length < m || probabilities.Length < m) throw new ArgumentException("feature, class or probability buffer sizes do not match");
        var xT = new float[F * vw]; var h1 = new float[H * vw]; var h2 = new float[H * vw]; var o = new float[K * vw];
        for (int p0 = 0; p0 < m; p0 += vw)
        {
            int lanes = Math.Min(vw, m - p0);
            if (lanes < vw) Array.Clear(xT);
            for (int l = 0; l < lanes; l++)
            {
                var x = features.Slice((p0 + l) * F, F);
                for (int i = 0; i < F; i++) xT[i * vw + l] = (x[i] - s.FeatureMean[i]) * _invStd[i];
            }
            LanesLayer(xT, F, s.W1, s.B1, h1, H, relu: true);
            LanesLayer(h1, H, s.W2, s.B2, h2, H, relu: true);
            LanesLayer(h2, H, s.W3, s.B3, o, K, relu: false);
            for (int l = 0; l < lanes; l++)
            {
                int best = 0;
                for (int k = 1; k < K; k++) if (o[k * vw + l] > o[best * vw + l]) best = k;
                float sum = 0;
                for (int k = 0; k < K; k++) sum += MathF.Exp(o[k * vw + l] - o[best * vw + l]);
                classes[p0 + l] = (byte)best; probabilities[p0 + l] = 1f / sum;
            }
        }
    }

    /// <summary>One layer over a vector of pixels: output unit j of every lane = b[j] + Σᵢ input[i] · w[i, j], inputs in
    /// order, a multiply then an add (as <see cref="Layer"/>); four units at a time so their additions overlap.</summary>
    private static void LanesLayer(float[] input, int nIn, float[] w, float[] b, float[] output, int nOut, bool relu)
    {
        int vw = Vector<float>.Count;
        if (w.Length < nIn * nOut || b.Length < nOut || input.Length < nIn * vw || output.Length < nOut * vw) throw new ArgumentException("layer sizes do not match");
        ref float x0 = ref MemoryMarshal.GetArrayDataReference(input);
        ref float w0 = ref MemoryMarshal.GetArrayDataReference(w);
        ref float o0 = ref MemoryMarshal.GetArrayDataReference(output);
        int j = 0;
        for (; j + 4 <= nOut; j += 4)
        {
            var a0 = new Vector<float>(b[j]); var a1 = new Vector<float>(b[j + 1]); var a2 = new Vector<float>(b[j + 2]); var a3 = new Vector<float>(b[j + 3]);
            for (int i = 0; i < nIn; i++)
            {
                var xv = Vector.LoadUnsafe(ref x0, (nuint)(i * vw));
                ref float wr = ref Unsafe.Add(ref w0, i * nOut + j);
                a0 += xv * new Vector<float>(wr); a1 += xv * new Vector<float>(Unsafe.Add(ref wr, 1));
                a2 += xv * new Vector<float>(Unsafe.Add(ref wr, 2)); a3 += xv * new Vector<float>(Unsafe.Add(ref wr, 3));
            }
            if (relu) { a0 = Vector.Max(a0, Vector<float>.Zero); a1 = Vector.Max(a1, Vector<float>.Zero); a2 = Vector.Max(a2, Vector<float>.Zero); a3 = Vector.Max(a3, Vector<float>.Zero); }
            a0.StoreUnsafe(ref o0, (nuint)(j * vw)); a1.StoreUnsafe(ref o0, (nuint)((j + 1) * vw));
            a2.StoreUnsafe(ref o0, (nuint)((j + 2) * vw)); a3.StoreUnsafe(ref o0, (nuint)((j + 3) * vw));
        }
        for (; j < nOut; j++)
        {
            var a0 = new Vector<float>(b[j]);
            for (int i = 0; i < nIn; i++) a0 += Vector.LoadUnsafe(ref x0, (nuint)(i * vw)) * new Vector<float>(Unsafe.Add(ref w0, i * nOut + j));
            if (relu) a0 = Vector.Max(a0, Vector<float>.Zero);
            a0.StoreUnsafe(ref o0, (nuint)(j * vw));
        }
    }

    /// <summary>Floats of scratch <see cref="Classify"/> needs.</summary>
    public int ScratchLength => Features + 2 * Spec.Hidden + Spec.Classes;

    /// <summary>output = b + Σᵢ input[i] · w[i, ·], the inputs taken in order (each output a multiply then an add per
    /// input, no fused multiply-add), the same on every machine.</summary>
    private static void Layer(ReadOnlySpan<float> input, float[] w, float[] b, Span<float> output)
    {
        int nIn = input.Length, nOut = output.Length;
        if (w.Length < nIn * nOut || b.Length < nOut) throw new ArgumentException("layer weights do not match its sizes");
        int vw = Vector<float>.Count;
        ref float o = ref MemoryMarshal.GetReference(output);
        ref float w0 = ref MemoryMarshal.GetArrayDataReference(w);
        ref float b0 = ref MemoryMarshal.GetArrayDataReference(b);
        ref float x0 = ref MemoryMarshal.GetReference(input);
        int j = 0;
        // four vectors of outputs at a time, kept in registers over all the inputs
        for (; j + 4 * vw <= nOut; j += 4 * vw)
        {
            var a0 = Vector.LoadUnsafe(ref b0, (nuint)j); var a1 = Vector.LoadUnsafe(ref b0, (nuint)(j + vw));
            var a2 = Vector.LoadUnsafe(ref b0, (nuint)(j + 2 * vw)); var a3 = Vector.LoadUnsafe(ref b0, (nuint)(j + 3 * vw));
            for (int i = 0; i < nIn; i++)
            {
                var xv = new Vector<float>(Unsafe.Add(ref x0, i));
                ref float row = ref Unsafe.Add(ref w0, i * nOut + j);
                a0 += xv * Vector.LoadUnsafe(ref row); a1 += xv * Vector.LoadUnsafe(ref row, (nuint)vw);
                a2 += xv * Vector.LoadUnsafe(ref row, (nuint)(2 * vw)); a3 += xv * Vector.LoadUnsafe(ref row, (nuint)(3 * vw));
            }
            a0.StoreUnsafe(ref o, (nuint)j); a1.StoreUnsafe(ref o, (nuint)(j + vw));
            a2.StoreUnsafe(ref o, (nuint)(j + 2 * vw)); a3.StoreUnsafe(ref o, (nuint)(j + 3 * vw));
        }
        for (; j + vw <= nOut; j += vw)
        {
            var a0 = Vector.LoadUnsafe(ref b0, (nuint)j);
            for (int i = 0; i < nIn; i++)
            {
                a0 += new Vector<float>(Unsafe.Add(ref x0, i)) * Vector.LoadUnsafe(ref Unsafe.Add(ref w0, i * nOut + j));
            }
            a0.StoreUnsafe(ref o, (nuint)j);
        }
        for (; j < nOut; j++)
        {
            float a0 = Unsafe.Add(ref b0, j);
            for (int i = 0; i < nIn; i++)
            {
                a0 += Unsafe.Add(ref x0, i) * Unsafe.Add(ref w0, i * nOut + j);
            }
            Unsafe.Add(ref o, j) = a0;
        }
    }

    private static void Relu(Span<float> v)
    {
        int vw = Vector<float>.Count, i = 0;
        ref float r = ref MemoryMarshal.GetReference(v);
        for (; i + vw <= v.Length; i += vw) Vector.Max(Vector.LoadUnsafe(ref r, (nuint)i), Vector<float>.Zero).StoreUnsafe(ref r, (nuint)i);
        for (; i < v.Length; i++) if (Unsafe.Add(ref r, i) < 0) Unsafe.Add(ref r, i) = 0;
    }
}
