using System.Runtime.CompilerServices;

namespace ActorSeg.Core.Graph;

/// <summary>
/// The boundaries between a tile's fragments: one record per unordered pair of fragments (A &lt; B), numbered in the
/// order the pairs are first seen, with the boundary's length, the first pixel (raster order) on each side and, per
/// channel, Σ |Δ intensity| across it. Pairs are found through an open-addressing table (linear probing) keyed by the
/// packed pair. The arrays are kept from tile to tile (one instance per worker, in its scratch): not thread-safe.
/// </summary>
internal sealed class FragmentPairs
{
    public int Count;
    public int[] A = [], B = [], Length = [];
    public long[] FirstA = [], FirstB = [];
    /// <summary>Channels per pair.</summary>
    public long[] Diff = [];

    private long[] _keys = []; // 0 = empty: a key packs A < B, so B > 0 and no key is 0
    private int[] _index = [];
    private int _shift, _channels;

    /// <summary>Empties the set for a tile of <paramref name="fragments"/> fragments.</summary>
    public void Reset(int channels, int fragments)
    {
        Count = 0; _channels = channels;
        int capacity = Math.Max(16, 2 * fragments);
        if (A.Length < capacity || Diff.Length < A.Length * channels) Resize(Math.Max(capacity, A.Length));
        // about two pairs per fragment: a table of 8 slots per fragment stays at most a quarter full
        // a larger table, kept from an earlier tile, is only emptier: kept rather than traded for fresh memory (the
        // pairs' numbering is the order they are met, whatever the table's size)
        int slots = (int)Math.Min(1 << 30, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(64, 8 * fragments)));
        if (_keys.Length < slots) { _keys = new long[slots]; _index = new int[slots]; }
        else { Array.Clear(_keys); slots = _keys.Length; }
        Array.Clear(_recent);
        _shift = 64 - System.Numerics.BitOperations.Log2((uint)slots);
    }

    /// <summary>The index of pair (a, b), a &lt; b, added (length 0, no first pixels, no differences) if new.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int IndexOf(int a, int b)
    {
        long key = PairKey.Pack(a, b);
        ulong hash = (ulong)key * 0x9E3779B97F4A7C15UL;
        // the pairs along the rows just walked, most of them met again on the next rows, sit in a small table that
        // stays in cache; the whole table, several MB, is read only on a miss
        ref var recent = ref _recent[(int)(hash >> (64 - RecentBits))];
        if (recent.Key == key) return recent.Index;
        int mask = _keys.Length - 1;
        int s = (int)(hash >> _shift);
        while (true)
        {
            long k = _keys[s];
            if (k == key) { recent = new Recent { Key = key, Index = _index[s] }; return recent.Index; }
            if (k == 0) { int i = Add(s, key, a, b); recent = new Recent { Key = key, Index = i }; return i; }
            s = (s + 1) & mask;
        }
    }

    private const int RecentBits = 11;
    private readonly Recent[] _recent = new Recent[1 << RecentBits];
    private struct Recent { public long Key; public int Index; } // Key 0 = empty

    private int Add(int slot, long key, int a, int b)
    {
        int i = Count++;
        if (i == A.Length) Resize(2 * A.Length);
        A[i] = a; B[i] = b; Length[i] = 0; FirstA[i] = long.MaxValue; FirstB[i] = long.MaxValue;
        Diff.AsSpan(i * _channels, _channels).Clear();
        _keys[slot] = key; _index[slot] = i;
        if (2 * Count > _keys.Length) Rehash();
        return i;
    }

    private void Resize(int capacity)
    {
        Array.Resize(ref A, capacity); Array.Resize(ref B, capacity); Array.Resize(ref Length, capacity);
        Array.Resize(ref FirstA, capacity); Array.Resize(ref FirstB, capacity);
        Array.Resize(ref Diff, capacity * Math.Max(1, _channels));
    }

    private void Rehash()
    {
        int slots = 2 * _keys.Length;
        _keys = new long[slots]; _index = new int[slots];
        _shift--;
        for (int i = 0; i < Count; i++)
        {
            long key = PairKey.Pack(A[i], B[i]);
            int s = (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> _shift);
            while (_keys[s] != 0) s = (s + 1) & (slots - 1);
            _keys[s] = key; _index[s] = i;
        }
    }
}
