using ActorSeg.Core.Imaging;
using Xunit;
using Vips = NetVips;

namespace ActorSeg.Tests.IO;

/// <summary>
/// Zeiss CZI files (<see cref="CziSource"/>): mosaics of tiles drawn as ZEN draws them, channels, colour, Zstandard, the
/// pixel size; the planes and scenes left out said so; and damaged or unsupported files refused naming the file and the
/// problem. The files come from <see cref="CziWriter"/>, whose output an independent reader (Christoph Gohlke's czifile)
/// read to the same samples when it was written.
/// </summary>
public class CziTests(Xunit.Abstractions.ITestOutputHelper output) : TempDirTest("czi")
{
    /// <summary>A tile's samples: distinct per tile and channel, so an overlap shows which tile is on top.</summary>
    private static ushort[] TileSamples(int w, int h, int tile, int channel, int spp = 1, int max = 65535)
    {
        var s = new ushort[w * h * spp];
        for (int i = 0; i < s.Length; i++) s[i] = (ushort)((tile * 977 + channel * 5003 + i * 31 + (i / (w * spp)) * 7) % (max + 1));
        return s;
    }

    /// <summary>A 2-channel 16-bit mosaic of 3 × 2 tiles of 100 × 80 that overlap by 10 px, from (−500, 300) in the file's
    /// coordinates, with a gap (a missing tile's corner), its M indices in the reverse of the directory's order, its tiles
    /// raw, zstd0, zstd1 and zstd1 with low/high byte packing; plus a second focal plane, a second scene and a subsampled
    /// pyramid tile, none of which is read. Returns the samples expected (the tiles painted in M order, the higher on top).</summary>
    private (string Path, ushort[] Expected, int W, int H) Mosaic()
    {
        var blocks = new List<CziBlock>();
        int W = 280, H = 150;
        var expected = new ushort[W * H * 2];
        var painted = new List<(int M, int Tx, int Ty, int C, ushort[] S)>();
        int[] comps = [CziWriter.Uncompressed, CziWriter.Zstd0, CziWriter.Zstd1, CziWriter.Zstd1, CziWriter.Uncompressed, CziWriter.Zstd1];
        for (int c = 0; c < 2; c++)
            for (int t = 0; t < 6; t++)
            {
                if (t == 5 && c == 0) continue; // channel 0 has no last tile: its pixels stay 0 there (but for the overlaps)
                int tx = t % 3, ty = t / 3, m = 5 - t;
                var s = TileSamples(100, 80, t, c);
                blocks.Add(new CziBlock(-500 + 90 * tx, 300 + 70 * ty, 100, 80, s, C: c, M: m, S: 0, Compression: comps[t], HiLo: t == 3));
                painted.Add((m, tx, ty, c, s));
            }
        // not read: the second focal plane, the second scene (elsewhere), a subsampled tile over everything
        blocks.Add(new CziBlock(-500, 300, 100, 80, TileSamples(100, 80, 9, 0), C: 0, M: 0, Z: 1, S: 0));
        blocks.Add(new CziBlock(5000, 5000, 100, 80, TileSamples(100, 80, 8, 0), C: 0, M: 0, S: 1));
        blocks.Add(new CziBlock(-500, 300, 280, 150, TileSamples(70, 38, 7, 0), C: 0, M: 9, S: 0, StoredW: 70, StoredH: 38));
        foreach (var (m, tx, ty, c, s) in painted.OrderBy(p => p.M))
            for (int y = 0; y < 80; y++)
                for (int x = 0; x < 100; x++)
                    expected[((70 * ty + y) * W + 90 * tx + x) * 2 + c] = s[y * 100 + x];
        var path = Path.Combine(_dir, "mosaic.czi");
        CziWriter.Write(path, CziWriter.Gray16, blocks, 3.25e-7, ["DAPI", "GFP"]);
        return (path, expected, W, H);
    }

