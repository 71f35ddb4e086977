using System.Buffers.Binary;
using ActorSeg.Core.Imaging;
using Xunit;

namespace ActorSeg.Tests.IO;

/// <summary>
/// JPEG XR is decoded by jxrlib in processes of its own (<see cref="JpegXr"/>, actorseg-jxr): damaged data that crashes
/// or aborts jxrlib, or a decode that takes too long, fails the subblock that held it, naming the file, and the process
/// that asked goes on (before, a crash in jxrlib ended the test host, a worker, or a one-process run with all its jobs).
/// </summary>
public class JpegXrProcessTests(Xunit.Abstractions.ITestOutputHelper output) : TempDirTest("jxr")
{
    private static bool Skip(Xunit.Abstractions.ITestOutputHelper output)
    {
        // (./run.sh test installs libjxr0 and libjxr-tools)
        if (JpegXr.Available && File.Exists("/usr/bin/JxrEncApp")) return false;
        output.WriteLine("SKIPPED: jxrlib or its encoder JxrEncApp is not installed");
        return true;
    }

    private static ushort[] Samples(int w, int h, int spp, int max, int seed)
    {
        var s = new ushort[w * h * spp];
        for (int i = 0; i < s.Length; i++) s[i] = (ushort)((seed * 977 + i * 31 + (i / (w * spp)) * 7 + (i % 13) * (i % 7)) % (max + 1));
        return s;
    }

