using System.Collections.Concurrent;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// The statistics pass of an image, started before the job that needs it: a one-process command starts it while its
/// actor system and journal start (a second or so, mostly one thread compiling), so the pass runs on the otherwise idle
/// cores and the job's <see cref="Pipeline.GraphJob.Prepare(string, Pipeline.GraphRequest, string)"/> finds it done.
/// What it hands over is checked: the same file (length and last write time as when the pass started and as now),
/// the same page, histograms of the image's channels and bit depth counting every pixel once; anything else, a pass
/// that failed included, is dropped and the job reads the image itself (and reports a bad file as it always does).
/// Each pass is taken at most once.
/// </summary>
public static class HistogramPrefetch
{
    private sealed record Entry(long Length, DateTime WriteTimeUtc, Task<long[][]> Pass, LastReport Said);

    /// <summary>What the pass last said about its progress, for the job that waits for it.</summary>
    private sealed class LastReport : IProgress<string>
    {
        public volatile string? Value;
        public void Report(string value) => Value = value;
    }
    private static readonly ConcurrentDictionary<(string Path, int Page, int Series), Entry> Passes = new();

    /// <summary>Starts the statistics pass of <paramref name="path"/> (page or level <paramref name="page"/>) on a
    /// thread of its own; nothing happens when the file does not exist or a pass of it is already under way.</summary>
    public static void Start(string path, int page, int series = -1)
    {
        var full = Path.GetFullPath(path);
        var fi = new FileInfo(full);
        if (!fi.Exists || Passes.ContainsKey((full, page, series))) return;
        // its own thread: the thread pool is busy starting the actor system, and a queued pass would start after it
        var said = new LastReport();
        var entry = new Entry(fi.Length, fi.LastWriteTimeUtc, Task.Factory.StartNew(() =>
        {
            using var src = ImageSources.Open(full, page, series);
            return ImageSources.Histograms(src, () => ImageSources.Open(full, page, series), 0, said, default, TimeSpan.FromSeconds(1));
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default), said);
        Passes.TryAdd((full, page, series), entry);
    }

    /// <summary>The histograms of a pass started for this file and page, when it succeeded and still describes the file
    /// as it is now and <paramref name="image"/> (open on it) as read; null otherwise (the caller computes them). While
    /// it waits for the pass, <paramref name="progress"/> hears the pass's progress every 5 s.</summary>
    public static long[][]? Take(string path, int page, IRegionSource image, IProgress<string>? progress = null, CancellationToken ct = default, int series = -1)
    {
        if (!Passes.TryRemove((Path.GetFullPath(path), page, series), out var e)) return null;
        long[][] h;
        try
        {
            string? told = null;
            while (!e.Pass.Wait(TimeSpan.FromSeconds(5), ct))
                if (e.Said.Value is { } now && now != told) progress?.Report(told = now);
            h = e.Pass.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { throw; }
        catch (Exception) { return null; } // the job's own pass reports the problem, naming the file
        var fi = new FileInfo(Path.GetFullPath(path));
        if (!fi.Exists || fi.Length != e.Length || fi.LastWriteTimeUtc != e.WriteTimeUtc) return null;
        return Describes(h, image) ? h : null;
    }

    /// <summary>Histograms of <paramref name="image"/>'s channels, with its bit depth's bins, each counting every pixel.</summary>
    internal static bool Describes(long[][] h, IRegionSource image)
    {
        if (h.Length != image.Channels) return false;
        long pixels = (long)image.Width * image.Height;
        int minBins = image.BitDepth > 8 ? 65536 : 256;
        foreach (var c in h)
        {
            if (c.Length < minBins) return false;
            long sum = 0;
            foreach (var v in c) { if (v < 0) return false; sum += v; }
            if (sum != pixels) return false;
        }
        return true;
    }
}
