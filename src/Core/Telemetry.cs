using System.Diagnostics.Metrics;

namespace ActorSeg.Core;

/// <summary>What the coordinator's book holds right now, for the gauges (read by the metrics endpoint's thread).</summary>
public sealed record BookGauges(IReadOnlyDictionary<string, int> JobsByPhase, int TilesQueued, int TilesInFlight, int Workers, int Trainers,
    int BatchesOpen = 0, IReadOnlyDictionary<string, int>? BatchSlides = null)
{
    public static readonly BookGauges Empty = new(new Dictionary<string, int>(), 0, 0, 0, 0);
}

/// <summary>
/// ActorSeg's metrics, through .NET's own metrics API (System.Diagnostics.Metrics): the actors and the book count
/// and time what they do here, and each node's host serves them at /metrics in the Prometheus format. Nothing here
/// carries a job id or a path (labels stay few and bounded); a node reports only what it does itself.
/// </summary>
public static class Telemetry
{
    public const string MeterName = "actorseg";
    public static readonly Meter Meter = new(MeterName);

    // the coordinator
    public static readonly Counter<long> TilesDone = Meter.CreateCounter<long>("tiles_done", "tiles", "Tiles finished and journaled by the coordinator");
    public static readonly Counter<long> Retries = Meter.CreateCounter<long>("retries", "items", "Work given out again after a failure, a missed deadline or a lost node (kind: tile or step)");
    public static readonly Counter<long> Quarantines = Meter.CreateCounter<long>("quarantines", "items",
        "Work that failed too often and failed its job (kind: tile, or job: a job that took the coordinator down again and again)");
    public static readonly Counter<long> JobsEnded = Meter.CreateCounter<long>("jobs_ended", "jobs", "Jobs that ended (outcome: done or failed)");
    public static readonly Histogram<double> TileSeconds = Meter.CreateHistogram<double>("tile_seconds", "s", "Time a worker took for one tile");
    public static readonly Histogram<double> JournalWriteSeconds = Meter.CreateHistogram<double>("journal_write_seconds", "s", "Time from asking the journal to write a decision's events to their being written");
    public static readonly Counter<long> BatchSlidesEnded = Meter.CreateCounter<long>("batch_slides_ended", "slides", "Slides of batches that ended (outcome: done or failed)");
    public static readonly Counter<long> BatchesEnded = Meter.CreateCounter<long>("batches_ended", "batches", "Batches whose every slide ended (outcome: done, or failed when any slide failed)");
    public static readonly Counter<long> JournalFailures = Meter.CreateCounter<long>("journal_failures", "writes", "Journal writes that failed (the coordinator restarts and recovers from what was written)");

    // workers and trainers, in their own processes
    private static int _slots, _slotsBusy, _trainers, _trainersBusy;
    public static void AddWorkerSlot() => Interlocked.Increment(ref _slots);
    public static void RemoveWorkerSlot() => Interlocked.Decrement(ref _slots);
    public static void WorkerBusy(bool busy) { if (busy) Interlocked.Increment(ref _slotsBusy); else Interlocked.Decrement(ref _slotsBusy); }
    public static void AddTrainer() => Interlocked.Increment(ref _trainers);
    public static void TrainerBusy(bool busy) { if (busy) Interlocked.Increment(ref _trainersBusy); else Interlocked.Decrement(ref _trainersBusy); }

    private static Func<BookGauges> _book = () => BookGauges.Empty;
    /// <summary>The coordinator registers how to read its book (a snapshot it refreshes after every decision).</summary>
    public static void ObserveBook(Func<BookGauges> read) => _book = read;

    static Telemetry()
    {
        Meter.CreateObservableGauge("jobs", () => _book().JobsByPhase.Select(p => new Measurement<int>(p.Value, new KeyValuePair<string, object?>("phase", p.Key))),
            "jobs", "Jobs in the coordinator's book, by phase");
        Meter.CreateObservableGauge("tiles_queued", () => _book().TilesQueued, "tiles", "Tiles waiting for a worker");
        Meter.CreateObservableGauge("tiles_in_flight", () => _book().TilesInFlight, "tiles", "Tiles a worker is computing");
        Meter.CreateObservableGauge("workers_known", () => _book().Workers, "workers", "Worker slots the coordinator knows");
        Meter.CreateObservableGauge("batches_open", () => _book().BatchesOpen, "batches", "Batches with slides still to run");
        Meter.CreateObservableGauge("batch_slides", () => (_book().BatchSlides ?? new Dictionary<string, int>()).Select(p => new Measurement<int>(p.Value, new KeyValuePair<string, object?>("state", p.Key))),
            "slides", "The open batches' slides by state (pending, running, done, failed, skipped)");
        Meter.CreateObservableGauge("trainers_known", () => _book().Trainers, "trainers", "Trainers the coordinator knows");
        Meter.CreateObservableGauge("worker_slots", () => Volatile.Read(ref _slots), "slots", "Tile-worker slots on this node");
        Meter.CreateObservableGauge("worker_slots_busy", () => Volatile.Read(ref _slotsBusy), "slots", "Tile-worker slots on this node busy with a tile or a mask");
        Meter.CreateObservableGauge("trainers", () => Volatile.Read(ref _trainers), "trainers", "Trainers on this node");
        Meter.CreateObservableGauge("trainers_busy", () => Volatile.Read(ref _trainersBusy), "trainers", "Trainers on this node busy training or classifying");
    }

    public static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);
}

/// <summary>
/// Progress that acts where it is reported, at once: <see cref="Progress{T}"/> posts each report to the thread pool, so
/// a job's step lines could be logged out of order, or after the line saying the job ended. The action must be safe
/// to call from any thread (logging is).
/// </summary>
public sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
