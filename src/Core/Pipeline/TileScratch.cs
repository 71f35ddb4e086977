namespace ActorSeg.Core.Pipeline;

/// <summary>
/// The large working buffers of one tile worker, allocated once and reused for every tile it processes, so a worker's
/// memory stays flat instead of churning the large-object heap.
/// Not thread-safe: one per worker.
/// </summary>
public sealed class TileScratch
{
    private ushort[] _raw = [], _grouped = [], _extra = [];
    private float[] _dist = [];
    private float[][] _planes = [];
    private int[] _label = [], _runStart = [], _runComp = [], _rowRuns = [], _counts = [];
    private byte[] _classes = [];

    private static T[] Grow<T>(ref T[] a, int n)
    {
        if (a is null || a.Length < n) a = new T[n];
        return a;
    }

    /// <summary>The tile shape the buffers were last sized for in advance (see <see cref="Reserve"/>).</summary>
    internal TileShape? ReservedFor { get; private set; }

    /// <summary>Sizes the buffers for tiles of <paramref name="shape"/> (at most its read and core pixels), once per shape.</summary>
    internal void Reserve(TileShape shape)
    {
        var (readL, coreW, coreH, C, extraPlanes, withMask) = shape;
        long coreL = (long)coreW * coreH;
        int PL = C + extraPlanes;
        if (readL * C > Array.MaxLength || coreL * PL > Array.MaxLength) return; // the tile itself will say it is too large
        if (ReservedFor == shape) return;
        int rn = (int)readL, cn = (int)coreL;
        Raw(rn * C); Planes(C, rn); Label(Math.Max(rn, cn));
        if (withMask) Classes(cn);
        if (extraPlanes > 0) Extra(cn * extraPlanes);
        RunStart(cn + 1); RunComp(cn); RowRuns(coreH + 1);
        if (2L * rn < (long)cn * PL) Grouped(cn * PL); // else they fit in the first SLIC plane
        ReservedFor = shape;
    }

