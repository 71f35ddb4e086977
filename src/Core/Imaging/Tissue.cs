using System.Buffers.Binary;
using ActorSeg.Core.Superpixels;
using Vips = NetVips;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Where the tissue is, as a coarse raster over the image a job reads: cell (cx, cy) covers the image pixels
/// x in [cx·W/w, (cx+1)·W/w) and y likewise. Whether a pixel is tissue is a function of its global coordinates only,
/// so every tile of a job (and a whole-image run) agrees on it: tiles with no tissue are skipped and pixels outside
/// the tissue get no node, without changing any result where there is tissue.
/// </summary>
public sealed class TissueMap
{
    private const int Magic = 0x4D545341; // "ASTM"
    public int Width { get; }
    public int Height { get; }
    public int ImageWidth { get; }
    public int ImageHeight { get; }
    private readonly byte[] _cells;

    public TissueMap(int width, int height, int imageWidth, int imageHeight, byte[] cells)
    {
        if (width < 1 || height < 1 || width > imageWidth || height > imageHeight)
            throw new ArgumentException($"a tissue map of {width}x{height} cells does not fit an image of {imageWidth}x{imageHeight}");
        if (cells.Length != width * height) throw new ArgumentException($"{cells.Length} cells for a {width}x{height} map");
        Width = width; Height = height; ImageWidth = imageWidth; ImageHeight = imageHeight; _cells = cells;
    }

    public ReadOnlySpan<byte> Cells => _cells;
    public bool this[int cx, int cy] => _cells[cy * Width + cx] != 0;

    /// <summary>The cell column of image column <paramref name="x"/> (and the same for rows).</summary>
    public int CellX(int x) => (int)((long)x * Width / ImageWidth);
    public int CellY(int y) => (int)((long)y * Height / ImageHeight);
    /// <summary>The first image column of cell column <paramref name="cx"/>: the smallest x with CellX(x) ≥ cx.</summary>
    public int FirstX(int cx) => (int)(((long)cx * ImageWidth + Width - 1) / Width);
    public int FirstY(int cy) => (int)(((long)cy * ImageHeight + Height - 1) / Height);

    /// <summary>Is there any tissue pixel in <paramref name="r"/>?</summary>
    public bool Any(PixelRect r)
    {
        int cx0 = CellX(r.X), cx1 = CellX(r.Right - 1), cy0 = CellY(r.Y), cy1 = CellY(r.Bottom - 1);
        for (int cy = cy0; cy <= cy1; cy++)
            if (_cells.AsSpan(cy * Width + cx0, cx1 - cx0 + 1).ContainsAnyExcept((byte)0)) return true;
        return false;
    }

    /// <summary>The runs of tissue pixels on image row <paramref name="y"/> within [<paramref name="x0"/>, <paramref name="x1"/>),
    /// appended to <paramref name="runs"/> as (start, end) pairs in image columns.</summary>
    public void RowRuns(int y, int x0, int x1, List<int> runs)
    {
        if (x0 >= x1) return;
        var row = _cells.AsSpan(CellY(y) * Width, Width);
        int c = CellX(x0), cLast = CellX(x1 - 1);
        while (c <= cLast)
        {
            if (row[c] == 0) { c++; continue; }
            int c0 = c;
            while (c <= cLast && row[c] != 0) c++;
            runs.Add(Math.Max(x0, FirstX(c0)));
            runs.Add(Math.Min(x1, FirstX(c)));
        }
    }

    /// <summary>Image pixels that are tissue, counted exactly from the cells' pixel extents.</summary>
    public long TissuePixels()
    {
        long total = 0;
        for (int cy = 0; cy < Height; cy++)
        {
            long h = FirstY(cy + 1) - FirstY(cy);
            if (h == 0) continue;
            for (int cx = 0; cx < Width; cx++)
                if (_cells[cy * Width + cx] != 0) total += h * (FirstX(cx + 1) - FirstX(cx));
        }
        return total;
    }

    public double Fraction => (double)TissuePixels() / ((long)ImageWidth * ImageHeight);

    /// <summary>Sets every core pixel of <paramref name="core"/> that is not tissue to <paramref name="glass"/> in
    /// <paramref name="labels"/> (core.W × core.H); returns how many pixels are tissue.</summary>
    public long Apply(PixelRect core, Span<int> labels, int glass)
    {
        long tissue = 0;
        Span<int> cellOfX = core.W <= 4096 ? stackalloc int[core.W] : new int[core.W];
        for (int x = 0; x < core.W; x++) cellOfX[x] = CellX(core.X + x);
        for (int y = 0; y < core.H; y++)
        {
            var row = _cells.AsSpan(CellY(core.Y + y) * Width, Width);
            var dst = labels.Slice(y * core.W, core.W);
            for (int x = 0; x < core.W; x++)
            {
                if (row[cellOfX[x]] != 0) tissue++;
                else dst[x] = glass;
            }
        }
        return tissue;
    }

