using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace ActorSeg.Core.Imaging;

/// <summary>Kind of synthetic microscopy image.</summary>
public enum SyntheticKind
{
    /// <summary>Fluorescence-like: bright, textured elliptical nuclei on a dark background.</summary>
    Nuclei,

    /// <summary>Phase-contrast-like: large irregular colonies, textured (not brighter) interior, bright edge halo.</summary>
    Colonies,

    /// <summary>
    /// Fluorescence-like cells, five classes (the mask holds class ids 0..4, <see cref="SyntheticMicroscopy.CellClasses"/>):
    /// 0 background, 1 cytoplasm (dim, finely textured), 2 nucleus (brighter, coarsely textured), 3 membrane (a bright
    /// line <see cref="SyntheticMicroscopy.MembraneWidth"/> px wide just inside every cell's outline: the thin class, about
    /// 2–3 % of the pixels) and 4 mitotic nucleus (condensed, very bright, smooth; in about 7 % of the cells: the rare
    /// class, a few tenths of a percent of the pixels).
    /// </summary>
    Cells,
}

/// <summary>Parameters of a synthetic image.</summary>
/// <param name="Width">Image width in pixels.</param>
/// <param name="Height">Image height in pixels.</param>
/// <param name="Kind">Nuclei or colonies.</param>
/// <param name="BitDepth">8 or 16 bits per sample.</param>
/// <param name="Channels">1 (grey) or 3 (RGB with slightly different per-channel response).</param>
/// <param name="Seed">Seed of the object layout and all textures and noise.</param>
/// <param name="TileSize">TIFF tile size (positive multiple of 16).</param>
/// <param name="NoiseLevel">Multiplier of the Gaussian + shot-like noise (0 = noise-free).</param>
/// <param name="Fibres">Cells only: straight bright fibres <see cref="SyntheticMicroscopy.FibreWidth"/> px wide cross the
/// whole field, over cells and background alike, as a sixth class (5, <see cref="SyntheticMicroscopy.FibreClasses"/>): a thin
/// structure inside other classes' regions, where no boundary between coarse regions points at it.</param>
public sealed record SyntheticSpec(
    int Width,
    int Height,
    SyntheticKind Kind = SyntheticKind.Colonies,
    int BitDepth = 16,
    int Channels = 1,
    int Seed = 1,
    int TileSize = 256,
    double NoiseLevel = 1.0,
    bool Fibres = false);

/// <summary>Outcome of <see cref="SyntheticMicroscopy.Generate(SyntheticSpec, string, string?, IProgress{double}?, CancellationToken)"/>.</summary>
/// <param name="Width">Image width.</param>
/// <param name="Height">Image height.</param>
/// <param name="ObjectCount">Number of objects whose centre lies inside the image.</param>
/// <param name="ForegroundPixels">Number of mask pixels equal to 1.</param>
/// <param name="ForegroundFraction">ForegroundPixels / (Width * Height).</param>
/// <param name="Elapsed">Wall time of the generation, files included.</param>
public sealed record SyntheticResult(
    int Width,
    int Height,
    long ObjectCount,
    long ForegroundPixels,
    double ForegroundFraction,
    TimeSpan Elapsed)
{
    /// <summary>Pixels of each class of the mask (index = class id; 2 entries for the binary kinds, 5 for cells, 6 with fibres), or null without a mask.</summary>
    public long[]? ClassPixels { get; init; }

    /// <summary>Generation throughput in megapixels per second.</summary>
    public double MegapixelsPerSecond => (double)Width * Height / 1e6 / Math.Max(Elapsed.TotalSeconds, 1e-9);
}

/// <summary>
/// Generates synthetic microscopy images of any size with exact ground-truth masks, tile by tile, straight into
/// tiled BigTIFF files (Deflate). Memory is O(tile size x threads); output files are byte-identical for the same
/// spec whatever the thread count.
/// </summary>
/// <remarks>
/// Objects are placed on a coarse grid of cells: each cell's object (if any) is derived from a 64-bit integer hash of
/// (Seed, cell column, cell row), so any tile is rendered by looking only at the cells near it. Textures are lattice
/// value noise and the noise is a per-pixel hash, both keyed by global pixel coordinates. A mask pixel is 1 iff its
/// centre lies inside an object's boundary, evaluated by the very same code that renders the image.
/// </remarks>
public static class SyntheticMicroscopy
{
    private const int MaxHarmonic = 7; // radial harmonics k = 2..7

    // Nuclei layout: one candidate nucleus per NucleusSlot x NucleusSlot cell.
    private const int NucleusSlot = 40;
    private const double NucleusOccupancy = 0.9;
    private const float NucleusEdgeSoftness = 0.8f; // px, sigmoid width of the rendered edge
    private const float NucleusMargin = 5f; // px rendered outside the boundary (blurred edge)

    // Colonies layout at full scale (scaled down for small images).
    private const double ColonyCell = 800;
    private const double ColonyRMin = 60;
    private const double ColonyRMax = 400;
    private const double ColonyOccupancy = 0.85;
    private const float HaloOffset = 2.0f;
    private const float HaloWidth = 3.0f;
    private const float ColonyMargin = 12f; // px beyond the boundary where the halo is rendered
    private const float ColonyDeep = 10f; // px inside the boundary beyond which rendering no longer depends on depth

    // Intensities in 16-bit units; 8-bit output divides by EightBitDivisor.
    private const float NucleiBackground = 420f;
    private const float NucleusMinIntensity = 2500f;
    private const float NucleusMaxIntensity = 11000f;
    private const float ColonyBackground = 6000f;
    private const float ReadNoise = 20f;
    private const float ShotGain = 1.5f;
    private const float EightBitDivisor = 60f;

    // Cells layout: one candidate cell per CellSlot x CellSlot cell, never overlapping its neighbours.
    private const int CellSlot = 200;
    private const double CellOccupancy = 0.92;
    private const double CellRMin = 50;
    private const double CellRMax = 75;
    private const double MitoticFraction = 0.07;
    private const float CellMargin = 6f; // px rendered outside the outline (membrane glow, blurred edge)

    /// <summary>Width in pixels of the membrane class of <see cref="SyntheticKind.Cells"/>: the pixels less than this far inside a cell's outline.</summary>
    public const float MembraneWidth = 3f;

    /// <summary>The classes of <see cref="SyntheticKind.Cells"/>, for <c>--classes</c>: names and colours, class 0 first.</summary>
    public const string CellClasses = "background:#000000,cytoplasm:#00c000,nucleus:#0060ff,membrane:#ffff00,mitotic:#ff00ff";

