using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>
/// Damaged Zeiss CZI and Leica LIF files, made by flipping bytes of good ones or cutting them short at random (seeded):
/// each either reads or fails with an <see cref="InputFileException"/> naming the file, never with another exception
/// (an index out of range, an overflow, a huge allocation). Where jxrlib and its encoder are installed (./run.sh test
/// installs them) the CZI holds a JPEG XR tile too, whose damage jxrlib meets in its own process (<see cref="JpegXr"/>):
/// a crash there is a failed read, not the end of this one.
/// </summary>
public class VendorFileFuzzTests() : TempDirTest("fuzz")
{
    private static ushort[] Samples(int n, int seed) { var r = new Random(seed); return [.. Enumerable.Range(0, n).Select(_ => (ushort)r.Next(4096))]; }

    private string Czi()
    {
        var path = Path.Combine(_dir, "base.czi");
        CziWriter.Write(path, CziWriter.Gray16, [
            new CziBlock(-40, 10, 48, 32, Samples(48 * 32, 1), C: 0, M: 0),
            new CziBlock(0, 10, 48, 32, Samples(48 * 32, 2), C: 0, M: 1, Compression: CziWriter.Zstd1, HiLo: true),
            new CziBlock(-40, 10, 48, 32, Samples(48 * 32, 3), C: 1, M: 0, Compression: CziWriter.Zstd0),
            new CziBlock(0, 10, 48, 32, Samples(48 * 32, 4), C: 1, M: 1, Z: 1),
            new CziBlock(-40, 10, 88, 32, Samples(44 * 16, 5), C: 0, M: 0, StoredW: 44, StoredH: 16, Compression: CziWriter.Zstd1),
            .. JpegXr.Available && File.Exists("/usr/bin/JxrEncApp")
                ? [new CziBlock(0, 10, 48, 32, Samples(48 * 32, 6), C: 1, M: 1, Compression: CziWriter.JpegXr)] : Array.Empty<CziBlock>(),
        ], 2e-7, ["a", "b"]);
        return path;
    }

    private string Lif()
    {
        var path = Path.Combine(_dir, "base.lif");
        int w = 40, h = 24;
        var mem = new byte[w * h * 2 * 2 * 3];
        new Random(9).NextBytes(mem);
        LifWriter.Write(path, [new LifImage("s", [12, 12], [0, w * h * 2], [(1, w, 2, 1e-5), (2, h, 2L * w, 1e-5), (3, 3, 4L * w * h, 2e-6)], mem),
            new LifImage("t", [8], [0], [(1, 8, 1, 1e-6), (2, 8, 8, 1e-6)], new byte[64])]);
        return path;
    }

    [Fact]
    public void DamagedCziAndLifFiles_ReadOrFailNamingTheFile_NeverOtherwise()
    {
        foreach (var good in new[] { Czi(), Lif() })
        {
            var bytes = File.ReadAllBytes(good);
            var rng = new Random(12345);
            int failed = 0, read = 0;
            for (int trial = 0; trial < 400; trial++)
            {
                var bad = (byte[])bytes.Clone();
                string what;
                if (trial % 5 == 4)
                {
                    int cut = rng.Next(bad.Length);
                    bad = bad[..cut];
                    what = $"cut at {cut}";
                }
                else
                {
                    int flips = 1 + rng.Next(4);
                    var at = new List<int>();
                    for (int f = 0; f < flips; f++)
                    {
                        // half in the first 2 KiB (headers, directory, XML), half anywhere
                        int p = rng.Next(2) == 0 ? rng.Next(Math.Min(2048, bad.Length)) : rng.Next(bad.Length);
                        bad[p] = (byte)rng.Next(256);
                        at.Add(p);
                    }
                    what = $"bytes {string.Join(", ", at)} changed";
                }
                var path = Path.Combine(_dir, $"bad{Path.GetExtension(good)}");
                File.WriteAllBytes(path, bad);
                try
                {
                    using var s = ImageSources.Open(path);
                    if ((long)s.Width * s.Height * s.Channels <= 1 << 22)
                    {
                        var buf = new ushort[s.Width * s.Height * s.Channels];
                        s.ReadRegion(0, 0, s.Width, s.Height, buf);
                    }
                    _ = PixelSize.MicronsPerPixel(path);
                    foreach (var (lw, lh) in ImageSources.PyramidLevels(path).Skip(1))
                    {
                        using var level = ImageSources.Open(path, 1);
                        if ((long)level.Width * level.Height * level.Channels <= 1 << 22)
                            level.ReadRegion(0, 0, level.Width, level.Height, new ushort[level.Width * level.Height * level.Channels]);
                        break;
                    }
                    read++;
                }
                catch (InputFileException e)
                {
                    Assert.True(e.Message.StartsWith(path + ": "), $"{good}, {what}: the message does not name the file: {e.Message}");
                    failed++;
                }
                catch (Exception e)
                {
                    Assert.Fail($"{good}, trial {trial} ({what}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                }
            }
            Assert.True(failed > 50 && read > 50, $"{good}: {failed} failed, {read} read: the mutations should hit both");
        }
    }
}
