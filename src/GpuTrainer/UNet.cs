using ActorSeg.Core.IO;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ActorSeg.Core.Imaging;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ActorSeg.GpuTrainer;

public sealed record UNetSpec
{
    public string Format { get; init; } = "actorseg-unet/1";
    public int Channels { get; init; } = 1;
    public int Classes { get; init; } = 2;
    public int Base { get; init; } = 16;
    public int Depth { get; init; } = 3;
    public int Patch { get; init; } = 128;
    public float[] ClassWeights { get; init; } = [];
    public int Epoch { get; init; }
    public double ValidationLoss { get; init; }
    public string[] TrainImages { get; init; } = [];
    public string[] ValidationImages { get; init; } = [];
    /// <summary>How the training masks were read: binary (non-zero = class 1) or classes (values are class ids); models from before it were binary.</summary>
    public string MaskMode { get; init; } = "binary";
    /// <summary>Names and colours of the classes, when given at training.</summary>
    public ClassInfo[]? ClassNames { get; init; }
    public ClassInfo[] ClassTable => ClassNames is { } n && n.Length == Classes ? n : Core.IO.ClassTable.Default(Classes).Take(Math.Max(Classes, 1)).ToArray();

    /// <summary>Refuses a spec (read from a model file) outside what training writes; names the first bad field.</summary>
    public void Validate()
    {
        if (Channels < 1 || Channels > 16) throw new InvalidDataException($"the model takes {Channels} channels (1..16 allowed)");
        if (Classes < 2 || Classes > GraphSample.MaxClasses) throw new InvalidDataException($"the model has {Classes} classes (2..{GraphSample.MaxClasses} allowed)");
        UNetTrainOptions.CheckShape(Base, Depth, Patch, e => new InvalidDataException($"the model's {e}"));
        if (ClassWeights is { Length: > 0 } w && (w.Length != Classes || w.Any(v => !(float.IsFinite(v) && v > 0))))
            throw new InvalidDataException($"the model's class weights [{string.Join(", ", w)}] are not {Classes} positive numbers");
        if (MaskMode is not ("binary" or "classes")) throw new InvalidDataException($"the model's mask mode '{MaskMode}' is not binary or classes");
    }
}

/// <summary>The CNN baseline: a UNet (conv-BN-ReLU ×2 per level, max-pool down, transposed-conv up, skip connections).</summary>
public sealed class UNet : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<Sequential> down = new(), up = new();
    private readonly ModuleList<ConvTranspose2d> ups = new();
    private readonly Sequential bottom;
    private readonly Conv2d head;

    private static Sequential Block(long i, long o) => nn.Sequential(
        nn.Conv2d(i, o, 3, padding: 1, bias: false), nn.BatchNorm2d(o), nn.ReLU(),
        nn.Conv2d(o, o, 3, padding: 1, bias: false), nn.BatchNorm2d(o), nn.ReLU());

    public UNet(UNetSpec s) : base(nameof(UNet))
    {
        long c = s.Channels;
        for (int d = 0; d < s.Depth; d++) { long o = s.Base << d; down.Add(Block(c, o)); c = o; }
        bottom = Block(c, c * 2);
        for (int d = s.Depth - 1; d >= 0; d--)
        {
            long o = s.Base << d;
            ups.Add(nn.ConvTranspose2d(o * 2, o, 2, stride: 2));
            up.Add(Block(o * 2, o));
        }
        head = nn.Conv2d(s.Base, s.Classes, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var skips = new List<Tensor>();
        foreach (var d in down) { x = d.forward(x); skips.Add(x); x = nn.functional.max_pool2d(x, 2); }
        x = bottom.forward(x);
        for (int i = 0; i < up.Count; i++)
        {
            x = ups[i].forward(x);
            x = up[i].forward(torch.cat([x, skips[skips.Count - 1 - i]], 1));
        }
        return head.forward(x);
    }
}