    /// <summary>The classes of cells with fibres (<see cref="SyntheticSpec.Fibres"/>): the cells' five and 5 fibre.</summary>
    public const string FibreClasses = CellClasses + ",fibre:#ff8000";

    /// <summary>Width in pixels of the fibre class: the pixels whose centre lies less than half of it from a fibre's axis.</summary>
    public const float FibreWidth = 2f;
    /// <summary>Fibres per 1024 px of the image's geometric mean side: about 1.7 % of the pixels whatever the size.</summary>
    private const double FibresPer1024 = 10;
    private const float FibreIntensity = 2200f;
    /// <summary>Distance from a fibre's axis past which its glow is not rendered.</summary>
    private const float FibreGlow = FibreWidth + 4;

    private const float CellsBackground = 400f;
    private const float CytoplasmIntensity = 1800f;
    private const float MembraneIntensity = 4500f;
    private const float CellNucleusIntensity = 3500f;
    private const float MitoticIntensity = 9000f;

    private static readonly float[] ChannelGain = [0.93f, 1.0f, 1.06f];
    private static readonly float[] ChannelOffset = [60f, 0f, -40f];

    /// <summary>Generates the image (and optionally the mask) using <see cref="Environment.ProcessorCount"/> threads.</summary>
    /// <param name="spec">What to generate.</param>
    /// <param name="imagePath">Output image path (tiled BigTIFF, Deflate).</param>
    /// <param name="maskPath">Output mask path (uint8 tiled BigTIFF: 0/1, or the class ids 0..4 of <see cref="SyntheticKind.Cells"/>), or null for none.</param>
    /// <param name="progress">Receives the completed fraction in [0, 1].</param>
    /// <param name="ct">Cancels the generation; no output file is left behind.</param>
    public static SyntheticResult Generate(
        SyntheticSpec spec,
        string imagePath,
        string? maskPath,
        IProgress<double>? progress = null,
        CancellationToken ct = default) =>
        Generate(spec, imagePath, maskPath, Environment.ProcessorCount, progress, ct);

    /// <summary>Generates the image (and optionally the mask) with at most <paramref name="maxDegreeOfParallelism"/> threads.</summary>
    public static SyntheticResult Generate(
        SyntheticSpec spec,
        string imagePath,
        string? maskPath,
        int maxDegreeOfParallelism,
        IProgress<double>? progress = null,
        CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentException.ThrowIfNullOrEmpty(imagePath);
        Validate(spec);
        if (maskPath is not null && Path.GetFullPath(maskPath) == Path.GetFullPath(imagePath))
        {
            throw new ArgumentException("The mask path must differ from the image path.", nameof(maskPath));
        }

        int threads = maxDegreeOfParallelism <= 0 ? Environment.ProcessorCount : maxDegreeOfParallelism;
        var sw = Stopwatch.StartNew();
        var layout = new Layout(spec);

        using var image = new TiledTiffWriter(
            imagePath,
            spec.Width,
            spec.Height,
            spec.Channels,
            spec.BitDepth == 8 ? TiffSampleType.UInt8 : TiffSampleType.UInt16,
            spec.TileSize,
            TiffCompression.Deflate,
            bigTiff: true);
        using var mask = maskPath is null
            ? null
            : new TiledTiffWriter(maskPath, spec.Width, spec.Height, 1, TiffSampleType.UInt8, spec.TileSize, TiffCompression.Deflate, bigTiff: true);

        int across = image.TilesAcross;
        int tileCount = across * image.TilesDown;
        int nextClaim = -1;
        int nextCommit = 0;
        bool failed = false;
        long foreground = 0;
        var classPixels = new long[spec.Kind == SyntheticKind.Cells ? spec.Fibres ? 6 : 5 : 2];
        int lastReportedPermille = -1;
        var gate = new object();

        void Worker()
        {
            var ctx = new TileContext(spec.TileSize, spec.Channels, spec.BitDepth);
            try
            {
                while (true)
                {
                    int index = Interlocked.Increment(ref nextClaim);
                    if (index >= tileCount || Volatile.Read(ref failed))
                    {
                        return;
                    }

                    ct.ThrowIfCancellationRequested();
                    int tc = index % across;
                    int tr = index / across;
                    long fg = RenderTile(layout, ctx, tc * spec.TileSize, tr * spec.TileSize);
                    using EncodedTile encodedImage = spec.BitDepth == 8
                        ? image.EncodeTile<byte>(ctx.Out8)
                        : image.EncodeTile<ushort>(ctx.Out16);
                    using EncodedTile? encodedMask = mask?.EncodeTile<byte>(ctx.Mask);

                    // Commit in tile order so the file layout does not depend on thread scheduling.
                    lock (gate)
                    {
                        while (nextCommit != index && !failed)
                        {
                            Monitor.Wait(gate);
                        }

                        if (failed)
                        {
                            return;
                        }
                    }

                    image.WriteEncodedTile(tc, tr, encodedImage);
                    if (mask is not null && encodedMask is not null)
                    {
                        mask.WriteEncodedTile(tc, tr, encodedMask);
                    }

                    foreground += fg; // only the committing thread touches it
                    for (int c = 0; c < classPixels.Length; c++) classPixels[c] += ctx.ClassCounts[c];
                    int permille = (int)((index + 1) * 1000L / tileCount);
                    if (progress is not null && permille != lastReportedPermille)
                    {
                        lastReportedPermille = permille;
                        progress.Report((index + 1) / (double)tileCount);
                    }

                    lock (gate)
                    {
                        nextCommit++;
                        Monitor.PulseAll(gate);
                    }
                }
            }
            catch
            {
                lock (gate)
                {
                    failed = true;
                    Monitor.PulseAll(gate);
                }

                throw;
            }
        }

        try
        {
            int workers = Math.Clamp(threads, 1, Math.Max(1, tileCount));
            if (workers == 1)
            {
                Worker();
            }
            else
            {
                Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, _ => Worker());
            }
        }
        catch (AggregateException ae)
        {
            var inner = ae.Flatten().InnerExceptions;
            Exception first = inner.FirstOrDefault(e => e is not OperationCanceledException) ?? inner[0];
            ExceptionDispatchInfo.Capture(first).Throw();
        }

        ct.ThrowIfCancellationRequested();
        mask?.Complete();
        image.Complete();
        sw.Stop();