    public void Save(string path)
    {
        var bytes = new byte[20 + _cells.Length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), Width);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), Height);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(12), ImageWidth);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(16), ImageHeight);
        _cells.CopyTo(bytes, 20);
        IO.SafePaths.WriteAllBytes(path, bytes, "tissue map");
    }

    public static TissueMap Load(string path)
    {
        var b = File.ReadAllBytes(path);
        if (b.Length < 20 || BinaryPrimitives.ReadInt32LittleEndian(b) != Magic) throw new InvalidDataException($"{path}: not a tissue map");
        int w = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(4)), h = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(8));
        int iw = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(12)), ih = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(16));
        if (w < 1 || h < 1 || (long)w * h != b.Length - 20) throw new InvalidDataException($"{path}: tissue map is truncated or damaged");
        try { return new TissueMap(w, h, iw, ih, b[20..]); }
        catch (ArgumentException e) { throw new InvalidDataException($"{path}: {e.Message}"); }
    }

    /// <summary>The map as a PNG a person can look at (tissue white, glass black), one pixel per cell.</summary>
    public void SavePng(string path)
    {
        var px = new byte[_cells.Length];
        for (int i = 0; i < px.Length; i++) px[i] = _cells[i] != 0 ? (byte)255 : (byte)0;
        IO.SafePaths.WriteByName(path, ".png", tmp =>
        {
            using var img = Vips.Image.NewFromMemory(px, Width, Height, 1, Vips.Enums.BandFormat.Uchar);
            img.Pngsave(tmp);
        }, "tissue map preview");
    }
}

/// <summary>
/// Finds the tissue on a brightfield slide the way QuPath, TIAToolbox and HistomicsTK do it: at low resolution, Otsu
/// thresholds on saturation and optical density (glass is bright and grey; stained tissue is darker or coloured),
/// then a morphological closing and small holes filled. Grey images (one channel) use Otsu on intensity, with the
/// background taken as the class that dominates the image border (so it works for dark-field fluorescence too).
/// </summary>
public static class TissueDetector
{
    /// <summary>Cells along the longer side of a detected map (a 100k-pixel slide at 0.5 µm/px: a cell of 98 px, 49 µm).</summary>
    public const int MapSide = 1024;
    /// <summary>Bounds of the optical density threshold (mean over channels): Otsu splits any histogram in two, so on a
    /// slide with no glass it is capped (OD 0.25 transmits 56 % of the light: everything darker is tissue), and on a
    /// slide that is all glass it is floored (OD 0.08 transmits 83 %: clean glass, white-balanced, is brighter).</summary>
    public const double MinOdThreshold = 0.08, MaxOdThreshold = 0.25;
    /// <summary>Bounds of the saturation threshold, for the same reasons (glass is grey: saturation below 0.05).</summary>
    public const double MinSatThreshold = 0.05, MaxSatThreshold = 0.15;
    /// <summary>Holes smaller than this fraction of the map are filled.</summary>
    public const double HoleFraction = 0.002;

    /// <summary>The map's size for an image of <paramref name="w"/> x <paramref name="h"/>.</summary>
    public static (int W, int H) MapSize(int w, int h)
    {
        int f = Math.Max(1, (int)Math.Ceiling(Math.Max(w, h) / (double)MapSide));
        return (Math.Max(1, w / f), Math.Max(1, h / f));
    }

    /// <summary>Detects the tissue of <paramref name="imagePath"/> (read at <paramref name="page"/>, which is
    /// <paramref name="width"/> x <paramref name="height"/>): reads a coarse pyramid level where there is one.</summary>
    /// <param name="series">a CZI's scene or a LIF's image (<see cref="ImageSources.Open"/>)</param>
    public static TissueMap Detect(string imagePath, int page, int width, int height, int series = -1)
    {
        var (mw, mh) = MapSize(width, height);
        var (mean, channels) = CellMeans(imagePath, page, width, height, mw, mh, series);
        var cells = channels >= 3 ? Brightfield(mean, mw * mh) : Grey(mean, mw, mh);
        Close(cells, mw, mh);
        FillHoles(cells, mw, mh, Math.Max(4, (int)(HoleFraction * mw * mh)));
        return new TissueMap(mw, mh, width, height, cells);
    }

