using ActorSeg.Core.Imaging;
using ActorSeg.Core.Pipeline;
using Xunit;
using Vips = NetVips;

namespace ActorSeg.Tests.IO;

/// <summary>Region reads over every supported layout give exactly the stored pixels.</summary>
public class ImageSourceTests() : TempDirTest("io")
{

    private static (byte[] Bytes, ushort[] Expect) Pattern(int w, int h, int c, bool wide)
    {
        var expect = new ushort[w * h * c];
        for (int i = 0; i < expect.Length; i++) expect[i] = (ushort)((i * 7919 + i / 13) % (wide ? 65536 : 256));
        var bytes = wide ? System.Runtime.InteropServices.MemoryMarshal.AsBytes(expect.AsSpan()).ToArray() : expect.Select(v => (byte)v).ToArray();
        return (bytes, expect);
    }

    private static void AssertRegions(string path, ushort[] expect, int w, int h, int c, int page = 0)
    {
        using var src = VipsImageSource.Open(path, page);
        Assert.Equal((w, h, c), (src.Width, src.Height, src.Channels));
        foreach (var (x, y, rw, rh) in new[] { (0, 0, w, h), (3, 5, 17, 11), (w - 9, h - 4, 9, 4) })
        {
            var buf = new ushort[rw * rh * c];
            src.ReadRegion(x, y, rw, rh, buf);
            for (int r = 0; r < rh; r++)
                Assert.Equal(expect.AsSpan(((y + r) * w + x) * c, rw * c).ToArray(), buf.AsSpan(r * rw * c, rw * c).ToArray());
        }
    }

    public static IEnumerable<object[]> Layouts() =>
        from c in new[] { 1, 3 }
        from wide in new[] { false, true }
        from layout in new[] { "strip", "tile", "bigtiff-tile", "pyramid" }
        select new object[] { c, wide, layout };

    [Theory]
    [MemberData(nameof(Layouts))]
    public void Tiff_RegionsAreExact(int channels, bool wide, string layout)
    {
        int w = 150, h = 97;
        var (bytes, expect) = Pattern(w, h, channels, wide);
        using var img = Vips.Image.NewFromMemory(bytes, w, h, channels, wide ? Vips.Enums.BandFormat.Ushort : Vips.Enums.BandFormat.Uchar);
        var path = Path.Combine(_dir, $"{layout}-{channels}-{wide}.tif");
        img.Tiffsave(path, compression: Vips.Enums.ForeignTiffCompression.Deflate, tile: layout != "strip", tileWidth: 32, tileHeight: 32,
            bigtiff: layout == "bigtiff-tile", pyramid: layout == "pyramid");
        AssertRegions(path, expect, w, h, channels);
    }