    [Fact]
    public void AMosaicCzi_IsReadAsItsTilesDrawnInMIndexOrder_WithItsChannelsAndPixelSize()
    {
        var (path, expected, W, H) = Mosaic();
        using var warned = new InputWarnings();
        using var src = ImageSources.Open(path);
        var czi = Assert.IsType<CziSource>(src);
        Assert.Equal((W, H, 2, 16), (src.Width, src.Height, src.Channels, src.BitDepth));
        Assert.Equal((-500, 300), czi.Origin);
        Assert.Equal(["DAPI", "GFP"], czi.ChannelNames);
        Assert.Equal(11, czi.Subblocks);
        var all = new ushort[W * H * 2];
        src.ReadRegion(0, 0, W, H, all);
        Assert.True(expected.AsSpan().SequenceEqual(all), "the whole mosaic differs from its tiles painted in M order");
        Assert.Equal(0, all[(149 * W + 279) * 2]); // channel 0's missing tile
        // any region is the whole image's
        var rng = new Random(3);
        for (int i = 0; i < 40; i++)
        {
            int x = rng.Next(W), y = rng.Next(H), w = 1 + rng.Next(W - x), h = 1 + rng.Next(H - y);
            var part = new ushort[w * h * 2];
            src.ReadRegion(x, y, w, h, part);
            for (int r = 0; r < h; r++)
                Assert.True(all.AsSpan(((y + r) * W + x) * 2, w * 2).SequenceEqual(part.AsSpan(r * w * 2, w * 2)), $"region {x},{y} {w}x{h}, row {r}");
        }
        Assert.Equal((0.325, 0.325), PixelSize.MicronsPerPixel(path)!.Value);
        Assert.Contains(warned.All, m => m.Contains(path) && m.Contains("2 scenes"));
        Assert.Contains(warned.All, m => m.Contains(path) && m.Contains("2 focal planes (Z)"));
        Assert.Throws<ArgumentOutOfRangeException>(() => src.ReadRegion(W - 5, 0, 6, 1, new ushort[12]));
    }

