namespace ActorSeg.Core.Superpixels;

/// <summary>How superpixels are made. Defaults follow the published recipe (SLIC, compactness 0.1, sigma 1).</summary>
public sealed record SlicParameters
{
    /// <summary>Target number of superpixels for the whole image; when null, <see cref="Spacing"/> is used.</summary>
    public int? Segments { get; init; }
    /// <summary>Seed spacing in pixels (≈ 40,000 superpixels per 67 megapixels by default).</summary>
    public double Spacing { get; init; } = DefaultSpacing;
    public double Compactness { get; init; } = 0.1;
    public double Sigma { get; init; } = 1.0;
    public int Iterations { get; init; } = 10;
    /// <summary>Search window half-width in units of the spacing (1 = the SLIC paper's 2S×2S window; 2 = scikit-image's).</summary>
    public double WindowFactor { get; init; } = 1.0;
    /// <summary>Connected pieces smaller than this fraction of the mean superpixel area are merged into a neighbour.</summary>
    public double MinSizeFactor { get; init; } = 0.1;

    public const double DefaultSpacing = 40.96; // sqrt(8192*8192 / 40000)

    public void Validate()
    {
        if (Segments is { } s && s < 1) throw new ArgumentException($"segments must be >= 1 (got {s})");
        if (Segments is null && !(Spacing >= 2 && double.IsFinite(Spacing))) throw new ArgumentException($"spacing must be >= 2 pixels (got {Spacing})");
        if (!(Compactness > 0 && double.IsFinite(Compactness))) throw new ArgumentException($"compactness must be a finite number > 0 (got {Compactness})");
        if (!(Sigma >= 0) || Sigma > 20) throw new ArgumentException($"sigma must be in [0, 20] (got {Sigma})");
        if (Iterations < 1 || Iterations > 100) throw new ArgumentException($"iterations must be in [1, 100] (got {Iterations})");
        if (!(WindowFactor >= 0.5) || WindowFactor > 4) throw new ArgumentException($"window factor must be in [0.5, 4] (got {WindowFactor})");
        if (!(MinSizeFactor >= 0) || MinSizeFactor >= 1) throw new ArgumentException($"min size factor must be in [0, 1) (got {MinSizeFactor})");
    }
}

/// <summary>The one global grid of SLIC seeds; every tile derives its seeds from it, so neighbouring tiles agree.</summary>
public readonly record struct SeedGrid(int Width, int Height, int Nx, int Ny)
{
    public double Sx => (double)Width / Nx;
    public double Sy => (double)Height / Ny;
    /// <summary>The spacing used to normalise spatial distance.</summary>
    public double S => Math.Sqrt(Sx * Sy);
    public int Count => Nx * Ny;

    public static SeedGrid For(int width, int height, SlicParameters p)
    {
        double s = p.Segments is { } n ? Math.Sqrt((double)width * height / n) : p.Spacing;
        int nx = Math.Max(1, (int)Math.Round(width / s));
        int ny = Math.Max(1, (int)Math.Round(height / s));
        return new SeedGrid(width, height, nx, ny);
    }

    public double SeedX(int i) => (i + 0.5) * Sx;
    public double SeedY(int j) => (j + 0.5) * Sy;
    public int CellX(int x) => Math.Min(Nx - 1, (int)(x / Sx));
    public int CellY(int y) => Math.Min(Ny - 1, (int)(y / Sy));
}

/// <summary>Global intensity statistics gathered in a first cheap pass (exact, from per-channel histograms).</summary>
public sealed record ImageStatistics(double[] Mean, double[] Std, int[] Min, int[] Max, long Pixels)
{
    public int Channels => Mean.Length;

    public static ImageStatistics FromHistograms(long[][] hist)
    {
        int c = hist.Length;
        var mean = new double[c]; var std = new double[c]; var min = new int[c]; var max = new int[c];
        long n = 0;
        for (int ch = 0; ch < c; ch++)
        {
            var h = hist[ch];
            long cnt = 0; Int128 s = 0, s2 = 0; int lo = -1, hi = -1;
            for (int v = 0; v < h.Length; v++)
            {
                long k = h[v];
                if (k == 0) continue;
                if (lo < 0) lo = v;
                hi = v;
                cnt += k; s += (Int128)k * v; s2 += (Int128)k * v * v;
            }
            if (cnt == 0) throw new InvalidOperationException("empty histogram");
            double m = (double)s / cnt;
            // exact variance numerator: n*s2 - s^2
            double var = (double)(cnt * s2 - s * s) / ((double)cnt * cnt);
            mean[ch] = m; std[ch] = Math.Sqrt(Math.Max(0, var)); min[ch] = lo; max[ch] = hi; n = cnt;
        }
        return new ImageStatistics(mean, std, min, max, n);
    }

    public bool IsConstant => Std.All(s => s == 0);

    /// <summary>Largest z-scored value over all channels (the published recipe divides by it before SLIC).</summary>
    public double MaxZ
    {
        get
        {
            double m = double.NegativeInfinity;
            for (int c = 0; c < Channels; c++) if (Std[c] > 0) m = Math.Max(m, (Max[c] - Mean[c]) / Std[c]);
            return m > 0 ? m : 1.0;
        }
    }

    public double InvStd(int c) => Std[c] > 0 ? 1.0 / Std[c] : 1.0;
}