public sealed record UNetTrainOptions
{
    public int Base { get; init; } = 16;
    public int Depth { get; init; } = 3;
    public int Patch { get; init; } = 128;
    public int Batch { get; init; } = 8;
    public int StepsPerEpoch { get; init; } = 40;
    public double LearningRate { get; init; } = 1e-3;
    public int MaxEpochs { get; init; } = 100;
    public int Patience { get; init; } = 10;
    public double ValidationFraction { get; init; } = 0.15;
    public int Seed { get; init; } = 1;
    public string Device { get; init; } = "auto";
    public bool BinaryMask { get; init; } = true;
    /// <summary>Names and colours of the classes, class 0 first (null: background, class 1, …); as many as the masks have, or more.</summary>
    public ClassInfo[]? Classes { get; init; }

    /// <summary>The network's shape: the patch must halve cleanly at every level.</summary>
    internal static void CheckShape(int @base, int depth, int patch, Func<string, Exception> error)
    {
        if (@base < 1 || @base > 256) throw error($"base width must be 1 to 256 channels (got {@base})");
        if (depth < 1 || depth > 6) throw error($"depth must be 1 to 6 levels (got {depth})");
        if (patch < 16 || patch > 1024 || patch % (1 << depth) != 0)
            throw error($"patch must be 16 to 1024 pixels and a multiple of {1 << depth} (2^depth) (got {patch})");
    }

    /// <exception cref="ArgumentException">names the first option out of range</exception>
    public void Validate()
    {
        CheckShape(Base, Depth, Patch, e => new ArgumentException(e));
        if (Batch < 1 || Batch > 1024) throw new ArgumentException($"batch must be 1 to 1024 patches (got {Batch})");
        if (StepsPerEpoch < 1 || StepsPerEpoch > 1_000_000) throw new ArgumentException($"steps per epoch must be 1 to 1,000,000 (got {StepsPerEpoch})");
        if (MaxEpochs < 1) throw new ArgumentException($"the epochs must be at least 1 (got {MaxEpochs})");
        if (Patience < 1) throw new ArgumentException($"the patience must be at least 1 epoch (got {Patience})");
        if (!(LearningRate > 0 && double.IsFinite(LearningRate))) throw new ArgumentException($"the learning rate must be a finite number > 0 (got {LearningRate})");
        if (!(ValidationFraction > 0 && ValidationFraction < 1)) throw new ArgumentException($"the validation fraction must be in (0, 1) (got {ValidationFraction})");
    }
}

public sealed record UNetTrainResult(string BestModel, int Epochs, int BestEpoch, double BestValidationLoss, double Seconds, double PeakRssMiB, string Device);

/// <summary>
/// Trains and applies the UNet baseline with the same data and split conventions as the GNN: random patches with flips
/// and 90° rotations, class-weighted cross entropy, Adam, early stopping on the validation images' loss; inference by
/// overlapping sliding windows whose softmax outputs are averaged.
/// </summary>
public static class UNetRunner
{
    public sealed class Field
    {
        public required string Image { get; init; }
        public required int W, H, C;
        public required float[] X;       // C × H × W, z-scored per image and channel
        public long[]? Y;                // H × W, −1 = unlabelled
    }

    public static Field Load(string image, string? mask, bool binary)
    {
        using var src = ImageSources.Open(image); // an OME-TIFF with its channels as pages: all of them, as the GNN reads it
        int w = src.Width, h = src.Height, c = src.Channels;
        if ((long)w * h > 64L << 20) throw new InputFileException(image, $"{w}x{h} is too large for the in-memory UNet baseline (64 MP max)");
        var raw = new ushort[w * h * c];
        src.ReadRegion(0, 0, w, h, raw);
        var x = new float[c * w * h];
        for (int ch = 0; ch < c; ch++)
        {
            double s = 0, s2 = 0;
            for (int i = 0; i < w * h; i++) { double v = raw[i * c + ch]; s += v; s2 += v * v; }
            double m = s / (w * h), sd = Math.Sqrt(Math.Max(1e-12, s2 / (w * h) - m * m));
            for (int i = 0; i < w * h; i++) x[ch * w * h + i] = (float)((raw[i * c + ch] - m) / sd);
        }
        long[]? y = null;
        if (mask is not null)
        {
            using var ms = VipsImageSource.Open(mask, 0, firstBandOnly: true);
            if (ms.Width != w || ms.Height != h) throw new InputFileException(mask, $"mask is {ms.Width}x{ms.Height} but image {image} is {w}x{h}");
            var mr = new ushort[w * h];
            ms.ReadRegion(0, 0, w, h, mr);
            y = mr.Select(v => binary ? (v > 0 ? 1L : 0L) : v).ToArray();
        }
        return new Field { Image = image, W = w, H = h, C = c, X = x, Y = y };
    }

