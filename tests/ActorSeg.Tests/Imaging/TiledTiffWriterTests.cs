using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.Imaging;

public sealed class TiledTiffWriterTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "actorseg-tiff-" + Guid.NewGuid().ToString("N"));

    public TiledTiffWriterTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Theory]
    [InlineData(TiffCompression.Deflate, true)]
    [InlineData(TiffCompression.None, false)]
    [InlineData(TiffCompression.Deflate, false)]
    public void Grey8_RoundTrips(TiffCompression compression, bool bigTiff) =>
        RoundTrip<byte>(TiffSampleType.UInt8, 1, 300, 250, 64, compression, bigTiff, (x, y, c) => (byte)((x * 7) + (y * 13) + (x * y % 31)));

    [Fact]
    public void Grey16_RoundTrips() =>
        RoundTrip<ushort>(TiffSampleType.UInt16, 1, 517, 333, 128, TiffCompression.Deflate, true, (x, y, c) => (ushort)((x * 131) + (y * 977) + ((x ^ y) * 3)));

    [Fact]
    public void Rgb8_RoundTrips() =>
        RoundTrip<byte>(TiffSampleType.UInt8, 3, 211, 190, 64, TiffCompression.Deflate, true, (x, y, c) => (byte)((x * (c + 1)) + (y * (3 - c)) + (c * 40)));

    [Fact]
    public void Grey32_RoundTrips() =>
        RoundTrip<uint>(TiffSampleType.UInt32, 1, 200, 145, 48, TiffCompression.Deflate, true, (x, y, c) => (uint)((x * 2_654_435_761L) ^ (y * 40_503L)));

    [Fact]
    public void Float32_RoundTrips() =>
        RoundTrip<float>(TiffSampleType.Float32, 1, 100, 70, 32, TiffCompression.Deflate, true, (x, y, c) => (x * 0.25f) - (y * 1.5f));

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Levels_AreSubIfdsOfTheImage_EachItsOwnSizeAndPixels_WithTheDescription(bool bigTiff)
    {
        // 517 x 333 with 64 px tiles: levels 259x167, 130x84, 65x42 (odd sizes round up)
        string path = Path.Combine(_dir, "pyramid.tif");
        const string xml = "<OME>µm</OME>";
        uint Value(int k, int x, int y) => (uint)((k << 24) + (y * 1000) + x);
        using (var w = new TiledTiffWriter(path, 517, 333, 1, TiffSampleType.UInt32, tileSize: 64, bigTiff: bigTiff, levels: 4, description: xml))
        {
            Assert.Equal(new[] { 517, 259, 130, 65 }, Enumerable.Range(0, 4).Select(w.LevelWidth));
            Assert.Equal(new[] { 333, 167, 84, 42 }, Enumerable.Range(0, 4).Select(w.LevelHeight));
            var tile = new uint[w.SamplesPerTile];
            for (int k = 3; k >= 0; k--) // any order, any level
            {
                for (int r = 0; r < w.TilesDownAt(k); r++)
                {
                    for (int c = 0; c < w.TilesAcrossAt(k); c++)
                    {
                        for (int y = 0; y < 64; y++)
                        {
                            for (int x = 0; x < 64; x++)
                            {
                                tile[(y * 64) + x] = Value(k, (c * 64) + x, (r * 64) + y);
                            }
                        }

                        w.WriteTile<uint>(k, c, r, tile);
                    }
                }
            }

            w.Complete();
        }

        using var top = NetVips.Image.NewFromFile(path);
        Assert.Equal(xml, top.Get("image-description") as string);
        for (int k = 0; k < 4; k++)
        {
            using var level = k == 0 ? NetVips.Image.NewFromFile(path) : NetVips.Image.NewFromFile(path, kwargs: new NetVips.VOption { { "subifd", k - 1 } });
            Assert.Equal((517 + (1 << k) - 1) >> k, level.Width);
            Assert.Equal((333 + (1 << k) - 1) >> k, level.Height);
            uint[] px = level.WriteToMemory<uint>();
            for (int y = 0; y < level.Height; y++)
            {
                for (int x = 0; x < level.Width; x++)
                {
                    if (px[(y * level.Width) + x] != Value(k, x, y))
                    {
                        Assert.Fail($"level {k} pixel ({x},{y}): {px[(y * level.Width) + x]}, expected {Value(k, x, y)}");
                    }
                }
            }
        }
    }

    [Fact]
    public void AMissingTileOfACoarserLevel_IsNamedWithItsLevel()
    {
        using var w = new TiledTiffWriter(Path.Combine(_dir, "p.tif"), 100, 100, 1, TiffSampleType.UInt8, tileSize: 32, levels: 3);
        var tile = new byte[w.SamplesPerTile];
        for (int k = 0; k < 3; k++)
        {
            for (int r = 0; r < w.TilesDownAt(k); r++)
            {
                for (int c = 0; c < w.TilesAcrossAt(k); c++)
                {
                    if (!(k == 1 && r == 1 && c == 0))
                    {
                        w.WriteTile<byte>(k, c, r, tile);
                    }
                }
            }
        }

        var ex = Assert.Throws<InvalidOperationException>(w.Complete);
        Assert.Contains("column 0, row 1 of level 1", ex.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => w.WriteTile<byte>(3, 0, 0, tile));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.WriteTile<byte>(2, 1, 0, tile)); // level 2 is 25x25: one tile
    }

    [Fact]
    public void MissingTile_CompleteThrows_AndNoFinalFile()
    {
        string path = Path.Combine(_dir, "missing.tif");
        using (var w = new TiledTiffWriter(path, 100, 100, 1, TiffSampleType.UInt8, tileSize: 32))
        {
            var tile = new byte[w.SamplesPerTile];
            for (int r = 0; r < w.TilesDown; r++)
            {
                for (int c = 0; c < w.TilesAcross; c++)
                {
                    if (!(r == 2 && c == 1) && !(r == 3 && c == 3))
                    {
                        w.WriteTile<byte>(c, r, tile);
                    }
                }
            }

            var ex = Assert.Throws<InvalidOperationException>(w.Complete);
            Assert.Contains("2 of 16", ex.Message);
            Assert.Contains("column 1, row 2", ex.Message);
            Assert.False(File.Exists(path));
            Assert.Single(Directory.GetFiles(_dir, "*.partial")); // written under a unique temporary name until complete
        }

        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(_dir, "*.partial"));
    }

    [Fact]
    public void DisposeWithoutComplete_LeavesNothing()
    {
        string path = Path.Combine(_dir, "abandoned.tif");
        using (var w = new TiledTiffWriter(path, 64, 64, 1, TiffSampleType.UInt16, tileSize: 32))
        {
            w.WriteTile<ushort>(0, 0, new ushort[w.SamplesPerTile]);
            Assert.Single(Directory.GetFiles(_dir, "*.partial")); // written under a unique temporary name until complete
        }

        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void SameTileTwice_Throws()
    {
        string path = Path.Combine(_dir, "dup.tif");
        using var w = new TiledTiffWriter(path, 64, 64, 1, TiffSampleType.UInt8, tileSize: 32);
        var tile = new byte[w.SamplesPerTile];
        w.WriteTile<byte>(1, 1, tile);
        Assert.Throws<InvalidOperationException>(() => w.WriteTile<byte>(1, 1, tile));
        using var enc = w.EncodeTile<byte>(tile);
        Assert.Throws<InvalidOperationException>(() => w.WriteEncodedTile(1, 1, enc));
    }

    [Fact]
    public void WrongSampleWidthOrLength_Throws()
    {
        string path = Path.Combine(_dir, "bad.tif");
        using var w = new TiledTiffWriter(path, 64, 64, 1, TiffSampleType.UInt16, tileSize: 32);
        Assert.Throws<ArgumentException>(() => w.WriteTile<byte>(0, 0, new byte[w.SamplesPerTile]));
        Assert.Throws<ArgumentException>(() => w.WriteTile<ushort>(0, 0, new ushort[w.SamplesPerTile - 1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => w.WriteTile<ushort>(2, 0, new ushort[w.SamplesPerTile]));
    }

    [Fact]
    public void ClassicTiff_RefusesOver4GiB()
    {
        string path = Path.Combine(_dir, "huge.tif");
        Assert.Throws<ArgumentException>(() => new TiledTiffWriter(path, 40_000, 40_000, 3, TiffSampleType.UInt8, bigTiff: false));
        Assert.Empty(Directory.GetFiles(_dir, "*.partial"));
        using var ok = new TiledTiffWriter(path, 40_000, 40_000, 3, TiffSampleType.UInt8, bigTiff: true);
    }

    [Fact]
    public void Resolution_IsWrittenInPixelsPerCentimetre()
    {
        string path = Path.Combine(_dir, "res.tif");
        using (var w = new TiledTiffWriter(path, 32, 32, 1, TiffSampleType.UInt8, tileSize: 32, pixelSizeMicrons: 0.5))
        {
            w.WriteTile<byte>(0, 0, new byte[w.SamplesPerTile]);
            w.Complete();
        }

        using var img = NetVips.Image.NewFromFile(path);
        // libvips reports resolution in pixels per millimetre: 0.5 µm/px = 2000 px/mm.
        Assert.Equal(2000.0, img.Xres, 3);
        Assert.Equal(2000.0, img.Yres, 3);
    }

    private void RoundTrip<T>(
        TiffSampleType type,
        int channels,
        int width,
        int height,
        int tileSize,
        TiffCompression compression,
        bool bigTiff,
        Func<int, int, int, T> value)
        where T : unmanaged, IEquatable<T>
    {
        string path = Path.Combine(_dir, $"rt-{type}-{channels}-{compression}-{bigTiff}.tif");
        using (var w = new TiledTiffWriter(path, width, height, channels, type, tileSize, compression, bigTiff))
        {
            int across = w.TilesAcross;
            int n = across * w.TilesDown;
            int[] order = Enumerable.Range(0, n).ToArray();
            new Random(12345).Shuffle(order);
            Parallel.ForEach(order, new ParallelOptions { MaxDegreeOfParallelism = 4 }, idx =>
            {
                int tc = idx % across;
                int tr = idx / across;
                var tile = new T[w.SamplesPerTile];
                for (int y = 0; y < tileSize; y++)
                {
                    for (int x = 0; x < tileSize; x++)
                    {
                        int gx = (tc * tileSize) + x;
                        int gy = (tr * tileSize) + y;
                        for (int c = 0; c < channels; c++)
                        {
                            // Padding outside the image gets junk on purpose: it must not leak into the image.
                            tile[(((y * tileSize) + x) * channels) + c] = gx < width && gy < height ? value(gx, gy, c) : value(gx + 1, gy + 3, c);
                        }
                    }
                }

                w.WriteTile<T>(tc, tr, tile);
            });
            Assert.False(File.Exists(path));
            w.Complete();
        }

        Assert.True(File.Exists(path));
        Assert.Empty(Directory.GetFiles(_dir, "*.partial"));

        using var img = NetVips.Image.NewFromFile(path, access: NetVips.Enums.Access.Random);
        Assert.Equal(width, img.Width);
        Assert.Equal(height, img.Height);
        Assert.Equal(channels, img.Bands);

        // Read back in a few crops (including ones that straddle tile edges), compare every pixel.
        int step = Math.Max(1, height / 3);
        for (int y0 = 0; y0 < height; y0 += step)
        {
            int h = Math.Min(step, height - y0);
            using var crop = img.Crop(0, y0, width, h);
            T[] px = crop.WriteToMemory<T>();
            Assert.Equal(width * h * channels, px.Length);
            for (int y = 0; y < h; y++)
            {
                for (int x = 0; x < width; x++)
                {
                    for (int c = 0; c < channels; c++)
                    {
                        T expected = value(x, y0 + y, c);
                        T actual = px[(((y * width) + x) * channels) + c];
                        if (!expected.Equals(actual))
                        {
                            Assert.Fail($"Pixel ({x},{y0 + y}) channel {c}: expected {expected}, got {actual}.");
                        }
                    }
                }
            }
        }
    }
}