        long pixels = (long)spec.Width * spec.Height;
        return new SyntheticResult(spec.Width, spec.Height, layout.CountObjects(), foreground, foreground / (double)pixels, sw.Elapsed)
        {
            ClassPixels = mask is null ? null : classPixels,
        };
    }

    private static void Validate(SyntheticSpec spec)
    {
        if (spec.Width <= 0 || spec.Height <= 0)
        {
            throw new ArgumentException($"Image size must be positive, got {spec.Width}x{spec.Height}.", nameof(spec));
        }

        if (spec.BitDepth is not (8 or 16))
        {
            throw new ArgumentException($"BitDepth must be 8 or 16, got {spec.BitDepth}.", nameof(spec));
        }

        if (spec.Channels is not (1 or 3))
        {
            throw new ArgumentException($"Channels must be 1 or 3, got {spec.Channels}.", nameof(spec));
        }

        if (spec.TileSize <= 0 || spec.TileSize % 16 != 0 || spec.TileSize > 4096)
        {
            throw new ArgumentException($"TileSize must be a positive multiple of 16 up to 4096, got {spec.TileSize}.", nameof(spec));
        }

        if (!double.IsFinite(spec.NoiseLevel) || spec.NoiseLevel < 0)
        {
            throw new ArgumentException($"NoiseLevel must be finite and >= 0, got {spec.NoiseLevel}.", nameof(spec));
        }

        if (!Enum.IsDefined(spec.Kind))
        {
            throw new ArgumentException($"Unknown kind {spec.Kind}.", nameof(spec));
        }

        if (spec.Fibres && spec.Kind != SyntheticKind.Cells)
        {
            throw new ArgumentException($"Fibres are drawn over cells only, not over {spec.Kind}.", nameof(spec));
        }
    }

    // ---------------------------------------------------------------- rendering

    /// <summary>Renders one tile into ctx.Out8/Out16 and ctx.Mask (padding zeroed); returns the foreground pixel count.</summary>
    private static long RenderTile(Layout layout, TileContext ctx, int x0, int y0)
    {
        SyntheticSpec spec = layout.Spec;
        int t = spec.TileSize;
        int w = Math.Min(t, spec.Width - x0);
        int h = Math.Min(t, spec.Height - y0);

        Span<float> depth = ctx.Depth;
        Span<float> rho = ctx.Rho;
        Span<int> owner = ctx.Owner;
        Span<byte> mask = ctx.Mask;
        depth.Fill(float.PositiveInfinity);
        owner.Fill(-1);
        mask.Clear();
        bool cells = spec.Kind == SyntheticKind.Cells;
        if (cells)
        {
            ctx.NucleusDepth.AsSpan().Fill(float.PositiveInfinity);
        }

        int count = layout.CollectObjects(x0, y0, w, h, ref ctx.Objects);
        bool any = false;
        for (int i = 0; i < count; i++)
        {
            any |= spec.Kind switch
            {
                SyntheticKind.Nuclei => RasterNucleus(ctx.Objects[i], i, x0, y0, w, h, t, depth, rho, owner, mask),
                SyntheticKind.Cells => RasterCell(ctx.Objects[i], i, x0, y0, w, h, t, depth, ctx.NucleusDepth, owner, mask),
                _ => RasterColony(ctx.Objects[i], x0, y0, w, h, t, depth, mask),
            };
        }

        // Per-column / per-row separable illumination field.
        Span<float> illumX = ctx.IllumX;
        Span<float> illumY = ctx.IllumY;
        for (int x = 0; x < w; x++)
        {
            double nx = ((x0 + x + 0.5) / spec.Width) - 0.6;
            illumX[x] = (float)(0.5 - (0.35 * nx * nx) + (0.08 * nx));
        }

        for (int y = 0; y < h; y++)
        {
            double ny = ((y0 + y + 0.5) / spec.Height) - 0.4;
            illumY[y] = (float)(0.5 - (0.35 * ny * ny) - (0.04 * ny));
        }

        Span<float> bg = ctx.Background;
        Span<float> tex = ctx.Texture;
        Span<float> value = ctx.Value;
        ulong seedKey = Mix64(((ulong)(uint)spec.Seed << 32) ^ 0x5EEDu);
        ValueNoise(ctx, bg, x0, y0, w, h, spec.Kind == SyntheticKind.Colonies ? 40.0 : 48.0, seedKey ^ 0x1111, 1f, accumulate: false);
        if (any)
        {
            if (cells)
            {
                // fine texture for the cytoplasm, coarse for the nuclei
                ValueNoise(ctx, tex, x0, y0, w, h, 2.5, seedKey ^ 0x6666, 1f, accumulate: false);
                ValueNoise(ctx, ctx.Texture2, x0, y0, w, h, 6.0, seedKey ^ 0x7777, 0.7f, accumulate: false);
                ValueNoise(ctx, ctx.Texture2, x0, y0, w, h, 14.0, seedKey ^ 0x8888, 0.5f, accumulate: true);
            }
            else if (spec.Kind == SyntheticKind.Nuclei)
            {
                ValueNoise(ctx, tex, x0, y0, w, h, 2.3, seedKey ^ 0x2222, 0.6f, accumulate: false);
                ValueNoise(ctx, tex, x0, y0, w, h, 5.5, seedKey ^ 0x3333, 0.4f, accumulate: true);
            }
            else
            {
                ValueNoise(ctx, tex, x0, y0, w, h, 4.5, seedKey ^ 0x4444, 0.7f, accumulate: false);
                ValueNoise(ctx, tex, x0, y0, w, h, 11.0, seedKey ^ 0x5555, 0.3f, accumulate: true);
            }
        }

        // the fibres that pass near this tile (their glow reaches 3 px past the class's edge)
        int[] near = layout.Fibres.Length == 0 ? [] : new int[layout.Fibres.Length];
        int nearCount = 0;
        double halfDiagonal = 0.5 * Math.Sqrt(((double)w * w) + ((double)h * h));
        for (int i = 0; i < layout.Fibres.Length; i++)
        {
            if (layout.Fibres[i].Distance(x0 + (0.5 * w), y0 + (0.5 * h)) < halfDiagonal + FibreGlow)
            {
                near[nearCount++] = i;
            }
        }

        long foreground = 0;
        Span<long> classCounts = ctx.ClassCounts;
        classCounts.Clear();
        for (int y = 0; y < h; y++)
        {
            int row = y * t;
            float iy = illumY[y];
            for (int x = 0; x < w; x++)
            {
                int p = row + x;
                float illum = illumX[x] + iy;
                float v;
                if (cells)
                {
                    v = CellsBackground * illum * (1f + (0.2f * bg[p]));
                    int o = owner[p];
                    if (o >= 0)
                    {
                        float d = depth[p];
                        float inside = 1f / (1f + MathF.Exp(d / 0.7f));
                        float mz = (d + (MembraneWidth * 0.5f)) / 1.1f;
                        v += illum * ((CytoplasmIntensity * inside * (1f + (0.6f * tex[p]))) + (MembraneIntensity * MathF.Exp(-mz * mz)));
                        float dn = ctx.NucleusDepth[p];
                        if (dn < CellMargin)
                        {
                            float sn = 1f / (1f + MathF.Exp(dn / 0.8f));
                            v += ctx.Objects[o].Mitotic
                                ? MitoticIntensity * illum * sn * (1f + (0.15f * ctx.Texture2[p]))
                                : CellNucleusIntensity * illum * sn * (1f + (0.9f * ctx.Texture2[p]));
                        }
                    }

                    for (int j = 0; j < nearCount; j++)
                    {
                        float d = (float)layout.Fibres[near[j]].Distance(x0 + x + 0.5, y0 + y + 0.5);
                        if (d > FibreGlow)
                        {
                            continue; // the glow there is under 1e-12 of the fibre's intensity: nothing a sample can hold
                        }

                        float fz = d / 0.9f;
                        v += FibreIntensity * illum * MathF.Exp(-fz * fz);
                        if (d < FibreWidth * 0.5f)
                        {
                            mask[p] = 5;
                        }
                    }
                }
                else if (spec.Kind == SyntheticKind.Nuclei)
                {
                    v = NucleiBackground * illum * (1f + (0.2f * bg[p]));
                    int o = owner[p];
                    if (o >= 0)
                    {
                        float r = rho[p];
                        float profile = 1f / (1f + MathF.Exp(depth[p] / NucleusEdgeSoftness));
                        v += ctx.Objects[o].Intensity * illum * profile * (1f - (0.25f * MathF.Min(r * r, 1f))) * (1f + (1.1f * tex[p]));
                    }
                }
                else
                {
                    float b = ColonyBackground * illum;
                    v = b * (1f + (0.08f * bg[p]));
                    float d = depth[p];
                    if (d < ColonyMargin)
                    {
                        float inner = Math.Clamp(-d * 0.5f, 0f, 1f);
                        float hz = (d - HaloOffset) / HaloWidth;
                        v += (b * 1.7f * tex[p] * inner) + (b * 0.85f * MathF.Exp(-hz * hz));
                    }
                }

                value[p] = v;
                byte m = mask[p];
                foreground += m == 0 ? 0 : 1;
                classCounts[Math.Min((int)m, classCounts.Length - 1)]++;
            }
        }

        WriteOutput(spec, ctx, x0, y0, w, h);
        return foreground;
    }

    /// <summary>Applies per-channel response and noise, converts to the output type (padding zeroed).</summary>
    private static void WriteOutput(SyntheticSpec spec, TileContext ctx, int x0, int y0, int w, int h)
    {
        int t = spec.TileSize;
        int ch = spec.Channels;
        float noise = (float)spec.NoiseLevel;
        bool eight = spec.BitDepth == 8;
        Span<byte> out8 = ctx.Out8;
        Span<ushort> out16 = ctx.Out16;
        if (eight)
        {
            out8.Clear();
        }
        else
        {
            out16.Clear();
        }

        ReadOnlySpan<float> value = ctx.Value;
        for (int c = 0; c < ch; c++)
        {
            float gain = ch == 1 ? 1f : ChannelGain[c];
            float offset = ch == 1 ? 0f : ChannelOffset[c];
            ulong key = Mix64(((ulong)(uint)spec.Seed << 32) ^ (0xC0FFEEu + (uint)c));
            for (int y = 0; y < h; y++)
            {
                int row = y * t;
                ulong rowKey = key + ((ulong)(uint)(y0 + y) << 32);
                for (int x = 0; x < w; x++)
                {
                    float v = (value[row + x] * gain) + offset;
                    if (noise > 0f)
                    {
                        float sigma = noise * MathF.Sqrt((ReadNoise * ReadNoise) + (ShotGain * MathF.Max(v, 0f)));
                        v += sigma * Gaussian(Mix64(rowKey + (uint)(x0 + x)));
                    }

                    int o = ((row + x) * ch) + c;
                    if (eight)
                    {
                        out8[o] = (byte)Math.Clamp((int)MathF.Round(v / EightBitDivisor), 0, 255);
                    }
                    else
                    {
                        out16[o] = (ushort)Math.Clamp((int)MathF.Round(v), 0, 65535);
                    }
                }
            }
        }
    }

    private static bool RasterNucleus(
        in Blob o, int index, int x0, int y0, int w, int h, int stride,
        Span<float> depth, Span<float> rho, Span<int> owner, Span<byte> mask)
    {
        if (!Clip(o, x0, y0, w, h, out int xa, out int xb, out int ya, out int yb))
        {
            return false;
        }

        bool any = false;
        float maxNorm = o.MaxNorm * o.MaxNorm;
        for (int y = ya; y < yb; y++)
        {
            float dy = (float)(y + 0.5 - o.Cy);
            int row = (y - y0) * stride;
            for (int x = xa; x < xb; x++)
            {
                float dx = (float)(x + 0.5 - o.Cx);
                float u = ((dx * o.Cos) + (dy * o.Sin)) * o.InvA;
                float v = ((dy * o.Cos) - (dx * o.Sin)) * o.InvB;
                float rr = (u * u) + (v * v);
                if (rr > maxNorm)
                {
                    continue;
                }

                float r0 = MathF.Sqrt(rr);
                float rn = BoundaryRadius(o, u, v, r0);
                float d = (r0 - rn) * o.Scale;
                int p = row + (x - x0);
                if (r0 < rn)
                {
                    mask[p] = 1;
                }

                if (d < depth[p])
                {
                    depth[p] = d;
                    rho[p] = r0 / rn;
                    owner[p] = index;
                    any = true;
                }
            }
        }

        return any;
    }

    /// <summary>
    /// A cell: the signed distance to its outline (negative inside) into <paramref name="depth"/> where it is the nearest
    /// cell, the signed distance to its nucleus' outline into <paramref name="nucleusDepth"/>, and the class of the pixel
    /// centre into <paramref name="mask"/>: membrane within <see cref="MembraneWidth"/> px inside the outline, then
    /// nucleus (or mitotic nucleus) inside the nucleus' outline, else cytoplasm; background outside.
    /// </summary>
    private static bool RasterCell(
        in Blob o, int index, int x0, int y0, int w, int h, int stride,
        Span<float> depth, Span<float> nucleusDepth, Span<int> owner, Span<byte> mask)
    {
        if (!Clip(o, x0, y0, w, h, out int xa, out int xb, out int ya, out int yb))
        {
            return false;
        }

        bool any = false;
        float maxNorm = o.MaxNorm * o.MaxNorm;
        for (int y = ya; y < yb; y++)
        {
            float dy = (float)(y + 0.5 - o.Cy);
            float ny = (float)(y + 0.5 - o.NCy);
            int row = (y - y0) * stride;
            for (int x = xa; x < xb; x++)
            {
                float dx = (float)(x + 0.5 - o.Cx);
                float u = ((dx * o.Cos) + (dy * o.Sin)) * o.InvA;
                float v = ((dy * o.Cos) - (dx * o.Sin)) * o.InvB;
                float rr = (u * u) + (v * v);
                if (rr > maxNorm)
                {
                    continue;
                }

                float r0 = MathF.Sqrt(rr);
                float d = (r0 - BoundaryRadius(o, u, v, r0)) * o.Scale;
                int p = row + (x - x0);
                if (!(d < depth[p]))
                {
                    continue;
                }

                float nx = (float)(x + 0.5 - o.NCx);
                float nu = ((nx * o.NCos) + (ny * o.NSin)) * o.NInvA;
                float nv = ((ny * o.NCos) - (nx * o.NSin)) * o.NInvB;
                float nr0 = MathF.Sqrt((nu * nu) + (nv * nv));
                float dn = (nr0 - NucleusRadius(o, nu, nv, nr0)) * o.NScale;
                depth[p] = d;
                nucleusDepth[p] = dn;
                owner[p] = index;
                mask[p] = d >= 0f ? (byte)0 : d > -MembraneWidth ? (byte)3 : dn < 0f ? (o.Mitotic ? (byte)4 : (byte)2) : (byte)1;
                any = true;
            }
        }

        return any;
    }

    /// <summary>A cell's nucleus outline: normalised radius 1 + its k = 2, 3 harmonics.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float NucleusRadius(in Blob o, float u, float v, float r0)
    {
        float c1 = 1f;
        float s1 = 0f;
        if (r0 > 0f)
        {
            float inv = 1f / r0;
            c1 = u * inv;
            s1 = v * inv;
        }

        float c2 = (c1 * c1) - (s1 * s1);
        float s2 = 2f * c1 * s1;
        float c3 = (c2 * c1) - (s2 * s1);
        float s3 = (s2 * c1) + (c2 * s1);
        return 1f + (o.NC2 * c2) + (o.NS2 * s2) + (o.NC3 * c3) + (o.NS3 * s3);
    }

    private static bool RasterColony(in Blob o, int x0, int y0, int w, int h, int stride, Span<float> depth, Span<byte> mask)
    {
        if (!Clip(o, x0, y0, w, h, out int xa, out int xb, out int ya, out int yb))
        {
            return false;
        }

        bool any = false;
        float maxNorm = o.MaxNorm * o.MaxNorm;
        float deepNorm = o.DeepNorm > 0 ? o.DeepNorm * o.DeepNorm : -1f;
        for (int y = ya; y < yb; y++)
        {
            float dy = (float)(y + 0.5 - o.Cy);
            int row = (y - y0) * stride;
            for (int x = xa; x < xb; x++)
            {
                float dx = (float)(x + 0.5 - o.Cx);
                float u = ((dx * o.Cos) + (dy * o.Sin)) * o.InvA;
                float v = ((dy * o.Cos) - (dx * o.Sin)) * o.InvB;
                float rr = (u * u) + (v * v);
                if (rr > maxNorm)
                {
                    continue;
                }

                int p = row + (x - x0);
                float d;
                if (rr < deepNorm)
                {
                    // Certainly more than ColonyDeep px inside: rendering saturates, skip the boundary evaluation.
                    mask[p] = 1;
                    d = -ColonyDeep;
                }
                else
                {
                    float r0 = MathF.Sqrt(rr);
                    float rn = BoundaryRadius(o, u, v, r0);
                    if (r0 < rn)
                    {
                        mask[p] = 1;
                    }

                    d = MathF.Max((r0 - rn) * o.Scale, -ColonyDeep);
                }

                if (d < depth[p])
                {
                    depth[p] = d;
                    any = true;
                }
            }
        }

        return any;
    }

    private static bool Clip(in Blob o, int x0, int y0, int w, int h, out int xa, out int xb, out int ya, out int yb)
    {
        xa = Math.Max(x0, (int)Math.Floor(o.Cx - o.Extent));
        xb = Math.Min(x0 + w, (int)Math.Ceiling(o.Cx + o.Extent) + 1);
        ya = Math.Max(y0, (int)Math.Floor(o.Cy - o.Extent));
        yb = Math.Min(y0 + h, (int)Math.Ceiling(o.Cy + o.Extent) + 1);
        return xa < xb && ya < yb;
    }

    /// <summary>Normalised boundary radius 1 + sum_k (c_k cos k theta + s_k sin k theta), theta from (u, v).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float BoundaryRadius(in Blob o, float u, float v, float r0)
    {
        float c1 = 1f;
        float s1 = 0f;
        if (r0 > 0f)
        {
            float inv = 1f / r0;
            c1 = u * inv;
            s1 = v * inv;
        }

        float c2 = (c1 * c1) - (s1 * s1);
        float s2 = 2f * c1 * s1;
        float r = 1f + (o.C2 * c2) + (o.S2 * s2);
        float c3 = (c2 * c1) - (s2 * s1);
        float s3 = (s2 * c1) + (c2 * s1);
        r += (o.C3 * c3) + (o.S3 * s3);
        float c4 = (c3 * c1) - (s3 * s1);
        float s4 = (s3 * c1) + (c3 * s1);
        r += (o.C4 * c4) + (o.S4 * s4);
        if (o.HighHarmonics)
        {
            float c5 = (c4 * c1) - (s4 * s1);
            float s5 = (s4 * c1) + (c4 * s1);
            r += (o.C5 * c5) + (o.S5 * s5);
            float c6 = (c5 * c1) - (s5 * s1);
            float s6 = (s5 * c1) + (c5 * s1);
            r += (o.C6 * c6) + (o.S6 * s6);
            float c7 = (c6 * c1) - (s6 * s1);
            float s7 = (s6 * c1) + (c6 * s1);
            r += (o.C7 * c7) + (o.S7 * s7);
        }

        return r;
    }

    /// <summary>Smooth lattice value noise in [-0.5, 0.5] * amplitude, keyed by global pixel coordinates.</summary>
    private static void ValueNoise(TileContext ctx, Span<float> dst, int x0, int y0, int w, int h, double scale, ulong key, float amplitude, bool accumulate)
    {
        int t = ctx.TileSize;
        double inv = 1.0 / scale;
        int ixa = (int)Math.Floor((x0 + 0.5) * inv);
        int ixb = (int)Math.Floor((x0 + w - 0.5) * inv) + 1;
        int iya = (int)Math.Floor((y0 + 0.5) * inv);
        int iyb = (int)Math.Floor((y0 + h - 0.5) * inv) + 1;
        int nx = ixb - ixa + 1;
        int ny = iyb - iya + 1;
        Span<float> lattice = ctx.Lattice(nx * ny);
        for (int j = 0; j < ny; j++)
        {
            ulong rowKey = key + ((ulong)(uint)(iya + j) << 32);
            for (int i = 0; i < nx; i++)
            {
                lattice[(j * nx) + i] = ((Mix64(rowKey + (uint)(ixa + i)) >> 40) * (1f / 16777216f)) - 0.5f;
            }
        }

        Span<int> colIdx = ctx.ColIndex;
        Span<float> colW = ctx.ColWeight;
        for (int x = 0; x < w; x++)
        {
            double gx = (x0 + x + 0.5) * inv;
            double fl = Math.Floor(gx);
            colIdx[x] = (int)fl - ixa;
            colW[x] = Smooth((float)(gx - fl));
        }

        for (int y = 0; y < h; y++)
        {
            double gy = (y0 + y + 0.5) * inv;
            double fl = Math.Floor(gy);
            int j = (int)fl - iya;
            float wy = Smooth((float)(gy - fl));
            ReadOnlySpan<float> l0 = lattice.Slice(j * nx, nx);
            ReadOnlySpan<float> l1 = lattice.Slice((j + 1) * nx, nx);
            Span<float> d = dst.Slice(y * t, w);
            for (int x = 0; x < d.Length; x++)
            {
                int i = colIdx[x];
                float wx = colW[x];
                float a = l0[i] + ((l0[i + 1] - l0[i]) * wx);
                float b = l1[i] + ((l1[i + 1] - l1[i]) * wx);
                float n = (a + ((b - a) * wy)) * amplitude;
                d[x] = accumulate ? d[x] + n : n;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Smooth(float f) => f * f * (3f - (2f * f));

    /// <summary>Approximately standard normal deviate from 64 random bits (Irwin-Hall sum of four 16-bit uniforms).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Gaussian(ulong h)
    {
        uint s = (uint)(h & 0xFFFF) + (uint)((h >> 16) & 0xFFFF) + (uint)((h >> 32) & 0xFFFF) + (uint)(h >> 48);
        return ((int)s - 131070) * (1f / 37837.2f);
    }

    /// <summary>SplitMix64 finaliser.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mix64(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    // ---------------------------------------------------------------- layout

    /// <summary>An object: deformed ellipse centred at (Cx, Cy).</summary>
    private struct Blob
    {
        public double Cx;
        public double Cy;
        public float Cos;
        public float Sin;
        public float InvA;
        public float InvB;
        public float Scale; // geometric mean radius: normalised -> pixel distance
        public float MaxNorm; // normalised radius beyond which the object renders nothing
        public float DeepNorm; // normalised radius within which a pixel is > ColonyDeep px inside (colonies)
        public float Extent; // pixel radius of the bounding box
        public float Intensity;
        public bool HighHarmonics;
        public float C2, S2, C3, S3, C4, S4, C5, S5, C6, S6, C7, S7;

        // a cell's nucleus (cells only): centre, orientation, inverse semi-axes, scale, harmonics, and whether it is mitotic
        public double NCx;
        public double NCy;
        public float NCos;
        public float NSin;
        public float NInvA;
        public float NInvB;
        public float NScale;
        public float NC2, NS2, NC3, NS3;
        public bool Mitotic;
    }

    /// <summary>A fibre: the straight line through (Px, Py) along (Cos, Sin).</summary>
    private readonly record struct Fibre(double Px, double Py, double Cos, double Sin)
    {
        /// <summary>Distance of the point (x, y) from the fibre's axis.</summary>
        public double Distance(double x, double y) => Math.Abs(((y - Py) * Cos) - ((x - Px) * Sin));
    }

    /// <summary>Deterministic stream of uniforms from one hash.</summary>
    private struct Rng(ulong state)
    {
        private ulong _state = state;

        public double Next()
        {
            _state += 0x9E3779B97F4A7C15UL;
            return (Mix64(_state) >> 11) * (1.0 / 9007199254740992.0);
        }
    }

    private sealed class Layout
    {
        private readonly ulong _key;
        private readonly double _cell;
        private readonly double _reach; // max distance from a cell's bounds to any pixel its object renders
        private readonly double _colonyScale;
        private readonly long _forcedCol;
        private readonly long _forcedRow;

        public Layout(SyntheticSpec spec)
        {
            Spec = spec;
            _key = Mix64(((ulong)(uint)spec.Seed << 32) ^ spec.Kind switch { SyntheticKind.Nuclei => 0xA11CEu, SyntheticKind.Cells => 0xCE115u, _ => 0xC01011u });
            if (spec.Kind == SyntheticKind.Cells)
            {
                _cell = CellSlot;
                _reach = (CellSlot / 2.0) + CellMargin + 2;
                _colonyScale = 1;
            }
            else if (spec.Kind == SyntheticKind.Nuclei)
            {
                _cell = NucleusSlot;
                _reach = (20 * Math.Sqrt(1.6) * 1.2) + (NucleusMargin * 1.6) + 2;
                _colonyScale = 1;
            }
            else
            {
                _colonyScale = Math.Clamp(Math.Min(spec.Width, spec.Height) / 2048.0, 0.15, 1.0);
                _cell = ColonyCell * _colonyScale;
                _reach = (ColonyRMax * _colonyScale * Math.Sqrt(1.3) * 1.5) + (ColonyMargin * 1.3) + 2;
            }

            // The cell holding the image centre always has an object, so even tiny images show one.
            _forcedCol = (long)Math.Floor(spec.Width / 2.0 / _cell);
            _forcedRow = (long)Math.Floor(spec.Height / 2.0 / _cell);

            if (spec.Fibres)
            {
                // each fibre a straight line through a point of the image at an angle, all drawn from the seed
                int count = Math.Max(1, (int)Math.Round(FibresPer1024 * Math.Sqrt((double)spec.Width * spec.Height) / 1024));
                var rng = new Rng(Mix64(_key ^ 0xF1B4E5UL));
                Fibres = new Fibre[count];
                for (int i = 0; i < count; i++)
                {
                    double px = rng.Next() * spec.Width, py = rng.Next() * spec.Height, angle = rng.Next() * Math.PI;
                    Fibres[i] = new Fibre(px, py, Math.Cos(angle), Math.Sin(angle));
                }
            }
        }

        public SyntheticSpec Spec { get; }

        /// <summary>The fibres over the whole image (none unless <see cref="SyntheticSpec.Fibres"/>).</summary>
        public Fibre[] Fibres { get; } = [];

        /// <summary>Collects, in a fixed order, the objects that may render inside the given tile region.</summary>
        public int CollectObjects(int x0, int y0, int w, int h, ref Blob[] objects)
        {
            long ca = (long)Math.Floor((x0 - _reach) / _cell);
            long cb = (long)Math.Floor((x0 + w + _reach) / _cell);
            long ra = (long)Math.Floor((y0 - _reach) / _cell);
            long rb = (long)Math.Floor((y0 + h + _reach) / _cell);
            int n = 0;
            for (long r = ra; r <= rb; r++)
            {
                for (long c = ca; c <= cb; c++)
                {
                    if (!TryMake(c, r, out Blob b))
                    {
                        continue;
                    }

                    if (b.Cx + b.Extent < x0 || b.Cx - b.Extent > x0 + w || b.Cy + b.Extent < y0 || b.Cy - b.Extent > y0 + h)
                    {
                        continue;
                    }

                    if (n == objects.Length)
                    {
                        Array.Resize(ref objects, objects.Length * 2);
                    }

                    objects[n++] = b;
                }
            }

            return n;
        }

        /// <summary>Number of objects whose centre lies inside the image.</summary>
        public long CountObjects()
        {
            long cols = (long)Math.Ceiling(Spec.Width / _cell);
            long rows = (long)Math.Ceiling(Spec.Height / _cell);
            long n = 0;
            for (long r = 0; r < rows; r++)
            {
                for (long c = 0; c < cols; c++)
                {
                    if (TryMake(c, r, out Blob b) && b.Cx >= 0 && b.Cx < Spec.Width && b.Cy >= 0 && b.Cy < Spec.Height)
                    {
                        n++;
                    }
                }
            }

            return n;
        }

        private bool TryMake(long col, long row, out Blob b)
        {
            var rng = new Rng(Mix64(Mix64(_key + ((ulong)row * 0x9E3779B97F4A7C15UL)) + ((ulong)col * 0xD1B54A32D192ED03UL)));
            double occupied = rng.Next();
            bool forced = col == _forcedCol && row == _forcedRow;
            b = default;
            return Spec.Kind switch
            {
                SyntheticKind.Nuclei => MakeNucleus(col, row, occupied < NucleusOccupancy || forced, ref rng, ref b),
                SyntheticKind.Cells => MakeCell(col, row, occupied < CellOccupancy || forced, ref rng, ref b),
                _ => MakeColony(col, row, occupied < ColonyOccupancy || forced, ref rng, ref b),
            };
        }

        /// <summary>A cell inside its slot (it never reaches a neighbour's), with its nucleus well inside it, clear of the membrane.</summary>
        private static bool MakeCell(long col, long row, bool occupied, ref Rng rng, ref Blob b)
        {
            if (!occupied)
            {
                return false;
            }

            double r = CellRMin + ((CellRMax - CellRMin) * rng.Next());
            double aspect = 1 + (0.25 * rng.Next());
            double a = r * Math.Sqrt(aspect);
            double bb = r / Math.Sqrt(aspect);
            double angle = rng.Next() * Math.PI;
            b.Cos = (float)Math.Cos(angle);
            b.Sin = (float)Math.Sin(angle);
            b.InvA = (float)(1 / a);
            b.InvB = (float)(1 / bb);
            double amp = 0;
            amp += Harmonic(ref rng, 0.07, out b.C2, out b.S2);
            amp += Harmonic(ref rng, 0.04, out b.C3, out b.S3);
            amp += Harmonic(ref rng, 0.03, out b.C4, out b.S4);
            b.HighHarmonics = false;
            b.Scale = (float)Math.Sqrt(a * bb);
            double minAxis = Math.Min(a, bb);
            b.MaxNorm = (float)(1 + amp + (CellMargin / minAxis));
            b.DeepNorm = 0;
            b.Extent = (float)((a * (1 + amp)) + (CellMargin * a / minAxis) + 1);
            // the whole rendered cell stays inside its slot
            double jitter = Math.Max(0, (CellSlot / 2.0) - b.Extent - 1);
            b.Cx = ((col + 0.5) * CellSlot) + (((2 * rng.Next()) - 1) * jitter);
            b.Cy = ((row + 0.5) * CellSlot) + (((2 * rng.Next()) - 1) * jitter);
            b.Intensity = 1f;

            // the nucleus: 0.40 to 0.55 of the cell's inner radius, off centre, clear of the membrane by 4 px at least
            b.Mitotic = rng.Next() < MitoticFraction;
            double rn = minAxis * (1 - amp) * (0.40 + (0.15 * rng.Next())) * (b.Mitotic ? 0.7 : 1.0);
            double nAspect = b.Mitotic ? 1 + (0.1 * rng.Next()) : 1 + (0.4 * rng.Next());
            double na = rn * Math.Sqrt(nAspect);
            double nb = rn / Math.Sqrt(nAspect);
            double nAngle = rng.Next() * Math.PI;
            b.NCos = (float)Math.Cos(nAngle);
            b.NSin = (float)Math.Sin(nAngle);
            b.NInvA = (float)(1 / na);
            b.NInvB = (float)(1 / nb);
            double namp = 0;
            namp += Harmonic(ref rng, b.Mitotic ? 0.03 : 0.08, out b.NC2, out b.NS2);
            namp += Harmonic(ref rng, b.Mitotic ? 0.02 : 0.05, out b.NC3, out b.NS3);
            b.NScale = (float)Math.Sqrt(na * nb);
            double room = Math.Max(0, (minAxis * (1 - amp)) - MembraneWidth - 4 - (na * (1 + namp)));
            double offset = room * 0.7 * rng.Next();
            double dir = rng.Next() * 2 * Math.PI;
            b.NCx = b.Cx + (offset * Math.Cos(dir));
            b.NCy = b.Cy + (offset * Math.Sin(dir));
            return true;
        }

        private bool MakeNucleus(long col, long row, bool occupied, ref Rng rng, ref Blob b)
        {
            if (!occupied)
            {
                return false;
            }

            double r = 6 + (14 * rng.Next());
            double aspect = 1 + (0.6 * rng.Next());
            double a = r * Math.Sqrt(aspect);
            double bb = r / Math.Sqrt(aspect);
            double jitter = Math.Max(0, (NucleusSlot / 2.0) - (0.75 * r));
            b.Cx = ((col + 0.5) * NucleusSlot) + (((2 * rng.Next()) - 1) * jitter);
            b.Cy = ((row + 0.5) * NucleusSlot) + (((2 * rng.Next()) - 1) * jitter);
            double angle = rng.Next() * Math.PI;
            b.Cos = (float)Math.Cos(angle);
            b.Sin = (float)Math.Sin(angle);
            b.InvA = (float)(1 / a);
            b.InvB = (float)(1 / bb);
            double amp = 0;
            amp += Harmonic(ref rng, 0.08, out b.C2, out b.S2);
            amp += Harmonic(ref rng, 0.05, out b.C3, out b.S3);
            amp += Harmonic(ref rng, 0.03, out b.C4, out b.S4);
            b.HighHarmonics = false;
            b.Scale = (float)Math.Sqrt(a * bb);
            double minAxis = Math.Min(a, bb);
            b.MaxNorm = (float)(1 + amp + (NucleusMargin / minAxis));
            b.DeepNorm = 0;
            b.Extent = (float)((a * (1 + amp)) + (NucleusMargin * a / minAxis) + 1);
            // Log-uniform brightness between the min and max nucleus intensity.
            b.Intensity = (float)(NucleusMinIntensity * Math.Pow(NucleusMaxIntensity / NucleusMinIntensity, rng.Next()));
            return true;
        }

        private bool MakeColony(long col, long row, bool occupied, ref Rng rng, ref Blob b)
        {
            if (!occupied)
            {
                return false;
            }

            double s = _colonyScale;
            double r = s * (ColonyRMin + ((ColonyRMax - ColonyRMin) * Math.Pow(rng.Next(), 0.8)));
            double aspect = 1 + (0.3 * rng.Next());
            double a = r * Math.Sqrt(aspect);
            double bb = r / Math.Sqrt(aspect);
            b.Cx = (col + 0.2 + (0.6 * rng.Next())) * _cell;
            b.Cy = (row + 0.2 + (0.6 * rng.Next())) * _cell;
            double angle = rng.Next() * Math.PI;
            b.Cos = (float)Math.Cos(angle);
            b.Sin = (float)Math.Sin(angle);
            b.InvA = (float)(1 / a);
            b.InvB = (float)(1 / bb);
            double amp = 0;
            amp += Harmonic(ref rng, 0.16, out b.C2, out b.S2);
            amp += Harmonic(ref rng, 0.10, out b.C3, out b.S3);
            amp += Harmonic(ref rng, 0.07, out b.C4, out b.S4);
            amp += Harmonic(ref rng, 0.05, out b.C5, out b.S5);
            amp += Harmonic(ref rng, 0.04, out b.C6, out b.S6);
            amp += Harmonic(ref rng, 0.03, out b.C7, out b.S7);
            b.HighHarmonics = true;
            b.Scale = (float)Math.Sqrt(a * bb);
            double minAxis = Math.Min(a, bb);
            b.MaxNorm = (float)(1 + amp + (ColonyMargin / minAxis));
            // The boundary radius is >= 1 - amp in normalised space, and a pixel distance is >= the normalised distance
            // times the minor axis, so below this radius a pixel is more than ColonyDeep px inside (2% safety margin).
            double deep = (1 - amp) - (ColonyDeep * 1.02 / minAxis);
            b.DeepNorm = deep > 0 ? (float)deep : 0f;
            b.Extent = (float)((a * (1 + amp)) + (ColonyMargin * a / minAxis) + 1);
            b.Intensity = 1f;
            return true;
        }

        private static double Harmonic(ref Rng rng, double maxAmplitude, out float c, out float s)
        {
            double amp = maxAmplitude * rng.Next();
            double phase = rng.Next() * 2 * Math.PI;
            c = (float)(amp * Math.Cos(phase));
            s = (float)(amp * Math.Sin(phase));
            return amp;
        }
    }

    /// <summary>Per-worker scratch buffers, allocated once per worker and reused for every tile.</summary>
    private sealed class TileContext
    {
        private float[] _lattice = new float[1024];

        public TileContext(int tileSize, int channels, int bitDepth)
        {
            TileSize = tileSize;
            int n = tileSize * tileSize;
            Depth = new float[n];
            Rho = new float[n];
            Owner = new int[n];
            Mask = new byte[n];
            Background = new float[n];
            Texture = new float[n];
            Texture2 = new float[n];
            NucleusDepth = new float[n];
            Value = new float[n];
            Out8 = bitDepth == 8 ? new byte[n * channels] : [];
            Out16 = bitDepth == 8 ? [] : new ushort[n * channels];
            IllumX = new float[tileSize];
            IllumY = new float[tileSize];
            ColIndex = new int[tileSize];
            ColWeight = new float[tileSize];
        }

        public int TileSize { get; }

        public float[] Depth { get; }

        public float[] Rho { get; }

        public int[] Owner { get; }

        public byte[] Mask { get; }

        public float[] Background { get; }

        public float[] Texture { get; }

        /// <summary>The cells' nucleus texture.</summary>
        public float[] Texture2 { get; }

        /// <summary>The cells' signed distance to the owning cell's nucleus outline.</summary>
        public float[] NucleusDepth { get; }

        /// <summary>Mask pixels per class of the last tile rendered.</summary>
        public long[] ClassCounts { get; } = new long[6];

        public float[] Value { get; }

        public byte[] Out8 { get; }

        public ushort[] Out16 { get; }

        public float[] IllumX { get; }

        public float[] IllumY { get; }

        public int[] ColIndex { get; }

        public float[] ColWeight { get; }

#pragma warning disable SA1401 // passed by ref to grow in place
        public Blob[] Objects = new Blob[64];
#pragma warning restore SA1401

        public Span<float> Lattice(int length)
        {
            if (_lattice.Length < length)
            {
                _lattice = new float[Math.Max(length, _lattice.Length * 2)];
            }

            return _lattice.AsSpan(0, length);
        }
    }
}