    /// <summary>Writes every page of the buffers a tile fills whole (its samples, SLIC's planes and labels, the mask's
    /// classes, the texture planes) once, so that the kernel maps them now rather than during a tile. The run and group
    /// tables are sized for the worst case and a tile uses a small part of them: touching them all would cost memory.</summary>
    internal void Touch()
    {
        static void T<T>(Span<T> a) where T : unmanaged
        {
            int step = Math.Max(1, 4096 / System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
            for (int i = 0; i < a.Length; i += step) a[i] = default;
        }
        T(_raw); T(_extra); T(_label); T(_classes);
        foreach (var p in _planes) if (p is not null) T(p);
        T(_runStart.AsSpan(0, _runStart.Length / 3)); T(_runComp.AsSpan(0, _runComp.Length / 3)); // about what a tile's runs use
    }

    /// <summary>Takes over the buffers of <paramref name="warm"/> (which must not be used again).</summary>
    internal void Adopt(TileScratch warm)
    {
        _raw = warm._raw; _grouped = warm._grouped; _extra = warm._extra; _planes = warm._planes;
        _label = warm._label; _runStart = warm._runStart; _runComp = warm._runComp; _rowRuns = warm._rowRuns; _classes = warm._classes;
        ReservedFor = warm.ReservedFor;
    }

    public ushort[] Raw(int n) => Grow(ref _raw, n);
    /// <summary>The mask's raw samples of the core, <paramref name="n"/> of them, in the SLIC label buffer's memory: they
    /// are mapped to classes before SLIC starts, so the buffer's pages serve twice instead of a worker touching 2 bytes a
    /// core pixel of fresh memory for them.</summary>
    public Span<ushort> MaskRaw(int n) => System.Runtime.InteropServices.MemoryMarshal.Cast<int, ushort>(Grow(ref _label, (n + 1) / 2).AsSpan()).Slice(0, n);
    public byte[] Classes(int n) => Grow(ref _classes, n);
    public ushort[] Grouped(int n) => Grow(ref _grouped, n);
    /// <summary>
    /// The fragment step's values grouped by group, <paramref name="n"/> of them: in the first SLIC plane's memory when
    /// it is large enough, else in a buffer of their own. SLIC's planes are not read again once the seeds are known, and
    /// the core's group ids, which also go there (<see cref="Groups"/>), are written only after the grouped values are
    /// done with. A grey 2048² tile with its default halo and texture planes fits (25 MB in 33), so a worker touches that
    /// much less fresh memory.
    /// </summary>
    public Span<ushort> GroupedValues(int n)
    {
        if (_planes.Length > 0 && _planes[0] is { } p && 2L * p.Length >= n)
            return System.Runtime.InteropServices.MemoryMarshal.Cast<float, ushort>(p.AsSpan()).Slice(0, n);
        return Grouped(n).AsSpan(0, n);
    }
    public ushort[] Extra(int n) => Grow(ref _extra, n);
    /// <summary>Per-pixel distances of the scalar SLIC assignment (rows narrower than a vector, or no SIMD) only.</summary>
    public float[] Dist(int n) => Grow(ref _dist, n);
    public int[] Label(int n) => Grow(ref _label, n);
    /// <summary>The core's seed ids, at the front of the SLIC label buffer (sized for the read region too):
    /// <see cref="Superpixels.SlicRegion.Run"/> compacts the core's labels there in place when it is done with them.</summary>
    public Span<int> Seeds(int readPixels, int corePixels) => Grow(ref _label, Math.Max(readPixels, corePixels)).AsSpan(0, corePixels);
    /// <summary>The core's group ids, in the first smoothed plane's memory: SLIC's planes are not read again once the
    /// seeds are known. Call after SLIC (the plane is read-size, so it is never smaller than the core).</summary>
    public Span<int> Groups(int corePixels)
    {
        if (_planes.Length == 0) Array.Resize(ref _planes, 1);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(Grow(ref _planes[0]!, corePixels).AsSpan(0, corePixels));
    }
    public int[] RunStart(int n) => Grow(ref _runStart, n);
    public int[] RunComp(int n) => Grow(ref _runComp, n);
    public int[] RowRuns(int n) => Grow(ref _rowRuns, n);
    /// <summary>Counts that every user leaves all zero.</summary>
    public int[] Counts(int n) => Grow(ref _counts, n);

    /// <summary>
    /// A working array of the fragment step, by slot (<c>FragmentBuilder.Slot</c>), at least <paramref name="n"/> long and its first n entries zero:
    /// a tile has tens of thousands of fragments, and a fresh array for each of their dozen per-fragment tables would
    /// cost the worker new memory (first touches of fresh pages) on every tile. Grown with a quarter of headroom, so
    /// tiles with a few more fragments than the last do not grow it again. Each slot holds one element type.
    /// </summary>
    /// <param name="clear">false where the caller writes all n entries before reading any (then they are not zeroed)</param>
    internal T[] Rent<T>(int slot, int n, bool clear = true) where T : unmanaged
    {
        if (_rented.Length <= slot) Array.Resize(ref _rented, slot + 1);
        if (_rented[slot] is T[] a && a.Length >= n) { if (clear) Array.Clear(a, 0, n); return a; }
        var fresh = new T[n + n / 4];
        _rented[slot] = fresh;
        return fresh;
    }
    private Array?[] _rented = [];

    /// <summary>The boundary records between fragments (reused from tile to tile).</summary>
    internal Graph.FragmentPairs Pairs { get; } = new();
    /// <summary>The boundaries between a tile's groups (reused from tile to tile).</summary>
    internal Graph.FragmentPairs GroupPairs { get; } = new();

    public float[][] Planes(int channels, int n)
    {
        if (_planes.Length < channels) Array.Resize(ref _planes, channels);
        for (int c = 0; c < channels; c++) _planes[c] = Grow(ref _planes[c]!, n);
        return _planes;
    }
}

/// <summary>What a worker's buffers are sized for: the largest tile's read pixels and core, the image's channels, the
/// extra (texture) planes, and whether a mask is read.</summary>
public readonly record struct TileShape(long ReadPixels, int CoreW, int CoreH, int Channels, int ExtraPlanes, bool WithMask)
{
    public static TileShape For(Superpixels.TilePlan plan, int channels, int extraPlanes, bool withMask)
    {
        var (coreW, coreH) = plan.LargestCore; var (readW, readH) = plan.LargestRead;
        return new TileShape((long)readW * readH, coreW, coreH, channels, extraPlanes, withMask);
    }
}

/// <summary>
/// Tile buffers made and touched before the workers of a one-process command need them. Such a command spends its first
/// second starting the runtime, mostly on one thread; the first tile of each worker then spent a third of a second or
/// more in the kernel, mapping some 170 MiB of fresh buffers page by page. <see cref="Start"/> sizes buffers for the
/// job's largest tile from the image's header and touches them, each on a thread of its own, in that second; a worker's first
/// tile of a job of that shape takes them over (<see cref="Take"/>). Any that no worker takes are dropped by
/// <see cref="Clear"/>. Results do not depend on it: only where the memory was first touched.
/// </summary>
public static class WarmScratches
{
    private static readonly System.Collections.Concurrent.ConcurrentQueue<Task<TileScratch?>> Made = new();

