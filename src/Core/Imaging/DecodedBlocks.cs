using System.Runtime.ExceptionServices;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Decoded compressed blocks of image files (a CZI's JPEG XR and Zstandard subblocks), shared by every reader of the
/// file in this process, the least recently used given up first beyond <see cref="Budget"/> bytes. A tile's read region
/// (its core and halo) meets the blocks of its neighbours' regions too, and the workers of a process take neighbouring
/// tiles at the same time: with a cache per reader an 8192² CZI of 1024² JPEG XR tiles decoded each block 4.1 times over
/// (264 decodes for 64 blocks), at 20-50 ms per megapixel. A block asked for while another thread decodes it waits for
/// that decode rather than doing it again; a block is never given up while a reader copies from it.
/// </summary>
internal static class DecodedBlocks
{
    /// <summary>A block: the file (its full path, length and last write time, so a file replaced in place is not served
    /// from its old blocks) and the block's place in it.</summary>
    internal readonly record struct Key(string File, long Length, long Stamp, long Position);

    /// <summary>A block's decoded bytes, held (not given up) until disposed.</summary>
    internal sealed class Lease : IDisposable
    {
        private Entry? _entry;
        internal Lease(Entry entry) { _entry = entry; Pixels = entry.Pixels!; }
        public byte[] Pixels { get; }
        public void Dispose()
        {
            var e = Interlocked.Exchange(ref _entry, null);
            if (e != null) lock (Gate) { e.Refs--; Trim(); }
        }
    }

    internal sealed class Entry(Key key)
    {
        public readonly Key Key = key;
        public byte[]? Pixels;
        public int Refs = 1;
        public readonly ManualResetEventSlim Done = new(false);
        public ExceptionDispatchInfo? Error;
        public LinkedListNode<Entry>? Node;
    }

    /// <summary>How many bytes of decoded blocks are kept (those being read are kept beyond it).</summary>
    internal static long Budget = 128L << 20;
    /// <summary>Buffers of given-up blocks kept for the next decodes (fresh memory costs a page fault per 4 KiB on the
    /// machines measured, as much as decoding into it).</summary>
    private const int MaxSpare = 4;

    private static readonly object Gate = new();
    private static readonly Dictionary<Key, Entry> Map = new();
    private static readonly LinkedList<Entry> Lru = new(); // decoded blocks, the most recently used last
    private static readonly List<byte[]> Spare = new();
    private static long _bytes;

    /// <summary>
    /// Block <paramref name="key"/>'s <paramref name="bytes"/> decoded bytes: from the cache, or from
    /// <paramref name="decode"/> (given a buffer of at least that length) on this thread. A decode that throws throws
    /// here and for every reader that waited for it, and is tried again by the next.
    /// </summary>
    public static Lease Get(Key key, int bytes, Action<byte[]> decode)
    {
        Entry? e;
        bool mine = false;
        byte[]? buffer = null;
        lock (Gate)
        {
            if (Map.TryGetValue(key, out e))
            {
                e.Refs++;
                if (e.Node != null) { Lru.Remove(e.Node); Lru.AddLast(e.Node); }
            }
            else
            {
                e = new Entry(key);
                Map[key] = e;
                mine = true;
                // (not one far larger: the cache counts a block at its buffer's length)
                int i = Spare.FindIndex(s => s.Length >= bytes && s.Length <= 2L * bytes);
                if (i >= 0) { buffer = Spare[i]; Spare.RemoveAt(i); }
            }
        }
        if (!mine)
        {
            e.Done.Wait();
            if (e.Error != null)
            {
                lock (Gate) e.Refs--;
                e.Error.Throw();
            }
            return new Lease(e);
        }
        buffer ??= new byte[bytes];
        try { decode(buffer); }
        catch (Exception ex)
        {
            lock (Gate)
            {
                e.Error = ExceptionDispatchInfo.Capture(ex);
                e.Refs--;
                Map.Remove(key);
                if (Spare.Count < MaxSpare) Spare.Add(buffer);
            }
            e.Done.Set();
            throw;
        }
        lock (Gate)
        {
            e.Pixels = buffer;
            _bytes += buffer.Length;
            e.Node = Lru.AddLast(e);
            Trim();
        }
        e.Done.Set();
        return new Lease(e);
    }

    /// <summary>Gives up the least recently used blocks no reader holds while the cache is over its budget (under the gate).</summary>
    private static void Trim()
    {
        for (var node = Lru.First; node != null && _bytes > Budget;)
        {
            var next = node.Next;
            var e = node.Value;
            if (e.Refs == 0)
            {
                Lru.Remove(node);
                e.Node = null;
                Map.Remove(e.Key);
                _bytes -= e.Pixels!.Length;
                if (Spare.Count < MaxSpare) Spare.Add(e.Pixels);
                e.Pixels = null;
            }
            node = next;
        }
    }

    /// <summary>Gives up every block no reader holds, and the spare buffers (tests; a long-running process that has
    /// finished its CZI files).</summary>
    internal static void Clear()
    {
        lock (Gate)
        {
            long budget = Budget;
            Budget = 0;
            Trim();
            Budget = budget;
            Spare.Clear();
        }
    }
}
