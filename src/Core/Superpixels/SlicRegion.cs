using System.Buffers;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ActorSeg.Core.Superpixels;

/// <summary>
/// SLIC on one read region, seeded from the global grid. Arithmetic is arranged so that a pixel's result
/// depends only on the pixels and seeds around it, never on where the region starts or ends:
/// windows are computed in global coordinates, ties go to the lower global seed id, and centre sums are
/// accumulated in global raster order. A core surrounded by a large enough halo therefore gets exactly
/// the labels that a single whole-image run gives.
/// </summary>
public static class SlicRegion
{
    /// <summary>Seconds spent per phase over all calls in this process (diagnostics for the benchmarks).</summary>
    public static readonly double[] PhaseSeconds = new double[4]; // smooth, seeds, assign, update
    private static void Tick(int phase, ref long t)
    {
        long now = System.Diagnostics.Stopwatch.GetTimestamp();
        lock (PhaseSeconds) PhaseSeconds[phase] += (now - t) / (double)System.Diagnostics.Stopwatch.Frequency;
        t = now;
    }

    /// <summary>
    /// Runs SLIC on <paramref name="raw"/> (the read region, channels interleaved) and writes the global seed id
    /// of each core pixel into <paramref name="coreLabels"/> (core.W × core.H, row-major).
    /// </summary>
    public static void Run(ReadOnlySpan<ushort> raw, int channels, PixelRect read, PixelRect core,
        SeedGrid grid, ImageStatistics stats, SlicParameters p, Span<int> coreLabels, Pipeline.TileScratch? scratch = null,
        Imaging.TissueMap? tissue = null)
    {
        int rw = read.W, rh = read.H, n = rw * rh;
        scratch ??= new Pipeline.TileScratch();
        var planes = scratch.Planes(channels, n);
        float[] tmp = scratch.Tmp(n), work = scratch.Work(n);
        float[] dist = work; // the z-scored plane is only needed until it is smoothed
        int[] label = scratch.Label(n);
        long tick = System.Diagnostics.Stopwatch.GetTimestamp();
        {
            // 1. z-score with global statistics, scale as the published recipe (divide by max z and by compactness), smooth.
            double scale = 1.0 / (stats.MaxZ * p.Compactness);
            var kernel = Gaussian.Kernel(p.Sigma);
            for (int c = 0; c < channels; c++)
            {
                float mu = (float)stats.Mean[c], a = (float)(stats.InvStd(c) * scale);
                for (int i = 0; i < n; i++) work[i] = (raw[i * channels + c] - mu) * a;
                if (p.Sigma > 0) Gaussian.Blur(work.AsSpan(0, n), planes[c].AsSpan(0, n), tmp.AsSpan(0, n), rw, rh, kernel);
                else work.AsSpan(0, n).CopyTo(planes[c]);
            }

            Tick(0, ref tick);
            // 2. the seeds of the global grid that lie in this region
            int i0 = (int)Math.Ceiling(read.X / grid.Sx - 0.5), i1 = (int)Math.Ceiling(read.Right / grid.Sx - 0.5) - 1;
            int j0 = (int)Math.Ceiling(read.Y / grid.Sy - 0.5), j1 = (int)Math.Ceiling(read.Bottom / grid.Sy - 0.5) - 1;
            i0 = Math.Max(i0, 0); j0 = Math.Max(j0, 0); i1 = Math.Min(i1, grid.Nx - 1); j1 = Math.Min(j1, grid.Ny - 1);
            // guard against rounding: keep only seeds whose pixel lies inside the region
            while (i0 <= i1 && (int)grid.SeedX(i0) < read.X) i0++;
            while (i1 >= i0 && (int)grid.SeedX(i1) >= read.Right) i1--;
            while (j0 <= j1 && (int)grid.SeedY(j0) < read.Y) j0++;
            while (j1 >= j0 && (int)grid.SeedY(j1) >= read.Bottom) j1--;
            int nxl = Math.Max(0, i1 - i0 + 1), nyl = Math.Max(0, j1 - j0 + 1), k = nxl * nyl;

            var cx = new double[k]; var cy = new double[k]; var cf = new double[channels * k];
            for (int jj = 0; jj < nyl; jj++)
                for (int ii = 0; ii < nxl; ii++)
                {
                    int s = jj * nxl + ii;
                    cx[s] = grid.SeedX(i0 + ii); cy[s] = grid.SeedY(j0 + jj);
                    int px = (int)cx[s] - read.X, py = (int)cy[s] - read.Y;
                    for (int c = 0; c < channels; c++) cf[s * channels + c] = planes[c][py * rw + px];
                }

            // 3. initial labels: the grid cell of each pixel
            var cellX = new int[rw];
            for (int x = 0; x < rw; x++) { int ci = grid.CellX(read.X + x) - i0; cellX[x] = ci >= 0 && ci < nxl ? ci : -1; }
            for (int y = 0; y < rh; y++)
            {
                int cj = grid.CellY(read.Y + y) - j0;
                var row = label.AsSpan(y * rw, rw);
                if (cj < 0 || cj >= nyl) { row.Fill(-1); continue; }
                for (int x = 0; x < rw; x++) row[x] = cellX[x] < 0 ? -1 : cj * nxl + cellX[x];
            }

            // with a tissue map, glass pixels take no part: never assigned (label -1), never in a centre's sums; the runs
            // of tissue on each row (read-local columns) are all the assignment visits
            int[]? runOff = null; List<int>? runs = null;
            if (tissue is not null)
            {
                runOff = new int[rh + 1]; runs = new List<int>();
                for (int y = 0; y < rh; y++)
                {
                    int before = runs.Count;
                    tissue.RowRuns(read.Y + y, read.X, read.Right, runs);
                    var row = label.AsSpan(y * rw, rw);
                    int prev = 0;
                    for (int r = before; r < runs.Count; r += 2)
                    {
                        runs[r] -= read.X; runs[r + 1] -= read.X;
                        row[prev..runs[r]].Fill(-1);
                        prev = runs[r + 1];
                    }
                    row[prev..].Fill(-1);
                    runOff[y + 1] = runs.Count;
                }
            }

            if (k > 0)
            {
                var cnt = new long[k]; var sx = new double[k]; var sy = new double[k]; var sf = new double[channels * k];
                float invS = (float)(1.0 / grid.S);
                double radius = p.WindowFactor * grid.S;
                var fc = new float[channels];
                Tick(1, ref tick);
                for (int it = 0; it < p.Iterations; it++)
                {
                    dist.AsSpan(0, n).Fill(float.MaxValue);
                    for (int s = 0; s < k; s++)
                    {
                        int gx0 = Math.Max(0, (int)Math.Ceiling(cx[s] - radius)), gx1 = Math.Min(grid.Width - 1, (int)Math.Floor(cx[s] + radius));
                        int gy0 = Math.Max(0, (int)Math.Ceiling(cy[s] - radius)), gy1 = Math.Min(grid.Height - 1, (int)Math.Floor(cy[s] + radius));
                        int x0 = Math.Max(gx0, read.X) - read.X, x1 = Math.Min(gx1, read.Right - 1) - read.X;
                        int y0 = Math.Max(gy0, read.Y) - read.Y, y1 = Math.Min(gy1, read.Bottom - 1) - read.Y;
                        if (x0 > x1 || y0 > y1) continue;
                        for (int c = 0; c < channels; c++) fc[c] = (float)cf[s * channels + c];
                        if (runOff is null)
                            AssignWindow(planes, channels, fc, dist, label, rw, read.X, read.Y, x0, x1, y0, y1, (float)cx[s], (float)cy[s], invS, s);
                        else
                            for (int y = y0; y <= y1; y++)
                                for (int r = runOff[y]; r < runOff[y + 1]; r += 2)
                                {
                                    int a = Math.Max(x0, runs![r]), b = Math.Min(x1, runs[r + 1] - 1);
                                    if (a <= b) AssignWindow(planes, channels, fc, dist, label, rw, read.X, read.Y, a, b, y, y, (float)cx[s], (float)cy[s], invS, s);
                                }
                    }
                    Tick(2, ref tick);
                    if (it == p.Iterations - 1) break; // the last update would not change any label
                    Array.Clear(cnt); Array.Clear(sx); Array.Clear(sy); Array.Clear(sf);
                    // centre sums, run by run in raster order: every centre whose pixels are all correct sees
                    // exactly the same runs, in the same order, as in a whole-image run
                    for (int y = 0; y < rh; y++)
                    {
                        int off = y * rw; double gy = read.Y + y;
                        int x = 0;
                        while (x < rw)
                        {
                            int l = label[off + x], x0 = x;
                            do x++; while (x < rw && label[off + x] == l);
                            if (l < 0) continue;
                            long len = x - x0, gx0 = read.X + x0;
                            cnt[l] += len;
                            sx[l] += len * (2 * gx0 + len - 1) / 2;
                            sy[l] += gy * len;
                            for (int c = 0; c < channels; c++)
                            {
                                var pl = planes[c];
                                double acc = 0;
                                for (int i = off + x0; i < off + x; i++) acc += pl[i];
                                sf[l * channels + c] += acc;
                            }
                        }
                    }
                    for (int s = 0; s < k; s++)
                    {
                        if (cnt[s] == 0) continue;
                        double inv = 1.0 / cnt[s];
                        cx[s] = sx[s] * inv; cy[s] = sy[s] * inv;
                        for (int c = 0; c < channels; c++) cf[s * channels + c] = sf[s * channels + c] * inv;
                    }
                    Tick(3, ref tick);
                }
            }

            // 4. the core's labels as global seed ids
            int ox = core.X - read.X, oy = core.Y - read.Y;
            for (int y = 0; y < core.H; y++)
            {
                var src = label.AsSpan((oy + y) * rw + ox, core.W);
                var dst = coreLabels.Slice(y * core.W, core.W);
                int cj = grid.CellY(core.Y + y);
                for (int x = 0; x < core.W; x++)
                {
                    int l = src[x];
                    dst[x] = l >= 0 ? (j0 + l / nxl) * grid.Nx + (i0 + l % nxl)
                                    : cj * grid.Nx + grid.CellX(core.X + x); // unreachable with a halo >= spacing
                }
            }
        }
    }