    [Fact]
    public void ACziPyramid_IsReadAtItsReducedLevels_ForLevelAndMpp()
    {
        // a colour mosaic of 2 × 2 tiles of 200 × 150 (no overlap) from (1000, 2000), with a pyramid of factor 2 (four
        // tiles of 100 × 75) and 4 (one subblock of 100 × 75 for the whole), zstd and raw
        var blocks = new List<CziBlock>();
        for (int t = 0; t < 4; t++)
        {
            int tx = t % 2, ty = t / 2;
            blocks.Add(new CziBlock(1000 + 200 * tx, 2000 + 150 * ty, 200, 150, TileSamples(200, 150, t, 0, 3, 255), M: t, Compression: CziWriter.Zstd1));
            blocks.Add(new CziBlock(1000 + 200 * tx, 2000 + 150 * ty, 200, 150, TileSamples(100, 75, 10 + t, 0, 3, 255), M: t, StoredW: 100, StoredH: 75, Compression: CziWriter.Zstd0));
        }
        blocks.Add(new CziBlock(1000, 2000, 400, 300, TileSamples(100, 75, 20, 0, 3, 255), M: 0, StoredW: 100, StoredH: 75));
        var path = Path.Combine(_dir, "pyramid.czi");
        CziWriter.Write(path, CziWriter.Bgr24, blocks, 2.2e-7);
        Assert.Equal([(400L, 300L), (200L, 150L), (100L, 75L)], ImageSources.PyramidLevels(path));
        using (var l1 = ImageSources.Open(path, 1))
        {
            Assert.Equal((200, 150, 3), (l1.Width, l1.Height, l1.Channels));
            var got = new ushort[200 * 150 * 3];
            l1.ReadRegion(0, 0, 200, 150, got);
            for (int t = 0; t < 4; t++)
            {
                var want = TileSamples(100, 75, 10 + t, 0, 3, 255);
                for (int y = 0; y < 75; y++)
                    Assert.True(want.AsSpan(y * 300, 300).SequenceEqual(got.AsSpan(((75 * (t / 2) + y) * 200 + 100 * (t % 2)) * 3, 300)), $"level 1, tile {t}, row {y}");
            }
        }
        using (var l2 = ImageSources.Open(path, 2))
        {
            var got = new ushort[100 * 75 * 3];
            l2.ReadRegion(0, 0, 100, 75, got);
            Assert.Equal(TileSamples(100, 75, 20, 0, 3, 255), got);
        }
        Assert.Equal((0.44, 0.44), PixelSize.MicronsPerPixel(path, 1)!.Value);
        // a compressed pyramid tile that holds fewer rows than its stored size (ZEN's rounding on edge tiles): read as ZEN
        // reads it, those rows and the rest 0, with a warning; one with more rows, the first ones
        using (var warned = new InputWarnings())
        {
            var shortPath = Path.Combine(_dir, "short.czi");
            var rows = TileSamples(64, 64, 3, 0);
            CziWriter.Write(shortPath, CziWriter.Gray16, [new CziBlock(0, 0, 64, 64, rows, Compression: CziWriter.Zstd0),
                new CziBlock(0, 0, 64, 64, rows[..(32 * 30)], StoredW: 32, StoredH: 32, Compression: CziWriter.Zstd0),
                new CziBlock(0, 0, 64, 64, rows[..(16 * 17)], StoredW: 16, StoredH: 16, Compression: CziWriter.Zstd1)]);
            using var l1 = ImageSources.Open(shortPath, 1);
            var got = new ushort[32 * 32];
            l1.ReadRegion(0, 0, 32, 32, got);
            Assert.Equal([.. rows[..(32 * 30)], .. new ushort[64]], got);
            using var l2 = ImageSources.Open(shortPath, 2);
            var got2 = new ushort[16 * 16];
            l2.ReadRegion(0, 0, 16, 16, got2);
            Assert.Equal(rows[..(16 * 16)], got2);
            Assert.Contains(warned.All, m => m.StartsWith(shortPath + ": some compressed CZI subblocks hold fewer or more pixels than their stored size"));
        }
        var info = TestPaths.RunCli("info", path);
        Assert.Contains("  1: 200 x 150, downsample 2, 0.44 µm/px", info.Stdout);
        Assert.Contains("  2: 100 x 75, downsample 4, 0.88 µm/px", info.Stdout);
        // --mpp picks the level; the graph and its pixel size are the level's
        var r = TestPaths.RunCli("graph", path, "--mpp", "0.5", "--out", Path.Combine(_dir, "g-pyr"), "--spacing", "8");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("200x150x3 8-bit", r.Stderr);
        Assert.Equal([0.44, 0.44], ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g-pyr", "graph.npz"))[ActorSeg.Core.IO.GraphOutputs.PixelSizeArray].AsSpan<double>().ToArray());
    }

    [Fact]
    public void AColourCziSlideScan_HasItsTissueFoundByDefault_AsOpenSlidesSlidesDo()
    {
        // a brightfield slide 60 % glass (ActorSeg's generator, as an Aperio file), its levels 0 and 1 saved as a CZI
        // slide scan: 256² tiles of zstd BGR, and the pyramid's tiles subsampled by 2
        var gen = TestPaths.RunCli("generate", "--out", _dir, "--name", "glass", "--width", "1024", "--height", "768", "--kind", "nuclei", "--format", "svs", "--glass", "0.6", "--seed", "3");
        Assert.True(gen.ExitCode == 0, gen.Stderr);
        var blocks = new List<CziBlock>();
        using (var l0 = OpenSlideSource.Open(Path.Combine(_dir, "glass.svs"), 0))
        using (var l1 = OpenSlideSource.Open(Path.Combine(_dir, "glass.svs"), 1))
        {
            Assert.Equal((1024, 768, 512, 384), (l0.Width, l0.Height, l1.Width, l1.Height));
            for (int ty = 0; ty < 3; ty++)
                for (int tx = 0; tx < 4; tx++)
                {
                    var s0 = new ushort[256 * 256 * 3]; l0.ReadRegion(256 * tx, 256 * ty, 256, 256, s0);
                    blocks.Add(new CziBlock(256 * tx, 256 * ty, 256, 256, s0, M: ty * 4 + tx, Compression: CziWriter.Zstd1));
                    var s1 = new ushort[128 * 128 * 3]; l1.ReadRegion(128 * tx, 128 * ty, 128, 128, s1);
                    blocks.Add(new CziBlock(256 * tx, 256 * ty, 256, 256, s1, M: ty * 4 + tx, StoredW: 128, StoredH: 128, Compression: CziWriter.Zstd1));
                }
        }
        var czi = Path.Combine(_dir, "scan.czi");
        CziWriter.Write(czi, CziWriter.Bgr24, blocks, 5e-7);
        string Log(string name, params string[] extra)
        {
            var r = TestPaths.RunCli(["graph", czi, "--out", Path.Combine(_dir, name), "--tile-size", "256", .. extra]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            return r.Stderr;
        }
        var auto = Log("g-auto");
        var said = System.Text.RegularExpressions.Regex.Match(auto, @"tissue \(detected\) covers [0-9.]+ ?% of the image; ([0-9]+) of 12 tiles are glass only");
        Assert.True(said.Success, auto);
        Assert.True(int.Parse(said.Groups[1].Value) > 0, said.Value);
        Assert.True(File.Exists(Path.Combine(_dir, "g-auto", "tissue.png")));
        var none = Log("g-none", "--tissue", "none");
        Assert.DoesNotContain("tissue (detected)", none);
        int Nodes(string name) => (int)ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, name, "graph.npz"))["x"].Shape[0];
        Assert.True(Nodes("g-none") > Nodes("g-auto") * 3 / 2, $"{Nodes("g-none")} nodes without tissue detection, {Nodes("g-auto")} with");
        // a fluorescence CZI (grey channels) is no slide: every pixel taken, as before
        var grey = Path.Combine(_dir, "grey.czi");
        CziWriter.Write(grey, CziWriter.Gray8, [new CziBlock(0, 0, 64, 64, TileSamples(64, 64, 1, 0, max: 255), C: 0), new CziBlock(0, 0, 64, 64, TileSamples(64, 64, 1, 1, max: 255), C: 1),
            new CziBlock(0, 0, 64, 64, TileSamples(64, 64, 1, 2, max: 255), C: 2), new CziBlock(0, 0, 64, 64, TileSamples(32, 32, 2, 0, max: 255), C: 0, StoredW: 32, StoredH: 32)]);
        using var g = ImageSources.Open(grey);
        Assert.False(ActorSeg.Core.Pipeline.GraphJob.IsBrightfieldSlide(grey, g));
    }

