using ActorSeg.Core.Imaging;
using Xunit;
using Vips = NetVips;

namespace ActorSeg.Tests.IO;

/// <summary>
/// Leica LIF files (<see cref="LifSource"/>): the first image's channels at the first index of its other dimensions, laid
/// out by their byte increments (channels as planes or interleaved, Y after Z), 8-bit and 12-bit samples, version 1 and 2
/// blocks, the pixel size; and damaged files refused naming the file and the problem. The files come from
/// <see cref="LifWriter"/>; two files LAS X wrote (readlif's test files) read to readlif's samples when it was written.
/// </summary>
public class LifTests() : TempDirTest("lif")
{
    private const double Metres = 1e-6; // 1 µm: a dimension of n pixels is (n − 1) µm long for 1 µm pixels

    /// <summary>A 12-bit 2-channel image of 90 × 70 with 3 focal planes and 2 time points, stored as LAS X stores a
    /// confocal stack: channels as planes, then Z, then T; and the samples of its first plane, interleaved.</summary>
    private static (LifImage Image, ushort[] Plane) Stack(int w = 90, int h = 70, int C = 2)
    {
        int Z = 3, T = 2;
        long plane = (long)w * h * 2;
        var mem = new byte[plane * C * Z * T];
        var first = new ushort[w * h * C];
        for (int t = 0; t < T; t++)
            for (int z = 0; z < Z; z++)
                for (int c = 0; c < C; c++)
                    for (int y = 0; y < h; y++)
                        for (int x = 0; x < w; x++)
                        {
                            ushort v = (ushort)((x * 13 + y * 29 + c * 1000 + z * 300 + t * 77) % 4096);
                            long at = c * plane + ((long)t * Z + z) * C * plane + ((long)y * w + x) * 2;
                            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(mem.AsSpan((int)at), v);
                            if (z == 0 && t == 0) first[(y * w + x) * C + c] = v;
                        }
        var image = new LifImage("stack", [.. Enumerable.Repeat(12, C)], [.. Enumerable.Range(0, C).Select(c => c * plane)],
            [(1, w, 2, (w - 1) * 0.5 * Metres), (2, h, 2L * w, (h - 1) * 0.5 * Metres), (3, Z, C * plane, 2e-6), (4, T, Z * C * plane, 10)], mem);
        return (image, first);
    }

    [Fact]
    public void ALifStack_IsReadAsItsFirstPlanesChannels_WithItsPixelSize_AndWarnings()
    {
        var (stack, plane) = Stack();
        // a second image after it: an 8-bit colour field with its channels interleaved and Y before X in memory order
        int w2 = 40, h2 = 30;
        var rgb = new byte[w2 * h2 * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 7 % 251);
        var colour = new LifImage("colour", [8, 8, 8], [0, 1, 2], [(1, w2, 3, 1e-5), (2, h2, 3L * w2, 1e-5)], rgb);
        foreach (int version in new[] { 1, 2 })
        {
            var path = Path.Combine(_dir, $"stack-v{version}.lif");
            LifWriter.Write(path, [stack, colour], version);
            using var warned = new InputWarnings();
            using var src = ImageSources.Open(path);
            var lif = Assert.IsType<LifSource>(src);
            Assert.Equal((90, 70, 2, 16), (src.Width, src.Height, src.Channels, src.BitDepth));
            Assert.Equal("project/stack", lif.ImageName);
            var all = new ushort[90 * 70 * 2];
            src.ReadRegion(0, 0, 90, 70, all);
            Assert.Equal(plane, all);
            var part = new ushort[11 * 9 * 2];
            src.ReadRegion(77, 60, 11, 9, part);
            for (int r = 0; r < 9; r++) Assert.True(all.AsSpan(((60 + r) * 90 + 77) * 2, 22).SequenceEqual(part.AsSpan(r * 22, 22)), $"v{version}: row {r}");
            var (mx, my) = PixelSize.MicronsPerPixel(path)!.Value;
            Assert.Equal(0.5, mx, 9); Assert.Equal(0.5, my, 9);
            Assert.Contains(warned.All, m => m.StartsWith(path) && m.Contains("a LIF file of 2 images; the first (project/stack) is read"));
            Assert.Contains(warned.All, m => m.StartsWith(path) && m.Contains("has 3 focal planes (Z); the first is read"));
            Assert.Contains(warned.All, m => m.StartsWith(path) && m.Contains("has 2 time points (T); the first is read"));
        }
        // the colour image alone: its channels interleaved
        var cpath = Path.Combine(_dir, "colour.lif");
        LifWriter.Write(cpath, [colour]);
        using (var c = ImageSources.Open(cpath))
        {
            Assert.Equal((40, 30, 3, 8), (c.Width, c.Height, c.Channels, c.BitDepth));
            var got = new ushort[40 * 30 * 3];
            c.ReadRegion(0, 0, 40, 30, got);
            Assert.Equal(rgb.Select(b => (ushort)b), got);
        }
        var info = TestPaths.RunCli("info", Path.Combine(_dir, "stack-v2.lif"));
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("format: Leica LIF", info.Stdout);
        Assert.Contains("size: 90 x 70, 2 channel(s), 16-bit (samples of 12 bits)", info.Stdout);
        Assert.Contains("microns per pixel: 0.5 x 0.5", info.Stdout);
        Assert.Contains("3 focal planes (Z), 2 time points (T)", info.Stdout);
    }