    // Deliberately no fused multiply-add: plain IEEE multiplies and adds give the same bits on every CPU (with or
    // without FMA, any vector width), so tiles processed on different machines of a cluster still agree exactly.
    private static void AssignWindow(float[][] planes, int channels, float[] fc, float[] dist, int[] label, int rw,
        int readX, int readY, int x0, int x1, int y0, int y1, float cxf, float cyf, float invS, int s)
    {
        if (Vector512.IsHardwareAccelerated && x1 - x0 + 1 >= Vector512<float>.Count)
        {
            AssignWindow512(planes, channels, fc, dist, label, rw, readX, readY, x0, x1, y0, y1, cxf, cyf, invS, s);
            return;
        }
        int vw = Vector<float>.Count;
        var lane = LaneOffsets;
        var vcx = new Vector<float>(cxf); var vinv = new Vector<float>(invS); var vs = new Vector<int>(s);
        for (int y = y0; y <= y1; y++)
        {
            float dy = ((float)(readY + y) - cyf) * invS;
            float dy2 = dy * dy;
            var vdy2 = new Vector<float>(dy2);
            int row = y * rw;
            int x = x0;
            for (; x + vw - 1 <= x1; x += vw)
            {
                int p = row + x;
                var vx = new Vector<float>((float)(readX + x)) + lane;
                var dx = (vx - vcx) * vinv;
                var d = dx * dx + vdy2;
                for (int c = 0; c < channels; c++)
                {
                    var t = new Vector<float>(planes[c], p) - new Vector<float>(fc[c]);
                    d += t * t;
                }
                var old = new Vector<float>(dist, p);
                var m = Vector.LessThan(d, old);
                if (m == Vector<int>.Zero) continue;
                Vector.ConditionalSelect(m, d, old).CopyTo(dist, p);
                Vector.ConditionalSelect(m, vs, new Vector<int>(label, p)).CopyTo(label, p);
            }
            AssignTail(planes, channels, fc, dist, label, row, readX, x, x1, dy2, cxf, invS, s);
        }
    }

