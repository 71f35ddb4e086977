namespace ActorSeg.Core.Graph;

/// <summary>
/// Sums boundary statistics per unordered pair of ids (a, b), a ≠ b: the shared boundary length and, per channel,
/// Σ |Δ intensity| across it. Pairs keep the order in which they were first seen.
/// </summary>
public sealed class PairAccumulator
{
    private readonly int _channels;
    private readonly Dictionary<long, int> _index = new(PairKey.Instance);
    private readonly List<int> _a = new(), _b = new();
    private readonly List<long> _len = new(), _diff = new();

    public PairAccumulator(int channels) => _channels = channels;

    public int Count => _a.Count;
    public int A(int i) => _a[i];
    public int B(int i) => _b[i];
    public long Length(int i) => _len[i];
    public long Diff(int i, int c) => _diff[i * _channels + c];

    /// <summary>Adds to pair {a, b}; a pair of equal ids is an inner boundary and is ignored.</summary>
    public void Add(int a, int b, long length, ReadOnlySpan<long> diff)
    {
        if (a == b) return;
        if (a > b) (a, b) = (b, a);
        long key = PairKey.Pack(a, b);
        if (!_index.TryGetValue(key, out int idx))
        {
            idx = _a.Count; _index[key] = idx;
            _a.Add(a); _b.Add(b); _len.Add(0);
            for (int c = 0; c < _channels; c++) _diff.Add(0);
        }
        _len[idx] += length;
        for (int c = 0; c < _channels; c++) _diff[idx * _channels + c] += diff[c];
    }

    public void Add(int a, int b, long length, List<long> diffs, int offset)
    {
        Span<long> d = stackalloc long[_channels];
        for (int c = 0; c < _channels; c++) d[c] = diffs[offset + c];
        Add(a, b, length, d);
    }

    public int[] AArray() => _a.ToArray();
    public int[] BArray() => _b.ToArray();
    public long[] DiffArray() => _diff.ToArray();

    /// <summary>Frees the memory (the accumulator is empty afterwards).</summary>
    public void Release()
    {
        _index.Clear(); _index.TrimExcess();
        _a.Clear(); _a.TrimExcess(); _b.Clear(); _b.TrimExcess();
        _len.Clear(); _len.TrimExcess(); _diff.Clear(); _diff.TrimExcess();
    }
}
