using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
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
    public static readonly double[] PhaseSeconds = new double[4]; // smooth, seeds, assignment with the centre sums, new centres
    private static void Tick(int phase, ref long t)
    {
        long now = ProcessStats.PhaseClock();
        lock (PhaseSeconds) PhaseSeconds[phase] += (now - t) / (double)System.Diagnostics.Stopwatch.Frequency;
        t = now;
    }

    /// <summary>
    /// Runs SLIC on <paramref name="raw"/> (the read region, channels interleaved) and writes the global seed id
    /// of each core pixel into <paramref name="coreLabels"/> (core.W × core.H, row-major). <paramref name="coreLabels"/> may
    /// be the front of the scratch's label buffer (<see cref="Pipeline.TileScratch.Seeds"/>): the core's labels are then
    /// compacted in place, row by row in increasing order, each read before anything is written over it.
    /// </summary>
    /// <param name="ct">checked before every iteration: a tile given up on (its worker abandoned it) stops within one</param>
    public static void Run(ReadOnlySpan<ushort> raw, int channels, PixelRect read, PixelRect core,
        SeedGrid grid, ImageStatistics stats, SlicParameters p, Span<int> coreLabels, Pipeline.TileScratch? scratch = null,
        Imaging.TissueMap? tissue = null, CancellationToken ct = default)
    {
        int rw = read.W, rh = read.H, n = rw * rh;
        scratch ??= new Pipeline.TileScratch();
        var planes = scratch.Planes(channels, n);
        int[] label = scratch.Label(n);
        if (coreLabels.Overlaps(label.AsSpan(0, n)) && !Unsafe.AreSame(ref MemoryMarshal.GetReference(coreLabels), ref label[0]))
            throw new ArgumentException("the core labels overlap the label buffer other than at its start", nameof(coreLabels));
        long tick = ProcessStats.PhaseClock();
        {
            // 1. z-score with global statistics, scale as the published recipe (divide by max z and by compactness), smooth.
            double scale = 1.0 / (stats.MaxZ * p.Compactness);
            var kernel = Gaussian.Kernel(p.Sigma);
            for (int c = 0; c < channels; c++)
            {
                float mu = (float)stats.Mean[c], a = (float)(stats.InvStd(c) * scale);
                if (p.Sigma > 0) Gaussian.BlurZScored(raw, channels, c, mu, a, planes[c].AsSpan(0, n), rw, rh, kernel);
                else for (int i = 0; i < n; i++) planes[c][i] = (raw[i * channels + c] - mu) * a;
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
                var sums = new CentreSums(k, channels);
                float invS = (float)(1.0 / grid.S);
                double radius = p.WindowFactor * grid.S;
                Tick(1, ref tick);
                var win = new Windows(k);
                // What the core's last labels depend on shrinks iteration by iteration: a pixel's label on the last
                // iteration depends only on centres within the window radius R of it, each centre on the labels of its
                // previous window (within 2R of it), so the labels of iteration it matter only within
                // 3R × (iterations − 1 − it) of the core (plus 2 px a step for rounding). The assignment and the sums
                // run on that part alone once it is smaller than the region: the same core labels, bit for bit (no label
                // outside it, stale or fresh, reaches a centre that matters: a centre's pixels lie inside its window).
                int step = 3 * (int)Math.Ceiling(radius) + 2;
                var coreLocal = new PixelRect(core.X - read.X, core.Y - read.Y, core.W, core.H);
                for (int it = 0; it < p.Iterations; it++)
                {
                    ct.ThrowIfCancellationRequested();
                    win.Compute(cx, cy, radius, grid, read);
                    // the last update would not change any label; the others are summed as the assignment finishes rows
                    bool update = it < p.Iterations - 1;
                    if (update) sums.Clear();
                    long margin = (long)step * (p.Iterations - 1 - it);
                    int m = (int)Math.Min(margin, Math.Max(rw, rh));
                    int lx0 = Math.Max(0, coreLocal.X - m), ly0 = Math.Max(0, coreLocal.Y - m);
                    var live = new PixelRect(lx0, ly0, Math.Min(rw, coreLocal.Right + m) - lx0, Math.Min(rh, coreLocal.Bottom + m) - ly0);
                    AssignRows(planes, channels, cx, cy, cf, scratch, label, read, invS, win, runOff, runs, update ? sums : null, live);
                    Tick(2, ref tick);
                    if (!update) break;
                    double[] acc = sums.Acc; int st = sums.Stride;
                    for (int s = 0; s < k; s++)
                    {
                        double count = acc[s * st];
                        if (count == 0) continue;
                        double inv = 1.0 / count;
                        cx[s] = acc[s * st + 1] * inv; cy[s] = acc[s * st + 2] * inv;
                        for (int c = 0; c < channels; c++) cf[s * channels + c] = acc[s * st + 3 + c] * inv;
                    }
                    Tick(3, ref tick);
                }
            }

            // 4. the core's labels as global seed ids (a table of the region's k seeds: no division per pixel)
            var globalId = new int[k];
            for (int s = 0; s < k; s++) globalId[s] = (j0 + s / nxl) * grid.Nx + (i0 + s % nxl);
            int ox = core.X - read.X, oy = core.Y - read.Y;
            for (int y = 0; y < core.H; y++)
            {
                var src = label.AsSpan((oy + y) * rw + ox, core.W);
                var dst = coreLabels.Slice(y * core.W, core.W);
                int cj = grid.CellY(core.Y + y);
                for (int x = 0; x < core.W; x++)
                {
                    int l = src[x];
                    dst[x] = l >= 0 ? globalId[l]
                                    : cj * grid.Nx + grid.CellX(core.X + x); // unreachable with a halo >= spacing
                }
            }
        }
    }

    /// <summary>
    /// The centre sums of one SLIC iteration: pixel counts, coordinate sums and value sums per centre, added run by run
    /// in raster order as the assignment finishes each row (while the row's labels and values are still in cache). Every
    /// centre whose pixels are all correct sees exactly the same runs, in the same order, as in a whole-image run; a
    /// run's values are summed by <see cref="RunSum"/>, whose result depends on the run's values alone.
    /// </summary>
    internal sealed class CentreSums(int k, int channels)
    {
        /// <summary>Per centre, side by side (one cache line a run touches, not four arrays): the pixel count, the sums
        /// of x and of y (whole numbers, exact in a double), then the value sums of each channel.</summary>
        public readonly double[] Acc = new double[k * (3 + channels)];
        public int Stride => 3 + channels;

        public void Clear() => Array.Clear(Acc);

        /// <summary>Adds row <paramref name="y"/> of the region (its labels final for this iteration), all of it or its
        /// columns [<paramref name="xFrom"/>, <paramref name="xTo"/>) (read-local).</summary>
        public void AddRow(int[] label, float[][] planes, int y, PixelRect read, int xFrom = 0, int xTo = int.MaxValue)
        {
            int rw = read.W, off = y * rw, st = 3 + channels; double gy = read.Y + y;
            int end = Math.Min(rw, xTo);
            double[] acc = Acc;
            int x = xFrom;
            while (x < end)
            {
                int l = label[off + x], x0 = x;
                x = RunEnd(label, off, x, end, l);
                if (l < 0) continue;
                long len = x - x0, gx0 = read.X + x0;
                ref double a = ref acc[l * st];
                a += len;
                Unsafe.Add(ref a, 1) += len * (2 * gx0 + len - 1) / 2;
                Unsafe.Add(ref a, 2) += gy * len;
                if (channels == 1) Unsafe.Add(ref a, 3) += RunSum(planes[0], off + x0, (int)len);
                else if (channels == 3)
                {
                    // colour: the three planes' sums in one pass (the same sums, bit for bit)
                    RunSum3(planes[0], planes[1], planes[2], off + x0, (int)len, out double s0, out double s1, out double s2);
                    Unsafe.Add(ref a, 3) += s0; Unsafe.Add(ref a, 4) += s1; Unsafe.Add(ref a, 5) += s2;
                }
                else for (int c = 0; c < channels; c++) Unsafe.Add(ref a, 3 + c) += RunSum(planes[c], off + x0, (int)len);
            }
        }
    }

    /// <summary>The first column after x (of the row starting at <paramref name="off"/>) whose label is not <paramref name="l"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int RunEnd(int[] label, int off, int x, int rw, int l)
    {
        x++;
        if (Vector512.IsHardwareAccelerated)
        {
            var vl = Vector512.Create(l);
            ref int r = ref MemoryMarshal.GetArrayDataReference(label);
            while (x + 16 <= rw)
            {
                ulong same = Vector512.Equals(Vector512.LoadUnsafe(ref r, (nuint)(off + x)), vl).ExtractMostSignificantBits();
                if (same != 0xFFFF) return x + BitOperations.TrailingZeroCount(~same);
                x += 16;
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vl = Vector256.Create(l);
            ref int r = ref MemoryMarshal.GetArrayDataReference(label);
            while (x + 8 <= rw)
            {
                uint same = Vector256.Equals(Vector256.LoadUnsafe(ref r, (nuint)(off + x)), vl).ExtractMostSignificantBits();
                if (same != 0xFF) return x + BitOperations.TrailingZeroCount(~same);
                x += 8;
            }
        }
        while (x < rw && label[off + x] == l) x++;
        return x;
    }

    /// <summary>
    /// The sum of <paramref name="len"/> values from <paramref name="start"/>, in one fixed order whatever the CPU: sixteen
    /// double lanes, lane k taking the values at offsets k, k + 16, …; then lane k + 8 added to lane k, k + 4 to k, k + 2
    /// to k, and lane 1 to lane 0. The AVX-512, AVX2 and scalar paths perform the same additions, so the result depends
    /// on the values alone (not on where the run lies in memory or which machine sums it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double RunSum(float[] plane, int start, int len)
    {
        int rest = len & 15;
        // the common case inline in the update loop (a call per run cost as much as a short run's sum); the rest apart
        if (Vector512.IsHardwareAccelerated && (rest == 0 || start + len - rest + 16 <= plane.Length))
        {
            ref float r = ref MemoryMarshal.GetArrayDataReference(plane);
            int i = 0;
            // the last, partial vector: loaded whole (inside the array), the lanes past the run set to zero
            Vector512<double> a0 = default, a1 = default;
            for (; i + 16 <= len; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref r, (nuint)(start + i));
                a0 += Vector512.WidenLower(v); a1 += Vector512.WidenUpper(v);
            }
            if (rest != 0)
            {
                var keep = TailMask(rest);
                var v = Vector512.LoadUnsafe(ref r, (nuint)(start + i)) & keep;
                a0 += Vector512.WidenLower(v); a1 += Vector512.WidenUpper(v);
            }
            return Fold(a0 + a1);
        }
        return RunSumTail(plane, start, len);
    }

    /// <summary>
    /// <see cref="RunSum"/> of the same run in three planes of equal length (colour images), with one loop and one lane
    /// mask for the three and their folds interleaved; each sum is the one <see cref="RunSum"/> gives, bit for bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void RunSum3(float[] p0, float[] p1, float[] p2, int start, int len, out double s0, out double s1, out double s2)
    {
        int rest = len & 15;
        if (Vector512.IsHardwareAccelerated && (rest == 0 || start + len - rest + 16 <= p0.Length) && p1.Length == p0.Length && p2.Length == p0.Length)
        {
            ref float r0 = ref MemoryMarshal.GetArrayDataReference(p0);
            ref float r1 = ref MemoryMarshal.GetArrayDataReference(p1);
            ref float r2 = ref MemoryMarshal.GetArrayDataReference(p2);
            int i = 0;
            Vector512<double> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default;
            for (; i + 16 <= len; i += 16)
            {
                nuint at = (nuint)(start + i);
                var u = Vector512.LoadUnsafe(ref r0, at); var v = Vector512.LoadUnsafe(ref r1, at); var w = Vector512.LoadUnsafe(ref r2, at);
                a0 += Vector512.WidenLower(u); a1 += Vector512.WidenUpper(u);
                b0 += Vector512.WidenLower(v); b1 += Vector512.WidenUpper(v);
                c0 += Vector512.WidenLower(w); c1 += Vector512.WidenUpper(w);
            }
            if (rest != 0)
            {
                var keep = TailMask(rest);
                nuint at = (nuint)(start + i);
                var u = Vector512.LoadUnsafe(ref r0, at) & keep; var v = Vector512.LoadUnsafe(ref r1, at) & keep; var w = Vector512.LoadUnsafe(ref r2, at) & keep;
                a0 += Vector512.WidenLower(u); a1 += Vector512.WidenUpper(u);
                b0 += Vector512.WidenLower(v); b1 += Vector512.WidenUpper(v);
                c0 += Vector512.WidenLower(w); c1 += Vector512.WidenUpper(w);
            }
            s0 = Fold(a0 + a1); s1 = Fold(b0 + b1); s2 = Fold(c0 + c1);
            return;
        }
        s0 = RunSum(p0, start, len); s1 = RunSum(p1, start, len); s2 = RunSum(p2, start, len);
    }

    /// <summary>The first <paramref name="rest"/> of 16 float lanes kept, the others zeroed (for a run's partial last vector).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> TailMask(int rest) =>
        Vector512.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(FirstLanes), (nuint)(16 - rest)).AsSingle();

    /// <summary>The 16 lanes (as two halves already added: lane k + 8 to lane k) folded: lane k + 4 added to lane k, then
    /// k + 2 to k, then lane 1 to lane 0, the order <see cref="RunSum"/> documents.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double Fold(Vector512<double> s8)
    {
        var s4 = s8.GetLower() + s8.GetUpper();
        var s2 = s4.GetLower() + s4.GetUpper();
        return s2.GetElement(0) + s2.GetElement(1);
    }

    /// <summary><see cref="RunSum"/> where the last vector would reach past the array, or without AVX-512.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double RunSumTail(float[] plane, int start, int len)
    {
        ref float r = ref MemoryMarshal.GetArrayDataReference(plane);
        int i = 0, rest = len & 15;
        Span<float> tail = stackalloc float[16];
        if (rest != 0) { tail.Clear(); plane.AsSpan(start + len - rest, rest).CopyTo(tail); }
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<double> a0 = default, a1 = default;
            for (; i + 16 <= len; i += 16)
            {
                var v = Vector512.LoadUnsafe(ref r, (nuint)(start + i));
                a0 += Vector512.WidenLower(v); a1 += Vector512.WidenUpper(v);
            }
            if (rest != 0)
            {
                var v = Vector512.Create<float>(tail);
                a0 += Vector512.WidenLower(v); a1 += Vector512.WidenUpper(v);
            }
            return Fold(a0 + a1);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default; // lanes 0-3, 4-7, 8-11, 12-15
            for (; i + 16 <= len; i += 16)
            {
                var v = Vector256.LoadUnsafe(ref r, (nuint)(start + i));
                var w = Vector256.LoadUnsafe(ref r, (nuint)(start + i + 8));
                a0 += Vector256.WidenLower(v); a1 += Vector256.WidenUpper(v); a2 += Vector256.WidenLower(w); a3 += Vector256.WidenUpper(w);
            }
            if (rest != 0)
            {
                var v = Vector256.Create<float>(tail); var w = Vector256.Create<float>(tail[8..]);
                a0 += Vector256.WidenLower(v); a1 += Vector256.WidenUpper(v); a2 += Vector256.WidenLower(w); a3 += Vector256.WidenUpper(w);
            }
            var s4 = (a0 + a2) + (a1 + a3);
            var s2 = s4.GetLower() + s4.GetUpper();
            return s2.GetElement(0) + s2.GetElement(1);
        }
        Span<double> lane = stackalloc double[16];
        lane.Clear();
        for (; i + 16 <= len; i += 16)
            for (int k = 0; k < 16; k++) lane[k] += plane[start + i + k];
        if (rest != 0) for (int k = 0; k < 16; k++) lane[k] += tail[k];
        for (int w = 8; w >= 1; w >>= 1)
            for (int k = 0; k < w; k++) lane[k] += lane[k + w];
        return lane[0];
    }

    /// <summary>
    /// Each centre's search window in read-local coordinates for one iteration, and the centres ordered by the first
    /// row of their window (ascending seed index among equals), so that the assignment can sweep the region row by row.
    /// </summary>
    private sealed class Windows(int k)
    {
        public readonly int[] X0 = new int[k], X1 = new int[k], Y0 = new int[k], Y1 = new int[k];
        /// <summary>The centres with a non-empty window, by (Y0, index).</summary>
        public readonly int[] ByFirstRow = new int[k];
        public int Count;
        private int[] _rowCount = [];

        public void Compute(double[] cx, double[] cy, double radius, SeedGrid grid, PixelRect read)
        {
            int rh = read.H;
            if (_rowCount.Length < rh + 1) _rowCount = new int[rh + 1];
            Array.Clear(_rowCount, 0, rh + 1);
            for (int s = 0; s < k; s++)
            {
                // the window in global coordinates (as a whole-image run computes it), then clipped to the region
                int gx0 = Math.Max(0, (int)Math.Ceiling(cx[s] - radius)), gx1 = Math.Min(grid.Width - 1, (int)Math.Floor(cx[s] + radius));
                int gy0 = Math.Max(0, (int)Math.Ceiling(cy[s] - radius)), gy1 = Math.Min(grid.Height - 1, (int)Math.Floor(cy[s] + radius));
                int x0 = Math.Max(gx0, read.X) - read.X, x1 = Math.Min(gx1, read.Right - 1) - read.X;
                int y0 = Math.Max(gy0, read.Y) - read.Y, y1 = Math.Min(gy1, read.Bottom - 1) - read.Y;
                if (x0 > x1 || y0 > y1) { Y0[s] = -1; continue; }
                X0[s] = x0; X1[s] = x1; Y0[s] = y0; Y1[s] = y1;
                _rowCount[y0 + 1]++;
            }
            for (int y = 0; y < rh; y++) _rowCount[y + 1] += _rowCount[y];
            Count = _rowCount[rh];
            for (int s = 0; s < k; s++) // a counting sort, stable: ascending index within a row
                if (Y0[s] >= 0) ByFirstRow[_rowCount[Y0[s]]++] = s;
        }
    }

    /// <summary>
    /// One assignment step over the whole region, row by row. Each row is cut into blocks of one vector (the last block
    /// overlapping the one before it where the row is not a whole number of vectors); a block starts with no candidate
    /// (distance +max), then every centre whose window covers some of its pixels, in ascending seed index, offers
    /// d = dx² + dy² + Σ (value − centre value)² to the pixels of its window, taken where strictly smaller. The minimum
    /// stays in registers and only the labels are written. Every pixel therefore sees exactly the centres whose windows
    /// hold it, in ascending index, with the same float operations as a centre-by-centre pass over windows: the same
    /// labels. Pixels no window holds keep their label; glass (outside <paramref name="runs"/>) stays -1. The blocks'
    /// candidate lists are built once per band of <see cref="Band"/> rows, from the centres whose window meets the band;
    /// on a row its window does not hold, a centre's distance is +∞ (its dy² is), so it never wins there.
    /// </summary>
    private static void AssignRows(float[][] planes, int channels, double[] cx, double[] cy, double[] cf, Pipeline.TileScratch scratch, int[] label,
        PixelRect read, float invS, Windows win, int[]? runOff, List<int>? runs, CentreSums? sums, PixelRect live)
    {
        int rw = read.W, rh = read.H, k = cx.Length;
        int W = Vector512.IsHardwareAccelerated ? Vector512<float>.Count : Vector256.IsHardwareAccelerated ? Vector256<float>.Count : 0;
        if (W == 0 || rw < W)
        {
            // centre by centre: a row's labels are final only once every centre has been offered, so the sums follow
            AssignRowsScalar(planes, channels, cx, cy, cf, scratch.Dist(rw * rh), label, read, invS, win, runOff, runs);
            if (sums is not null) for (int y = 0; y < rh; y++) sums.AddRow(label, planes, y, read);
            return;
        }
        int nb = (rw + W - 1) / W;
        // the live part (read-local): its rows from the start of their band, the blocks that hold its columns
        var (bFirst, bLast) = Blocks(live.X, live.Right - 1, rw, W, nb);
        int bStop = bLast + 1, yFirst = live.Y - live.Y % Band;
        var pool = ArrayPool<int>.Shared;
        int[] active = pool.Rent(Math.Max(1, win.Count)), merged = pool.Rent(Math.Max(1, win.Count));
        int[] start = pool.Rent(nb + 1);
        var cpool = ArrayPool<Cand>.Shared;
        Cand[] cand = cpool.Rent(16);
        float[] dx2 = ArrayPool<float>.Shared.Rent(16 * W); // per candidate of the band: its dx² over the block's lanes
        var fpool = ArrayPool<float>.Shared;
        float[] cxF = fpool.Rent(k), fcF = fpool.Rent(Math.Max(1, k * channels)), dy2 = fpool.Rent(Quad * Math.Max(1, win.Count));
        float[] cyA = fpool.Rent(Math.Max(1, win.Count)); int[] y0A = pool.Rent(Math.Max(1, win.Count)), y1A = pool.Rent(Math.Max(1, win.Count));
        try
        {
            for (int s = 0; s < k; s++) cxF[s] = (float)cx[s];
            for (int i = 0; i < k * channels; i++) fcF[i] = (float)cf[i];
            int na = 0, next = 0;
            for (int y = yFirst, rows; y < live.Bottom; y += rows)
            {
                // one or three channels with 16 lanes: four rows of a band at a time (each candidate's values loaded once for them)
                rows = (channels == 1 || channels == 3) && W == 16 && Math.Min(rh, y - y % Band + Band) - y >= Quad ? Quad : 1;
                if (y % Band == 0)
                {
                    // the band's centres: every centre whose window meets one of its rows, in ascending index; those
                    // whose window ended above it leave, those whose window starts in it come in
                    int yEnd = Math.Min(rh, y + Band) - 1, m = 0;
                    for (int i = 0; i < na; i++) if (win.Y1[active[i]] >= y) active[m++] = active[i];
                    int bEnd = next;
                    while (bEnd < win.Count && win.Y0[win.ByFirstRow[bEnd]] <= yEnd) bEnd++;
                    if (bEnd > next)
                    {
                        Array.Sort(win.ByFirstRow, next, bEnd - next); // ascending index
                        int a = 0, b = next, o = 0;
                        while (a < m || b < bEnd)
                            merged[o++] = b >= bEnd || (a < m && active[a] < win.ByFirstRow[b]) ? active[a++] : win.ByFirstRow[b++];
                        (active, merged) = (merged, active);
                        m = o; next = bEnd;
                    }
                    na = m;
                    // the band's centres' rows and window limits side by side, for the dy² of each of its rows below
                    for (int i = 0; i < na; i++) { int s = active[i]; cyA[i] = (float)cy[s]; y0A[i] = win.Y0[s]; y1A[i] = win.Y1[s]; }
                    // which centres each block meets, and the lanes of the block their window holds
                    Array.Clear(start, 0, nb + 1);
                    for (int i = 0; i < na; i++)
                    {
                        var (b0, b1) = Blocks(win.X0[active[i]], win.X1[active[i]], rw, W, nb);
                        for (int b = b0; b <= b1; b++) start[b + 1]++;
                    }
                    for (int b = 0; b < nb; b++) start[b + 1] += start[b];
                    int total = start[nb];
                    if (cand.Length < total) { cpool.Return(cand); cand = cpool.Rent(total); }
                    if (dx2.Length < total * W) { ArrayPool<float>.Shared.Return(dx2); dx2 = ArrayPool<float>.Shared.Rent(total * W); }
                    for (int i = 0; i < na; i++)
                    {
                        int s = active[i], x0 = win.X0[s], x1 = win.X1[s];
                        var (b0, b1) = Blocks(x0, x1, rw, W, nb);
                        for (int b = b0; b <= b1; b++)
                        {
                            int bs = Math.Min(b * W, rw - W), at = start[b]++;
                            int lo = Math.Max(x0 - bs, 0), hi = Math.Min(x1 - bs, W - 1);
                            cand[at] = new Cand { Fc0 = fcF[s * channels], S = s, I = i };
                            if (W == 16) Dx2Block512(dx2, at, read.X + bs, cxF[s], invS, lo, hi);
                            else Dx2Block256(dx2, at, read.X + bs, cxF[s], invS, lo, hi);
                        }
                    }
                    for (int b = nb; b > 0; b--) start[b] = start[b - 1];
                    start[0] = 0;
                }
                // a centre of the band whose window does not hold a row offers +∞ there: never taken, the others unchanged
                for (int r = 0; r < rows; r++)
                {
                    float gy = read.Y + y + r;
                    int yy = y + r, i = 0;
                    var drow = dy2.AsSpan(r * na, na);
                    if (Vector256.IsHardwareAccelerated)
                    {
                        var vgy = Vector256.Create(gy); var vs = Vector256.Create(invS); var vyy = Vector256.Create(yy); var inf = Vector256.Create(float.PositiveInfinity);
                        for (; i + 8 <= na; i += 8)
                        {
                            var dy = (vgy - Vector256.Create(cyA.AsSpan(i, 8))) * vs;
                            var holds = Vector256.LessThanOrEqual(Vector256.Create(y0A.AsSpan(i, 8)), vyy) & Vector256.LessThanOrEqual(vyy, Vector256.Create(y1A.AsSpan(i, 8)));
                            Vector256.ConditionalSelect(holds.AsSingle(), dy * dy, inf).CopyTo(drow.Slice(i, 8));
                        }
                    }
                    for (; i < na; i++)
                    {
                        float dy = (gy - cyA[i]) * invS;
                        drow[i] = y0A[i] <= yy && yy <= y1A[i] ? dy * dy : float.PositiveInfinity;
                    }
                }
                int row = y * rw;
                if (rows == Quad && channels == 1) AssignBlocks512Quad(planes[0], fcF, dy2, na, start, cand, dx2, label, row, rw, bFirst, bStop);
                else if (rows == Quad) AssignBlocks512Quad3(planes, fcF, dy2, na, start, cand, dx2, label, row, rw, bFirst, bStop);
                else if (W == 16) AssignBlocks512(planes, channels, fcF, dy2, start, cand, dx2, label, row, rw, bFirst, bStop);
                else AssignBlocks256(planes, channels, fcF, dy2, start, cand, dx2, label, row, rw, bFirst, bStop);
                if (runOff is not null)
                    for (int r = 0; r < rows; r++) GlassRow(label.AsSpan(row + r * rw, rw), runs!, runOff[y + r], runOff[y + r + 1]);
                if (sums is not null) for (int r = 0; r < rows; r++) sums.AddRow(label, planes, y + r, read, live.X, live.Right);
            }
        }
        finally
        {
            pool.Return(active); pool.Return(merged); pool.Return(start); cpool.Return(cand); ArrayPool<float>.Shared.Return(dx2);
            fpool.Return(cxF); fpool.Return(fcF); fpool.Return(dy2); fpool.Return(cyA); pool.Return(y0A); pool.Return(y1A);
        }
    }

    /// <summary>Rows that share one candidate list per block (a centre's window holds about 2S rows, so a band of 8 adds
    /// few candidates that do not hold a row, and the lists are rebuilt an eighth as often as row by row).</summary>
    private const int Band = 8;

    /// <summary>Rows assigned together (one channel, 16 lanes): a band's rows share its candidate lists.</summary>
    private const int Quad = 4;

    /// <summary>One centre as a block meets it: its first value, its index, and its place in the active list (for dy²).
    /// Its dx² over the block's lanes is kept beside it (<see cref="Dx2Block512"/>).</summary>
    private struct Cand { public float Fc0; public int S, I; }

    /// <summary>
    /// The dx² a centre offers the W lanes of one block, for every row of a band (it does not depend on the row): the same
    /// float operations the row loop performed before, ((x − cx)·(1/S))², so the same bits; and +∞ on the lanes its
    /// window does not hold, where a distance was set to float.MaxValue before. Either way such a lane is never taken
    /// (a lane is taken only where the distance is strictly below the best so far, which starts at float.MaxValue) and
    /// the best is unchanged (min with a larger value): the same labels, without a mask in the row loop.
    /// </summary>
    private static void Dx2Block512(float[] dx2, int at, int blockX, float cx, float invS, int lo, int hi)
    {
        var lane = Vector512.Create(0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f, 9f, 10f, 11f, 12f, 13f, 14f, 15f);
        var vx = Vector512.Create((float)blockX) + lane;
        var dx = (vx - Vector512.Create(cx)) * Vector512.Create(invS);
        var d = dx * dx;
        if (lo != 0 || hi != 15)
        {
            var laneI = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            var inside = Vector512.GreaterThanOrEqual(laneI, Vector512.Create(lo)) & Vector512.LessThanOrEqual(laneI, Vector512.Create(hi));
            d = Vector512.ConditionalSelect(inside.AsSingle(), d, Vector512.Create(float.PositiveInfinity));
        }
        d.StoreUnsafe(ref MemoryMarshal.GetArrayDataReference(dx2), (nuint)(at * 16));
    }

    /// <summary><see cref="Dx2Block512"/> for 8 lanes (AVX2).</summary>
    private static void Dx2Block256(float[] dx2, int at, int blockX, float cx, float invS, int lo, int hi)
    {
        var lane = Vector256.Create(0f, 1f, 2f, 3f, 4f, 5f, 6f, 7f);
        var vx = Vector256.Create((float)blockX) + lane;
        var dx = (vx - Vector256.Create(cx)) * Vector256.Create(invS);
        var d = dx * dx;
        if (lo != 0 || hi != 7)
        {
            var laneI = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
            var inside = Vector256.GreaterThanOrEqual(laneI, Vector256.Create(lo)) & Vector256.LessThanOrEqual(laneI, Vector256.Create(hi));
            d = Vector256.ConditionalSelect(inside.AsSingle(), d, Vector256.Create(float.PositiveInfinity));
        }
        d.StoreUnsafe(ref MemoryMarshal.GetArrayDataReference(dx2), (nuint)(at * 8));
    }

    /// <summary>The blocks [b0, b1] of a row that meet the columns [x0, x1] (the last block starts at rw − W).</summary>
    private static (int, int) Blocks(int x0, int x1, int rw, int W, int nb)
    {
        int b0 = Math.Min(x0 / W, nb - 1);
        int b1 = x1 >= rw - W ? nb - 1 : x1 / W;
        return (b0, b1);
    }

    /// <summary>Glass keeps no label: -1 outside the row's tissue runs [runs[r], runs[r+1]).</summary>
    private static void GlassRow(Span<int> row, List<int> runs, int r0, int r1)
    {
        int prev = 0;
        for (int r = r0; r < r1; r += 2) { row[prev..runs[r]].Fill(-1); prev = runs[r + 1]; }
        row[prev..].Fill(-1);
    }

    // Deliberately no fused multiply-add: plain IEEE multiplies and adds give the same bits on every CPU (with or
    // without FMA, any vector width, the scalar path), so tiles processed on different machines of a cluster agree exactly.
    private static void AssignBlocks512(float[][] planes, int channels, float[] fcF, float[] dy2, int[] start,
        Cand[] cand, float[] dx2, int[] label, int row, int rw, int bFirst, int nb)
    {
        const int W = 16;
        var max = Vector512.Create(float.MaxValue);
        ref int labelRef = ref MemoryMarshal.GetArrayDataReference(label);
        ref Cand cr = ref MemoryMarshal.GetArrayDataReference(cand);
        ref float dr = ref MemoryMarshal.GetArrayDataReference(dy2);
        ref float xr = ref MemoryMarshal.GetArrayDataReference(dx2);
        ref float p0 = ref MemoryMarshal.GetArrayDataReference(planes[0]);
        Span<Vector512<float>> v = stackalloc Vector512<float>[channels];
        for (int b = bFirst; b < nb; b++)
        {
            int xs = Math.Min(b * W, rw - W);
            nuint p = (nuint)(row + xs);
            var best = max;
            var lab = Vector512.LoadUnsafe(ref labelRef, p);
            int j1 = start[b + 1];
            if (channels == 1)
            {
                var v0 = Vector512.LoadUnsafe(ref p0, p);
                for (int j = start[b]; j < j1; j++)
                {
                    ref readonly Cand q = ref Unsafe.Add(ref cr, j);
                    var t = v0 - Vector512.Create(q.Fc0);
                    var d = Vector512.LoadUnsafe(ref xr, (nuint)(j * W)) + Vector512.Create(Unsafe.Add(ref dr, q.I)) + t * t;
                    var m = Vector512.LessThan(d, best);
                    best = Vector512.Min(d, best); // = m ? d : best (distances are never NaN or -0); off the compare's latency
                    lab = Vector512.ConditionalSelect(m.AsInt32(), Vector512.Create(q.S), lab);
                }
            }
            else if (channels == 3)
            {
                // colour (RGB slides): the three values in registers, the same operations in the same order as below
                var v0 = Vector512.LoadUnsafe(ref p0, p);
                var v1 = Vector512.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[1]), p);
                var v2 = Vector512.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[2]), p);
                ref float fr = ref MemoryMarshal.GetArrayDataReference(fcF);
                for (int j = start[b]; j < j1; j++)
                {
                    ref readonly Cand q = ref Unsafe.Add(ref cr, j);
                    ref float fc = ref Unsafe.Add(ref fr, 3 * q.S);
                    var d = Vector512.LoadUnsafe(ref xr, (nuint)(j * W)) + Vector512.Create(Unsafe.Add(ref dr, q.I));
                    var t0 = v0 - Vector512.Create(fc); d += t0 * t0;
                    var t1 = v1 - Vector512.Create(Unsafe.Add(ref fc, 1)); d += t1 * t1;
                    var t2 = v2 - Vector512.Create(Unsafe.Add(ref fc, 2)); d += t2 * t2;
                    var m = Vector512.LessThan(d, best);
                    best = Vector512.Min(d, best);
                    lab = Vector512.ConditionalSelect(m.AsInt32(), Vector512.Create(q.S), lab);
                }
            }
            else
            {
                for (int c = 0; c < channels; c++) v[c] = Vector512.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[c]), p);
                for (int j = start[b]; j < j1; j++)
                {
                    ref readonly Cand q = ref Unsafe.Add(ref cr, j);
                    int s = q.S;
                    var d = Vector512.LoadUnsafe(ref xr, (nuint)(j * W)) + Vector512.Create(Unsafe.Add(ref dr, q.I));
                    for (int c = 0; c < channels; c++)
                    {
                        var t = v[c] - Vector512.Create(fcF[s * channels + c]);
                        d += t * t;
                    }
                    var m = Vector512.LessThan(d, best);
                    best = Vector512.Min(d, best); // = m ? d : best (distances are never NaN or -0); off the compare's latency
                    lab = Vector512.ConditionalSelect(m.AsInt32(), Vector512.Create(q.S), lab);
                }
            }
            lab.StoreUnsafe(ref labelRef, p);
        }
    }

    /// <summary>
    /// <see cref="AssignBlocks512"/> for one channel on four consecutive rows of a band at once: each candidate's dx²,
    /// value and index are loaded once for the four rows, and the four rows' minima are independent chains. Every pixel
    /// still sees the same candidates in the same order with the same float operations: the same labels.
    /// </summary>
    private static void AssignBlocks512Quad(float[] plane, float[] fcF, float[] dy2, int na, int[] start,
        Cand[] cand, float[] dx2, int[] label, int row, int rw, int bFirst, int nb)
    {
        const int W = 16;
        var max = Vector512.Create(float.MaxValue);
        ref int labelRef = ref MemoryMarshal.GetArrayDataReference(label);
        ref Cand cr = ref MemoryMarshal.GetArrayDataReference(cand);
        ref float d0r = ref MemoryMarshal.GetArrayDataReference(dy2);
        ref float d1r = ref Unsafe.Add(ref d0r, na);
        ref float d2r = ref Unsafe.Add(ref d0r, 2 * na);
        ref float d3r = ref Unsafe.Add(ref d0r, 3 * na);
        ref float xr = ref MemoryMarshal.GetArrayDataReference(dx2);
        ref float pr = ref MemoryMarshal.GetArrayDataReference(plane);
        for (int b = bFirst; b < nb; b++)
        {
            int xs = Math.Min(b * W, rw - W);
            nuint p0 = (nuint)(row + xs), p1 = p0 + (nuint)rw, p2 = p1 + (nuint)rw, p3 = p2 + (nuint)rw;
            Vector512<float> best0 = max, best1 = max, best2 = max, best3 = max;
            var lab0 = Vector512.LoadUnsafe(ref labelRef, p0); var lab1 = Vector512.LoadUnsafe(ref labelRef, p1);
            var lab2 = Vector512.LoadUnsafe(ref labelRef, p2); var lab3 = Vector512.LoadUnsafe(ref labelRef, p3);
            var v0 = Vector512.LoadUnsafe(ref pr, p0); var v1 = Vector512.LoadUnsafe(ref pr, p1);
            var v2 = Vector512.LoadUnsafe(ref pr, p2); var v3 = Vector512.LoadUnsafe(ref pr, p3);
            int j1 = start[b + 1];
            for (int j = start[b]; j < j1; j++)
            {
                ref readonly Cand q = ref Unsafe.Add(ref cr, j);
                var dx = Vector512.LoadUnsafe(ref xr, (nuint)(j * W));
                var f = Vector512.Create(q.Fc0);
                var sv = Vector512.Create(q.S);
                int i = q.I;
                var t0 = v0 - f; var e0 = dx + Vector512.Create(Unsafe.Add(ref d0r, i)) + t0 * t0;
                var t1 = v1 - f; var e1 = dx + Vector512.Create(Unsafe.Add(ref d1r, i)) + t1 * t1;
                var t2 = v2 - f; var e2 = dx + Vector512.Create(Unsafe.Add(ref d2r, i)) + t2 * t2;
                var t3 = v3 - f; var e3 = dx + Vector512.Create(Unsafe.Add(ref d3r, i)) + t3 * t3;
                lab0 = Vector512.ConditionalSelect(Vector512.LessThan(e0, best0).AsInt32(), sv, lab0); best0 = Vector512.Min(e0, best0);
                lab1 = Vector512.ConditionalSelect(Vector512.LessThan(e1, best1).AsInt32(), sv, lab1); best1 = Vector512.Min(e1, best1);
                lab2 = Vector512.ConditionalSelect(Vector512.LessThan(e2, best2).AsInt32(), sv, lab2); best2 = Vector512.Min(e2, best2);
                lab3 = Vector512.ConditionalSelect(Vector512.LessThan(e3, best3).AsInt32(), sv, lab3); best3 = Vector512.Min(e3, best3);
            }
            lab0.StoreUnsafe(ref labelRef, p0); lab1.StoreUnsafe(ref labelRef, p1);
            lab2.StoreUnsafe(ref labelRef, p2); lab3.StoreUnsafe(ref labelRef, p3);
        }
    }

    /// <summary>
    /// <see cref="AssignBlocks512Quad"/> for three channels (colour slides): four rows of a band at once, each candidate's
    /// dx² and three values loaded once for them. Each pixel's distance is ((dx² + dy²) + t0²) + t1² + t2², as in
    /// <see cref="AssignBlocks512"/>: the same labels.
    /// </summary>
    private static void AssignBlocks512Quad3(float[][] planes, float[] fcF, float[] dy2, int na, int[] start,
        Cand[] cand, float[] dx2, int[] label, int row, int rw, int bFirst, int nb)
    {
        const int W = 16;
        var max = Vector512.Create(float.MaxValue);
        ref int labelRef = ref MemoryMarshal.GetArrayDataReference(label);
        ref Cand cr = ref MemoryMarshal.GetArrayDataReference(cand);
        ref float d0r = ref MemoryMarshal.GetArrayDataReference(dy2);
        ref float d1r = ref Unsafe.Add(ref d0r, na);
        ref float d2r = ref Unsafe.Add(ref d0r, 2 * na);
        ref float d3r = ref Unsafe.Add(ref d0r, 3 * na);
        ref float xr = ref MemoryMarshal.GetArrayDataReference(dx2);
        ref float fr = ref MemoryMarshal.GetArrayDataReference(fcF);
        ref float ar = ref MemoryMarshal.GetArrayDataReference(planes[0]);
        ref float br = ref MemoryMarshal.GetArrayDataReference(planes[1]);
        ref float gr = ref MemoryMarshal.GetArrayDataReference(planes[2]);
        for (int b = bFirst; b < nb; b++)
        {
            int xs = Math.Min(b * W, rw - W);
            nuint p0 = (nuint)(row + xs), p1 = p0 + (nuint)rw, p2 = p1 + (nuint)rw, p3 = p2 + (nuint)rw;
            Vector512<float> best0 = max, best1 = max, best2 = max, best3 = max;
            var lab0 = Vector512.LoadUnsafe(ref labelRef, p0); var lab1 = Vector512.LoadUnsafe(ref labelRef, p1);
            var lab2 = Vector512.LoadUnsafe(ref labelRef, p2); var lab3 = Vector512.LoadUnsafe(ref labelRef, p3);
            var a0 = Vector512.LoadUnsafe(ref ar, p0); var a1 = Vector512.LoadUnsafe(ref ar, p1);
            var a2 = Vector512.LoadUnsafe(ref ar, p2); var a3 = Vector512.LoadUnsafe(ref ar, p3);
            var b0 = Vector512.LoadUnsafe(ref br, p0); var b1 = Vector512.LoadUnsafe(ref br, p1);
            var b2 = Vector512.LoadUnsafe(ref br, p2); var b3 = Vector512.LoadUnsafe(ref br, p3);
            var c0 = Vector512.LoadUnsafe(ref gr, p0); var c1 = Vector512.LoadUnsafe(ref gr, p1);
            var c2 = Vector512.LoadUnsafe(ref gr, p2); var c3 = Vector512.LoadUnsafe(ref gr, p3);
            int j1 = start[b + 1];
            for (int j = start[b]; j < j1; j++)
            {
                ref readonly Cand q = ref Unsafe.Add(ref cr, j);
                ref float fc = ref Unsafe.Add(ref fr, 3 * q.S);
                var dx = Vector512.LoadUnsafe(ref xr, (nuint)(j * W));
                var f0 = Vector512.Create(fc); var f1 = Vector512.Create(Unsafe.Add(ref fc, 1)); var f2 = Vector512.Create(Unsafe.Add(ref fc, 2));
                var sv = Vector512.Create(q.S);
                int i = q.I;
                var t = a0 - f0; var e0 = dx + Vector512.Create(Unsafe.Add(ref d0r, i)) + t * t;
                t = b0 - f1; e0 += t * t; t = c0 - f2; e0 += t * t;
                t = a1 - f0; var e1 = dx + Vector512.Create(Unsafe.Add(ref d1r, i)) + t * t;
                t = b1 - f1; e1 += t * t; t = c1 - f2; e1 += t * t;
                t = a2 - f0; var e2 = dx + Vector512.Create(Unsafe.Add(ref d2r, i)) + t * t;
                t = b2 - f1; e2 += t * t; t = c2 - f2; e2 += t * t;
                t = a3 - f0; var e3 = dx + Vector512.Create(Unsafe.Add(ref d3r, i)) + t * t;
                t = b3 - f1; e3 += t * t; t = c3 - f2; e3 += t * t;
                lab0 = Vector512.ConditionalSelect(Vector512.LessThan(e0, best0).AsInt32(), sv, lab0); best0 = Vector512.Min(e0, best0);
                lab1 = Vector512.ConditionalSelect(Vector512.LessThan(e1, best1).AsInt32(), sv, lab1); best1 = Vector512.Min(e1, best1);
                lab2 = Vector512.ConditionalSelect(Vector512.LessThan(e2, best2).AsInt32(), sv, lab2); best2 = Vector512.Min(e2, best2);
                lab3 = Vector512.ConditionalSelect(Vector512.LessThan(e3, best3).AsInt32(), sv, lab3); best3 = Vector512.Min(e3, best3);
            }
            lab0.StoreUnsafe(ref labelRef, p0); lab1.StoreUnsafe(ref labelRef, p1);
            lab2.StoreUnsafe(ref labelRef, p2); lab3.StoreUnsafe(ref labelRef, p3);
        }
    }

    /// <summary>The same arithmetic as <see cref="AssignBlocks512"/>, lane for lane, 8 pixels at a time (AVX2).</summary>
    private static void AssignBlocks256(float[][] planes, int channels, float[] fcF, float[] dy2, int[] start,
        Cand[] cand, float[] dx2, int[] label, int row, int rw, int bFirst, int nb)
    {
        const int W = 8;
        var max = Vector256.Create(float.MaxValue);
        ref int labelRef = ref MemoryMarshal.GetArrayDataReference(label);
        ref Cand cr = ref MemoryMarshal.GetArrayDataReference(cand);
        ref float dr = ref MemoryMarshal.GetArrayDataReference(dy2);
        ref float xr = ref MemoryMarshal.GetArrayDataReference(dx2);
        Span<Vector256<float>> v = stackalloc Vector256<float>[channels];
        for (int b = bFirst; b < nb; b++)
        {
            int xs = Math.Min(b * W, rw - W);
            nuint p = (nuint)(row + xs);
            var best = max;
            var lab = Vector256.LoadUnsafe(ref labelRef, p);
            int j1 = start[b + 1];
            if (channels == 3)
            {
                // colour: the three values in registers, the same operations in the same order as below
                var v0 = Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[0]), p);
                var v1 = Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[1]), p);
                var v2 = Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[2]), p);
                ref float fr = ref MemoryMarshal.GetArrayDataReference(fcF);
                for (int j = start[b]; j < j1; j++)
                {
                    ref readonly Cand q = ref Unsafe.Add(ref cr, j);
                    ref float fc = ref Unsafe.Add(ref fr, 3 * q.S);
                    var d = Vector256.LoadUnsafe(ref xr, (nuint)(j * W)) + Vector256.Create(Unsafe.Add(ref dr, q.I));
                    var t0 = v0 - Vector256.Create(fc); d += t0 * t0;
                    var t1 = v1 - Vector256.Create(Unsafe.Add(ref fc, 1)); d += t1 * t1;
                    var t2 = v2 - Vector256.Create(Unsafe.Add(ref fc, 2)); d += t2 * t2;
                    var m = Vector256.LessThan(d, best);
                    best = Vector256.Min(d, best);
                    lab = Vector256.ConditionalSelect(m.AsInt32(), Vector256.Create(q.S), lab);
                }
                lab.StoreUnsafe(ref labelRef, p);
                continue;
            }
            for (int c = 0; c < channels; c++) v[c] = Vector256.LoadUnsafe(ref MemoryMarshal.GetArrayDataReference(planes[c]), p);
            for (int j = start[b]; j < j1; j++)
            {
                ref readonly Cand q = ref Unsafe.Add(ref cr, j);
                int s = q.S;
                var d = Vector256.LoadUnsafe(ref xr, (nuint)(j * W)) + Vector256.Create(Unsafe.Add(ref dr, q.I));
                for (int c = 0; c < channels; c++)
                {
                    var t = v[c] - Vector256.Create(fcF[s * channels + c]);
                    d += t * t;
                }
                var m = Vector256.LessThan(d, best);
                best = Vector256.Min(d, best);
                lab = Vector256.ConditionalSelect(m.AsInt32(), Vector256.Create(q.S), lab);
            }
            lab.StoreUnsafe(ref labelRef, p);
        }
    }

    /// <summary>Rows narrower than a vector, or no SIMD: centre by centre over each row, one pixel at a time (the same arithmetic).</summary>
    private static void AssignRowsScalar(float[][] planes, int channels, double[] cx, double[] cy, double[] cf, float[] dist, int[] label,
        PixelRect read, float invS, Windows win, int[]? runOff, List<int>? runs)
    {
        int rw = read.W;
        dist.AsSpan(0, rw * read.H).Fill(float.MaxValue);
        for (int s = 0; s < cx.Length; s++)
        {
            if (win.Y0[s] < 0) continue;
            float cxf = (float)cx[s], cyf = (float)cy[s];
            for (int y = win.Y0[s]; y <= win.Y1[s]; y++)
            {
                float dy = ((float)(read.Y + y) - cyf) * invS, dy2 = dy * dy;
                int row = y * rw;
                if (runOff is null) { Offer(win.X0[s], win.X1[s]); continue; }
                for (int r = runOff[y]; r < runOff[y + 1]; r += 2) // glass (outside the runs) takes no part
                {
                    int a = Math.Max(win.X0[s], runs![r]), b = Math.Min(win.X1[s], runs[r + 1] - 1);
                    if (a <= b) Offer(a, b);
                }

                void Offer(int x0, int x1)
                {
                    for (int x = x0; x <= x1; x++)
                    {
                        int p = row + x;
                        float dx = ((float)(read.X + x) - cxf) * invS;
                        float d = dx * dx + dy2;
                        for (int c = 0; c < channels; c++) { float t = planes[c][p] - (float)cf[s * channels + c]; d += t * t; }
                        if (d < dist[p]) { dist[p] = d; label[p] = s; }
                    }
                }
            }
        }
    }

    /// <summary>Sixteen all-ones ints then sixteen zeros: loaded from offset 16 − n, the lanes below n are kept.</summary>
    private static readonly int[] FirstLanes = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

}