    /// <summary>The same arithmetic as <see cref="AssignWindow"/>, lane for lane, 16 pixels at a time (AVX-512).</summary>
    private static void AssignWindow512(float[][] planes, int channels, float[] fc, float[] dist, int[] label, int rw,
        int readX, int readY, int x0, int x1, int y0, int y1, float cxf, float cyf, float invS, int s)
    {
        const int vw = 16;
        var lane = Vector512.Create(0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f, 9f, 10f, 11f, 12f, 13f, 14f, 15f);
        var vcx = Vector512.Create(cxf); var vinv = Vector512.Create(invS); var vs = Vector512.Create(s);
        ref float distRef = ref MemoryMarshal.GetArrayDataReference(dist);
        ref int labelRef = ref MemoryMarshal.GetArrayDataReference(label);
        Span<Vector512<float>> centre = stackalloc Vector512<float>[channels];
        for (int c = 0; c < channels; c++) centre[c] = Vector512.Create(fc[c]);
        for (int y = y0; y <= y1; y++)
        {
            float dy = ((float)(readY + y) - cyf) * invS;
            float dy2 = dy * dy;
            var vdy2 = Vector512.Create(dy2);
            int row = y * rw;
            int x = x0;
            for (; x + vw - 1 <= x1; x += vw)
            {
                nuint p = (nuint)(row + x);
                var vx = Vector512.Create((float)(readX + x)) + lane;
                var dx = (vx - vcx) * vinv;
                var d = dx * dx + vdy2;
                for (int c = 0; c < channels; c++)
                {
                    var t = Vector512.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[c]), p) - centre[c];
                    d += t * t;
                }
                var old = Vector512.LoadUnsafe(ref distRef, p);
                var m = Vector512.LessThan(d, old);
                if (m == Vector512<float>.Zero) continue;
                Vector512.ConditionalSelect(m, d, old).StoreUnsafe(ref distRef, p);
                Vector512.ConditionalSelect(m.AsInt32(), vs, Vector512.LoadUnsafe(ref labelRef, p)).StoreUnsafe(ref labelRef, p);
            }
            AssignTail(planes, channels, fc, dist, label, row, readX, x, x1, dy2, cxf, invS, s);
        }
    }

    /// <summary>The pixels [x, x1] of a row that a vector does not fill, one by one (the same arithmetic as a lane).</summary>
    private static void AssignTail(float[][] planes, int channels, float[] fc, float[] dist, int[] label, int row, int readX, int x, int x1,
        float dy2, float cxf, float invS, int s)
    {
        for (; x <= x1; x++)
        {
            int p = row + x;
            float dx = ((float)(readX + x) - cxf) * invS;
            float d = dx * dx + dy2;
            for (int c = 0; c < channels; c++) { float t = planes[c][p] - fc[c]; d += t * t; }
            if (d < dist[p]) { dist[p] = d; label[p] = s; }
        }
    }

    private static readonly Vector<float> LaneOffsets = CreateLanes();
    private static Vector<float> CreateLanes()
    {
        var a = new float[Vector<float>.Count];
        for (int i = 0; i < a.Length; i++) a[i] = i;
        return new Vector<float>(a);
    }
}