    /// <param name="ct">stops the training between batches (Ctrl-C): nothing in <paramref name="outDir"/> is replaced</param>
    public static UNetTrainResult Train(IReadOnlyList<(string Image, string Mask)> pairs, string outDir, UNetTrainOptions o, Action<string>? log = null,
        CancellationToken ct = default)
    {
        log ??= _ => { };
        o.Validate();
        var sw = Stopwatch.StartNew();
        torch.manual_seed(o.Seed);
        var device = TorchDevice.Pick(o.Device);
        var rnd = new Random(o.Seed);
        var order = Enumerable.Range(0, pairs.Count).OrderBy(_ => rnd.Next()).ToList();
        int nv = Math.Max(1, (int)Math.Round(pairs.Count * o.ValidationFraction));
        if (pairs.Count < 2) throw new ArgumentException("the UNet baseline needs at least 2 images (one validates)");
        var valIdx = order.Take(nv).Order().ToList(); var trainIdx = order.Skip(nv).Order().ToList();
        var fields = pairs.Select(p => Load(p.Image, p.Mask, o.BinaryMask)).ToList();
        int C = fields[0].C;
        if (fields.Any(f => f.C != C)) throw new InvalidDataException("images differ in channel count");
        int K = Math.Max(2, (int)fields.Max(f => f.Y!.Max()) + 1);
        if (o.Classes is { } named)
        {
            if (named.Length < K) throw new ArgumentException($"--classes names {named.Length} classes, but the masks have {K} (ids 0..{K - 1})");
            K = named.Length;
        }
        var counts = new double[K];
        foreach (int i in trainIdx) foreach (var v in fields[i].Y!) if (v >= 0) counts[v]++;
        var cw = counts.Select(c => (float)(counts.Max() / Math.Max(c, 1))).ToArray();
        int P = o.Patch;
        if (fields.Any(f => f.W < P || f.H < P))
        {
            // the patch shrinks to the smallest image, but no further than a patch may be (16 px, halving cleanly)
            var small = fields.MinBy(f => Math.Min(f.W, f.H))!;
            P = Math.Min(small.W, small.H) / (1 << o.Depth) * (1 << o.Depth);
            if (P < 16) throw new InputFileException(small.Image, $"{small.W}x{small.H} is too small for the UNet: its patches need at least {Math.Max(16, 1 << o.Depth)} px on each side");
        }
        var spec = new UNetSpec
        {
            Channels = C, Classes = K, Base = o.Base, Depth = o.Depth, Patch = P, ClassWeights = cw,
            TrainImages = trainIdx.Select(i => pairs[i].Image).ToArray(), ValidationImages = valIdx.Select(i => pairs[i].Image).ToArray(),
            MaskMode = o.BinaryMask ? "binary" : "classes", ClassNames = o.Classes,
        };
        var model = new UNet(spec); model.to(device);
        var opt = torch.optim.Adam(model.parameters(), lr: o.LearningRate);
        using var weight = torch.tensor(cw, device: device);
        log($"UNet: {trainIdx.Count} train / {valIdx.Count} validation images, patches {P}², batch {o.Batch}, {K} classes, device {TorchDevice.Describe(device)}");
        SafePaths.EnsureDirectory(outDir, "model folder");
        var best = Path.Combine(outDir, "best.unet");
        // the best checkpoint goes to a staging name while training runs, moved over best.unet only at the end: a run that
        // diverges, fails or is stopped never replaces a good model (before, a retrain with too high an --lr that
        // diverged at epoch 5 had already written its epoch-1 weights over the earlier best.unet)
        var staging = Trainer.StagingFor(outDir, "best.unet"); // this run's own (see Trainer.Train)
        try
        {
        var curves = new StringBuilder("epoch,train_loss,val_loss,val_pixel_accuracy\n");
        double bestLoss = double.PositiveInfinity; int bestEpoch = 0, since = 0, epoch;
        var xb = new float[o.Batch * C * P * P]; var yb = new long[o.Batch * P * P];
        for (epoch = 1; epoch <= o.MaxEpochs; epoch++)
        {
            model.train();
            double tl = 0;
            for (int step = 0; step < o.StepsPerEpoch; step++)
            {
                ct.ThrowIfCancellationRequested();
                for (int b = 0; b < o.Batch; b++)
                {
                    var f = fields[trainIdx[rnd.Next(trainIdx.Count)]];
                    int x0 = rnd.Next(f.W - P + 1), y0 = rnd.Next(f.H - P + 1), rot = rnd.Next(4);
                    bool flip = rnd.Next(2) == 1;
                    for (int yy = 0; yy < P; yy++)
                        for (int xx = 0; xx < P; xx++)
                        {
                            // augmentation: optional flip, then rotation by rot × 90°
                            int sx = flip ? P - 1 - xx : xx, sy = yy;
                            (sx, sy) = rot switch { 1 => (sy, P - 1 - sx), 2 => (P - 1 - sx, P - 1 - sy), 3 => (P - 1 - sy, sx), _ => (sx, sy) };
                            int si = (y0 + sy) * f.W + x0 + sx;
                            for (int ch = 0; ch < C; ch++) xb[((b * C + ch) * P + yy) * P + xx] = f.X[ch * f.W * f.H + si];
                            yb[(b * P + yy) * P + xx] = f.Y![si];
                        }
                }
                using var scope = torch.NewDisposeScope();
                opt.zero_grad();
                var logits = model.forward(torch.tensor(xb, [o.Batch, C, P, P], device: device));
                var loss = nn.functional.cross_entropy(logits, torch.tensor(yb, [o.Batch, P, P], device: device), weight, ignore_index: -1);
                loss.backward(); opt.step();
                tl += loss.item<float>();
                if (step % 10 == 9) NativeMemory.Settle();
            }
            tl /= o.StepsPerEpoch;
            double vl = 0; long right = 0, total = 0;
            foreach (int i in valIdx)
            {
                var (l, r, t) = ValidationLoss(model, fields[i], spec, weight, device);
                vl += l; right += r; total += t;
            }
            vl /= valIdx.Count;
            if (!double.IsFinite(vl)) throw new InvalidOperationException($"UNet training diverged at epoch {epoch}; try a lower --lr");
            curves.Append(FormattableString.Invariant($"{epoch},{tl:G6},{vl:G6},{(double)right / total:G6}\n"));
            if (vl < bestLoss - 1e-4) { bestLoss = vl; bestEpoch = epoch; since = 0; Save(staging, spec with { Epoch = epoch, ValidationLoss = vl }, model); }
            else if (++since >= o.Patience) break;
            log(FormattableString.Invariant($"epoch {epoch}: train loss {tl:F4}, validation loss {vl:F4}, validation pixel accuracy {(double)right / total:P1}"));
        }
        ct.ThrowIfCancellationRequested(); // a run given up on replaces nothing
        SafePaths.Publish(staging, best, "model");
        SafePaths.WriteAllText(Path.Combine(outDir, "unet-curves.csv"), curves.ToString(), "training curves");
        var res = new UNetTrainResult(best, Math.Min(epoch, o.MaxEpochs), bestEpoch, bestLoss, sw.Elapsed.TotalSeconds, Core.ProcessStats.PeakRssMiB(), TorchDevice.Describe(device));
        log(FormattableString.Invariant($"stopped after {res.Epochs} epochs; best validation loss {bestLoss:F4} at epoch {bestEpoch}; {res.Seconds:F1}s, peak RSS {res.PeakRssMiB:F0} MiB"));
        return res;
        }
        finally
        {
            if (File.Exists(staging)) File.Delete(staging);
        }
    }

