using System.Diagnostics;
using ActorSeg.Cli;
using ActorSeg.Core.IO;
using ActorSeg.Messages;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>POST /jobs' and /batches' path checks at the HTTP door: one bounded step off the request thread, 503 naming
/// the path when the file system does not answer, and the same 400/403 for bad input as before.</summary>
public class HttpDoorChecksTests : IDisposable
{
    private readonly string _dir = SafePaths.RealPath(TestPaths.NewTempDir("door"));
    private readonly DataRoots _roots;
    private readonly string _image;

    public HttpDoorChecksTests()
    {
        _roots = new DataRoots([_dir]);
        _image = Path.Combine(_dir, "slide.tif");
        File.WriteAllBytes(_image, [1]);
    }

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch { }
    }

    private static BoundedReads Reads(int maxInFlight = 8) => new(TimeSpan.FromMilliseconds(300), maxInFlight);

    private HttpJobRequest Job(string image, string? outDir = null, string? mask = null) =>
        new(null, image, mask, null, outDir ?? Path.Combine(_dir, "out"), null, null);

    private HttpBatchRequest Batch(params HttpBatchSlide[] slides) => new(null, Path.Combine(_dir, "batch"), slides);

    [Fact]
    public async Task AJobWhosePathCheckStalls_Answers503WithinTheTimeout_NamingThePath()
    {
        using var stalled = new ManualResetEventSlim(false);
        var reads = Reads();
        try
        {
            // the image's existence check hangs (a stalled network volume)
            var files = HttpApi.DoorFiles.Of(_roots) with { Exists = _ => { stalled.Wait(); return true; } };
            var sw = Stopwatch.StartNew();
            var hung = await HttpApi.CheckJobAsync(Job(_image), files, reads, CancellationToken.None);
            Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"the request waited {sw.Elapsed}");
            Assert.Equal(503, hung.Status);
            Assert.Null(hung.Value);
            Assert.StartsWith($"{_image}: the image could not be read in 0.3 s", hung.Error);
            Assert.EndsWith("nothing was submitted, try again later", hung.Error);

            // the output folder's confinement (its real path resolved) hangs
            var outDir = Path.Combine(_dir, "out");
            files = HttpApi.DoorFiles.Of(_roots) with { Confine = (p, what) => { if (what == "out") stalled.Wait(); return _roots.Confine(p, what); } };
            hung = await HttpApi.CheckJobAsync(Job(_image, outDir), files, reads, CancellationToken.None);
            Assert.Equal(503, hung.Status);
            Assert.StartsWith($"{outDir}: the output folder could not be read in 0.3 s", hung.Error);
        }
        finally { stalled.Set(); }
    }

    [Fact]
    public async Task WhileStalledChecksHoldEveryThread_AnotherRequestAnswers503_NamingItsPaths()
    {
        using var stalled = new ManualResetEventSlim(false);
        var reads = Reads(maxInFlight: 1);
        try
        {
            var files = HttpApi.DoorFiles.Of(_roots) with { Exists = _ => { stalled.Wait(); return true; } };
            Assert.Equal(503, (await HttpApi.CheckJobAsync(Job(_image), files, reads, CancellationToken.None)).Status);
            // its check never starts: no new thread is taken, and the answer names the request's paths
            var next = await HttpApi.CheckJobAsync(Job(_image), HttpApi.DoorFiles.Of(_roots), reads, CancellationToken.None);
            Assert.Equal(503, next.Status);
            Assert.StartsWith($"the job's paths (image {_image}, out {Path.Combine(_dir, "out")}) could not be read in 0.3 s", next.Error);
            Assert.Contains("1 earlier reads have not ended", next.Error);
        }
        finally { stalled.Set(); }
    }

    [Fact]
    public async Task AJobsBadPaths_Get400And403AsBefore_AndAGoodOneItsSpec()
    {
        var reads = Reads();
        var files = HttpApi.DoorFiles.Of(_roots);
        var none = Path.Combine(_dir, "none.tif");
        var missing = await HttpApi.CheckJobAsync(Job(none), files, reads, CancellationToken.None);
        Assert.Equal((400, $"{none}: image not found"), (missing.Status, missing.Error));
        var outside = await HttpApi.CheckJobAsync(Job(_image, Path.Combine(_dir, "..", "elsewhere")), files, reads, CancellationToken.None);
        Assert.Equal(403, outside.Status);
        Assert.Contains("outside the data roots", outside.Error);
        var relative = await HttpApi.CheckJobAsync(Job("slide.tif"), files, reads, CancellationToken.None);
        Assert.Equal((400, "image 'slide.tif' must be an absolute path"), (relative.Status, relative.Error));
        var noRoots = await HttpApi.CheckJobAsync(Job(_image), HttpApi.DoorFiles.Of(new DataRoots([])), reads, CancellationToken.None);
        Assert.Equal(403, noRoots.Status);

        var noMask = await HttpApi.CheckJobAsync(Job(_image, mask: Path.Combine(_dir, "mask.png")), files, reads, CancellationToken.None);
        Assert.Equal((400, $"{Path.Combine(_dir, "mask.png")}: mask not found"), (noMask.Status, noMask.Error));

        File.WriteAllBytes(Path.Combine(_dir, "mask.png"), [1]);
        var good = await HttpApi.CheckJobAsync(Job(_image, mask: Path.Combine(_dir, "mask.png")), files, reads, CancellationToken.None);
        Assert.Equal((200, null), (good.Status, good.Error));
        Assert.Equal((_image, Path.Combine(_dir, "mask.png"), Path.Combine(_dir, "out")), (good.Value!.ImagePath, good.Value.MaskPath, good.Value.OutDir));
    }

    [Fact]
    public async Task ABatchWhoseTissueMaskStalls_Answers503NamingIt_AndBadSlidesGet400And403AsBefore()
    {
        var reads = Reads();
        var tissue = Path.Combine(_dir, "tissue");
        using var stalled = new ManualResetEventSlim(false);
        try
        {
            var files = HttpApi.DoorFiles.Of(_roots) with { Confine = (p, what) => { if (what == "tissue mask") stalled.Wait(); return _roots.Confine(p, what); } };
            var hung = await HttpApi.CheckBatchAsync(Batch(new HttpBatchSlide(_image)) with { Tissue = tissue }, files, reads, CancellationToken.None);
            Assert.Equal(503, hung.Status);
            Assert.StartsWith($"{tissue}: the tissue mask could not be read in 0.3 s", hung.Error);
            Assert.EndsWith("nothing was submitted, try again later", hung.Error);
        }
        finally { stalled.Set(); }

        var real = HttpApi.DoorFiles.Of(_roots);
        var mask = Path.Combine(_dir, "none.png");
        var noMask = await HttpApi.CheckBatchAsync(Batch(new HttpBatchSlide(_image, mask)), real, reads, CancellationToken.None);
        Assert.Equal((400, $"{mask}: mask not found"), (noMask.Status, noMask.Error));
        var none = Path.Combine(_dir, "none.tif");
        var noImage = await HttpApi.CheckBatchAsync(Batch(new HttpBatchSlide(_image), new HttpBatchSlide(none)), real, reads, CancellationToken.None);
        Assert.Equal((400, $"{none}: image not found"), (noImage.Status, noImage.Error));
        var badName = await HttpApi.CheckBatchAsync(Batch(new HttpBatchSlide(_image, Name: "..")), real, reads, CancellationToken.None);
        Assert.Equal(400, badName.Status);
        Assert.Contains("slide name '..' is not usable", badName.Error);
        var outside = await HttpApi.CheckBatchAsync(Batch(new HttpBatchSlide("/etc/hostname")), real, reads, CancellationToken.None);
        Assert.Equal(403, outside.Status);
        Assert.Contains("outside the data roots", outside.Error);

        var good = await HttpApi.CheckBatchAsync(Batch(new HttpBatchSlide(_image)) with { Tissue = "auto" }, real, reads, CancellationToken.None);
        Assert.Equal(200, good.Status);
        var slide = Assert.Single(good.Value!.Slides);
        Assert.Equal(("slide", Path.Combine(_dir, "batch", "slides", "slide"), "auto"), (slide.Name, slide.Spec.OutDir, slide.Spec.Tissue));
    }
}