    [Fact]
    public void ScenesOfOneSlide_AreReadTogether_PositionsFarApartAreNot()
    {
        // two tissue sections of a slide scan, each a scene, 50 px apart in the slide's coordinates: one image, the gap
        // background (white in colour, 0 in grey)
        var a = TileSamples(100, 80, 1, 0, 3, 254); var b = TileSamples(100, 80, 2, 0, 3, 254);
        var slide = Path.Combine(_dir, "sections.czi");
        CziWriter.Write(slide, CziWriter.Bgr24, [new CziBlock(1000, 500, 100, 80, a, S: 0), new CziBlock(1150, 520, 100, 80, b, S: 1)]);
        using (var warned = new InputWarnings())
        using (var src = ImageSources.Open(slide))
        {
            Assert.Equal((250, 100, 3), (src.Width, src.Height, src.Channels));
            var got = new ushort[250 * 100 * 3];
            src.ReadRegion(0, 0, 250, 100, got);
            for (int y = 0; y < 80; y++)
            {
                Assert.True(a.AsSpan(y * 300, 300).SequenceEqual(got.AsSpan(y * 750, 300)), $"scene 0, row {y}");
                Assert.True(b.AsSpan(y * 300, 300).SequenceEqual(got.AsSpan(((y + 20) * 250 + 150) * 3, 300)), $"scene 1, row {y}");
            }
            Assert.All(got.AsSpan((10 * 250 + 100) * 3, 50 * 3).ToArray(), v => Assert.Equal(255, v)); // between them: white
            Assert.Contains(warned.All, m => m.StartsWith(slide) && m.Contains("2 scenes, read together"));
        }
        Assert.Contains("scenes in the file: 2 (parts of one slide: read together)", TestPaths.RunCli("info", slide).Stdout);
        // two positions of a plate, 20,000 px apart: the first alone
        var plate = Path.Combine(_dir, "plate.czi");
        var g0 = TileSamples(100, 80, 3, 0); var g1 = TileSamples(100, 80, 4, 0);
        CziWriter.Write(plate, CziWriter.Gray16, [new CziBlock(0, 0, 100, 80, g0, S: 0), new CziBlock(20000, 0, 100, 80, g1, S: 1)]);
        using (var warned = new InputWarnings())
        using (var src = ImageSources.Open(plate))
        {
            Assert.Equal((100, 80, 1), (src.Width, src.Height, src.Channels));
            var got = new ushort[100 * 80];
            src.ReadRegion(0, 0, 100, 80, got);
            Assert.Equal(g0, got);
            Assert.Contains(warned.All, m => m.StartsWith(plate) && m.Contains("2 scenes far apart") && m.Contains("the first (S=0) is read"));
        }
    }