    [Fact]
    public void MultiPageTiff_ReadsTheRequestedPage()
    {
        int w = 40, h = 30;
        var (b0, e0) = Pattern(w, h, 1, true);
        var e1 = e0.Select(v => (ushort)(65535 - v)).ToArray();
        var both = System.Runtime.InteropServices.MemoryMarshal.AsBytes(e0.Concat(e1).ToArray().AsSpan()).ToArray();
        using var img = Vips.Image.NewFromMemory(both, w, 2 * h, 1, Vips.Enums.BandFormat.Ushort);
        var path = Path.Combine(_dir, "pages.tif");
        img.Tiffsave(path, pageHeight: h);
        AssertRegions(path, e0, w, h, 1, page: 0);
        AssertRegions(path, e1, w, h, 1, page: 1);
        var ex = Assert.Throws<InputFileException>(() => VipsImageSource.Open(path, 5));
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void Png_GreyAndRgb16_AreExact_AndAlphaIsDropped()
    {
        foreach (var (c, wide) in new[] { (1, false), (3, true), (4, false) })
        {
            int w = 33, h = 21;
            var (bytes, expect) = Pattern(w, h, c, wide);
            using var img = Vips.Image.NewFromMemory(bytes, w, h, c, wide ? Vips.Enums.BandFormat.Ushort : Vips.Enums.BandFormat.Uchar);
            var path = Path.Combine(_dir, $"p{c}{wide}.png");
            img.Pngsave(path);
            if (c == 4)
            {
                var rgb = new ushort[w * h * 3];
                for (int i = 0; i < w * h; i++) for (int k = 0; k < 3; k++) rgb[i * 3 + k] = expect[i * 4 + k];
                AssertRegions(path, rgb, w, h, 3);
            }
            else AssertRegions(path, expect, w, h, c);
        }
    }

    [Fact]
    public void Jpeg_IsReadable()
    {
        using var img = Vips.Image.NewFromMemory(new byte[64 * 48], 64, 48, 1, Vips.Enums.BandFormat.Uchar);
        var path = Path.Combine(_dir, "x.jpg");
        img.Jpegsave(path);
        using var src = VipsImageSource.Open(path);
        Assert.Equal((64, 48, 1, 8), (src.Width, src.Height, src.Channels, src.BitDepth));
    }

    [Fact]
    public void Histograms_AreExact()
    {
        int w = 64, h = 50;
        var (bytes, expect) = Pattern(w, h, 1, true);
        using var img = Vips.Image.NewFromMemory(bytes, w, h, 1, Vips.Enums.BandFormat.Ushort);
        var path = Path.Combine(_dir, "h.tif");
        img.Tiffsave(path, tile: true, tileWidth: 16, tileHeight: 16);
        using var src = VipsImageSource.Open(path);
        var hist = src.Histograms()[0];
        var want = new long[65536];
        foreach (var v in expect) want[v]++;
        Assert.Equal(want, hist);
    }

    [Fact]
    public void ANamedPipeOrAFolder_IsRefusedBeforeAnyReaderOpensIt()
    {
        var pipe = Path.Combine(_dir, "pipe.svs");
        using (var mk = System.Diagnostics.Process.Start("mkfifo", [pipe])!) mk.WaitForExit();
        Assert.True(File.Exists(pipe));
        // each call on its own thread, so that a reader blocked on the pipe fails the test instead of hanging the suite
        static Exception Refusal(Func<object?> open, string what)
        {
            var t = Task.Run(open);
            try { Assert.True(t.Wait(TimeSpan.FromSeconds(30)), $"{what} blocked on the named pipe"); }
            catch (AggregateException a) { return a.InnerException!; }
            throw new Xunit.Sdk.XunitException($"{what} opened a named pipe as an image");
        }
        var e1 = Assert.IsType<InputFileException>(Refusal(() => ImageSources.Open(pipe), "ImageSources.Open"));
        Assert.Contains(pipe, e1.Message);
        Assert.Contains("named pipe", e1.Message);
        Assert.IsType<InputFileException>(Refusal(() => VipsImageSource.Open(pipe, 0, firstBandOnly: true), "VipsImageSource.Open"));
        var vendor = Task.Run(() => OpenSlideSource.DetectVendor(pipe));
        Assert.True(vendor.Wait(TimeSpan.FromSeconds(30)), "OpenSlide's vendor detection blocked on the named pipe");
        Assert.Null(vendor.Result);
        Assert.Contains("is a folder", Assert.Throws<InputFileException>(() => ImageSources.Open(_dir)).Message);
    }

    [Fact]
    public void BadFiles_GiveClearErrorsNamingTheFile()
    {
        var missing = Path.Combine(_dir, "nope.tif");
        Assert.Contains("file not found", Assert.Throws<InputFileException>(() => VipsImageSource.Open(missing)).Message);

        var empty = Path.Combine(_dir, "empty.tif");
        File.WriteAllBytes(empty, []);
        var e1 = Assert.Throws<InputFileException>(() => VipsImageSource.Open(empty));
        Assert.StartsWith(empty, e1.Message);

        var garbage = Path.Combine(_dir, "garbage.tif");
        File.WriteAllBytes(garbage, Enumerable.Range(0, 5000).Select(i => (byte)(i * 31)).ToArray());
        var e2 = Assert.Throws<InputFileException>(() => VipsImageSource.Open(garbage));
        Assert.StartsWith(garbage, e2.Message);

        var link = Path.Combine(_dir, "link.tif");
        File.CreateSymbolicLink(link, Path.Combine(_dir, "gone.tif"));
        Assert.Contains("broken symbolic link", Assert.Throws<InputFileException>(() => VipsImageSource.Open(link)).Message);

        var text = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(text, "hello");
        Assert.StartsWith(text, Assert.Throws<InputFileException>(() => VipsImageSource.Open(text)).Message);

        // 64-bit float TIFF: libtiff under libvips reads none; named, with the way out
        using (var f = Vips.Image.NewFromMemory(new double[16 * 16], 16, 16, 1, Vips.Enums.BandFormat.Double))
            f.Tiffsave(Path.Combine(_dir, "double.tif"));
        var e3 = Assert.Throws<InputFileException>(() => VipsImageSource.Open(Path.Combine(_dir, "double.tif")));
        Assert.Contains("unsupported sample format: 64-bit floating-point samples", e3.Message);
        Assert.Contains("np.float32", e3.Message);
    }

    /// <summary>A minimal 8-bit palette PNG (no filter, one IDAT).</summary>
    private static void WritePalettePng(string path, byte[] idx, int w, int h, (byte R, byte G, byte B)[] palette)
    {
        using var f = File.Create(path);
        f.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        void Chunk(string type, byte[] data)
        {
            var t = System.Text.Encoding.ASCII.GetBytes(type);
            var len = new byte[4]; System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(len, (uint)data.Length);
            f.Write(len); f.Write(t); f.Write(data);
            var crc = new System.IO.Hashing.Crc32(); crc.Append(t); crc.Append(data);
            var c = new byte[4]; System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(c, crc.GetCurrentHashAsUInt32());
            f.Write(c);
        }
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)w);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), (uint)h);
        ihdr[8] = 8; ihdr[9] = 3; // 8-bit, palette
        Chunk("IHDR", ihdr);
        Chunk("PLTE", palette.SelectMany(c => new[] { c.R, c.G, c.B }).ToArray());
        var raw = new MemoryStream();
        using (var z = new System.IO.Compression.ZLibStream(raw, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            for (int y = 0; y < h; y++) { z.WriteByte(0); z.Write(idx, y * w, w); }
        Chunk("IDAT", raw.ToArray());
        Chunk("IEND", []);
    }

    /// <summary>A minimal 8-bit palette TIFF (one uncompressed strip), its colour map in 16-bit values.</summary>
    private static void WritePaletteTiff(string path, byte[] idx, int w, int h, ushort[] colourMap)
    {
        using var f = new BinaryWriter(File.Create(path));
        var entries = new List<(ushort Tag, ushort Type, uint Count, uint Value)>
        {
            (256, 4, 1, (uint)w), (257, 4, 1, (uint)h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 3),
            (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, (uint)h), (279, 4, 1, (uint)(w * h)), (320, 3, (uint)colourMap.Length, 0),
        };
        uint ifd = 8, ifdSize = (uint)(2 + entries.Count * 12 + 4), mapAt = ifd + ifdSize, dataAt = mapAt + (uint)colourMap.Length * 2;
        f.Write("II"u8); f.Write((ushort)42); f.Write(ifd);
        f.Write((ushort)entries.Count);
        foreach (var (tag, type, count, value) in entries)
        {
            f.Write(tag); f.Write(type); f.Write(count);
            f.Write(tag == 273 ? dataAt : tag == 320 ? mapAt : type == 3 ? value & 0xffff : value);
        }
        f.Write(0u);
        foreach (var v in colourMap) f.Write(v);
        f.Write(idx);
    }

    [Theory]
    [InlineData("png")]
    [InlineData("tiff")]
    public void APaletteMask_IsReadAsItsIndices_NotItsFirstColourBand(string format)
    {
        // classes 0 (black), 1 (green: no red at all) and 2 (blue); before, the first band (red) read every pixel as 0
        int w = 40, h = 30;
        var idx = Enumerable.Range(0, w * h).Select(k => (byte)(k % w < 10 ? 0 : k % w < 25 ? 1 : 2)).ToArray();
        idx[5] = 3; // one pixel of an entry in the zero padding's colour ... which index 0 also has
        var colours = new (byte, byte, byte)[256];
        colours[1] = (0, 200, 0); colours[2] = (0, 0, 255);
        var path = Path.Combine(_dir, "labels." + (format == "png" ? "png" : "tif"));
        if (format == "png") WritePalettePng(path, idx, w, h, colours);
        else
        {
            var map = new ushort[3 * 256];
            for (int i = 0; i < 256; i++) { map[i] = (ushort)(colours[i].Item1 * 257); map[256 + i] = (ushort)(colours[i].Item2 * 257); map[512 + i] = (ushort)(colours[i].Item3 * 257); }
            WritePaletteTiff(path, idx, w, h, map);
        }
        using (var m = VipsImageSource.Open(path, firstBandOnly: true))
        {
            Assert.True(m.IndexedColours);
            Assert.Equal(1, m.Channels);
            var got = new ushort[w * h];
            m.ReadRegion(0, 0, w, h, got);
            var want = idx.Select(v => (ushort)(v == 3 ? 0 : v)).ToArray(); // the padding's colour reads as the lowest index with it
            Assert.Equal(want, got);
            var part = new ushort[6 * 4];
            m.ReadRegion(8, 3, 6, 4, part);
            for (int y = 0; y < 4; y++) for (int x = 0; x < 6; x++) Assert.Equal(want[(3 + y) * w + 8 + x], part[y * 6 + x]);
        }
        // as an image (not a mask) it stays the colours it shows
        using (var img = VipsImageSource.Open(path)) Assert.Equal(3, img.Channels);
    }

    [Fact]
    public void AnRgbMask_ReadsGreyAndRedOnlyPixelsAsTheirValue_AndColouredOnesAs65535_NeverAsBackground()
    {
        int w = 32, h = 16;
        var rgb = new byte[w * h * 3];
        for (int k = 0; k < w * h; k++)
        {
            int x = k % w;
            (byte r, byte g, byte b) = x < 8 ? ((byte)0, (byte)0, (byte)0) : x < 16 ? ((byte)0, (byte)200, (byte)0) : x < 20 ? ((byte)3, (byte)3, (byte)3)
                : x < 24 ? ((byte)7, (byte)0, (byte)0) : ((byte)255, (byte)0, (byte)9);
            rgb[3 * k] = r; rgb[3 * k + 1] = g; rgb[3 * k + 2] = b;
        }
        var path = Path.Combine(_dir, "rgbmask.png");
        using (var img = Vips.Image.NewFromMemory(rgb, w, h, 3, Vips.Enums.BandFormat.Uchar)) img.Pngsave(path);
        using var m = VipsImageSource.Open(path, firstBandOnly: true);
        Assert.Equal(1, m.Channels);
        var got = new ushort[w * h];
        m.ReadRegion(0, 0, w, h, got);
        for (int k = 0; k < w * h; k++)
        {
            int x = k % w;
            // green, before: 0 (its red band); grey and red-only pixels as before (BBBC039 keeps its labels in red)
            Assert.Equal(x < 8 ? 0 : x < 16 ? 65535 : x < 20 ? 3 : x < 24 ? 7 : 65535, got[k]);
        }
        // binary mode: every coloured mark is foreground; classes mode: refused, saying why
        var classes = new byte[w * h];
        GraphJob.MapMask(got, classes, MaskMode.Binary, null, path);
        Assert.Equal(w * h * 3 / 4, classes.Count(c => c == 1));
        var e = Assert.Throws<InputFileException>(() => GraphJob.MapMask(got, classes, MaskMode.Classes, null, path));
        Assert.Contains("coloured pixel of an RGB mask", e.Message);
    }

    [Fact]
    public void AJpegMask_IsReadWithAWarningAboutItsCompressionNoise()
    {
        var path = Path.Combine(_dir, "mask.jpg");
        var px = Enumerable.Range(0, 64 * 64).Select(k => (byte)(k % 64 < 30 ? 0 : 255)).ToArray();
        using (var img = Vips.Image.NewFromMemory(px, 64, 64, 1, Vips.Enums.BandFormat.Uchar)) img.Jpegsave(path, q: 70);
        using var warned = new InputWarnings();
        {
            using (VipsImageSource.Open(path, firstBandOnly: true)) { }
            using (VipsImageSource.Open(path)) { } // as an image: no warning
        }
        Assert.Single(warned.All, m => m.StartsWith(path + ": a mask saved with lossy JPEG compression", StringComparison.Ordinal));
    }

    [Fact]
    public void AStackOfSameSizePages_IsReadAtPageZeroWithAWarning_APyramidWithout()
    {
        var stack = Path.Combine(_dir, "zstack.tif");
        var pyramid = Path.Combine(_dir, "pyramid.tif");
        // three 64x40 pages (libvips writes one page per page-height rows), and a tiled pyramid of 512² (pages 512, 256, ...)
        var px = Enumerable.Range(0, 64 * 120).Select(k => (byte)(k / 64 / 40 * 80 + k % 7)).ToArray();
        using (var tall = Vips.Image.NewFromMemory(px, 64, 120, 1, Vips.Enums.BandFormat.Uchar))
        using (var paged = tall.Mutate(m => m.Set(Vips.GValue.GIntType, "page-height", 40))) paged.Tiffsave(stack);
        using (var big = Vips.Image.Gaussnoise(512, 512).Cast(Vips.Enums.BandFormat.Uchar)) big.Tiffsave(pyramid, tile: true, pyramid: true);
        using var warned = new InputWarnings();
        {
            using (var s = ImageSources.Open(stack))
            {
                Assert.Equal((64, 40), (s.Width, s.Height));
                var first = new ushort[64 * 40];
                s.ReadRegion(0, 0, 64, 40, first);
                Assert.Equal(px.Take(64 * 40).Select(b => (ushort)b), first);
            }
            using (ImageSources.Open(stack, 2)) { } // a page asked for: no warning
            using (var p = ImageSources.Open(pyramid)) Assert.Equal(512, p.Width);
            using (VipsImageSource.Open(stack, 0, firstBandOnly: true)) { } // as a mask: warned too, without --page
        }
        {
            Assert.Single(warned.All, m => m.StartsWith(stack + ": 3 pages, the second as large as the first", StringComparison.Ordinal) && m.Contains("--page N"));
            Assert.Single(warned.All, m => m.StartsWith(stack + ": 3 pages", StringComparison.Ordinal) && m.EndsWith("the mask's page 0 alone is read", StringComparison.Ordinal));
            Assert.DoesNotContain(warned.All, m => m.StartsWith(pyramid, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void FloatAndInt32Images_ReadAsEachBandsFiniteRangeSpreadOver16Bits()
    {
        int w = 64, h = 48;
        var rnd = new Random(3);
        var f = new float[w * h * 3];
        var i32 = new int[w * h];
        for (int k = 0; k < w * h; k++)
        {
            f[3 * k] = (float)(rnd.NextDouble() * 3.7 - 1.2);   // band 0: -1.2 .. 2.5
            f[3 * k + 1] = rnd.Next(100, 200) * 1000f;           // band 1: another scale entirely
            f[3 * k + 2] = (float)rnd.NextDouble() * 1e-6f;      // band 2: tiny values
            i32[k] = rnd.Next(-70_000, 5_000_000);
        }
        f[3 * 7] = float.NaN; f[3 * 8 + 1] = float.PositiveInfinity; f[3 * 9] = float.NegativeInfinity;
        string fp = Path.Combine(_dir, "f32.tif"), ip = Path.Combine(_dir, "i32.tif");
        using (var img = Vips.Image.NewFromMemory(f, w, h, 3, Vips.Enums.BandFormat.Float)) img.Tiffsave(fp);
        using (var img = Vips.Image.NewFromMemory(i32, w, h, 1, Vips.Enums.BandFormat.Int)) img.Tiffsave(ip);

        static ushort[] Expected(double[] v, int bands)
        {
            var outv = new ushort[v.Length];
            for (int b = 0; b < bands; b++)
            {
                var finite = Enumerable.Range(0, v.Length / bands).Select(k => v[k * bands + b]).Where(double.IsFinite).ToArray();
                double min = finite.Min(), max = finite.Max(), a = 65535.0 / (max - min), off = -min * a + 0.5;
                for (int k = 0; k < v.Length / bands; k++)
                {
                    double x = double.IsFinite(v[k * bands + b]) ? v[k * bands + b] : min;
                    outv[k * bands + b] = (ushort)Math.Clamp(Math.Floor(x * a + off), 0, 65535);
                }
            }
            return outv;
        }

        var warnings = new List<string>();
        void Warned(string m) { lock (warnings) warnings.Add(m); }
        VipsWarnings.InputWarning += Warned;
        try
        {
            using (VipsImageSource.Open(fp)) { }
            // the NaN and infinite samples are said, per channel, with what they are read as
            Assert.Contains(warnings, m => m.StartsWith($"{fp}: 2 of 3,072 samples of channel 0 are NaN or infinite: they are read as the channel's smallest finite value (-1.1"));
            Assert.Contains(warnings, m => m.StartsWith($"{fp}: 1 of 3,072 samples of channel 1 are NaN or infinite"));
            Assert.DoesNotContain(warnings, m => m.Contains("of channel 2"));
            // an image whose one finite sample is 3 is constant, said in its own units, not in the 16 bits it is read as
            var allInf = Enumerable.Repeat(float.PositiveInfinity, w * h).ToArray();
            allInf[5] = 3;
            var ap = Path.Combine(_dir, "inf.tif");
            using (var img = Vips.Image.NewFromMemory(allInf, w, h, 1, Vips.Enums.BandFormat.Float)) img.Tiffsave(ap);
            var constant = Assert.Throws<InputFileException>(() => ActorSeg.Core.Pipeline.GraphJob.Prepare("c", new ActorSeg.Core.Pipeline.GraphRequest { ImagePath = ap }, Path.Combine(_dir, "work-c")));
            Assert.Equal($"{ap}: image is constant (every finite sample = 3): there is nothing to segment", constant.Message);
            Assert.Contains(warnings, m => m.StartsWith($"{ap}: 3,071 of 3,072 samples are NaN or infinite: they are read as the image's smallest finite value (3)"));
        }
        finally { VipsWarnings.InputWarning -= Warned; }

        using (var src = VipsImageSource.Open(fp))
        {
            Assert.Equal((3, 16), (src.Channels, src.BitDepth));
            Assert.Equal(3, src.ScaledRange!.Length);
            var got = new ushort[w * h * 3];
            src.ReadRegion(0, 0, w, h, got);
            Assert.Equal(Expected(f.Select(x => (double)x).ToArray(), 3), got);
            Assert.Equal(0, got[3 * 7]);      // NaN: the band's minimum
            Assert.Equal(0, got[3 * 8 + 1]);  // +inf too (it does not stretch the range)
            Assert.Contains(got.Where((_, k) => k % 3 == 0), v => v == 65535);
            // a region reads the same samples as the whole image (the range is the file's, not the region's)
            var part = new ushort[10 * 5 * 3];
            src.ReadRegion(20, 30, 10, 5, part);
            for (int y = 0; y < 5; y++) for (int x = 0; x < 10 * 3; x++) Assert.Equal(got[((30 + y) * w + 20) * 3 + x], part[y * 30 + x]);
        }
        using (var src = VipsImageSource.Open(ip))
        {
            var got = new ushort[w * h];
            src.ReadRegion(0, 0, w, h, got);
            Assert.Equal(Expected(i32.Select(x => (double)x).ToArray(), 1), got);
        }

        // masks stored as floats: whole numbers are labels; a fraction is a probability map, refused
        string mp = Path.Combine(_dir, "maskf.tif"), pp = Path.Combine(_dir, "prob.tif");
        var labels = Enumerable.Range(0, w * h).Select(k => (float)(k % 3)).ToArray();
        using (var img = Vips.Image.NewFromMemory(labels, w, h, 1, Vips.Enums.BandFormat.Float)) img.Tiffsave(mp);
        using (var img = Vips.Image.NewFromMemory(labels.Select(v => v * 0.4f).ToArray(), w, h, 1, Vips.Enums.BandFormat.Float)) img.Tiffsave(pp);
        using (var m = VipsImageSource.Open(mp, firstBandOnly: true))
        {
            var got = new ushort[w * h];
            m.ReadRegion(0, 0, w, h, got);
            Assert.Equal(labels.Select(v => (ushort)v), got);
        }
        var e = Assert.Throws<InputFileException>(() => VipsImageSource.Open(pp, firstBandOnly: true));
        Assert.StartsWith(pp, e.Message);
        Assert.Contains("not whole numbers", e.Message);
        // NaN and infinite samples are no labels either (before: read as 65535, foreground in binary mode)
        foreach (var (name, bad) in new[] { ("nan.tif", float.NaN), ("inf.tif", float.PositiveInfinity), ("-inf.tif", float.NegativeInfinity) })
        {
            var withBad = (float[])labels.Clone();
            withBad[w * h / 2] = bad;
            var bp = Path.Combine(_dir, name);
            using (var img = Vips.Image.NewFromMemory(withBad, w, h, 1, Vips.Enums.BandFormat.Float)) img.Tiffsave(bp);
            var be = Assert.Throws<InputFileException>(() => VipsImageSource.Open(bp, firstBandOnly: true));
            Assert.StartsWith(bp, be.Message);
            Assert.Contains("NaN or infinite ones among them: those are no labels", be.Message);
        }
    }

    [Fact]
    public void TruncatedTiff_FailsOnRead_NamingTheFile()
    {
        int w = 512, h = 512;
        var (bytes, _) = Pattern(w, h, 1, true);
        using var img = Vips.Image.NewFromMemory(bytes, w, h, 1, Vips.Enums.BandFormat.Ushort);
        var path = Path.Combine(_dir, "cut.tif");
        img.Tiffsave(path, tile: true, tileWidth: 64, tileHeight: 64); // uncompressed; IFD written after the data? truncate the middle of the data
        var all = File.ReadAllBytes(path);
        // keep the header and IFD (libvips writes them first for tiled files) but zero-length the tail of the pixel data
        File.WriteAllBytes(path, all[..(all.Length / 2)]);
        var ex = Record.Exception(() =>
        {
            using var src = VipsImageSource.Open(path);
            var buf = new ushort[w * h];
            src.ReadRegion(0, 0, w, h, buf);
        });
        var ife = Assert.IsType<InputFileException>(ex);
        Assert.StartsWith(path, ife.Message);
    }

    [Fact]
    public void AbsurdHeaderDimensions_AreRejected()
    {
        // a minimal classic TIFF that claims 3,000,000 x 3,000,000 pixels of 8-bit grey in one strip
        var path = Path.Combine(_dir, "absurd.tif");
        using (var fs = File.Create(path))
        using (var bw = new BinaryWriter(fs))
        {
            bw.Write((byte)'I'); bw.Write((byte)'I'); bw.Write((ushort)42); bw.Write(8u);
            var tags = new (ushort tag, ushort type, uint count, uint value)[]
            {
                (256, 4, 1, 3_000_000), (257, 4, 1, 3_000_000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
                (273, 4, 1, 200), (277, 3, 1, 1), (278, 4, 1, 3_000_000), (279, 4, 1, 16),
            };
            bw.Write((ushort)tags.Length);
            foreach (var t in tags) { bw.Write(t.tag); bw.Write(t.type); bw.Write(t.count); bw.Write(t.value); }
            bw.Write(0u);
            while (fs.Length < 216) bw.Write((byte)0);
        }
        var ex = Assert.Throws<InputFileException>(() => VipsImageSource.Open(path));
        Assert.StartsWith(path, ex.Message);
    }

    [Theory]
    [InlineData("png", "libpng read error")]
    [InlineData("jpg", "premature end of JPEG")]
    public void ATruncatedPngOrJpeg_FailsWithTheLoadersReason(string ext, string expected)
    {
        var good = Path.Combine(_dir, "whole." + ext);
        using (var g = Vips.Image.Xyz(300, 200)[0].Cast(Vips.Enums.BandFormat.Uchar))
            if (ext == "png") g.Pngsave(good); else g.Jpegsave(good);
        var cut = Path.Combine(_dir, "cut." + ext);
        var bytes = File.ReadAllBytes(good);
        File.WriteAllBytes(cut, bytes[..(bytes.Length * 6 / 10)]);
        using var src = VipsImageSource.Open(cut);
        var e = Assert.Throws<InputFileException>(() => src.ReadRegion(0, 0, 300, 200, new ushort[300 * 200]));
        Assert.StartsWith(cut, e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain("unable to write to image", e.Message); // libvips' generic line, which said nothing
    }
}