    private static (double Loss, long Right, long Total) ValidationLoss(UNet model, Field f, UNetSpec spec, Tensor weight, Device device)
    {
        var prob = Predict(model, f, spec, device);
        var w = weight.cpu().data<float>().ToArray();
        // class-weighted cross entropy, as PyTorch averages it: Σ w_y·(−log p_y) / Σ w_y over labelled pixels
        double num = 0, den = 0;
        long right = 0, total = 0;
        int n = f.W * f.H;
        for (int i = 0; i < n; i++)
        {
            long y = f.Y![i];
            if (y < 0) continue;
            num += -w[y] * Math.Log(Math.Max(1e-7, prob[y * n + i])); den += w[y];
            int arg = 0; for (int c = 1; c < spec.Classes; c++) if (prob[c * n + i] > prob[arg * n + i]) arg = c;
            total++; if (arg == y) right++;
        }
        double loss = num / Math.Max(den, 1e-12);
        return (loss, right, total);
    }

    /// <summary>Class probabilities (classes × H × W) by overlapping sliding windows (stride half a window), averaged.</summary>
    public static float[] Predict(UNet model, Field f, UNetSpec spec, Device device)
    {
        model.eval();
        int P = Math.Min(spec.Patch * 2, Math.Min(f.W, f.H) / (1 << spec.Depth) * (1 << spec.Depth));
        if (P < (1 << spec.Depth)) throw new InvalidDataException($"{f.Image}: too small for the UNet ({f.W}x{f.H})");
        int stride = Math.Max(1, P / 2), n = f.W * f.H, C = spec.Channels, K = spec.Classes;
        var sum = new float[K * n]; var cnt = new float[n];
        var xs = new List<int>(); for (int x = 0; ; x += stride) { xs.Add(Math.Min(x, f.W - P)); if (x + P >= f.W) break; }
        var ys = new List<int>(); for (int y = 0; ; y += stride) { ys.Add(Math.Min(y, f.H - P)); if (y + P >= f.H) break; }
        var buf = new float[C * P * P];
        using var _ = torch.no_grad();
        foreach (int y0 in ys.Distinct())
            foreach (int x0 in xs.Distinct())
            {
                for (int ch = 0; ch < C; ch++)
                    for (int yy = 0; yy < P; yy++)
                        Array.Copy(f.X, ch * n + (y0 + yy) * f.W + x0, buf, (ch * P + yy) * P, P);
                using var scope = torch.NewDisposeScope();
                var prob = nn.functional.softmax(model.forward(torch.tensor(buf, [1, C, P, P], device: device)), 1).cpu().data<float>().ToArray();
                for (int c = 0; c < K; c++)
                    for (int yy = 0; yy < P; yy++)
                        for (int xx = 0; xx < P; xx++)
                            sum[c * n + (y0 + yy) * f.W + x0 + xx] += prob[(c * P + yy) * P + xx];
                for (int yy = 0; yy < P; yy++) for (int xx = 0; xx < P; xx++) cnt[(y0 + yy) * f.W + x0 + xx]++;
            }
        for (int c = 0; c < K; c++) for (int i = 0; i < n; i++) sum[c * n + i] /= cnt[i];
        return sum;
    }