    /// <summary>Starts making scratches for the tiles of <paramref name="req"/>, one for each of <paramref name="count"/>
    /// workers and at most one per tile (none when the image cannot be opened: the job reports that itself). Disposing
    /// what it returns drops those no worker took.</summary>
    public static IDisposable Start(GraphRequest req, int count) => Start(() =>
    {
        using var img = Imaging.ImageSources.Open(req.ImagePath, req.Page, req.Series);
        var grid = Superpixels.SeedGrid.For(img.Width, img.Height, req.Slic);
        var plan = Superpixels.TilePlan.Create(img.Width, img.Height, req.TileSize, GraphJob.HaloFor(req, grid));
        return (TileShape.For(plan, img.Channels, req.ExtraPlanes, req.MaskPath is not null), plan.Count);
    }, count);

    /// <summary><see cref="Start(GraphRequest, int)"/> with the largest tile's shape and the tile count from
    /// <paramref name="shapeOf"/> (run on a thread of its own).</summary>
    internal static IDisposable Start(Func<(TileShape Shape, int Tiles)> shapeOf, int count)
    {
        var lease = new Lease();
        if (count < 1) return lease;
        var shape = Task.Factory.StartNew(shapeOf, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        // each on a thread of its own once the shape is known: a machine with many workers has as many cores to touch them
        for (int i = 0; i < count; i++)
        {
            int index = i;
            Made.Enqueue(shape.ContinueWith(_ =>
            {
                if (index >= shape.Result.Tiles) return null; // more workers than tiles: the others would never be used
                var s = new TileScratch();
                s.Reserve(shape.Result.Shape);
                s.Touch();
                return (TileScratch?)s;
            }, CancellationToken.None, TaskContinuationOptions.LongRunning, TaskScheduler.Default));
        }
        return lease;
    }

    private sealed class Lease : IDisposable
    {
        public void Dispose() => Clear();
    }

    /// <summary>How long a worker's first tile waits for its scratch to be touched: a header read that hangs (a stalled
    /// network file system) must not hold the tile; the tile then makes its own buffers, as without a warm scratch.</summary>
    internal static TimeSpan TakeWait { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A scratch made for tiles of <paramref name="shape"/>, waiting for it to be touched (at most
    /// <see cref="TakeWait"/>); null when none is.</summary>
    internal static TileScratch? Take(TileShape shape)
    {
        while (Made.TryDequeue(out var t))
        {
            try { if (t.Wait(TakeWait) && t.Result is { } s && s.ReservedFor == shape) return s; }
            catch (Exception) { } // the image could not be opened or sized: the job says why
        }
        return null;
    }

    /// <summary>Scratches made or being made that no worker has taken yet.</summary>
    internal static int Pending => Made.Count;

    /// <summary>Drops the scratches no worker took (their memory goes back at the next collection).</summary>
    public static void Clear() { while (Made.TryDequeue(out _)) { } }
}
