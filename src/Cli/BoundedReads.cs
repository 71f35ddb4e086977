using System.Diagnostics;

namespace ActorSeg.Cli;

/// <summary>
/// Reads a caller may wait for only so long: each runs on a thread of its own, and the caller gets a
/// <see cref="TimeoutException"/> when the file system does not answer in time (a stalled network volume). A read blocked
/// in the kernel cannot be cancelled: it keeps its thread until the file system answers, and its result is dropped. At
/// most <c>maxInFlight</c> reads run at once, so stalled ones cannot take a new thread for every request.
/// </summary>
public sealed class BoundedReads(TimeSpan timeout, int maxInFlight = 8)
{
    private readonly SemaphoreSlim _slots = new(maxInFlight, maxInFlight);

    public TimeSpan Timeout => timeout;

    /// <summary>The result of <paramref name="read"/>, or its exception as it threw it.</summary>
    /// <exception cref="TimeoutException">the read did not end within <see cref="Timeout"/>, or earlier reads that have not
    /// ended hold every slot for that long</exception>
    public async Task<T> RunAsync<T>(Func<T> read, CancellationToken ct = default)
    {
        var sw = Stopwatch.StartNew();
        if (!await _slots.WaitAsync(timeout, ct))
            throw new TimeoutException($"{maxInFlight} earlier reads have not ended in {timeout.TotalSeconds:0.#} s");
        Task<T> task;
        try { task = Task.Factory.StartNew(read, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default); }
        catch
        {
            _slots.Release();
            throw;
        }
        // the slot is freed when the read ends, however late; its error is observed here when no caller waits any more
        _ = task.ContinueWith(t => { _ = t.Exception; _slots.Release(); }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        var left = timeout - sw.Elapsed;
        try { return await task.WaitAsync(left > TimeSpan.Zero ? left : TimeSpan.Zero, ct); }
        catch (TimeoutException) when (!task.IsCompleted)
        {
            throw new TimeoutException($"not ended in {timeout.TotalSeconds:0.#} s");
        }
    }
}
