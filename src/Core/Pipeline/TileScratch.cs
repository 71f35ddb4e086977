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

    /// <summary>The tile shape the buffers were last sized for in advance (see <c>GraphJob.ProcessTile</c>).</summary>
    internal object? ReservedFor { get; set; }

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
