using ActorSeg.Core.Graph;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;

namespace ActorSeg.Tests.Engine;

/// <summary>Runs the engine on in-memory images, tiled or as one tile, for comparisons.</summary>
public sealed class EngineRun : IDisposable
{
    public required GraphJobManifest Job { get; init; }
    public required SuperpixelGraph Graph { get; init; }
    public required int[] NodeMap { get; init; }
    public void Dispose() { try { Directory.Delete(Job.WorkDir, true); } catch { } }
}

public static class EngineHarness
{
    public static ImageStatistics Stats(ArrayImageSource img)
    {
        int bins = img.BitDepth == 8 ? 256 : 65536;
        var h = new long[img.Channels][];
        for (int c = 0; c < img.Channels; c++) h[c] = new long[bins];
        for (int i = 0; i < img.Data.Length; i++) h[i % img.Channels][img.Data[i]]++;
        return ImageStatistics.FromHistograms(h);
    }

    public static EngineRun Run(ArrayImageSource img, ArrayImageSource? mask, GraphRequest req, TissueMap? tissue = null)
    {
        var work = Path.Combine(Path.GetTempPath(), "actorseg-test-" + Guid.NewGuid().ToString("N")[..12]);
        var job = GraphJob.Prepare("test", req, work, img.Width, img.Height, img.Channels, img.BitDepth, Stats(img), tissue, tissue is null ? null : "test");
        job.Save();
        // the tiles read the job as a worker does: from its manifest and the tissue map saved beside it
        var reread = GraphJobManifest.Load(job.ManifestPath);
        foreach (var t in reread.Plan.Tiles())
        {
            var o = GraphJob.ProcessTile(reread, t, img, mask);
            if (tissue is not null) Xunit.Assert.Equal(!tissue.Any(t.Core), o.Skipped);
        }
        var (g, nof) = GraphJob.Stitch(job);
        return new EngineRun { Job = job, Graph = g, NodeMap = GraphJob.NodeMap(job, nof) };
    }

    /// <summary>A random microscopy-like image: blobs of different brightness and texture on a noisy gradient.</summary>
    public static (ArrayImageSource Image, ArrayImageSource Mask) Blobs(int w, int h, int seed, int channels = 1, int bitDepth = 16, int blobs = -1)
    {
        var rnd = new Random(seed);
        if (blobs < 0) blobs = Math.Max(1, w * h / 2500);
        var cx = new double[blobs]; var cy = new double[blobs]; var r = new double[blobs]; var a = new double[blobs];
        for (int b = 0; b < blobs; b++) { cx[b] = rnd.NextDouble() * w; cy[b] = rnd.NextDouble() * h; r[b] = 3 + rnd.NextDouble() * 20; a[b] = 0.3 + rnd.NextDouble(); }
        int max = bitDepth == 8 ? 255 : 4095;
        var data = new ushort[w * h * channels];
        var m = new ushort[w * h];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                double v = 0.2 + 0.1 * x / w + 0.05 * y / h;
                int inside = 0;
                for (int b = 0; b < blobs; b++)
                {
                    double dx = x - cx[b], dy = y - cy[b];
                    if (dx * dx + dy * dy < r[b] * r[b]) { v += 0.4 * a[b]; inside = 1; }
                }
                m[y * w + x] = (ushort)inside;
                for (int c = 0; c < channels; c++)
                {
                    double vv = v * (1 + 0.1 * c) + 0.05 * (rnd.NextDouble() - 0.5);
                    data[(y * w + x) * channels + c] = (ushort)Math.Clamp(vv * max / 1.6, 0, max);
                }
            }
        return (new ArrayImageSource(w, h, channels, data, bitDepth), new ArrayImageSource(w, h, 1, m, 8));
    }
}
