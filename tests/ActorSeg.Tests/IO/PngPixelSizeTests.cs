using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>A PNG's pixel size is what its pHYs chunk states in metres, and nothing when it states none: libvips reports
/// 72 dpi (353 µm pixels) for a PNG without one, which a model, a mask's OME metadata and a batch's summary then took
/// as the image's calibration.</summary>
public class PngPixelSizeTests() : TempDirTest("pngphys")
{
    private static uint Crc(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }

    /// <summary>A 16 × 8 grey PNG, with a pHYs chunk of (<paramref name="ppmX"/>, <paramref name="ppmY"/>, <paramref name="unit"/>) when given.</summary>
    private string Png(string name, (uint X, uint Y, byte Unit)? phys)
    {
        const int w = 16, h = 8;
        var ms = new MemoryStream();
        ms.Write([137, 80, 78, 71, 13, 10, 26, 10]);
        void Chunk(string type, byte[] data)
        {
            var head = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(head, (uint)data.Length); ms.Write(head);
            var body = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
            ms.Write(body);
            var crc = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(crc, Crc(body)); ms.Write(crc);
        }
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, w); BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 8; ihdr[9] = 0; // 8-bit grey
        Chunk("IHDR", ihdr);
        if (phys is { } p)
        {
            var d = new byte[9];
            BinaryPrimitives.WriteUInt32BigEndian(d, p.X); BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(4), p.Y); d[8] = p.Unit;
            Chunk("pHYs", d);
        }
        var raw = new byte[h * (w + 1)];
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) raw[y * (w + 1) + 1 + x] = (byte)(x * 16 + y);
        var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zs.Write(raw);
        Chunk("IDAT", z.ToArray());
        Chunk("IEND", []);
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, ms.ToArray());
        return path;
    }

    [Fact]
    public void APngStatesItsPixelSizeOnlyInMetres()
    {
        // no pHYs: no pixel size (libvips would say 72 dpi)
        var none = Png("none.png", null);
        using (var src = ImageSources.Open(none)) Assert.Equal((16, 8), (src.Width, src.Height)); // a readable image
        Assert.Null(PixelSize.MicronsPerPixel(none));
        // 2,000,000 pixels per metre: 0.5 µm pixels; different along x and y
        Assert.Equal((0.5, 0.25), PixelSize.MicronsPerPixel(Png("half.png", (2_000_000, 4_000_000, 1))));
        // an aspect ratio only (unit 0), and the 72 and 96 dpi of uncalibrated writers: no pixel size
        Assert.Null(PixelSize.MicronsPerPixel(Png("aspect.png", (3, 3, 0))));
        Assert.Null(PixelSize.MicronsPerPixel(Png("72dpi.png", (2835, 2835, 1))));
        Assert.Null(PixelSize.MicronsPerPixel(Png("96dpi.png", (3780, 3780, 1))));
        // and `info` says so
        Assert.DoesNotContain("352", TestPaths.RunCli("info", none).Stdout);
    }
}
