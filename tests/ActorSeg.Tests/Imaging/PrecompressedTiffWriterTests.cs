using System.IO.Compression;
using ActorSeg.Core.Imaging;
using Xunit;
using Vips = NetVips;

namespace ActorSeg.Tests.Imaging;

/// <summary>The writer of pre-compressed tiles, with a codec libvips decodes (Deflate), in classic TIFF and BigTIFF.</summary>
public class PrecompressedTiffWriterTests() : TempDirTest("ptiff")
{
    private static byte[] Deflate(ReadOnlySpan<byte> raw)
    {
        using var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Fastest, leaveOpen: true)) z.Write(raw);
        return ms.ToArray();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TwoDirectoriesOfDeflateTiles_WrittenInAnyOrder_ReadBackExactly(bool bigTiff)
    {
        var path = Path.Combine(_dir, "p.tif");
        var rnd = new Random(7);
        var sizes = new[] { (W: 70, H: 50), (W: 35, H: 25) };
        var images = sizes.Select(s => { var b = new byte[s.W * s.H]; rnd.NextBytes(b); return b; }).ToArray();
        using (var fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            var w = new PrecompressedTiffWriter(fs, bigTiff);
            for (int d = 0; d < 2; d++)
            {
                var (W, H) = sizes[d];
                w.BeginDirectory(new TiffDirectory(W, H, 32, Compression: 8, Photometric: 1, SamplesPerPixel: 1, Description: $"level {d}", PixelSizeMicrons: 0.5 * (d + 1)));
                int cols = (W + 31) / 32, rows = (H + 31) / 32;
                // bottom-right first: the tile table, not the file order, places them
                for (int t = cols * rows - 1; t >= 0; t--)
                {
                    int c = t % cols, r = t / cols;
                    var tile = new byte[32 * 32];
                    for (int y = 0; y < 32 && r * 32 + y < H; y++)
                        for (int x = 0; x < 32 && c * 32 + x < W; x++) tile[y * 32 + x] = images[d][(r * 32 + y) * W + c * 32 + x];
                    w.WriteTile(c, r, Deflate(tile));
                }
                if (d == 0) Assert.Throws<InvalidOperationException>(() => w.WriteTile(0, 0, [1]));
                w.EndDirectory();
            }
        }
        Assert.Equal(bigTiff ? 43 : 42, File.ReadAllBytes(path)[2]);
        for (int d = 0; d < 2; d++)
        {
            using var img = Vips.Image.NewFromFile(path, kwargs: new Vips.VOption { { "page", d } });
            Assert.Equal((sizes[d].W, sizes[d].H), (img.Width, img.Height));
            Assert.Equal(images[d], img.WriteToMemory<byte>());
            Assert.Equal($"level {d}", (string)img.Get("image-description"));
            Assert.Equal(1000.0 / (0.5 * (d + 1)), img.Xres, 6); // pixels per millimetre
        }
    }

    [Fact]
    public void ADirectoryWithATileMissing_CannotBeEnded()
    {
        using var fs = new FileStream(Path.Combine(_dir, "m.tif"), FileMode.CreateNew, FileAccess.Write);
        var w = new PrecompressedTiffWriter(fs, bigTiff: false);
        w.BeginDirectory(new TiffDirectory(40, 40, 32, 8, 1, SamplesPerPixel: 1));
        w.WriteTile(0, 0, Deflate(new byte[32 * 32]));
        Assert.Contains("3 of 4 tiles", Assert.Throws<InvalidOperationException>(w.EndDirectory).Message);
    }
}
