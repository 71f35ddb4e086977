using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using ActorSeg.Tests.Engine;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>The node maps are written beside the stitch: when their writer fails (here its file cannot be created, as on
/// a full or read-only disk), the job fails with that error once the stitch is done, and nothing is published: the output
/// folder keeps what it held.</summary>
public class GraphOutputsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorseg-outputs-" + Guid.NewGuid().ToString("N")[..12]);

    [Fact]
    public void AFailingNodeMapWriter_FailsTheJob_AndPublishesNothing()
    {
        var job = TilesDone("outputs", 300, 260, seed: 3, tileSize: 128, spacing: 12);
        // the node map's staging file cannot be created: a folder stands in its place
        Directory.CreateDirectory(Path.Combine(job.WorkDir, "out", GraphOutputs.NodeMapFile));
        var outDir = Path.Combine(_dir, "out");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, GraphOutputs.SummaryFile), "the previous run's summary");

        var e = Record.Exception(() => GraphOutputs.StitchAndWrite(job, outDir, writeNodeMap: true));
        Assert.True(e is IOException or UnauthorizedAccessException, $"expected the writer's file error, got {e}");
        Assert.Equal([Path.Combine(outDir, GraphOutputs.SummaryFile)], Directory.GetFiles(outDir));
        Assert.Equal("the previous run's summary", File.ReadAllText(Path.Combine(outDir, GraphOutputs.SummaryFile)));
    }

    /// <summary>The node maps' tiles are encoded on every core; the files' bytes must still not depend on which thread
    /// finished first (a user who checksums a result gets the same sum from a re-run).</summary>
    [Fact]
    public void TheNodeMaps_AreTheSameBytes_RunAfterRun()
    {
        var job = TilesDone("bytes", 3000, 600, seed: 5, tileSize: 1024, spacing: 16);
        var (_, nodeOfGroup) = GraphJob.Stitch(job);
        byte[]? flat0 = null, ome0 = null;
        for (int run = 0; run < 4; run++)
        {
            string flat = Path.Combine(_dir, $"nodes{run}.tif"), ome = Path.Combine(_dir, $"nodes{run}.ome.tif");
            // 12 TIFF tiles of the default 256² across each band, 5 pyramid levels, each band's encoded in parallel
            GraphOutputs.WriteNodeMaps(job, nodeOfGroup, flat, ome);
            if (run == 0) { flat0 = File.ReadAllBytes(flat); ome0 = File.ReadAllBytes(ome); continue; }
            Assert.True(flat0.AsSpan().SequenceEqual(File.ReadAllBytes(flat)), $"nodes.tif of run {run} differs from run 0's");
            Assert.True(ome0.AsSpan().SequenceEqual(File.ReadAllBytes(ome)), $"nodes.ome.tif of run {run} differs from run 0's");
        }
    }

    [Theory]
    [InlineData(3_000, false)]   // superpixel-like rows: long runs
    [InlineData(200_000, false)] // ids beyond two bytes
    [InlineData(65_534, true)]   // noise: a run per pixel, and glass scattered
    public void TileLabelRasters_AreRunLengthCoded_AndReadBackExactly_AnyBandOfRows(int groupCount, bool noise)
    {
        Directory.CreateDirectory(_dir);
        const int w = 301, h = 97;
        var rnd = new Random(groupCount);
        var groups = new int[w * h];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                groups[y * w + x] = noise ? (rnd.Next(10) == 0 ? -1 : rnd.Next(groupCount))
                                          : (x < 7 && y > 80 ? -1 : (y / 40 * 8 + x / 40) * (groupCount / 100));
        groups[5] = groupCount - 1;
        var path = Path.Combine(_dir, $"tile-{groupCount}.labels");
        GraphJob.WriteLabels(path, groups, w);
        long bytes = new FileInfo(path).Length;
        if (!noise) Assert.True(bytes < w * h / 4, $"{bytes} bytes for {w * h} pixels in runs of up to 40"); // two bytes a pixel before
        var all = new int[w * h];
        GraphJob.ReadLabelRows(path, w, h, 0, h, all);
        Assert.Equal(groups, all);
        // a band of rows from the middle, into a larger buffer whose tail stays untouched
        var band = new int[w * 40 + 3];
        band.AsSpan(w * 31).Fill(12345);
        GraphJob.ReadLabelRows(path, w, h, 50, 31, band);
        Assert.Equal(groups.AsSpan(50 * w, 31 * w).ToArray(), band.AsSpan(0, 31 * w).ToArray());
        Assert.All(band.AsSpan(w * 31).ToArray(), v => Assert.Equal(12345, v));
        // the last row alone, and no row
        GraphJob.ReadLabelRows(path, w, h, h - 1, 1, band);
        Assert.Equal(groups.AsSpan((h - 1) * w, w).ToArray(), band.AsSpan(0, w).ToArray());
        GraphJob.ReadLabelRows(path, w, h, 10, 0, band);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void TileLabelRastersOfTheEarlierFormats_StillRead(int bytesPerPixel)
    {
        // two or four bytes a pixel, 0xFFFF (or -1) for glass: what a job's work folder holds from before the run-length coding
        Directory.CreateDirectory(_dir);
        const int w = 50, h = 20;
        var groups = new int[w * h];
        for (int i = 0; i < groups.Length; i++) groups[i] = i % 7 == 0 ? -1 : i / 3;
        var path = Path.Combine(_dir, $"old-{bytesPerPixel}.labels");
        using (var fs = File.Create(path))
            foreach (int g in groups)
                if (bytesPerPixel == 2) fs.Write(BitConverter.GetBytes((ushort)g)); else fs.Write(BitConverter.GetBytes(g));
        var back = new int[w * 5];
        GraphJob.ReadLabelRows(path, w, h, 12, 5, back);
        Assert.Equal(groups.AsSpan(12 * w, 5 * w).ToArray(), back);
    }

    [Fact]
    public void ADamagedTileLabelRaster_IsRefused_WithItsPath()
    {
        Directory.CreateDirectory(_dir);
        var path = Path.Combine(_dir, "tile-000007.labels");
        File.WriteAllBytes(path, new byte[100 * 10 * 3]);
        var e = Assert.Throws<InvalidDataException>(() => GraphJob.ReadLabelRows(path, 100, 10, 0, 10, new int[1000]));
        Assert.Contains(path, e.Message);
        Assert.Contains("3000 bytes", e.Message);
        var glass = Path.Combine(_dir, "glass.labels");
        File.WriteAllBytes(glass, new byte[8]);
        Assert.Throws<InvalidDataException>(() => GraphJob.ReadLabelRows(glass, 2, 2, 0, 2, new int[4], glass: true));
        // a run-length raster: another tile's size, a run running past its row, a row cut short, the index damaged
        var good = Path.Combine(_dir, "tile-000008.labels");
        var groups = new int[30 * 4];
        for (int i = 0; i < groups.Length; i++) groups[i] = i % 30 / 10;
        GraphJob.WriteLabels(good, groups, 30);
        var bytes = File.ReadAllBytes(good);
        e = Assert.Throws<InvalidDataException>(() => GraphJob.ReadLabelRows(good, 40, 3, 0, 3, new int[120]));
        Assert.Contains(good, e.Message);
        Assert.Contains("30x4", e.Message);
        int runs = 12 + 8 * 5; // header, then the row index of 4 rows and the end
        foreach (var (at, value, what) in new[] { (runs + 4, (byte)11, "bad run"), (runs + 4, (byte)9, "covers 29 of 30"), (12 + 8, (byte)7, "row index") })
        {
            var damaged = (byte[])bytes.Clone();
            damaged[at] = value;
            File.WriteAllBytes(good, damaged);
            e = Assert.Throws<InvalidDataException>(() => GraphJob.ReadLabelRows(good, 30, 4, 0, 4, new int[120]));
            Assert.Contains(good, e.Message);
            Assert.Contains(what, e.Message);
        }
    }

    /// <summary>A job on generated blobs whose every tile is processed, ready to stitch.</summary>
    private GraphJobManifest TilesDone(string id, int w, int h, int seed, int tileSize, double spacing)
    {
        var (img, mask) = EngineHarness.Blobs(w, h, seed: seed);
        var req = new GraphRequest { ImagePath = "blobs", TileSize = tileSize, Slic = new SlicParameters { Spacing = spacing } };
        var job = GraphJob.Prepare(id, req, Path.Combine(_dir, "work"), img.Width, img.Height, img.Channels, img.BitDepth, EngineHarness.Stats(img));
        job.Save();
        foreach (var t in job.Plan.Tiles()) GraphJob.ProcessTile(job, t, img, mask);
        return job;
    }

    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }
}
