using System.Runtime.ExceptionServices;

namespace ActorSeg.Core.Imaging;

/// <summary>
/// Decoded compressed blocks of image files (a CZI's JPEG XR and Zstandard subblocks), shared by every reader of the
/// file in this process, the least recently used given up first beyond <see cref="Budget"/> bytes. A tile's read region
/// (its core and halo) meets the blocks of its neighbours' regions too, and the workers of a process take neighbouring
/// tiles at the same time: with a cache per reader an 8192² CZI of 1024² JPEG XR tiles decoded each block 4.1 times over
/// (264 decodes for 64 blocks), at 20-50 ms per megapixel. A block asked for while another thread decodes it waits for
/// that decode rather than doing it again; a block is never given up while a reader copies from it. A block no reader has
/// asked for in <see cref="IdleRelease"/> is given up whatever the budget (a coordinator or worker lives on after its CZI
/// jobs, and would hold their last 128 MiB for ever); once none is left, the spare buffers go too and the memory goes
/// back to the system.
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
            if (e != null) lock (Gate) { e.Refs--; e.LastUse = Environment.TickCount64; Trim(); }
        }
    }

    internal sealed class Entry(Key key)
    {
        public readonly Key Key = key;
        public byte[]? Pixels;
        public int Refs = 1;
        public long LastUse = Environment.TickCount64;
        public readonly ManualResetEventSlim Done = new(false);
        public ExceptionDispatchInfo? Error;
        public LinkedListNode<Entry>? Node;
    }

    /// <summary>How many bytes of decoded blocks are kept (those being read are kept beyond it).</summary>
    internal static long Budget = 128L << 20;
    /// <summary>Buffers of given-up blocks kept for the next decodes (fresh memory costs a page fault per 4 KiB on the
    /// machines measured, as much as decoding into it).</summary>
    private const int MaxSpare = 4;
    /// <summary>A block nobody asked for in this long is given up (tests shorten it).</summary>
    internal static TimeSpan IdleRelease = TimeSpan.FromSeconds(30);

    private static readonly object Gate = new();
    private static readonly Dictionary<Key, Entry> Map = new();
    private static readonly LinkedList<Entry> Lru = new(); // decoded blocks, the most recently used last
    private static readonly List<byte[]> Spare = new();
    private static long _bytes;
    private static Timer? _sweeper; // runs while the cache holds anything

    /// <summary>Whether block <paramref name="key"/> is held decoded now.</summary>
    internal static bool Holds(Key key) { lock (Gate) return Map.TryGetValue(key, out var e) && e.Pixels != null; }

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
                e.LastUse = Environment.TickCount64;
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
                StartSweeper();
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
            e.LastUse = Environment.TickCount64;
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
            if (node.Value.Refs == 0) GiveUp(node, keepBuffer: true);
            node = next;
        }
    }

    private static void GiveUp(LinkedListNode<Entry> node, bool keepBuffer)
    {
        var e = node.Value;
        Lru.Remove(node);
        e.Node = null;
        Map.Remove(e.Key);
        _bytes -= e.Pixels!.Length;
        if (keepBuffer && Spare.Count < MaxSpare) Spare.Add(e.Pixels);
        e.Pixels = null;
    }

    /// <summary>Starts the idle sweep where it is not running (under the gate).</summary>
    private static void StartSweeper()
    {
        if (_sweeper != null) return;
        var period = TimeSpan.FromMilliseconds(Math.Max(10, IdleRelease.TotalMilliseconds / 2));
        _sweeper = new Timer(_ => Sweep(), null, period, period);
    }

    /// <summary>Gives up the blocks no reader holds nor asked for in <see cref="IdleRelease"/>; once the cache is empty, the
    /// spare buffers too, and then the sweep stops and a full collection hands the memory back.</summary>
    internal static void Sweep()
    {
        long released = 0;
        lock (Gate)
        {
            long now = Environment.TickCount64, idle = (long)IdleRelease.TotalMilliseconds;
            for (var node = Lru.First; node != null;)
            {
                var next = node.Next;
                var e = node.Value;
                if (e.Refs == 0 && now - e.LastUse >= idle) { released += e.Pixels!.Length; GiveUp(node, keepBuffer: false); }
                node = next;
            }
            if (Map.Count > 0) return;
            foreach (var b in Spare) released += b.Length;
            Spare.Clear();
            _sweeper?.Dispose();
            _sweeper = null;
        }
        // (the buffers are large objects, collected only by a full collection, which an idle process may never start, and
        // only an aggressive one hands their pages back: measured, 6 blocks of 32 MiB, RSS 378 → 249 MiB, where a default
        // one left it at 386 MiB. It pauses this process's other work once, after 30 s without a block read.)
        if (released >= 16 << 20) GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }
}
