using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Core.Graph;

/// <summary>
/// Turns the SLIC labels of a tile's core into its partial graph.
/// <para>The merge rule (the same one the stitcher applies): a component (4-connected piece of one superpixel) smaller
/// than the minimum size merges into the neighbouring component with which it shares the longest boundary; ties go to
/// the neighbour whose first pixel along that boundary comes first in raster order. Decisions are taken on the unmerged
/// components, so their order cannot matter. A tile decides every small component that lies inside its core when
/// all of its neighbours are known to be distinct components; the stitcher decides the rest.</para>
/// </summary>
public static class FragmentBuilder
{
    public const byte Unlabelled = 255;

    /// <summary>The worker scratch's slot of each per-fragment table (<see cref="Pipeline.TileScratch.Rent{T}"/>): one
    /// array each, kept from tile to tile.</summary>
    private static class Slot
    {
        public const int FMin = 0, FArea = 1, FSumX = 2, FSumY = 3, FBox = 4, FSeed = 5, Border = 6, Glass = 7, FClass = 8,
            AdjStart = 9, AdjNbr = 10, AdjPair = 11, Fill = 12, Parent = 13, Deferred = 14, GroupOf = 15, GroupOfRoot = 16,
            OpenIdx = 17, Values = 18;
    }
    /// <summary>The seed id of pixels outside the tissue: they form no fragment that counts, no group and no node, and
    /// share no boundary with anything (a node next to glass has no neighbour there).</summary>
    public const int Glass = -1;

    /// <summary>Seconds per step over all calls in this process (diagnostics for the benchmarks): components, fragment
    /// statistics, boundaries, merges and groups, values grouped by group, node features, adjacency and sides.</summary>
    public static readonly double[] PhaseSeconds = new double[7];
    public static readonly string[] PhaseNames = ["components", "fragment stats", "boundaries", "merges+groups", "values grouped", "node features", "adjacency+sides"];
    private static void Tick(int phase, ref long t)
    {
        long now = ProcessStats.PhaseClock();
        lock (PhaseSeconds) PhaseSeconds[phase] += (now - t) / (double)System.Diagnostics.Stopwatch.Frequency;
        t = now;
    }