    [Fact]
    public void AnXzScan_ReadsItsZAsRows_AndYAfterZIsStillY()
    {
        // an XZ scan: no Y, so Z gives the rows
        var mem = Enumerable.Range(0, 20 * 10).Select(i => (byte)i).ToArray();
        var xz = Path.Combine(_dir, "xz.lif");
        LifWriter.Write(xz, [new LifImage("xz", [8], [0], [(1, 20, 1, 1.9e-5), (3, 10, 20, 9e-6)], mem)]);
        using (var warned = new InputWarnings())
        using (var s = ImageSources.Open(xz))
        {
            Assert.Equal((20, 10), (s.Width, s.Height));
            var got = new ushort[200];
            s.ReadRegion(0, 0, 20, 10, got);
            Assert.Equal(mem.Select(b => (ushort)b), got);
            Assert.Contains(warned.All, m => m.Contains("is an XZ scan (no Y dimension)"));
        }
        // X, Z, Y in memory order (as LAS X writes an XZY volume): the X × Y plane at Z = 0 is strided
        var vol = Enumerable.Range(0, 20 * 4 * 6).Select(i => (byte)(i % 253)).ToArray();
        var xzy = Path.Combine(_dir, "xzy.lif");
        LifWriter.Write(xzy, [new LifImage("xzy", [8], [0], [(1, 20, 1, 1.9e-5), (3, 4, 20, 3e-6), (2, 6, 80, 5e-6)], vol)]);
        using var v = ImageSources.Open(xzy);
        Assert.Equal((20, 6), (v.Width, v.Height));
        var plane = new ushort[20 * 6];
        v.ReadRegion(0, 0, 20, 6, plane);
        for (int y = 0; y < 6; y++) for (int x = 0; x < 20; x++) Assert.Equal(vol[y * 80 + x], plane[y * 20 + x]);
    }

