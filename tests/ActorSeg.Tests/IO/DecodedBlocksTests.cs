using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>
/// The process's cache of decoded blocks (<see cref="DecodedBlocks"/>): a block is decoded once for all its readers,
/// also when they ask at the same time; a failed decode fails every reader that waited for it and is tried again by the
/// next; a block being read is never given up or its buffer reused; a file replaced in place is read anew.
/// </summary>
public class DecodedBlocksTests() : TempDirTest("blocks")
{
    /// <summary>A key no other test uses (the cache is the process's).</summary>
    private static DecodedBlocks.Key NewKey(long position = 0) => new($"/nowhere/{Guid.NewGuid():N}.czi", 1000, 1, position);

    [Fact]
    public void ABlockAskedForAgain_OrByManyAtOnce_IsDecodedOnce()
    {
        var key = NewKey();
        int decodes = 0;
        void Decode(byte[] b) { Interlocked.Increment(ref decodes); Thread.Sleep(200); b.AsSpan(0, 64).Fill(7); }
        var got = new byte[8][];
        var threads = Enumerable.Range(0, 8).Select(i => new Thread(() =>
        {
            using var lease = DecodedBlocks.Get(key, 64, Decode);
            got[i] = lease.Pixels[..64];
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Equal(1, decodes);
        Assert.All(got, g => Assert.All(g, v => Assert.Equal(7, v)));
        using (var again = DecodedBlocks.Get(key, 64, Decode)) Assert.Equal(7, again.Pixels[63]);
        Assert.Equal(1, decodes);
    }

    [Fact]
    public void AFailedDecode_FailsEveryReaderThatWaited_AndTheNextReaderTriesAgain()
    {
        var key = NewKey();
        int decodes = 0;
        using var started = new ManualResetEventSlim();
        void Bad(byte[] _) { Interlocked.Increment(ref decodes); started.Set(); Thread.Sleep(300); throw new InputFileException("/x.czi", "damaged"); }
        var errors = new Exception?[4];
        var first = new Thread(() => { try { DecodedBlocks.Get(key, 16, Bad).Dispose(); } catch (Exception e) { errors[0] = e; } });
        first.Start();
        started.Wait();
        var waiters = Enumerable.Range(1, 3).Select(i => new Thread(() => { try { DecodedBlocks.Get(key, 16, Bad).Dispose(); } catch (Exception e) { errors[i] = e; } })).ToArray();
        foreach (var t in waiters) t.Start();
        first.Join();
        foreach (var t in waiters) t.Join();
        Assert.All(errors, e => Assert.Equal("/x.czi: damaged", Assert.IsType<InputFileException>(e).Message));
        Assert.InRange(decodes, 1, 4); // (a waiter that came after the failure tries on its own)
        int before = decodes;
        using (var lease = DecodedBlocks.Get(key, 16, b => { Interlocked.Increment(ref decodes); b[0] = 1; })) Assert.Equal(1, lease.Pixels[0]);
        Assert.Equal(before + 1, decodes);
    }

    [Fact]
    public void ABlockBeingRead_IsNeverGivenUp_NorItsBufferReused_BeyondTheBudget()
    {
        // blocks of a quarter of the budget: five more than fill it while the first is held
        int size = (int)(DecodedBlocks.Budget / 4);
        var held = NewKey();
        using (var lease = DecodedBlocks.Get(held, size, b => b.AsSpan(0, size).Fill(42)))
        {
            for (int i = 0; i < 5; i++)
            {
                byte v = (byte)i;
                DecodedBlocks.Get(NewKey(i), size, b => b.AsSpan(0, size).Fill(v)).Dispose();
            }
            Assert.True(lease.Pixels.AsSpan(0, size).IndexOfAnyExcept((byte)42) < 0, "the held block's bytes changed");
        }
        // released, it goes like the others once the cache needs the room
        for (int i = 0; i < 5; i++) DecodedBlocks.Get(NewKey(i), size, b => b.AsSpan(0, size).Fill(1)).Dispose();
        int decodes = 0;
        DecodedBlocks.Get(held, size, _ => decodes++).Dispose();
        Assert.Equal(1, decodes);
    }

    [Fact]
    public void BlocksNobodyAskedForAWhile_AreGivenUp_ButNotOneBeingRead()
    {
        var idle = NewKey();
        var held = NewKey(1);
        var was = DecodedBlocks.IdleRelease;
        DecodedBlocks.Get(idle, 64, b => b[0] = 1).Dispose();
        using var lease = DecodedBlocks.Get(held, 64, b => b[0] = 2);
        Assert.True(DecodedBlocks.Holds(idle)); // (asked for under the default 30 s: kept)
        DecodedBlocks.IdleRelease = TimeSpan.FromMilliseconds(100);
        try
        {
            // the sweep runs on a timer (one started under the default runs every 15 s)
            var until = DateTime.UtcNow.AddSeconds(40);
            while (DecodedBlocks.Holds(idle) && DateTime.UtcNow < until) Thread.Sleep(50);
            Assert.False(DecodedBlocks.Holds(idle), "an idle block was kept");
            Assert.True(DecodedBlocks.Holds(held), "a block being read was given up");
            Assert.Equal(2, lease.Pixels[0]);
            int decodes = 0;
            DecodedBlocks.Get(idle, 64, b => { decodes++; b[0] = 3; }).Dispose();
            Assert.Equal(1, decodes);
        }
        finally { DecodedBlocks.IdleRelease = was; }
    }

    [Fact]
    public void ACziReplacedInPlace_IsReadAnew_NotFromItsOldBlocks()
    {
        var path = Path.Combine(_dir, "replaced.czi");
        ushort[] Samples(int seed) => [.. Enumerable.Range(0, 32 * 16).Select(i => (ushort)(i * 7 + seed))];
        ushort[] Read()
        {
            using var src = ImageSources.Open(path);
            var got = new ushort[32 * 16];
            src.ReadRegion(0, 0, 32, 16, got);
            return got;
        }
        CziWriter.Write(path, CziWriter.Gray16, [new CziBlock(0, 0, 32, 16, Samples(1), Compression: CziWriter.Zstd0)]);
        File.SetLastWriteTimeUtc(path, new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc));
        Assert.Equal(Samples(1), Read());
        // the same length, the same place of the block: only its samples and the file's time differ
        CziWriter.Write(path, CziWriter.Gray16, [new CziBlock(0, 0, 32, 16, Samples(2), Compression: CziWriter.Zstd0)]);
        File.SetLastWriteTimeUtc(path, new DateTime(2026, 1, 1, 0, 0, 1, DateTimeKind.Utc));
        Assert.Equal(Samples(2), Read());
    }
}
