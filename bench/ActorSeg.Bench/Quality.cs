using System.Diagnostics;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using OpenCvSharp;
using OpenCvSharp.XImgProc;

namespace ActorSeg.Bench;

/// <summary>Superpixel quality against ground-truth masks: achievable segmentation accuracy, boundary recall, under-segmentation error.</summary>
public static class Quality
{
    public sealed record Scores(double Asa, double BoundaryRecall, double UnderSegError, int Superpixels, double Seconds, long Pixels)
    {
        public double MPps => Pixels / 1e6 / Seconds;
    }

    public static Scores Score(int[] labels, byte[] gt, int w, int h, double seconds)
    {
        int n = w * h;
        // remap labels densely
        var map = new Dictionary<int, int>();
        var dense = new int[n];
        for (int i = 0; i < n; i++) { if (!map.TryGetValue(labels[i], out int d)) map[labels[i]] = d = map.Count; dense[i] = d; }
        int S = map.Count;
        // ASA with classes
        int K = gt.Max() + 1;
        var cnt = new long[S * K];
        for (int i = 0; i < n; i++) cnt[dense[i] * K + gt[i]]++;
        long best = 0;
        for (int s = 0; s < S; s++) { long m = 0; for (int k = 0; k < K; k++) m = Math.Max(m, cnt[s * K + k]); best += m; }
        // under-segmentation error over ground-truth connected components
        var comp = Components(gt, w, h, out int G);
        var overlap = new Dictionary<long, long>();
        var area = new long[S];
        for (int i = 0; i < n; i++) { area[dense[i]]++; long key = (long)dense[i] * G + comp[i]; overlap[key] = overlap.GetValueOrDefault(key) + 1; }
        double ue = 0;
        foreach (var (key, ov) in overlap) { int s = (int)(key / G); ue += Math.Min(ov, area[s] - ov); }
        // boundary recall with a 2-pixel tolerance
        long gtB = 0, hit = 0;
        const int tol = 2;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = y * w + x;
                bool isB = (x + 1 < w && gt[i] != gt[i + 1]) || (y + 1 < h && gt[i] != gt[i + w]);
                if (!isB) continue;
                gtB++;
                bool found = false;
                for (int dy = -tol; dy <= tol && !found; dy++)
                    for (int dx = -tol; dx <= tol && !found; dx++)
                    {
                        int xx = x + dx, yy = y + dy;
                        if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
                        int j = yy * w + xx;
                        if ((xx + 1 < w && dense[j] != dense[j + 1]) || (yy + 1 < h && dense[j] != dense[j + w])) found = true;
                    }
                if (found) hit++;
            }
        return new Scores((double)best / n, gtB == 0 ? 1 : (double)hit / gtB, ue / n, S, seconds, n);
    }

    private static int[] Components(byte[] gt, int w, int h, out int count)
    {
        var lab = new int[w * h]; Array.Fill(lab, -1);
        int next = 0;
        var stack = new Stack<int>();
        for (int i = 0; i < lab.Length; i++)
        {
            if (lab[i] >= 0) continue;
            lab[i] = next; stack.Push(i);
            while (stack.Count > 0)
            {
                int p = stack.Pop(), x = p % w, y = p / w;
                foreach (int q in new[] { x > 0 ? p - 1 : -1, x + 1 < w ? p + 1 : -1, y > 0 ? p - w : -1, y + 1 < h ? p + w : -1 })
                    if (q >= 0 && lab[q] < 0 && gt[q] == gt[p]) { lab[q] = next; stack.Push(q); }
            }
            next++;
        }
        count = next;
        return lab;
    }

    public static (ushort[] Data, int W, int H, int C) Load(string path)
    {
        using var src = VipsImageSource.Open(path);
        var d = new ushort[src.Width * src.Height * src.Channels];
        src.ReadRegion(0, 0, src.Width, src.Height, d);
        return (d, src.Width, src.Height, src.Channels);
    }

    public static byte[] LoadMask(string path)
    {
        var (d, _, _, _) = LoadMaskRaw(path);
        return d.Select(v => v > 0 ? (byte)1 : (byte)0).ToArray();
    }

    private static (ushort[], int, int, int) LoadMaskRaw(string path)
    {
        using var src = VipsImageSource.Open(path, 0, firstBandOnly: true);
        var d = new ushort[src.Width * src.Height];
        src.ReadRegion(0, 0, src.Width, src.Height, d);
        return (d, src.Width, src.Height, 1);
    }

    /// <summary>ActorSeg's engine (tiled when the image is larger than one tile), returning the node id of each pixel.</summary>
    public static (int[] Labels, double Seconds) ActorSeg(string image, double spacing, int tileSize)
    {
        var sw = Stopwatch.StartNew();
        var work = Path.Combine(Path.GetTempPath(), "actorseg-bench-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var req = new GraphRequest { ImagePath = image, Slic = new SlicParameters { Spacing = spacing }, TileSize = tileSize };
            var job = GraphJob.Prepare("bench", req, work);
            job.Save();
            var tiles = job.Plan.Tiles().ToArray();
            Parallel.ForEach(tiles, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, () => VipsImageSource.Open(image),
                (t, _, src) => { GraphJob.ProcessTile(job, t, src, null); return src; }, src => src.Dispose());
            var (g, nof) = GraphJob.Stitch(job);
            double secs = sw.Elapsed.TotalSeconds;
            return (GraphJob.NodeMap(job, nof), secs);
        }
        finally { try { Directory.Delete(work, true); } catch { } }
    }

    /// <summary>OpenCV ximgproc SLIC on the same image (z-scored, scaled to 8 bits), same region size, 10 iterations.</summary>
    public static (int[] Labels, double Seconds) OpenCv(ushort[] data, int w, int h, int c, double spacing, SLICType type)
    {
        // grey (mean of channels), min-max to 8 bits
        var grey = new float[w * h];
        for (int i = 0; i < grey.Length; i++) { float s = 0; for (int k = 0; k < c; k++) s += data[i * c + k]; grey[i] = s / c; }
        float lo = grey.Min(), hi = grey.Max();
        var bytes = grey.Select(v => (byte)Math.Clamp((v - lo) / Math.Max(1e-6f, hi - lo) * 255f, 0, 255)).ToArray();
        using var mat = Mat.FromPixelData(h, w, MatType.CV_8UC1, bytes);
        var sw = Stopwatch.StartNew();
        using var slic = SuperpixelSLIC.Create(mat, type, (int)Math.Round(spacing), 10f);
        slic.Iterate(10);
        slic.EnforceLabelConnectivity(25);
        using var labels = new Mat();
        slic.GetLabels(labels);
        double secs = sw.Elapsed.TotalSeconds;
        var arr = new int[w * h];
        labels.GetArray(out int[] got);
        Array.Copy(got, arr, arr.Length);
        return (arr, secs);
    }
}