    /// <summary>A tissue mask supplied as an image (any size with the image's proportions; non-zero = tissue),
    /// resampled to the map by nearest neighbour.</summary>
    public static TissueMap FromFile(string maskPath, int width, int height)
    {
        using var src = VipsImageSource.Open(maskPath, 0, firstBandOnly: true);
        double ar = (double)width / height, mar = (double)src.Width / src.Height;
        if (Math.Abs(ar / mar - 1) > 0.02)
            throw new InputFileException(maskPath, $"the tissue mask is {src.Width}x{src.Height}, not in the proportions of the {width}x{height} image it is for");
        var (mw, mh) = MapSize(width, height);
        mw = Math.Min(mw, src.Width); mh = Math.Min(mh, src.Height);
        var cells = new byte[mw * mh];
        var row = new ushort[src.Width];
        for (int cy = 0; cy < mh; cy++)
        {
            int sy = (int)(((long)cy * 2 + 1) * src.Height / (2L * mh)); // the centre of the cell
            src.ReadRegion(0, sy, src.Width, 1, row);
            for (int cx = 0; cx < mw; cx++) cells[cy * mw + cx] = row[(int)(((long)cx * 2 + 1) * src.Width / (2L * mw))] != 0 ? (byte)1 : (byte)0;
        }
        return new TissueMap(mw, mh, width, height, cells);
    }

    /// <summary>Mean of every channel over each map cell, read band by band from the coarsest level that is still at
    /// least as large as the map (never level 0 of a big slide or OME-TIFF pyramid).</summary>
    private static (float[] Mean, int Channels) CellMeans(string imagePath, int page, int width, int height, int mw, int mh, int series)
    {
        IRegionSource src;
        if (ImageSources.IsSlide(imagePath))
        {
            using var probe = OpenSlideSource.Open(imagePath, page, direct: false); // its levels only
            src = OpenSlideSource.Open(imagePath, ImageSources.CoarsestAtLeast(probe.Levels.Select(l => (l.Width, l.Height)).ToArray(), page, mw, mh));
        }
        else if (ImageSources.PyramidLevels(imagePath, series) is { Length: > 1 } levels && page < levels.Length)
        {
            // a TIFF or CZI pyramid (reduced levels as SubIFDs, pages or subsampled subblocks): the same choice among its levels
            src = ImageSources.Open(imagePath, ImageSources.CoarsestAtLeast(levels, page, mw, mh), series);
        }
        else src = ImageSources.Open(imagePath, page, series);
        using (src)
        {
            int C = Math.Min(3, src.Channels), SC = src.Channels, W = src.Width, H = src.Height;
            var sum = new double[mw * mh * C]; var cnt = new long[mw * mh];
            var cellOfX = new int[W];
            for (int x = 0; x < W; x++) cellOfX[x] = (int)((long)x * mw / W);
            int band = Math.Max(1, (int)Math.Min(H, (8L << 20) / Math.Max(1, (long)W * SC)));
            var buf = new ushort[(long)band * W * SC];
            for (int y0 = 0; y0 < H; y0 += band)
            {
                int bh = Math.Min(band, H - y0);
                src.ReadRegion(0, y0, W, bh, buf.AsSpan(0, bh * W * SC));
                for (int y = 0; y < bh; y++)
                {
                    int crow = (int)((long)(y0 + y) * mh / H) * mw;
                    for (int x = 0; x < W; x++)
                    {
                        int cell = crow + cellOfX[x], p = (y * W + x) * SC;
                        cnt[cell]++;
                        for (int c = 0; c < C; c++) sum[cell * C + c] += buf[p + c];
                    }
                }
            }
            double scale = src.BitDepth > 8 ? 1.0 / 257 : 1.0; // to 8-bit units
            var mean = new float[mw * mh * C];
            for (int i = 0; i < mw * mh; i++)
                for (int c = 0; c < C; c++) mean[i * C + c] = cnt[i] == 0 ? 255 : (float)(sum[i * C + c] / cnt[i] * scale);
            return (mean, C);
        }
    }

    private static byte[] Brightfield(float[] rgb, int n)
    {
        var sat = new float[n]; var od = new float[n];
        for (int i = 0; i < n; i++)
        {
            float r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
            float mx = Math.Max(r, Math.Max(g, b)), mn = Math.Min(r, Math.Min(g, b));
            sat[i] = mx <= 0 ? 0 : (mx - mn) / mx;
            od[i] = (float)((-Math.Log((r + 1) / 256.0) - Math.Log((g + 1) / 256.0) - Math.Log((b + 1) / 256.0)) / 3);
        }
        double ts = Math.Clamp(Otsu(sat, 0, 1), MinSatThreshold, MaxSatThreshold), to = Math.Clamp(Otsu(od, 0, 3), MinOdThreshold, MaxOdThreshold);
        var cells = new byte[n];
        for (int i = 0; i < n; i++) cells[i] = sat[i] > ts || od[i] > to ? (byte)1 : (byte)0;
        return cells;
    }