    [Fact]
    public void ColourCzis_AreReadAsRgb_AndFoundByTheirContentWhateverTheirName()
    {
        var rgb8 = TileSamples(64, 48, 1, 0, spp: 3, max: 255);
        var rgb16 = TileSamples(64, 48, 2, 0, spp: 3);
        var p8 = Path.Combine(_dir, "rgb8.czi"); var p16 = Path.Combine(_dir, "rgb16.dat");
        CziWriter.Write(p8, CziWriter.Bgr24, [new CziBlock(0, 0, 64, 48, rgb8)]);
        CziWriter.Write(p16, CziWriter.Bgr48, [new CziBlock(10, 20, 64, 48, rgb16, Compression: CziWriter.Zstd0)], 2e-7);
        foreach (var (p, want, bits) in new[] { (p8, rgb8, 8), (p16, rgb16, 16) })
        {
            using var src = ImageSources.Open(p);
            Assert.IsType<CziSource>(src);
            Assert.Equal((64, 48, 3, bits), (src.Width, src.Height, src.Channels, src.BitDepth));
            var got = new ushort[want.Length];
            src.ReadRegion(0, 0, 64, 48, got);
            Assert.Equal(want, got);
        }
        Assert.Null(PixelSize.MicronsPerPixel(p8)); // no Scaling: no pixel size
        var info = TestPaths.RunCli("info", p16);
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("format: Zeiss CZI", info.Stdout);
        Assert.Contains("size: 64 x 48, 3 channel(s), 16-bit (Bgr48; its top-left pixel at 10,20", info.Stdout);
        Assert.Contains("microns per pixel: 0.2 x 0.2", info.Stdout);
        Assert.Contains("Zstandard (zstd0)", info.Stdout);
    }

