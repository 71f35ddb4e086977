namespace ActorSeg.Core.Graph;

/// <summary>
/// Boundary records between ids — (a, b, length, Σ |Δ intensity| per channel) — appended as they are found, then summed
/// per unordered pair of mapped ids by one sort of the packed pairs. The sums are integers, so neither the order of the
/// records nor the sort's treatment of equal keys can change them. The stitch of a whole slide appends millions of
/// records (each tile's group pairs, one per pixel across tile sides); summing them through a hash table keyed by
/// group pair, then again by node pair, took twice as long.
/// </summary>
public sealed class BoundaryRecords
{
    private readonly int _channels;
    private int[] _a, _b;
    private long[] _len, _diff;

    public BoundaryRecords(int channels, int capacity = 1024)
    {
        _channels = channels;
        capacity = Math.Max(16, capacity);
        _a = new int[capacity]; _b = new int[capacity]; _len = new long[capacity]; _diff = new long[capacity * channels];
    }

    public int Count { get; private set; }

    public void Add(int a, int b, long length, ReadOnlySpan<long> diff)
    {
        if (Count == _a.Length)
        {
            int grown = (int)Math.Min(Array.MaxLength / Math.Max(1, _channels), 2L * _a.Length);
            Array.Resize(ref _a, grown); Array.Resize(ref _b, grown); Array.Resize(ref _len, grown); Array.Resize(ref _diff, grown * _channels);
        }
        int i = Count++;
        _a[i] = a; _b[i] = b; _len[i] = length;
        diff[.._channels].CopyTo(_diff.AsSpan(i * _channels, _channels));
    }

    /// <summary>The records summed per unordered pair (<paramref name="map"/>[a], <paramref name="map"/>[b]), a record whose
    /// ids map to one id left out (an inner boundary); the pairs sorted by (a, b), a &lt; b, with their summed length and
    /// differences (<see cref="Pairs.Diff"/>: channels per pair).</summary>
    public Pairs SumByPair(ReadOnlySpan<int> map)
    {
        int n = Count, C = _channels;
        var keys = new long[n]; var from = new int[n];
        int m = 0;
        for (int i = 0; i < n; i++)
        {
            int a = map[_a[i]], b = map[_b[i]];
            if (a == b) continue;
            if (a > b) (a, b) = (b, a);
            keys[m] = PairKey.Pack(a, b); from[m] = i; m++;
        }
        Array.Sort(keys, from, 0, m);
        int unique = 0;
        for (int i = 0; i < m; i++) if (i == 0 || keys[i] != keys[i - 1]) unique++;
        var p = new Pairs(new int[unique], new int[unique], new long[unique], new long[unique * C]);
        int r = -1;
        for (int i = 0; i < m; i++)
        {
            if (i == 0 || keys[i] != keys[i - 1]) { r++; p.A[r] = (int)(keys[i] >> 32); p.B[r] = (int)keys[i]; }
            int k = from[i];
            p.Length[r] += _len[k];
            for (int c = 0; c < C; c++) p.Diff[r * C + c] += _diff[k * C + c];
        }
        return p;
    }

    /// <summary>Frees the records (empty afterwards).</summary>
    public void Release()
    {
        Count = 0;
        _a = []; _b = []; _len = []; _diff = [];
    }

    public sealed record Pairs(int[] A, int[] B, long[] Length, long[] Diff);
}
