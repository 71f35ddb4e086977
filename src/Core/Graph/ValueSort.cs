namespace ActorSeg.Core.Graph;

/// <summary>
/// Sorts a node's 16-bit values in place, in linear time: a least-significant-digit radix sort on bytes (one pass
/// when every value shares its high byte, as all 8-bit data does), insertion sort for short runs. The result is the
/// ascending order of the same multiset, so it is identical to any other sort's: features stay exact.
/// </summary>
public static class ValueSort
{
    private const int Small = 48;

    /// <param name="tmp">scratch of at least <paramref name="data"/>.Length values</param>
    public static void Sort(Span<ushort> data, Span<ushort> tmp)
    {
        int n = data.Length;
        if (n <= Small) { Insertion(data); return; }
        Span<int> lo = stackalloc int[256], hi = stackalloc int[256];
        lo.Clear(); hi.Clear();
        foreach (var v in data) { lo[v & 0xFF]++; hi[v >> 8]++; }
        bool oneHigh = hi[data[0] >> 8] == n;
        bool oneLow = lo[data[0] & 0xFF] == n;
        tmp = tmp[..n];
        if (oneHigh)
        {
            // a counting sort on the low byte, written straight back
            int k = 0, h = data[0] & 0xFF00;
            for (int b = 0; b < 256; b++) { int c = lo[b]; if (c > 0) { data.Slice(k, c).Fill((ushort)(h | b)); k += c; } }
            return;
        }
        if (!oneLow)
        {
            Prefix(lo);
            foreach (var v in data) tmp[lo[v & 0xFF]++] = v;
        }
        else data.CopyTo(tmp);
        Prefix(hi);
        foreach (var v in tmp) data[hi[v >> 8]++] = v;
    }

    private static void Prefix(Span<int> count)
    {
        int sum = 0;
        for (int b = 0; b < 256; b++) { int c = count[b]; count[b] = sum; sum += c; }
    }

    private static void Insertion(Span<ushort> a)
    {
        for (int i = 1; i < a.Length; i++)
        {
            ushort v = a[i];
            int j = i - 1;
            while (j >= 0 && a[j] > v) { a[j + 1] = a[j]; j--; }
            a[j + 1] = v;
        }
    }
}