    [Fact]
    public void JpegXrCzis_AreReadThroughJxrlib_InEveryPixelType()
    {
        // (./run.sh test installs libjxr0 and libjxr-tools)
        if (!JpegXr.Available || !File.Exists("/usr/bin/JxrEncApp")) { output.WriteLine("SKIPPED: jxrlib or its encoder JxrEncApp is not installed"); return; }
        // lossless JPEG XR from jxrlib's own encoder: the samples come back exactly
        foreach (var (type, spp, max) in new[] { (CziWriter.Gray8, 1, 255), (CziWriter.Gray16, 1, 65535), (CziWriter.Bgr24, 3, 255), (CziWriter.Bgr48, 3, 65535) })
        {
            var a = TileSamples(64, 48, 1, 0, spp, max); var b = TileSamples(64, 48, 2, 0, spp, max);
            var path = Path.Combine(_dir, $"jxr{type}.czi");
            // two tiles side by side, one JPEG XR and one raw
            CziWriter.Write(path, type, [new CziBlock(0, 0, 64, 48, a, M: 0, Compression: CziWriter.JpegXr), new CziBlock(64, 0, 64, 48, b, M: 1)]);
            using var src = ImageSources.Open(path);
            Assert.Equal((128, 48, spp), (src.Width, src.Height, src.Channels));
            var got = new ushort[128 * 48 * spp];
            src.ReadRegion(0, 0, 128, 48, got);
            for (int y = 0; y < 48; y++)
            {
                Assert.True(a.AsSpan(y * 64 * spp, 64 * spp).SequenceEqual(got.AsSpan(y * 128 * spp, 64 * spp)), $"{path}: JPEG XR tile, row {y}");
                Assert.True(b.AsSpan(y * 64 * spp, 64 * spp).SequenceEqual(got.AsSpan((y * 128 + 64) * spp, 64 * spp)), $"{path}: raw tile, row {y}");
            }
        }
        // a pyramid tile whose JPEG XR image has fewer rows than its stored size: those rows, the rest 0, and a warning
        using var warned = new InputWarnings();
        var s16 = TileSamples(32, 32, 4, 0);
        var shortPath = Path.Combine(_dir, "jxr-short.czi");
        CziWriter.Write(shortPath, CziWriter.Gray16, [new CziBlock(0, 0, 64, 64, TileSamples(64, 64, 5, 0)),
            new CziBlock(0, 0, 64, 64, s16[..(32 * 31)], StoredW: 32, StoredH: 32, Compression: CziWriter.JpegXr, EncodedH: 31)]);
        using var l1 = ImageSources.Open(shortPath, 1);
        var got1 = new ushort[32 * 32];
        l1.ReadRegion(0, 0, 32, 32, got1);
        Assert.Equal([.. s16[..(32 * 31)], .. new ushort[32]], got1);
        Assert.Contains(warned.All, m => m.StartsWith(shortPath + ": some compressed CZI subblocks hold fewer or more pixels"));
    }