    /// <param name="raw">the read region's raw samples, channels interleaved</param>
    /// <param name="seeds">global SLIC seed id of each core pixel</param>
    /// <param name="mask">class of each core pixel (255 = unlabelled), or empty when there is no mask</param>
    /// <param name="groupOfPixel">receives the group id of each core pixel</param>
    /// <param name="extra">derived planes of the core's pixels (core pixels × extraPlanes, interleaved), or empty</param>
    /// <param name="norms">mean and 1/std that turn each value plane (channels, then extra planes) into z units</param>
    /// <param name="scratch">the worker's buffers; its SLIC planes are overwritten (the grouped values go there), and
    /// <paramref name="groupOfPixel"/> may lie in the first of them: it is written last</param>
    /// <returns>the tile's partial graph; its shipped values (<see cref="TileResult.Values"/>) lie in
    /// <paramref name="scratch"/>'s memory, so write the result out before the scratch serves another tile</returns>
    public static TileResult Build(TileSpec tile, int imageWidth, int imageHeight, ReadOnlySpan<ushort> raw, int channels,
        ReadOnlySpan<int> seeds, ReadOnlySpan<byte> mask, PlaneNorms norms, long minSize, Span<int> groupOfPixel,
        ReadOnlySpan<ushort> extra = default, int extraPlanes = 0, Pipeline.TileScratch? scratch = null)
    {
        int PL = channels + extraPlanes;
        if (norms.Count != PL) throw new ArgumentException($"{norms.Count} plane norms for {PL} planes");
        scratch ??= new Pipeline.TileScratch();
        var core = tile.Core; var read = tile.Read;
        int w = core.W, h = core.H, n = w * h, C = channels;
        int ox = core.X - read.X, oy = core.Y - read.Y, rw = read.W;

        long tick = ProcessStats.PhaseClock();
        // --- 1. fragments: connected components of equal seed id (4-connectivity), as runs along the rows ---
        int[] runStart = scratch.RunStart(n + 1), runFrag = scratch.RunComp(n), rowRuns = scratch.RowRuns(h + 1);
        int F = Components(seeds, w, h, runStart, runFrag, rowRuns);
        Tick(0, ref tick);

        // --- 2. per-fragment geometry and classes, run by run ---
        // per-fragment tables from the worker's scratch, zeroed to F entries where they are summed or read before written
        var fMin = scratch.Rent<long>(Slot.FMin, F); var fArea = scratch.Rent<int>(Slot.FArea, F); var fSumX = scratch.Rent<long>(Slot.FSumX, F); var fSumY = scratch.Rent<long>(Slot.FSumY, F);
        var fBox = scratch.Rent<int>(Slot.FBox, 4 * F); var fSeed = scratch.Rent<int>(Slot.FSeed, F); var border = scratch.Rent<bool>(Slot.Border, F); var glass = scratch.Rent<bool>(Slot.Glass, F);
        fMin.AsSpan(0, F).Fill(-1);
        for (int f = 0; f < F; f++) { fBox[4 * f] = int.MaxValue; fBox[4 * f + 1] = int.MaxValue; fBox[4 * f + 2] = -1; fBox[4 * f + 3] = -1; }
        bool openTop = core.Y > 0, openBottom = core.Bottom < imageHeight, openLeft = core.X > 0, openRight = core.Right < imageWidth;
        int nc = mask.IsEmpty ? 0 : ClassCount(mask[..n]);
        var fClass = nc > 0 ? scratch.Rent<int>(Slot.FClass, F * nc) : [];
        for (int y = 0; y < h; y++)
        {
            int gy = core.Y + y, row = y * w;
            bool edgeY = (y == 0 && openTop) || (y == h - 1 && openBottom);
            int rowEnd = row + w, classEnd = row; // the mask holds mask[p0]'s class from p0 up to classEnd (when > p0)
            for (int r = rowRuns[y]; r < rowRuns[y + 1]; r++)
            {
                int p0 = runStart[r], p1 = runStart[r + 1], len = p1 - p0, f = runFrag[r];
                int x0 = p0 - row, gx0 = core.X + x0, gx1 = gx0 + len - 1;
                if (fMin[f] < 0) { fMin[f] = (long)gy * imageWidth + gx0; fSeed[f] = seeds[p0]; glass[f] = seeds[p0] == Glass; }
                if (glass[f]) continue;
                fArea[f] += len; fSumX[f] += (long)len * gx0 + (long)len * (len - 1) / 2; fSumY[f] += (long)len * gy;
                int b = 4 * f;
                if (gx0 < fBox[b]) fBox[b] = gx0;
                if (gy < fBox[b + 1]) fBox[b + 1] = gy;
                if (gx1 > fBox[b + 2]) fBox[b + 2] = gx1;
                if (gy > fBox[b + 3]) fBox[b + 3] = gy;
                if (edgeY || (x0 == 0 && openLeft) || (p1 - row == w && openRight)) border[f] = true;
                if (nc > 0)
                {
                    // the mask changes class far less often than the fragment: count a run at once when it lies
                    // inside one stretch of class, found with one search per stretch
                    if (classEnd <= p0) { int k = mask[p0..rowEnd].IndexOfAnyExcept(mask[p0]); classEnd = k < 0 ? rowEnd : p0 + k; }
                    var fc = fClass.AsSpan(f * nc, nc);
                    if (classEnd >= p1) { byte m = mask[p0]; if (m != Unlabelled) fc[m] += len; }
                    else foreach (byte m in mask[p0..p1]) if (m != Unlabelled) fc[m]++;
                }
            }
        }

        Tick(1, ref tick);
        // --- 3. boundaries between fragments: length, contrast, first pixel on each side ---
        // Walked run by run: a run's last pixel borders the next run's first, and each overlap of a run with a run of
        // the row below is one stretch of horizontal boundary when their fragments differ. Pairs are numbered in the
        // order a raster scan of the pixels, right neighbour before lower one, first meets them.
        var pairs = scratch.Pairs;
        pairs.Reset(C, F);
        for (int y = 0; y < h; y++)
        {
            int row = y * w, rowBelow = row + w, rrow = (oy + y) * rw + ox;
            long lin = (long)(core.Y + y) * imageWidth + core.X;
            bool below = y + 1 < h;
            int k = below ? rowRuns[y + 1] : 0; // the run below that holds the current run's first column
            for (int a = rowRuns[y]; a < rowRuns[y + 1]; a++)
            {
                int a0 = runStart[a] - row, a1 = runStart[a + 1] - row, fa = runFrag[a];
                bool right = a1 < w;
                while (below)
                {
                    int b0 = runStart[k] - rowBelow, b1 = runStart[k + 1] - rowBelow;
                    int s = Math.Max(a0, b0), e = Math.Min(a1, b1);
                    if (right && s == a1 - 1) { AddBoundary(fa, runFrag[a + 1], lin + s, lin + a1, rrow + s, rrow + a1, 1, raw); right = false; }
                    if (runFrag[k] != fa) AddBoundary(fa, runFrag[k], lin + s, lin + imageWidth + s, rrow + s, rrow + rw + s, e - s, raw);
                    if (b1 > a1) break;
                    k++;
                    if (b1 == a1) break;
                }
                if (right) AddBoundary(fa, runFrag[a + 1], lin + a1 - 1, lin + a1, rrow + a1 - 1, rrow + a1, 1, raw);
            }
        }
        // len pixels from la (side a) and lb (side b) on, raw offsets ra and rb, along a row
        void AddBoundary(int fa, int fb, long la, long lb, int ra, int rb, int len, ReadOnlySpan<ushort> rawv)
        {
            if (glass[fa] || glass[fb]) return;
            if (fa > fb) { (fa, fb) = (fb, fa); (la, lb) = (lb, la); }
            int i = pairs.IndexOf(fa, fb);
            pairs.Length[i] += len;
            if (la < pairs.FirstA[i]) pairs.FirstA[i] = la;
            if (lb < pairs.FirstB[i]) pairs.FirstB[i] = lb;
            var diff = pairs.Diff.AsSpan(i * C, C);
            var va = rawv.Slice(ra * C, len * C); var vb = rawv.Slice(rb * C, len * C);
            for (int c = 0; c < C; c++)
            {
                long sum = 0;
                for (int j = c; j < va.Length; j += C) sum += Math.Abs(va[j] - vb[j]);
                diff[c] += sum;
            }
        }
        int P = pairs.Count;
        int[] pA = pairs.A, pB = pairs.B, pLen = pairs.Length;
        long[] pFirstA = pairs.FirstA, pFirstB = pairs.FirstB, pDiff = pairs.Diff;
        Tick(2, ref tick);

        // --- 4. merges the tile can decide alone ---
        // adjacency lists (CSR) per fragment
        var adjStart = scratch.Rent<int>(Slot.AdjStart, F + 1);
        for (int i = 0; i < P; i++) { adjStart[pA[i] + 1]++; adjStart[pB[i] + 1]++; }
        for (int f = 0; f < F; f++) adjStart[f + 1] += adjStart[f];
        // every entry of these is written before it is read
        var adjNbr = scratch.Rent<int>(Slot.AdjNbr, 2 * P, clear: false); var adjPair = scratch.Rent<int>(Slot.AdjPair, 2 * P, clear: false);
        var fill = scratch.Rent<int>(Slot.Fill, F + 1, clear: false); adjStart.AsSpan(0, F + 1).CopyTo(fill);
        for (int i = 0; i < P; i++)
        {
            adjNbr[fill[pA[i]]] = pB[i]; adjPair[fill[pA[i]]++] = i;
            adjNbr[fill[pB[i]]] = pA[i]; adjPair[fill[pB[i]]++] = i;
        }
        var parent = scratch.Rent<int>(Slot.Parent, F, clear: false);
        for (int f = 0; f < F; f++) parent[f] = f;
        var deferred = scratch.Rent<bool>(Slot.Deferred, F);
        var seenSeeds = new HashSet<int>();
        for (int f = 0; f < F; f++)
        {
            if (border[f] || fArea[f] >= minSize || adjStart[f] == adjStart[f + 1]) continue;
            // neighbours that touch a tile side may be pieces of one component joined outside the tile: then undecidable here
            seenSeeds.Clear();
            bool ambiguous = false;
            for (int q = adjStart[f]; q < adjStart[f + 1] && !ambiguous; q++)
                if (border[adjNbr[q]] && !seenSeeds.Add(fSeed[adjNbr[q]])) ambiguous = true;
            if (ambiguous) { deferred[f] = true; continue; }
            int best = -1, bestLen = -1; long bestFirst = long.MaxValue;
            for (int q = adjStart[f]; q < adjStart[f + 1]; q++)
            {
                int g = adjNbr[q], i = adjPair[q];
                long first = pA[i] == g ? pFirstA[i] : pFirstB[i]; // the neighbour's side
                if (pLen[i] > bestLen || (pLen[i] == bestLen && first < bestFirst)) { best = g; bestLen = pLen[i]; bestFirst = first; }
            }
            Union(parent, f, best);
        }

        // --- 5. groups, open fragments ---
        var groupOf = scratch.Rent<int>(Slot.GroupOf, F, clear: false); var groupOfRoot = scratch.Rent<int>(Slot.GroupOfRoot, F, clear: false);
        groupOfRoot.AsSpan(0, F).Fill(-1);
        int G = 0;
        for (int f = 0; f < F; f++)
        {
            if (glass[f]) { groupOf[f] = -1; continue; }
            int r = Find(parent, f);
            if (groupOfRoot[r] < 0) groupOfRoot[r] = G++;
            groupOf[f] = groupOfRoot[r];
        }
        var openIdx = scratch.Rent<int>(Slot.OpenIdx, F, clear: false);
        int O = 0;
        for (int f = 0; f < F; f++) openIdx[f] = border[f] || deferred[f] ? O++ : -1;
        var nonFinal = new bool[G];
        for (int f = 0; f < F; f++) if (openIdx[f] >= 0) nonFinal[groupOf[f]] = true;
        bool Risky(int f) => deferred[f] || (border[f] && fArea[f] < minSize); // may still merge into a neighbour
        for (int i = 0; i < P; i++)
        {
            if (Risky(pA[i])) nonFinal[groupOf[pB[i]]] = true;
            if (Risky(pB[i])) nonFinal[groupOf[pA[i]]] = true;
        }

        var t = new TileResult { TileId = tile.Id, Core = core, Channels = C, Planes = PL, Fragments = F, Groups = G, Open = O };

        // --- 6. group statistics ---
        t.GMinLinear = new long[G]; t.GArea = new int[G]; t.GSumX = new long[G]; t.GSumY = new long[G]; t.GBBox = new int[4 * G];
        Array.Fill(t.GMinLinear, long.MaxValue);
        for (int g = 0; g < G; g++) { t.GBBox[4 * g] = int.MaxValue; t.GBBox[4 * g + 1] = int.MaxValue; t.GBBox[4 * g + 2] = -1; t.GBBox[4 * g + 3] = -1; }
        var gClass = nc > 0 ? new int[G * nc] : [];
        for (int f = 0; f < F; f++)
        {
            int g = groupOf[f];
            if (g < 0) continue;
            t.GMinLinear[g] = Math.Min(t.GMinLinear[g], fMin[f]);
            t.GArea[g] += fArea[f]; t.GSumX[g] += fSumX[f]; t.GSumY[g] += fSumY[f];
            t.GBBox[4 * g] = Math.Min(t.GBBox[4 * g], fBox[4 * f]);
            t.GBBox[4 * g + 1] = Math.Min(t.GBBox[4 * g + 1], fBox[4 * f + 1]);
            t.GBBox[4 * g + 2] = Math.Max(t.GBBox[4 * g + 2], fBox[4 * f + 2]);
            t.GBBox[4 * g + 3] = Math.Max(t.GBBox[4 * g + 3], fBox[4 * f + 3]);
            for (int c = 0; c < nc; c++) gClass[g * nc + c] += fClass[f * nc + c];
        }
        t.GClassOffsets = new int[G + 1];
        var ids = new List<byte>(); var counts = new List<int>();
        for (int g = 0; g < G; g++)
        {
            for (int c = 0; c < nc; c++) { int k = gClass[g * nc + c]; if (k > 0) { ids.Add((byte)c); counts.Add(k); } }
            t.GClassOffsets[g + 1] = ids.Count;
        }
        t.GClassIds = ids.ToArray(); t.GClassCounts = counts.ToArray();

        Tick(3, ref tick);
        // --- 7. values grouped by group (counting sort), per plane: features, or shipped as they are (raster order) ---
        var start = new long[G + 1];
        for (int g = 0; g < G; g++) start[g + 1] = start[g] + t.GArea[g];
        var grouped = scratch.GroupedValues(n * PL);
        var cursor = new long[G];
        {
            for (int y = 0; y < h; y++)
            {
                int row = y * w, rrow = (oy + y) * rw + ox;
                for (int r = rowRuns[y]; r < rowRuns[y + 1]; r++)
                {
                    int g = groupOf[runFrag[r]];
                    if (g < 0) continue;
                    // a run's pixels go to consecutive positions of each of its group's planes
                    int p0 = runStart[r], len = runStart[r + 1] - p0, area = t.GArea[g];
                    long dst = start[g] * PL + cursor[g];
                    cursor[g] += len;
                    Deinterleave(raw.Slice((rrow + p0 - row) * C, len * C), C, grouped.Slice((int)dst), area);
                    if (extraPlanes > 0) Deinterleave(extra.Slice(p0 * extraPlanes, len * extraPlanes), extraPlanes, grouped.Slice((int)(dst + (long)C * area)), area);
                }
            }
            Tick(4, ref tick);
            int featLen = NodeFeatures.PerChannel * PL;
            t.GFeatureRow = new int[G]; t.GValueOffsets = new long[G];
            int finalCount = 0; long shippedPixels = 0;
            for (int g = 0; g < G; g++)
            {
                if (nonFinal[g]) { t.GFeatureRow[g] = -1; t.GValueOffsets[g] = shippedPixels; shippedPixels += t.GArea[g]; }
                else { t.GFeatureRow[g] = finalCount++; t.GValueOffsets[g] = -1; }
            }
            t.Features = new float[finalCount * featLen];
            int maxArea = 0;
            for (int g = 0; g < G; g++) maxArea = Math.Max(maxArea, t.GArea[g]);
            var sortTmp = new ushort[maxArea];
            var valueCounts = scratch.Counts(NodeFeatures.CountsLength); // all zero between uses
            // the shipped values only go to the tile's result file: they stay in the worker's buffer (every entry is
            // written below: each shipped group's planes, back to back)
            t.Values = scratch.Rent<ushort>(Slot.Values, checked((int)(shippedPixels * PL)), clear: false); t.ValueCount = (int)(shippedPixels * PL);
            for (int g = 0; g < G; g++)
            {
                int area = t.GArea[g];
                for (int c = 0; c < PL; c++)
                {
                    var seg = grouped.Slice((int)(start[g] * PL + (long)c * area), area);
                    if (t.GFeatureRow[g] >= 0)
                        NodeFeatures.ComputeUnsorted(seg, norms.Mean[c], norms.InvStd[c], t.Features.AsSpan(t.GFeatureRow[g] * featLen + c * NodeFeatures.PerChannel, NodeFeatures.PerChannel), valueCounts, sortTmp);
                    else seg.CopyTo(t.Values.AsSpan((int)(t.GValueOffsets[g] * PL + (long)c * area), area)); // the stitcher's features take them in any order
                }
            }
        }

        Tick(5, ref tick);
        // --- 8. group adjacency ---
        // the fragment pairs summed per pair of groups (a boundary inside a group drops out), numbered in the order the
        // fragment pairs meet them
        var gAdj = scratch.GroupPairs;
        gAdj.Reset(C, G);
        for (int i = 0; i < P; i++)
        {
            int ga = groupOf[pA[i]], gb = groupOf[pB[i]];
            if (ga == gb) continue;
            if (ga > gb) (ga, gb) = (gb, ga);
            int j = gAdj.IndexOf(ga, gb);
            gAdj.Length[j] += pLen[i];
            var sum = gAdj.Diff.AsSpan(j * C, C); var add = pDiff.AsSpan(i * C, C);
            for (int c = 0; c < C; c++) sum[c] += add[c];
        }
        int GP = gAdj.Count;
        t.GAdjA = gAdj.A.AsSpan(0, GP).ToArray(); t.GAdjB = gAdj.B.AsSpan(0, GP).ToArray();
        t.GAdjLength = gAdj.Length.AsSpan(0, GP).ToArray(); t.GAdjAbsDiff = gAdj.Diff.AsSpan(0, GP * C).ToArray();

        // --- 9. open fragments and their directed adjacency records ---
        t.OGroup = new int[O]; t.OArea = new int[O]; t.OFlags = new OpenFlags[O];
        for (int f = 0; f < F; f++)
        {
            int o = openIdx[f];
            if (o < 0) continue;
            t.OGroup[o] = groupOf[f]; t.OArea[o] = fArea[f];
            t.OFlags[o] = (border[f] ? OpenFlags.Border : 0) | (deferred[f] ? OpenFlags.Deferred : 0);
        }
        var rFrom = new List<int>(); var rToOpen = new List<int>(); var rToFrag = new List<int>(); var rToGroup = new List<int>();
        var rLen = new List<int>(); var rFirst = new List<long>();
        for (int i = 0; i < P; i++)
        {
            int a = pA[i], b = pB[i];
            if (openIdx[a] >= 0) { rFrom.Add(openIdx[a]); rToOpen.Add(openIdx[b]); rToFrag.Add(b); rToGroup.Add(groupOf[b]); rLen.Add(pLen[i]); rFirst.Add(pFirstB[i]); }
            if (openIdx[b] >= 0) { rFrom.Add(openIdx[b]); rToOpen.Add(openIdx[a]); rToFrag.Add(a); rToGroup.Add(groupOf[a]); rLen.Add(pLen[i]); rFirst.Add(pFirstA[i]); }
        }
        t.RFrom = rFrom.ToArray(); t.RToOpen = rToOpen.ToArray(); t.RToFragment = rToFrag.ToArray(); t.RToGroup = rToGroup.ToArray();
        t.RLength = rLen.ToArray(); t.RFirst = rFirst.ToArray();

        // --- 10. sides ---
        var ctx = new SideContext(w, rw, ox, oy, C);
        // the fragment of each pixel on the four sides, from the runs
        var rowFrag = new int[w]; var firstFrag = new int[h]; var lastFrag = new int[h];
        for (int y = 0; y < h; y++) { firstFrag[y] = runFrag[rowRuns[y]]; lastFrag[y] = runFrag[rowRuns[y + 1] - 1]; }
        RowFragments(0);
        Side(t, TileResult.Top, 0, 0, 1, 0, w, ctx, rowFrag, openIdx, seeds, raw);
        RowFragments(h - 1);
        Side(t, TileResult.Bottom, 0, h - 1, 1, 0, w, ctx, rowFrag, openIdx, seeds, raw);
        Side(t, TileResult.Left, 0, 0, 0, 1, h, ctx, firstFrag, openIdx, seeds, raw);
        Side(t, TileResult.Right, w - 1, 0, 0, 1, h, ctx, lastFrag, openIdx, seeds, raw);
        void RowFragments(int y)
        {
            for (int r = rowRuns[y]; r < rowRuns[y + 1]; r++) rowFrag.AsSpan(runStart[r] - y * w, runStart[r + 1] - runStart[r]).Fill(runFrag[r]);
        }

        // --- 11. the core's raster now holds group ids ---
        for (int r = 0; r < rowRuns[h]; r++) groupOfPixel[runStart[r]..runStart[r + 1]].Fill(groupOf[runFrag[r]]);
        Tick(6, ref tick);
        return t;
    }

