using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using ActorSeg.Core.Superpixels;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>Tile buffers touched ahead of the workers (<see cref="WarmScratches"/>) are taken by first tiles of their
/// shape only, and change no result. One collection: the warm buffers are process-wide.</summary>
[Collection(nameof(WarmScratchTests))]
[CollectionDefinition(nameof(WarmScratchTests), DisableParallelization = true)]
public sealed class WarmScratchTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorseg-warm-" + Guid.NewGuid().ToString("N")[..8]);

    public WarmScratchTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { WarmScratches.Clear(); try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Fact]
    public void WarmBuffers_AreTakenByTheFirstTilesOfTheirShape_AndEveryTileResultIsTheSame()
    {
        string img = Path.Combine(_dir, "a.tif"), mask = Path.Combine(_dir, "a_mask.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(700, 520, SyntheticKind.Colonies, 16, 1, 3), img, mask);
        var req = new GraphRequest { ImagePath = img, MaskPath = mask, TileSize = 256, Slic = new SlicParameters { Spacing = 16 } };

        // the reference: every tile with one scratch of its own, nothing warm
        WarmScratches.Clear();
        var reference = Run(req, "cold", _ => new TileScratch());

        WarmScratches.Start(req, 2);
        Assert.Equal(2, WarmScratches.Pending);
        var scratches = new List<TileScratch>();
        var warm = Run(req, "warm", i =>
        {
            // three workers: the first two take the warm buffers at their first tile, the third makes its own
            if (scratches.Count < 3) scratches.Add(new TileScratch());
            return scratches[i % 3];
        }, after: i => { if (i < 3) Assert.Equal(Math.Max(0, 1 - i), WarmScratches.Pending); });
        Assert.Equal(reference.Count, warm.Count);
        for (int t = 0; t < reference.Count; t++) Assert.Equal(reference[t], warm[t]);

        // buffers made for another shape (another tile size) are dropped, not used
        WarmScratches.Start(req with { TileSize = 128 }, 1);
        var other = Run(req, "other", _ => new TileScratch(), after: i => { if (i == 0) Assert.Equal(0, WarmScratches.Pending); });
        for (int t = 0; t < reference.Count; t++) Assert.Equal(reference[t], other[t]);
    }

    [Fact]
    public void AnImageThatCannotBeOpened_LeavesNothingWarm_AndTheTileMakesItsOwnBuffers()
    {
        var req = new GraphRequest { ImagePath = Path.Combine(_dir, "missing.tif"), TileSize = 256 };
        WarmScratches.Start(req, 2);
        Assert.Null(WarmScratches.Take(new TileShape(100, 10, 10, 1, 0, false)));
        Assert.Equal(0, WarmScratches.Pending);
    }

    [Fact]
    public void AHeaderReadThatHangs_DoesNotHoldAWorkersFirstTile()
    {
        var shape = new TileShape(100, 10, 10, 1, 0, false);
        using var hang = new ManualResetEventSlim();
        var wait = WarmScratches.TakeWait;
        WarmScratches.TakeWait = TimeSpan.FromMilliseconds(200);
        try
        {
            using (WarmScratches.Start(() => { hang.Wait(); return (shape, 4); }, 2))
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                Assert.Null(WarmScratches.Take(shape)); // both given up on, each after the bounded wait
                Assert.InRange(sw.Elapsed.TotalSeconds, 0.3, 10);
                Assert.Equal(0, WarmScratches.Pending);
            }
            // a lease that ends drops what no worker took
            using (WarmScratches.Start(() => (shape, 4), 2)) Assert.Equal(2, WarmScratches.Pending);
            Assert.Equal(0, WarmScratches.Pending);
        }
        finally { hang.Set(); WarmScratches.TakeWait = wait; }
    }

    /// <summary>Prepares the job and runs every tile with the scratch <paramref name="scratchFor"/> gives for the tile's
    /// index; returns the bytes of every tile's result and label files.</summary>
    private List<byte[]> Run(GraphRequest req, string name, Func<int, TileScratch> scratchFor, Action<int>? after = null)
    {
        var job = GraphJob.Prepare(name, req, Path.Combine(_dir, name));
        job.Save();
        using var image = ImageSources.Open(req.ImagePath);
        using var mask = req.MaskPath is null ? null : VipsImageSource.Open(req.MaskPath, 0, firstBandOnly: true);
        var files = new List<byte[]>();
        int i = 0;
        foreach (var t in job.Plan.Tiles())
        {
            GraphJob.ProcessTile(job, t, image, mask, scratchFor(i));
            after?.Invoke(i++);
            files.Add(File.ReadAllBytes(job.ResultPath(t.Id)));
            files.Add(File.ReadAllBytes(job.LabelsPath(t.Id)));
        }
        return files;
    }
}