    private static byte[] Grey(float[] v, int w, int h)
    {
        int n = w * h;
        double t = Otsu(v, 0, 256);
        // the background is whichever side of the threshold most of the border is on
        long above = 0, border = 0;
        for (int x = 0; x < w; x++) { border += 2; if (v[x] > t) above++; if (v[(h - 1) * w + x] > t) above++; }
        for (int y = 0; y < h; y++) { border += 2; if (v[y * w] > t) above++; if (v[y * w + w - 1] > t) above++; }
        bool tissueAbove = above * 2 < border;
        var cells = new byte[n];
        for (int i = 0; i < n; i++) cells[i] = (v[i] > t) == tissueAbove ? (byte)1 : (byte)0;
        return cells;
    }

    /// <summary>Otsu's threshold of <paramref name="v"/> over a 256-bin histogram of [lo, hi).</summary>
    public static double Otsu(ReadOnlySpan<float> v, double lo, double hi)
    {
        const int B = 256;
        var hist = new long[B];
        double step = (hi - lo) / B;
        foreach (var x in v) hist[Math.Clamp((int)((x - lo) / step), 0, B - 1)]++;
        long total = v.Length;
        double sumAll = 0;
        for (int i = 0; i < B; i++) sumAll += i * (double)hist[i];
        double sumB = 0, best = -1; long wB = 0; int bestI = 0;
        for (int i = 0; i < B; i++)
        {
            wB += hist[i];
            if (wB == 0) continue;
            long wF = total - wB;
            if (wF == 0) break;
            sumB += i * (double)hist[i];
            double mB = sumB / wB, mF = (sumAll - sumB) / wF, between = (double)wB * wF * (mB - mF) * (mB - mF);
            if (between > best) { best = between; bestI = i; }
        }
        return lo + (bestI + 1) * step;
    }

    /// <summary>Morphological closing with a 3x3 square, applied twice (bridges gaps of up to four cells).</summary>
    private static void Close(byte[] cells, int w, int h)
    {
        var tmp = new byte[cells.Length];
        for (int k = 0; k < 2; k++) { Morph(cells, tmp, w, h, dilate: true); Array.Copy(tmp, cells, cells.Length); }
        for (int k = 0; k < 2; k++) { Morph(cells, tmp, w, h, dilate: false); Array.Copy(tmp, cells, cells.Length); }
    }

    private static void Morph(byte[] src, byte[] dst, int w, int h, bool dilate)
    {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                bool any = false, all = true;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                    {
                        int xx = x + dx, yy = y + dy;
                        // outside the image counts as what leaves the border unchanged by erosion
                        bool v = xx < 0 || yy < 0 || xx >= w || yy >= h ? !dilate : src[yy * w + xx] != 0;
                        any |= v; all &= v;
                    }
                dst[y * w + x] = (dilate ? any : all) ? (byte)1 : (byte)0;
            }
    }

    /// <summary>Fills the glass regions that do not touch the border and are smaller than <paramref name="maxHole"/> cells.</summary>
    private static void FillHoles(byte[] cells, int w, int h, int maxHole)
    {
        var seen = new bool[cells.Length];
        var stack = new Stack<int>(); var region = new List<int>();
        for (int s = 0; s < cells.Length; s++)
        {
            if (cells[s] != 0 || seen[s]) continue;
            region.Clear(); stack.Push(s); seen[s] = true;
            bool border = false;
            while (stack.Count > 0)
            {
                int p = stack.Pop(); region.Add(p);
                int x = p % w, y = p / w;
                if (x == 0 || y == 0 || x == w - 1 || y == h - 1) border = true;
                if (x > 0 && cells[p - 1] == 0 && !seen[p - 1]) { seen[p - 1] = true; stack.Push(p - 1); }
                if (x < w - 1 && cells[p + 1] == 0 && !seen[p + 1]) { seen[p + 1] = true; stack.Push(p + 1); }
                if (y > 0 && cells[p - w] == 0 && !seen[p - w]) { seen[p - w] = true; stack.Push(p - w); }
                if (y < h - 1 && cells[p + w] == 0 && !seen[p + w]) { seen[p + w] = true; stack.Push(p + w); }
            }
            if (!border && region.Count < maxHole) foreach (var p in region) cells[p] = 1;
        }
    }
}