    /// <summary>One more than the largest class in the mask (unlabelled pixels aside), 0 when none is labelled.</summary>
    private static int ClassCount(ReadOnlySpan<byte> mask)
    {
        // class + 1 wraps the unlabelled 255 to 0: the largest of those is the count
        int i = 0, count = 0;
        if (Vector256.IsHardwareAccelerated && mask.Length >= Vector256<byte>.Count)
        {
            var max = Vector256<byte>.Zero;
            ref byte first = ref MemoryMarshal.GetReference(mask);
            for (; i + Vector256<byte>.Count <= mask.Length; i += Vector256<byte>.Count)
                max = Vector256.Max(max, Vector256.LoadUnsafe(ref first, (nuint)i) + Vector256<byte>.One);
            for (int j = 0; j < Vector256<byte>.Count; j++) count = Math.Max(count, max[j]);
        }
        for (; i < mask.Length; i++) count = Math.Max(count, (byte)(mask[i] + 1));
        return count;
    }

    /// <summary>Splits pixels of <paramref name="planes"/> interleaved values into plane p at dst[p × stride ...].</summary>
    private static void Deinterleave(ReadOnlySpan<ushort> src, int planes, Span<ushort> dst, int stride)
    {
        if (planes == 1) { src.CopyTo(dst); return; }
        int len = src.Length / planes;
        if (planes == 2 && BitConverter.IsLittleEndian)
        {
            // the texture planes: each pixel's pair read as one 32-bit value (little-endian: the first plane low)
            var pairs = System.Runtime.InteropServices.MemoryMarshal.Cast<ushort, uint>(src[..(2 * len)]);
            var p0 = dst.Slice(0, len); var p1 = dst.Slice(stride, len);
            for (int i = 0; i < len; i++) { uint v = pairs[i]; p0[i] = (ushort)v; p1[i] = (ushort)(v >> 16); }
            return;
        }
        for (int p = 0; p < planes; p++)
        {
            var plane = dst.Slice(p * stride, len);
            for (int i = 0, j = p; i < len; i++, j += planes) plane[i] = src[j];
        }
    }