    /// <summary>The first line of a UNet model file: since 2026-12-06 with a version, followed by the body's checksum
    /// (<see cref="SealedFile"/>); files written before have <see cref="LegacyMagic"/> and no checksum.</summary>
    private const string Magic = "ACTORSEG-UNET-MODEL/2\n", LegacyMagic = "ACTORSEG-UNET-MODEL\n";

    public static void Save(string path, UNetSpec spec, UNet model)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(spec);
        SealedFile.Write(path, Magic, w =>
        {
            w.Write(json.Length); w.Write(json);
            model.save(w);
        }, "model");
    }

    public static (UNetSpec Spec, UNet Model) Load(string path, Device device) => Open(path, r =>
    {
        var spec = ReadHeader(r, path);
        var m = new UNet(spec);
        m.load(r, strict: true);
        ModelWeights.RequireFinite(m, $"{path}: the UNet");
        m.to(device);
        return (spec, m);
    });

    /// <summary>A model file's spec alone (no weights loaded).</summary>
    public static UNetSpec ReadSpec(string path) => Open(path, r => ReadHeader(r, path));

    /// <summary>Opens a model file for <paramref name="read"/>; anything but a clear error about the file becomes one.</summary>
    private static T Open<T>(string path, Func<BinaryReader, T> read)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: model file not found");
        InputFiles.RefuseNonRegular(path, "not an ActorSeg UNet model file");
        if (ModelFileFormat.BeginsWith(path, "ACTORSEG-GNN-MODEL"))
            throw new InvalidDataException($"{path}: a GNN model (from train), not a UNet model: unet-evaluate takes a model from unet-train; segment and evaluate take this one");
        try
        {
            using var fs = SealedFile.OpenBody(path, Magic, LegacyMagic, "UNet model");
            using var r = new BinaryReader(fs);
            return read(r);
        }
        catch (Exception e) when (e is not InvalidDataException and not FileNotFoundException)
        {
            throw new InvalidDataException($"{path}: corrupt or incompatible UNet model ({e.Message})", e);
        }
    }

    /// <summary>The magic number and the JSON spec that open every UNet model file.</summary>
    private static UNetSpec ReadHeader(BinaryReader r, string path)
    {
        int len = r.ReadInt32();
        if (len <= 0 || len > 16 << 20) throw new InvalidDataException($"{path}: corrupt header");
        var spec = JsonSerializer.Deserialize<UNetSpec>(r.ReadBytes(len)) ?? throw new InvalidDataException($"{path}: empty spec");
        try { spec.Validate(); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{path}: {e.Message}", e); }
        return spec;
    }

    /// <summary>Pixel metrics of the UNet on labelled images (the same metrics as the GNN's).</summary>
    /// <param name="ct">stops between images (Ctrl-C)</param>
    public static PixelMetrics Evaluate(string modelPath, IReadOnlyList<(string Image, string Mask)> pairs, bool binary, string device = "auto",
        CancellationToken ct = default)
    {
        var dev = TorchDevice.Pick(device);
        var (spec, model) = Load(modelPath, dev);
        var cm = new long[spec.Classes * spec.Classes];
        foreach (var (img, mask) in pairs)
        {
            ct.ThrowIfCancellationRequested();
            var f = Load(img, mask, binary);
            if (f.C != spec.Channels) throw new InvalidDataException($"{img}: {f.C} channel(s), the model expects {spec.Channels}");
            var prob = Predict(model, f, spec, dev);
            int n = f.W * f.H;
            for (int i = 0; i < n; i++)
            {
                long t = f.Y![i];
                if (t < 0) continue;
                if (t >= spec.Classes) throw new InvalidDataException($"{mask}: class {t} is not known to the model");
                int arg = 0; for (int c = 1; c < spec.Classes; c++) if (prob[c * n + i] > prob[arg * n + i]) arg = c;
                cm[t * spec.Classes + arg]++;
            }
        }
        // as a "histogram per pixel class" so the same code computes the metrics (no superpixel ceiling here)
        var hist = new List<(long[], int, long[])>();
        for (int t = 0; t < spec.Classes; t++)
            for (int p = 0; p < spec.Classes; p++)
            {
                var h = new long[spec.Classes]; h[t] = cm[t * spec.Classes + p];
                hist.Add((h, spec.Classes, [p]));
            }
        return PixelMetrics.FromHistograms(hist, spec.Classes);
    }
}