    /// <summary>Where the value of the Transformation entry (tag 0xBC02: one of 8 orientations) lies in the JPEG XR image
    /// that starts at <paramref name="start"/>.</summary>
    private static int TransformationValueAt(byte[] bytes, int start)
    {
        int ifd = start + BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(start + 4));
        int n = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(ifd));
        for (int i = 0; i < n; i++)
        {
            int entry = ifd + 2 + 12 * i;
            if (BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(entry)) == 0xBC02) return entry + 8;
        }
        throw new InvalidOperationException("the JPEG XR image has no Transformation entry");
    }

    [Fact]
    public void AJpegXrTileThatAbortsJxrlib_FailsItsFile_NamingTheSubblock_AndThisProcessGoesOn()
    {
        if (Skip(output)) return;
        var a = Samples(64, 48, 1, 255, 1); var b = Samples(64, 48, 1, 255, 2);
        var good = Path.Combine(_dir, "good.czi");
        CziWriter.Write(good, CziWriter.Gray8, [new CziBlock(0, 0, 64, 48, a, M: 0, Compression: CziWriter.JpegXr),
            new CziBlock(64, 0, 64, 48, b, M: 1, Compression: CziWriter.JpegXr)]);
        // the first tile's orientation set to 200 (there are 8): jxrlib asserts, which aborts the process it runs in
        var bytes = File.ReadAllBytes(good);
        int jxr = bytes.AsSpan().IndexOf((ReadOnlySpan<byte>)[(byte)'I', (byte)'I', 0xBC, 0x01]); // the first JPEG XR image's start
        Assert.True(jxr > 0);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(TransformationValueAt(bytes, jxr)), 200);
        var bad = Path.Combine(_dir, "bad.czi");
        File.WriteAllBytes(bad, bytes);

        for (int round = 0; round < 2; round++)
        {
            var e = Assert.Throws<InputFileException>(() =>
            {
                using var s = ImageSources.Open(bad);
                s.ReadRegion(0, 0, 128, 48, new ushort[128 * 48]);
            });
            output.WriteLine(e.Message);
            Assert.StartsWith(bad + ": CZI subblock at byte ", e.Message);
            Assert.Contains("jxrlib failed on it", e.Message);
            Assert.Contains("its decoder process", e.Message);
            Assert.EndsWith("damaged", e.Message);
            // and the next file decodes, in a fresh decoder process
            using var src = ImageSources.Open(good);
            var got = new ushort[128 * 48];
            src.ReadRegion(0, 0, 128, 48, got);
            for (int y = 0; y < 48; y++)
            {
                Assert.True(a.AsSpan(y * 64, 64).SequenceEqual(got.AsSpan(y * 128, 64)), $"left tile, row {y}");
                Assert.True(b.AsSpan(y * 64, 64).SequenceEqual(got.AsSpan(y * 128 + 64, 64)), $"right tile, row {y}");
            }
        }
    }

    [Fact]
    public void DamagedJpegXr_NeverEndsThisProcess_EachDecodeAnswers()
    {
        if (Skip(output)) return;
        // a colour tile, mutated as damage does: bytes changed anywhere or in the header, a run overwritten, the data cut
        // short (in a fuzz run of this kind 58 of 400 variants crashed or aborted jxrlib)
        const int W = 96, H = 64;
        var samples = Samples(W, H, 3, 255, 3);
        var clean = CziWriter.Jxr(new CziBlock(0, 0, W, H, samples), 3, 1);
        var rng = new Random(20261207);
        int decoded = 0, refused = 0, processEnded = 0;
        var px = new byte[W * H * 3];
        for (int t = 0; t < 60; t++)
        {
            var d = (byte[])clean.Clone();
            switch (t % 4)
            {
                case 0: for (int i = 0; i < 1 + rng.Next(8); i++) d[rng.Next(d.Length)] = (byte)rng.Next(256); break;
                case 1: for (int i = 0; i < 1 + rng.Next(8); i++) d[rng.Next(Math.Min(d.Length, 400))] = (byte)rng.Next(256); break;
                case 2: d = d[..rng.Next(1, d.Length)]; break;
                default: { int p = rng.Next(d.Length - 16); for (int i = 0; i < 16; i++) d[p + i] = (byte)rng.Next(256); break; }
            }
            if (JpegXr.Decode(d, W, H, 1, 3, px, out string? problem)) { decoded++; continue; }
            Assert.False(string.IsNullOrWhiteSpace(problem), $"variant {t}: refused without a reason");
            if (problem!.Contains("its decoder process")) processEnded++; else refused++;
        }
        output.WriteLine($"60 damaged variants: {decoded} decoded (to whatever they hold), {refused} refused by jxrlib, {processEnded} ended their decoder process");
        // and the undamaged tile still decodes exactly
        Assert.True(JpegXr.Decode(clean, W, H, 1, 3, px, out string? none), none);
        // (the writer encodes its samples as an RGB image; the decoder gives CZI's B, G, R)
        for (int i = 0; i < samples.Length; i++) Assert.Equal(samples[i - i % 3 + 2 - i % 3], px[i]);
    }

    [Fact]
    public void ADecodePastItsDeadline_EndsItsDecoderProcess_AndTheNextDecodes()
    {
        if (Skip(output)) return;
        const int W = 4096, H = 2048;
        var samples = Samples(W, H, 1, 65535, 4);
        var data = CziWriter.Jxr(new CziBlock(0, 0, W, H, samples), 1, 2);
        var px = new byte[W * H * 2];
        // 8 megapixels take some 150 ms: a 1 ms deadline ends its process
        Assert.False(JpegXr.Decode(data, W, H, 2, 1, px, out string? problem, out _, TimeSpan.FromMilliseconds(1)));
        output.WriteLine(problem);
        Assert.StartsWith("jxrlib took more than 0.001 s to decode it", problem);
        Assert.EndsWith("damaged", problem);
        Assert.True(JpegXr.Decode(data, W, H, 2, 1, px, out problem), problem);
        for (int i = 0; i < samples.Length; i++) Assert.Equal(samples[i], BinaryPrimitives.ReadUInt16LittleEndian(px.AsSpan(2 * i)));
    }

    [Fact]
    public void AProgramStartedByItsOwnLauncher_DecodesAsItself_ForASelfContainedImageWithoutADotnetHost()
    {
        if (Skip(output)) return;
        // the launcher the CUDA trainer image runs (self-contained: no dotnet there to start actorseg-jxr.dll with)
        string launcher = Path.Combine(AppContext.BaseDirectory, "actorseg");
        Assert.True(File.Exists(launcher), launcher);
        const int W = 64, H = 40;
        var samples = Samples(W, H, 1, 65535, 5);
        var data = CziWriter.Jxr(new CziBlock(0, 0, W, H, samples), 1, 2);
        var psi = new System.Diagnostics.ProcessStartInfo(launcher, [ActorSeg.JpegXrDecoder.DecoderLoop.Verb])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using (var p = System.Diagnostics.Process.Start(psi)!)
        {
            var header = new byte[ActorSeg.JpegXrDecoder.Protocol.RequestHeader];
            BinaryPrimitives.WriteUInt32LittleEndian(header, ActorSeg.JpegXrDecoder.Protocol.Magic);
            int[] fields = [data.Length, W, H, 2, 1];
            for (int i = 0; i < fields.Length; i++) BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4 + 4 * i), fields[i]);
            var stdin = p.StandardInput.BaseStream;
            for (int round = 0; round < 2; round++) // one process answers request after request
            {
                stdin.Write(header); stdin.Write(data); stdin.Flush();
                var reply = new byte[8];
                p.StandardOutput.BaseStream.ReadExactly(reply);
                Assert.Equal(ActorSeg.JpegXrDecoder.Protocol.Decoded, BinaryPrimitives.ReadInt32LittleEndian(reply));
                Assert.Equal(W * H * 2, BinaryPrimitives.ReadInt32LittleEndian(reply.AsSpan(4)));
                var px = new byte[W * H * 2];
                p.StandardOutput.BaseStream.ReadExactly(px);
                for (int i = 0; i < samples.Length; i++) Assert.Equal(samples[i], BinaryPrimitives.ReadUInt16LittleEndian(px.AsSpan(2 * i)));
            }
            stdin.Close(); // the end of its input ends it, cleanly
            Assert.True(p.WaitForExit(10_000));
            Assert.Equal(0, p.ExitCode);
        }

        // a whole command through the launcher (its decoders started as itself) gives the graph the dotnet host gives
        var czi = Path.Combine(_dir, "tiles.czi");
        CziWriter.Write(czi, CziWriter.Gray16, [new CziBlock(0, 0, 96, 80, Samples(96, 80, 1, 4000, 6), M: 0, Compression: CziWriter.JpegXr),
            new CziBlock(96, 0, 96, 80, Samples(96, 80, 1, 4000, 7), M: 1, Compression: CziWriter.JpegXr)]);
        var viaHost = TestPaths.RunCli("graph", czi, "--spacing", "8", "--out", Path.Combine(_dir, "host"));
        Assert.True(viaHost.ExitCode == 0, viaHost.Stderr);
        var run = new System.Diagnostics.ProcessStartInfo(launcher, ["graph", czi, "--spacing", "8", "--out", Path.Combine(_dir, "self")])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using (var p = System.Diagnostics.Process.Start(run)!)
        {
            var err = p.StandardError.ReadToEndAsync();
            p.StandardOutput.ReadToEnd();
            Assert.True(p.WaitForExit(120_000));
            Assert.True(p.ExitCode == 0, err.Result);
        }
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "host", "graph.npz")), File.ReadAllBytes(Path.Combine(_dir, "self", "graph.npz")));
    }
}