    private readonly record struct SideContext(int W, int Rw, int Ox, int Oy, int C);

    private static void Side(TileResult t, int s, int x0, int y0, int dx, int dy, int len, SideContext k,
        ReadOnlySpan<int> sideFrag, int[] openIdx, ReadOnlySpan<int> seeds, ReadOnlySpan<ushort> raw)
    {
        t.SideOpen[s] = new int[len]; t.SideSeed[s] = new int[len]; t.SideValues[s] = new ushort[len * k.C];
        for (int i = 0; i < len; i++)
        {
            int x = x0 + dx * i, y = y0 + dy * i, p = y * k.W + x;
            t.SideOpen[s][i] = openIdx[sideFrag[i]]; t.SideSeed[s][i] = seeds[p];
            int src = ((k.Oy + y) * k.Rw + k.Ox + x) * k.C;
            for (int c = 0; c < k.C; c++) t.SideValues[s][i * k.C + c] = raw[src + c];
        }
    }

    /// <summary>
    /// 4-connected components of equal labels, found on runs: the maximal runs of equal labels along each row, in
    /// raster order. Run r covers pixels <paramref name="runStart"/>[r] up to <paramref name="runStart"/>[r + 1]
    /// (the last entry is the pixel count), the runs of row y are <paramref name="rowRuns"/>[y] up to
    /// <paramref name="rowRuns"/>[y + 1], and <paramref name="runComp"/>[r] is the run's component. Components are
    /// numbered in raster order of their first pixel.
    /// </summary>
    /// <param name="runStart">at least w × h + 1 entries</param>
    /// <param name="runComp">at least w × h entries</param>
    /// <param name="rowRuns">at least h + 1 entries</param>
    /// <returns>the number of components; the number of runs is <paramref name="rowRuns"/>[h]</returns>
    public static int Components(ReadOnlySpan<int> labels, int w, int h, int[] runStart, int[] runComp, int[] rowRuns)
    {
        var parent = runComp; // union-find over runs first; a parent always has a smaller index than its child
        int R = 0;
        for (int y = 0; y < h; y++)
        {
            int row = y * w, above = row - w;
            var line = labels.Slice(row, w);
            rowRuns[y] = R;
            int q = y > 0 ? rowRuns[y - 1] : 0; // the first run above that may overlap the current run
            for (int x = 0; x < w;)
            {
                int l = line[x], e = RunEnd(line, x, l), r = R++;
                runStart[r] = row + x; parent[r] = r;
                if (y > 0)
                {
                    // the runs above that overlap [x, e) with the same label join this one (the run list above ends
                    // where this row's first run starts, at the row's first pixel: its end never passes x)
                    while (runStart[q + 1] - above <= x) q++;
                    for (int k = q; runStart[k] - above < e; k++)
                        if (labels[runStart[k]] == l) Union(parent, r, k);
                }
                x = e;
            }
        }
        rowRuns[h] = R; runStart[R] = w * h;
        // roots (the first run of each component in raster order) numbered in order; every other run takes its
        // parent's number, already final since the parent comes earlier
        int count = 0;
        for (int r = 0; r < R; r++)
        {
            int p = parent[r];
            runComp[r] = p == r ? count++ : runComp[p];
        }
        return count;
    }

    /// <summary>The end of the run of <paramref name="l"/> that starts at <paramref name="x"/>.</summary>
    private static int RunEnd(ReadOnlySpan<int> line, int x, int l)
    {
        int e = x + 1, w = line.Length;
        if (Vector256.IsHardwareAccelerated)
        {
            var v = Vector256.Create(l);
            ref int first = ref MemoryMarshal.GetReference(line);
            for (; e + Vector256<int>.Count <= w; e += Vector256<int>.Count)
            {
                uint same = Vector256.Equals(Vector256.LoadUnsafe(ref first, (nuint)e), v).ExtractMostSignificantBits();
                if (same != 0xFF) return e + BitOperations.TrailingZeroCount(~same);
            }
        }
        while (e < w && line[e] == l) e++;
        return e;
    }

    internal static int Find(int[] parent, int a)
    {
        while (parent[a] != a) { parent[a] = parent[parent[a]]; a = parent[a]; }
        return a;
    }

    internal static void Union(int[] parent, int a, int b)
    {
        a = Find(parent, a); b = Find(parent, b);
        if (a == b) return;
        if (a < b) parent[b] = a; else parent[a] = b;
    }
}