    [Fact]
    public void BadOrUnsupportedCzis_FailNamingTheFileAndTheProblem()
    {
        var (mosaic, _, _, _) = Mosaic();
        string Error(string path, int level = 0)
        {
            var e = Assert.Throws<InputFileException>(() => { using var s = ImageSources.Open(path, level); var b = new ushort[s.Width * s.Channels]; s.ReadRegion(0, 0, s.Width, 1, b); });
            Assert.StartsWith(path + ": ", e.Message);
            return e.Message;
        }
        var lzw = Path.Combine(_dir, "lzw.czi");
        CziWriter.Write(lzw, CziWriter.Gray8, [new CziBlock(0, 0, 8, 8, new ushort[64], Compression: 2)]);
        Assert.Contains("compressed with LZW are not read", Error(lzw));
        // JPEG XR that is not: bytes that no decoder takes
        var jxr = Path.Combine(_dir, "jxr.czi");
        CziWriter.Write(jxr, CziWriter.Gray8, [new CziBlock(0, 0, 8, 8, new ushort[64], Compression: 1000 + CziWriter.JpegXr)]);
        var bad = File.ReadAllBytes(jxr);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bad.AsSpan(IndexOf(bad, "ZISRAWDIRECTORY"u8) + 32 + 128 + 18), CziWriter.JpegXr); // the directory says JPEG XR
        File.WriteAllBytes(jxr, bad);
        Assert.Contains(JpegXr.Available ? "not a JPEG XR image jxrlib can read" : "JPEG XR needs jxrlib", Error(jxr));
        var flt = Path.Combine(_dir, "float.czi");
        CziWriter.Write(flt, CziWriter.Gray32Float, [new CziBlock(0, 0, 8, 8, new ushort[64])]);
        Assert.Contains("Gray32Float is not read", Error(flt));
        Assert.Contains("has 2 resolution level(s) (0..1: the full resolution and 1 of its pyramid); level 2 does not exist", Error(mosaic, 2));
        var noDir = Path.Combine(_dir, "nodir.czi");
        CziWriter.Write(noDir, CziWriter.Gray8, [new CziBlock(0, 0, 8, 8, new ushort[64])], withDirectory: false);
        Assert.Contains("without a subblock directory", Error(noDir));
        // cut inside the last subblock's pixels (the directory is gone too); then only the directory cut off
        var bytes = File.ReadAllBytes(mosaic);
        var cut = Path.Combine(_dir, "cut.czi");
        File.WriteAllBytes(cut, bytes[..(bytes.Length - 2000)]);
        Assert.Contains("truncated", Error(cut));
        // a subblock whose header claims more pixel data than the file holds; one that holds fewer than its size needs
        var huge = File.ReadAllBytes(mosaic);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(huge.AsSpan(IndexOf(huge, "ZISRAWSUBBLOCK"u8) + 32 + 8), 1L << 40);
        var hugePath = Path.Combine(_dir, "huge.czi");
        File.WriteAllBytes(hugePath, huge);
        Assert.Contains("claims pixel data past its segment or the file's end", Error(hugePath));
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(huge.AsSpan(IndexOf(huge, "ZISRAWSUBBLOCK"u8) + 32 + 8), 100);
        File.WriteAllBytes(hugePath, huge);
        Assert.Contains("holds 100 bytes of pixels where 16000 are needed", Error(hugePath));
        // a subblock's Zstandard data damaged: its bytes flipped where the compressed data starts
        var zstdPath = Path.Combine(_dir, "zstd.czi");
        CziWriter.Write(zstdPath, CziWriter.Gray16, [new CziBlock(0, 0, 64, 64, TileSamples(64, 64, 0, 0), Compression: CziWriter.Zstd1)]);
        var z = File.ReadAllBytes(zstdPath);
        int at = IndexOf(z, "ZISRAWSUBBLOCK"u8) + 32 + 256 + 1; // the segment's data, its 256-byte header, zstd1's 1-byte header
        for (int i = at; i < at + 8; i++) z[i] ^= 0xFF;
        File.WriteAllBytes(zstdPath, z);
        Assert.Contains("Zstandard", Error(zstdPath));
        // a pyramid tile outside level 0's extent (left of it, and past its end) is no pixel of its level
        var stray = Path.Combine(_dir, "stray.czi");
        CziWriter.Write(stray, CziWriter.Gray8, [new CziBlock(0, 0, 64, 64, TileSamples(64, 64, 1, 0, max: 255)),
            new CziBlock(0, 0, 64, 64, TileSamples(32, 32, 2, 0, max: 255), StoredW: 32, StoredH: 32),
            new CziBlock(-9000, 0, 64, 64, TileSamples(32, 32, 3, 0, max: 255), StoredW: 32, StoredH: 32),
            new CziBlock(9000, 9000, 64, 64, TileSamples(32, 32, 4, 0, max: 255), StoredW: 32, StoredH: 32)]);
        using (var l1 = ImageSources.Open(stray, 1))
        {
            var got = new ushort[32 * 32];
            l1.ReadRegion(0, 0, 32, 32, got);
            Assert.Equal(TileSamples(32, 32, 2, 0, max: 255), got);
        }
        // a file named .czi that is no CZI: the formats read, named
        var named = Path.Combine(_dir, "named.czi");
        File.WriteAllBytes(named, [.. Enumerable.Range(0, 900).Select(i => (byte)(i * 31))]);
        Assert.Contains("not a supported image format (supported: TIFF/BigTIFF/OME-TIFF, PNG, JPEG, Zeiss CZI, Leica LIF", Error(named));
        // a file that starts as a CZI but is not one past its header
        var junk = Path.Combine(_dir, "junk.czi");
        File.WriteAllBytes(junk, [.. "ZISRAWFILE"u8, .. new byte[22], .. Enumerable.Repeat((byte)0x7F, 600)]);
        Assert.Contains("CZI", Error(junk));
    }

    private static int IndexOf(byte[] hay, ReadOnlySpan<byte> needle) => hay.AsSpan().IndexOf(needle);

    [Fact]
    public void TheGraphOfACzi_IsTheGraphOfTheSameSamplesAsATiff_AndRecordsItsPixelSize()
    {
        // a 3-channel 8-bit mosaic of 4 × 3 tiles, read by tiles of 128 px with their halos
        int tw = 160, th = 130, W = 4 * 150 + 10, H = 3 * 120 + 10;
        var blocks = new List<CziBlock>();
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < 12; t++)
            {
                int tx = t % 4, ty = t / 4;
                var s = new ushort[tw * th];
                for (int y = 0; y < th; y++)
                    for (int x = 0; x < tw; x++)
                    {
                        int gx = 150 * tx + x, gy = 120 * ty + y;
                        s[y * tw + x] = (ushort)(100 + 80 * Math.Sin(gx / (9.0 + 4 * c)) * Math.Cos(gy / 13.0) + ((gx * 7 + gy * 3 + c) % 11));
                    }
                blocks.Add(new CziBlock(150 * tx, 120 * ty, tw, th, s, C: c, M: t, Compression: t % 2 == 0 ? CziWriter.Zstd1 : CziWriter.Uncompressed));
            }
        var czi = Path.Combine(_dir, "cells.czi");
        CziWriter.Write(czi, CziWriter.Gray8, blocks, 6.5e-7, ["a", "b", "c"]);
        using (var src = ImageSources.Open(czi))
        {
            Assert.Equal((W, H, 3, 8), (src.Width, src.Height, src.Channels, src.BitDepth));
            var all = new ushort[W * H * 3];
            src.ReadRegion(0, 0, W, H, all);
            var bytes = all.Select(v => (byte)v).ToArray();
            using var img = Vips.Image.NewFromMemory(bytes, W, H, 3, Vips.Enums.BandFormat.Uchar);
            img.Tiffsave(Path.Combine(_dir, "cells.tif"), tile: true, tileWidth: 64, tileHeight: 64, compression: Vips.Enums.ForeignTiffCompression.Deflate);
        }
        foreach (var name in new[] { "cells.czi", "cells.tif" })
        {
            var r = TestPaths.RunCli("graph", Path.Combine(_dir, name), "--out", Path.Combine(_dir, "g-" + name), "--spacing", "10", "--tile-size", "128");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains($"{W}x{H}x3 8-bit", r.Stderr);
        }
        GraphFiles.AssertSameGraph(Path.Combine(_dir, "g-cells.tif", "graph.npz"), Path.Combine(_dir, "g-cells.czi", "graph.npz"));
        Assert.Equal([0.65, 0.65], ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g-cells.czi", "graph.npz"))[ActorSeg.Core.IO.GraphOutputs.PixelSizeArray].AsSpan<double>().ToArray());
        // a batch over a folder, and training images beside their masks, take CZI files too
        var folder = Directory.CreateDirectory(Path.Combine(_dir, "slides")).FullName;
        File.Copy(czi, Path.Combine(folder, "cells.czi"));
        var (slides, rejected) = ActorSeg.Cli.BatchInput.Load(folder, null);
        Assert.Empty(rejected);
        Assert.Equal([Path.Combine(folder, "cells.czi")], slides.Select(s => s.Image));
        var masks = Directory.CreateDirectory(Path.Combine(_dir, "masks")).FullName;
        using (var m = Vips.Image.Black(W, H).Cast(Vips.Enums.BandFormat.Uchar)) m.Tiffsave(Path.Combine(masks, "cells.tif"));
        Assert.Equal([(Path.Combine(folder, "cells.czi"), Path.Combine(masks, "cells.tif"))], ActorSeg.Cli.TrainCommand.Pair(folder, masks));
    }
}