    [Fact]
    public void BadLifs_FailNamingTheFileAndTheProblem()
    {
        var (stack, _) = Stack(30, 20);
        var good = Path.Combine(_dir, "good.lif");
        LifWriter.Write(good, [stack]);
        string Error(string path)
        {
            var e = Assert.Throws<InputFileException>(() => { using var s = ImageSources.Open(path); var b = new ushort[s.Width * s.Channels]; s.ReadRegion(0, 0, s.Width, 1, b); });
            Assert.StartsWith(path + ": ", e.Message);
            return e.Message;
        }
        var bytes = File.ReadAllBytes(good);
        var cut = Path.Combine(_dir, "cut.lif");
        // cut inside the first plane: refused; cut after it (in the later planes), the first plane reads, with a warning
        File.WriteAllBytes(cut, bytes[..(bytes.Length - 14400 + 1000)]);
        using (var warned = new InputWarnings())
        {
            Assert.Contains("needs 2400 bytes of pixels, its memory block MemBlock_100 holds 1000: truncated or damaged", Error(cut));
            Assert.Contains(warned.All, m => m.Contains("MemBlock_100") && m.Contains("past the file's end"));
            File.WriteAllBytes(cut, bytes[..(bytes.Length - 100)]);
            using var late = ImageSources.Open(cut);
            var row = new ushort[30 * 2];
            late.ReadRegion(0, 19, 30, 1, row);
        }
        var headerOnly = Path.Combine(_dir, "header.lif");
        int xmlEnd = 13 + 2 * System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(9));
        File.WriteAllBytes(headerOnly, bytes[..(xmlEnd + 10)]); // inside the first block's header
        Assert.Contains("LIF file ends inside a memory block's header", Error(headerOnly));
        File.WriteAllBytes(headerOnly, bytes[..xmlEnd]); // the XML alone: the image's block is missing
        Assert.Contains("pixels (memory block MemBlock_100) are not in the file", Error(headerOnly));
        var line = Path.Combine(_dir, "line.lif");
        LifWriter.Write(line, [new LifImage("line", [8], [0], [(1, 50, 1, 1e-5), (4, 10, 50, 1)], new byte[500])]);
        Assert.Contains("has no Y or Z dimension (a line scan?)", Error(line));
        var twice = Path.Combine(_dir, "twice.lif");
        LifWriter.Write(twice, [new LifImage("twice", [8], [0], [(1, 5, 1, 1e-5), (2, 5, 5, 1e-5), (2, 5, 5, 1e-5)], new byte[25])]);
        Assert.Contains("describes a dimension twice", Error(twice));
        var far = Path.Combine(_dir, "far.lif");
        LifWriter.Write(far, [new LifImage("far", [8], [0], [(1, 5, 1, 1e-5), (2, 5, 1L << 60, 1e-5)], new byte[25])]);
        Assert.Contains("byte increments below 0 or beyond its memory block (25 bytes)", Error(far));
        var farBytes = File.ReadAllBytes(far);
        var sizeAttr = System.Text.Encoding.Unicode.GetBytes("Memory Size=\"25\"");
        int sa = farBytes.AsSpan().IndexOf(sizeAttr);
        Assert.True(sa > 0);
        // the XML's declared size raised to the largest long: the increments pass that bound, their sum overflows
        var bigger = System.Text.Encoding.Unicode.GetBytes("Memory Size=\"9223372036854775807\"");
        File.WriteAllBytes(far, [.. farBytes[..sa], .. bigger, .. farBytes[(sa + sizeAttr.Length)..]]);
        var patched = File.ReadAllBytes(far);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(patched.AsSpan(9), System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(patched.AsSpan(9)) + (bigger.Length - sizeAttr.Length) / 2);
        File.WriteAllBytes(far, patched);
        Assert.Contains("its memory block MemBlock_100 holds 25: truncated or damaged", Error(far));
        var wide = Path.Combine(_dir, "wide.lif");
        LifWriter.Write(wide, [new LifImage("float", [32], [0], [(1, 5, 4, 1e-5), (2, 5, 20, 1e-5)], new byte[100])]);
        Assert.Contains("channels of 32 bits", Error(wide));
        var badXml = Path.Combine(_dir, "xml.lif");
        var x = (byte[])bytes.Clone();
        int at = x.AsSpan().IndexOf(System.Text.Encoding.Unicode.GetBytes("<Dimensions>"));
        x[at] = (byte)'{';
        File.WriteAllBytes(badXml, x);
        Assert.Contains("not well-formed XML", Error(badXml));
    }

    [Fact]
    public void TheGraphOfALif_IsTheGraphOfTheSameSamplesAsATiff()
    {
        var (stack, plane) = Stack(300, 260, C: 1);
        var lif = Path.Combine(_dir, "cells.lif");
        LifWriter.Write(lif, [stack]);
        var bytes = new byte[plane.Length * 2];
        Buffer.BlockCopy(plane, 0, bytes, 0, bytes.Length);
        using (var img = Vips.Image.NewFromMemory(bytes, 300, 260, 1, Vips.Enums.BandFormat.Ushort))
            img.Tiffsave(Path.Combine(_dir, "cells.tif"), tile: true, tileWidth: 64, tileHeight: 64);
        foreach (var name in new[] { "cells.lif", "cells.tif" })
        {
            var r = TestPaths.RunCli("graph", Path.Combine(_dir, name), "--out", Path.Combine(_dir, "g-" + name), "--spacing", "10", "--tile-size", "128");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("300x260x1 16-bit", r.Stderr);
        }
        GraphFiles.AssertSameGraph(Path.Combine(_dir, "g-cells.tif", "graph.npz"), Path.Combine(_dir, "g-cells.lif", "graph.npz"));
        var um = ActorSeg.Core.IO.NpzReader.Read(Path.Combine(_dir, "g-cells.lif", "graph.npz"))[ActorSeg.Core.IO.GraphOutputs.PixelSizeArray].AsSpan<double>().ToArray();
        Assert.Equal(0.5, um[0], 9);
        var folder = Directory.CreateDirectory(Path.Combine(_dir, "in")).FullName;
        File.Copy(lif, Path.Combine(folder, "cells.lif"));
        Assert.Equal([Path.Combine(folder, "cells.lif")], ActorSeg.Cli.BatchInput.Load(folder, null).Slides.Select(s => s.Image));
    }
}
