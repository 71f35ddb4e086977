using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>
/// TIFF damage that libtiff under libvips turns into pixels of 0 without an error (a compression it was built without, a
/// height claiming more tiles than the file lists) and sample formats it refuses only as "unable to call …" are named
/// when the image is opened, with the file. Each file is a good one written by libvips with one tag patched.
/// </summary>
public class TiffLayoutTests() : TempDirTest("tifflayout")
{
    /// <summary>A 64×64 8-bit deflate TIFF in one 64×64 tile (classic, little-endian: every value sits in its entry).</summary>
    private string Good(string name, bool tiled = true)
    {
        var path = Path.Combine(_dir, name + ".tif");
        using var ramp = NetVips.Image.Xyz(64, 64)[0].Cast(NetVips.Enums.BandFormat.Uchar);
        ramp.Tiffsave(path, compression: NetVips.Enums.ForeignTiffCompression.Deflate, tile: tiled, tileWidth: 64, tileHeight: 64);
        return path;
    }

    /// <summary>Sets the first value of <paramref name="tag"/> in the first directory (its type kept).</summary>
    private static void Patch(string path, int tag, uint value)
    {
        var b = File.ReadAllBytes(path);
        Assert.Equal((byte)'I', b[0]);
        int ifd = (int)BitConverter.ToUInt32(b, 4), n = BitConverter.ToUInt16(b, ifd);
        for (int e = 0; e < n; e++)
        {
            int at = ifd + 2 + e * 12;
            if (BitConverter.ToUInt16(b, at) != tag) continue;
            int type = BitConverter.ToUInt16(b, at + 2);
            Assert.Equal(1u, BitConverter.ToUInt32(b, at + 4)); // one value, in the entry
            if (type == 3) BitConverter.GetBytes((ushort)value).CopyTo(b, at + 8);
            else BitConverter.GetBytes(value).CopyTo(b, at + 8);
            File.WriteAllBytes(path, b);
            return;
        }
        Assert.Fail($"{path} has no tag {tag}");
    }

    [Fact]
    public void TheGoodFiles_OpenAndRead()
    {
        foreach (bool tiled in new[] { true, false })
        {
            using var src = VipsImageSource.Open(Good(tiled ? "tiled" : "striped", tiled));
            var buf = new ushort[64 * 64];
            src.ReadRegion(0, 0, 64, 64, buf);
            Assert.Equal(63, buf[63]);
            Assert.Null(TiffPageLayout.TryRead(src.Path, 0)!.LayoutProblem());
        }
    }

    [Theory]
    [InlineData(259, 999u, "compression 999 is not one this build decodes")]
    [InlineData(259, 34925u, "compression 34925 (LZMA) is not one this build decodes")]
    [InlineData(259, 50000u, "compression 50000 (ZSTD)")]
    [InlineData(257, 128u, "the directory lists 1 tile offsets, but a 64x128 image in tiles of 64x64 needs 2")]
    [InlineData(325, 1_000_000u, "tile 0 lies at bytes")]
    public void DamageLibvipsWouldReadAsZeros_IsNamedAtOpen(int tag, uint value, string expected)
    {
        var path = Good($"t{tag}-{value}");
        Patch(path, tag, value);
        var e = Assert.Throws<InputFileException>(() => VipsImageSource.Open(path).Dispose());
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void AStripedFileWithTooFewStrips_IsNamed()
    {
        var path = Good("short-strips", tiled: false);
        var layout = TiffPageLayout.TryRead(path, 0)!;
        Assert.False(layout.Tiled);
        long rps = layout.One(278, 64), strips = (64 + rps - 1) / rps;
        Patch(path, 257, (uint)(64 + rps)); // one strip's rows more than the file holds
        var e = Assert.Throws<InputFileException>(() => VipsImageSource.Open(path).Dispose());
        Assert.Contains($"the directory lists {strips} strip offsets, but a 64x{64 + rps} image in strips of {rps} rows needs {strips + 1}", e.Message);
    }

    [Theory]
    [InlineData(258, 12u, "unsupported sample format: 12-bit unsigned integer samples (ActorSeg reads 8-, 16- and 32-bit integer and 32-bit floating-point images")]
    [InlineData(339, 3u, "unsupported sample format: 8-bit floating-point samples")]
    public void AnUnsupportedSampleFormat_IsExplained(int tag, uint value, string expected)
    {
        var path = Good($"s{tag}-{value}");
        Patch(path, tag, value);
        var e = Assert.Throws<InputFileException>(() => VipsImageSource.Open(path).Dispose());
        Assert.StartsWith(path, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("unable to call", e.Message);
    }

    [Fact]
    public void APageThatDoesNotExist_SaysHowManyThereAre()
    {
        var path = Good("one-page");
        var e = Assert.Throws<InputFileException>(() => VipsImageSource.Open(path, page: 5).Dispose());
        Assert.Contains("has 1 page(s) (0..0); page or level 5 does not exist", e.Message);
        Assert.Equal(1, TiffPageLayout.CountPages(path));
    }
}
