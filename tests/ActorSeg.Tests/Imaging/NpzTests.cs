using System.Diagnostics;
using System.IO.Compression;
using ActorSeg.Core.IO;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Imaging;

public sealed class NpzTests : IDisposable
{
    private readonly ITestOutputHelper _out;
    private readonly string _dir = TestPaths.NewTempDir("npz");

    public NpzTests(ITestOutputHelper output)
    {
        _out = output;
    }

    public void Dispose() { try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void RoundTrip_AllDtypes_Shapes_Strings(bool compress)
    {
        string path = P($"all-{compress}.npz");
        WriteSample(path, new NpzWriter(path, compress));
        Assert.Empty(Directory.GetFiles(_dir, "*.partial"));

        var arrays = NpzReader.Read(path);
        Assert.Equal([0, 1, 2, 250, 255], arrays["u1"].AsSpan<byte>().ToArray());
        Assert.Equal("|u1", arrays["u1"].Dtype);
        Assert.Equal([sbyte.MinValue, -1, 0, 1, sbyte.MaxValue], arrays["i1"].AsSpan<sbyte>().ToArray());
        Assert.Equal([short.MinValue, -2, 0, 3, short.MaxValue], arrays["i2"].AsSpan<short>().ToArray());
        Assert.Equal([0, 1, 40000, ushort.MaxValue], arrays["u2"].AsSpan<ushort>().ToArray());
        Assert.Equal([int.MinValue, -5, 0, 7, int.MaxValue], arrays["i4"].AsSpan<int>().ToArray());
        Assert.Equal([0u, 1u, 3_000_000_000u, uint.MaxValue], arrays["u4"].AsSpan<uint>().ToArray());
        Assert.Equal([long.MinValue, -9, 0, 11, long.MaxValue], arrays["i8"].AsSpan<long>().ToArray());
        Assert.Equal([0ul, 1ul, ulong.MaxValue], arrays["u8"].AsSpan<ulong>().ToArray());
        Assert.Equal([-1.5f, 0f, 3.25f, float.MaxValue, float.Epsilon], arrays["f4"].AsSpan<float>().ToArray());
        Assert.Equal([-1.5, 0, Math.PI, double.MinValue], arrays["f8"].AsSpan<double>().ToArray());
        Assert.Equal([true, false, true], arrays["b1"].AsSpan<bool>().ToArray());
        Assert.Equal("|b1", arrays["b1"].Dtype);

        var m = arrays["matrix"];
        Assert.Equal([2, 3, 4], m.Shape);
        Assert.Equal(Enumerable.Range(0, 24).Select(i => i * 0.5f).ToArray(), m.AsSpan<float>().ToArray());

        Assert.Equal([0], arrays["empty"].Shape);
        Assert.Equal(0, arrays["empty"].AsSpan<double>().Length);
        Assert.Equal([0, 2], arrays["empty2d"].Shape);
        Assert.Equal(0, arrays["empty2d"].AsSpan<int>().Length);

        Assert.Empty(arrays["scalar"].Shape);
        Assert.Equal(42.5, arrays["scalar"].Scalar<double>());
        Assert.Equal(7, arrays["scalar_i"].Scalar<int>());

        Assert.Equal("<U5", arrays["names"].Dtype);
        Assert.Equal(["alpha", "b", "", "γδ", "😀x"], arrays["names"].Strings());
        Assert.Equal([0], arrays["no_names"].Shape);
        Assert.Empty(arrays["no_names"].Strings());

        Assert.Throws<InvalidOperationException>(() => arrays["f4"].AsSpan<int>());
        Assert.Throws<InvalidOperationException>(() => arrays["f4"].Strings());
    }

    [Fact]
    public void SameContent_ByteIdenticalArchives()
    {
        string a = P("same-a.npz"), b = P("same-b.npz");
        WriteSample(a, new NpzWriter(a));
        Thread.Sleep(2100); // zip timestamps have 2 s resolution
        WriteSample(b, new NpzWriter(b));
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
    }

    [Fact]
    public void NpyHeaders_AreVersion1_And_DataAlignedTo64()
    {
        string path = P("align.npz");
        WriteSample(path, new NpzWriter(path, compress: false));
        using var zip = ZipFile.OpenRead(path);
        Assert.NotEmpty(zip.Entries);
        foreach (var e in zip.Entries)
        {
            using var s = e.Open();
            byte[] head = new byte[10];
            s.ReadExactly(head);
            Assert.Equal(0x93, head[0]);
            Assert.Equal("NUMPY", System.Text.Encoding.ASCII.GetString(head, 1, 5));
            Assert.Equal(1, head[6]);
            Assert.Equal(0, head[7]);
            int headerLen = head[8] | (head[9] << 8);
            Assert.Equal(0, (10 + headerLen) % 64);
            byte[] dict = new byte[headerLen];
            s.ReadExactly(dict);
            Assert.Equal((byte)'\n', dict[^1]);
        }
    }

    [Fact]
    public void Writer_Validates_Shape_Names_And_Types()
    {
        string path = P("bad.npz");
        using (var w = new NpzWriter(path))
        {
            var ex = Assert.Throws<ArgumentException>(() => w.Add<int>("weights", new int[6], 2, 4));
            Assert.Contains("weights", ex.Message);
            Assert.Throws<ArgumentException>(() => w.Add<int>("neg", new int[0], -1));
            w.Add<int>("x", new int[] { 1, 2 });
            Assert.Throws<ArgumentException>(() => w.Add<int>("x", new int[] { 3 }));
            Assert.Throws<ArgumentException>(() => w.Add<char>("c", "ab".AsSpan()));
            Assert.Single(Directory.GetFiles(_dir, "*.partial")); // written under a unique temporary name until complete
            Assert.False(File.Exists(path));
        }

        // Disposed without Complete: nothing left.
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AByteChangedInAnEntry_IsCaughtByItsCrc(bool compress)
    {
        // ZipArchive itself never checks an entry's CRC-32: a stored entry with a changed byte read as other numbers
        string path = P($"crc-{compress}.npz");
        var values = Enumerable.Range(0, 4096).Select(i => (float)i).ToArray();
        using (var w = new NpzWriter(path, compress))
        {
            w.Add<float>("x", values);
            w.Complete();
        }
        Assert.Equal(values, NpzReader.Read(path)["x"].AsSpan<float>().ToArray());
        var bytes = File.ReadAllBytes(path);
        if (compress)
        {
            // the stored CRC in the central directory changed instead (the compressed data then no longer matches it)
            int cd = bytes.AsSpan().LastIndexOf("PK\u0001\u0002"u8);
            bytes[cd + 16] ^= 0x01;
        }
        else
        {
            int at = bytes.AsSpan().IndexOf(BitConverter.GetBytes(1000f));
            Assert.True(at > 0);
            bytes[at + 2] ^= 0x10; // 1000 becomes another float: the archive still opens and the array still parses
        }
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => NpzReader.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("'x.npy'", e.Message);
        Assert.Contains("CRC-32", e.Message);
    }

    [Fact]
    public void Reader_Reports_File_And_Entry_For_Corrupt_Input()
    {
        string notZip = P("garbage.npz");
        File.WriteAllBytes(notZip, [1, 2, 3, 4, 5]);
        var ex1 = Assert.Throws<InvalidDataException>(() => NpzReader.Read(notZip));
        Assert.Contains("garbage.npz", ex1.Message);

        string truncated = P("truncated.npz");
        using (var fs = File.Create(truncated))
        using (var zip = new ZipArchive(fs, ZipArchiveMode.Create))
        {
            var good = Path.Combine(_dir, "tmp.npz");
            using (var w = new NpzWriter(good, compress: false))
            {
                w.Add<double>("v", new double[10]);
                w.Complete();
            }

            byte[] npy;
            using (var src = ZipFile.OpenRead(good))
            using (var s = src.GetEntry("v.npy")!.Open())
            using (var ms = new MemoryStream())
            {
                s.CopyTo(ms);
                npy = ms.ToArray();
            }

            using (var e = zip.CreateEntry("cut.npy").Open())
            {
                e.Write(npy, 0, npy.Length - 8);
            }

            using (var e = zip.CreateEntry("bad.npy").Open())
            {
                e.Write("NOTNUMPY"u8);
            }
        }

        var ex2 = Assert.Throws<InvalidDataException>(() => NpzReader.Read(truncated));
        Assert.Contains("truncated.npz", ex2.Message);
        Assert.Contains(".npy", ex2.Message);
    }

    [Fact]
    public void Reader_Handles_BigEndian_And_Unsupported()
    {
        string path = P("be.npz");
        using (var fs = File.Create(path))
        using (var zip = new ZipArchive(fs, ZipArchiveMode.Create))
        {
            WriteRawNpy(zip, "be", "{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }", [0x01, 0x02, 0xFF, 0x00]);
            WriteRawNpy(zip, "obj", "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", new byte[8]);
        }

        var ex = Assert.Throws<NotSupportedException>(() => NpzReader.Read(path));
        Assert.Contains("obj.npy", ex.Message);

        string path2 = P("be2.npz");
        using (var fs = File.Create(path2))
        using (var zip = new ZipArchive(fs, ZipArchiveMode.Create))
        {
            WriteRawNpy(zip, "be", "{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }", [0x01, 0x02, 0xFF, 0x00]);
        }

        var arr = NpzReader.Read(path2)["be"];
        Assert.Equal("<u2", arr.Dtype);
        Assert.Equal([0x0102, 0xFF00], arr.AsSpan<ushort>().ToArray());
    }

    [Fact]
    public void NumPy_Loads_The_Archive()
    {
        if (!PythonHasNumpy())
        {
            _out.WriteLine("SKIPPED: /usr/bin/python3 with numpy is not available.");
            return;
        }

        foreach (bool compress in new[] { true, false })
        {
            string path = P($"py-{compress}.npz");
            WriteSample(path, new NpzWriter(path, compress));
            string script = """
                import sys, numpy as np
                d = np.load(sys.argv[1], allow_pickle=False)
                def eq(name, dtype, shape, values):
                    a = d[name]
                    assert a.dtype == np.dtype(dtype), (name, a.dtype, dtype)
                    assert a.shape == shape, (name, a.shape, shape)
                    assert a.flags['C_CONTIGUOUS']
                    if values is not None:
                        assert np.array_equal(a, np.array(values, dtype=dtype).reshape(shape)), (name, a)
                eq('u1', '|u1', (5,), [0, 1, 2, 250, 255])
                eq('i1', '|i1', (5,), [-128, -1, 0, 1, 127])
                eq('i2', '<i2', (5,), [-32768, -2, 0, 3, 32767])
                eq('u2', '<u2', (4,), [0, 1, 40000, 65535])
                eq('i4', '<i4', (5,), [-2**31, -5, 0, 7, 2**31 - 1])
                eq('u4', '<u4', (4,), [0, 1, 3000000000, 2**32 - 1])
                eq('i8', '<i8', (5,), [-2**63, -9, 0, 11, 2**63 - 1])
                eq('u8', '<u8', (3,), [0, 1, 2**64 - 1])
                eq('f4', '<f4', (5,), None)
                assert d['f4'][2] == 3.25 and d['f4'][4] == np.finfo(np.float32).smallest_subnormal
                eq('f8', '<f8', (4,), [-1.5, 0, np.pi, -np.finfo(np.float64).max])
                eq('b1', '?', (3,), [True, False, True])
                eq('matrix', '<f4', (2, 3, 4), [i * 0.5 for i in range(24)])
                eq('empty', '<f8', (0,), [])
                eq('empty2d', '<i4', (0, 2), [])
                eq('scalar', '<f8', (), 42.5)
                eq('scalar_i', '<i4', (), 7)
                assert list(d['names']) == ['alpha', 'b', '', 'γδ', '😀x'], list(d['names'])
                assert d['names'].dtype == np.dtype('<U5')
                assert d['no_names'].shape == (0,)
                print('numpy ok', len(d.files))
                """;
            (int rc, string output) = RunPython(script, path);
            _out.WriteLine(output);
            Assert.True(rc == 0, $"numpy failed to load {path}: {output}");
        }

        // And the other way round: our reader on a file written by numpy (savez_compressed, Fortran order excluded).
        string fromNumpy = P("from-numpy.npz");
        (int rc2, string out2) = RunPython(
            """
            import sys, numpy as np
            np.savez_compressed(sys.argv[1], a=np.arange(12, dtype='>i4').reshape(3, 4), s=np.array(['x', 'yz']), z=np.float64(2.5))
            """,
            fromNumpy);
        Assert.True(rc2 == 0, out2);
        var arrays = NpzReader.Read(fromNumpy);
        Assert.Equal([3, 4], arrays["a"].Shape);
        Assert.Equal(Enumerable.Range(0, 12).ToArray(), arrays["a"].AsSpan<int>().ToArray());
        Assert.Equal(["x", "yz"], arrays["s"].Strings());
        Assert.Equal(2.5, arrays["z"].Scalar<double>());
    }

    /// <summary>Arrays of several 1 MiB pieces: compressible and random data, and a length that is not a whole number of pieces.</summary>
    private static (long[] Counting, float[] Noise, byte[] Odd) BigArrays()
    {
        var rnd = new Random(5);
        var counting = new long[700_000]; // 5.3 MiB, compresses well
        for (int i = 0; i < counting.Length; i++) counting[i] = i / 3;
        var noise = new float[600_000]; // 2.3 MiB, barely compresses
        for (int i = 0; i < noise.Length; i++) noise[i] = (float)rnd.NextDouble();
        var odd = new byte[(1 << 20) + 17];
        rnd.NextBytes(odd.AsSpan(0, 1000));
        return (counting, noise, odd);
    }

    private static void WriteBig(NpzWriter writer)
    {
        var (counting, noise, odd) = BigArrays();
        using var w = writer;
        w.Add<long>("counting", counting, 7, 100_000);
        w.Add<float>("noise", noise);
        w.Add<byte>("odd", odd);
        w.AddScalar("k", 12L);
        w.Complete();
    }

    [Fact]
    public void LargeArrays_AreDeflatedInPieces_ReadBack_AndGiveTheSameBytesOnAnyNumberOfCores()
    {
        Assert.True(SyncFlushPieces.Supported, "this runtime's Deflate makes sync-flushed pieces, so entries are compressed on every core");
        string one = P("big-1.npz"), many = P("big-4.npz");
        WriteBig(new NpzWriter(one) { Parallelism = 1 });
        WriteBig(new NpzWriter(many) { Parallelism = 4 });
        Assert.Equal(File.ReadAllBytes(one), File.ReadAllBytes(many));

        var (counting, noise, odd) = BigArrays();
        var arrays = NpzReader.Read(many);
        Assert.Equal([7, 100_000], arrays["counting"].Shape);
        Assert.True(arrays["counting"].AsSpan<long>().SequenceEqual(counting));
        Assert.True(arrays["noise"].AsSpan<float>().SequenceEqual(noise));
        Assert.True(arrays["odd"].AsSpan<byte>().SequenceEqual(odd));
        Assert.Equal(12L, arrays["k"].Scalar<long>());
        // deflated: far smaller than the 8.6 MiB of arrays, and every entry's checksum holds (ZipArchive checks it on read)
        Assert.InRange(new FileInfo(many).Length, 1, 5_000_000);
        using var zip = ZipFile.OpenRead(many);
        foreach (var e in zip.Entries)
        {
            using var s = e.Open();
            s.CopyTo(Stream.Null);
        }

        if (PythonHasNumpy())
        {
            (int rc, string output) = RunPython("""
                import sys, zipfile, numpy as np
                z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None
                d = np.load(sys.argv[1])
                assert d['counting'].shape == (7, 100000) and (d['counting'].ravel() == np.arange(700000) // 3).all()
                assert d['noise'].dtype == np.float32 and d['noise'].shape == (600000,)
                assert d['odd'].shape == (1048593,) and (d['odd'][1000:] == 0).all()
                print('numpy ok')
                """, many);
            Assert.True(rc == 0, output);
        }
    }

    [Fact]
    public void Zip64Records_AreWritten_WhereSizesOrOffsetsNeedThem_AndRead()
    {
        // the limits lowered to nothing, so every size and offset takes the ZIP64 route a 4 GiB graph would take
        string path = P("zip64.npz");
        WriteBig(new NpzWriter(path) { Zip64EntryThreshold = 0, Zip64FieldLimit = 0 });
        var bytes = File.ReadAllBytes(path);
        Assert.True(bytes.AsSpan().IndexOf([(byte)0x50, (byte)0x4b, (byte)0x06, (byte)0x06]) > 0, "a ZIP64 end of central directory record");
        var (counting, noise, odd) = BigArrays();
        var arrays = NpzReader.Read(path);
        Assert.True(arrays["counting"].AsSpan<long>().SequenceEqual(counting));
        Assert.True(arrays["noise"].AsSpan<float>().SequenceEqual(noise));
        Assert.True(arrays["odd"].AsSpan<byte>().SequenceEqual(odd));
        string stored = P("zip64-stored.npz");
        WriteBig(new NpzWriter(stored, compress: false) { Zip64EntryThreshold = 0, Zip64FieldLimit = 0 });
        Assert.True(NpzReader.Read(stored)["counting"].AsSpan<long>().SequenceEqual(counting));
        if (PythonHasNumpy())
        {
            foreach (var f in new[] { path, stored })
            {
                (int rc, string output) = RunPython("""
                    import sys, zipfile, numpy as np
                    z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None
                    assert all(i.file_size > 0 for i in z.infolist())
                    d = np.load(sys.argv[1])
                    assert (d['counting'].ravel() == np.arange(700000) // 3).all() and int(d['k']) == 12
                    print('numpy ok')
                    """, f);
                Assert.True(rc == 0, f + ": " + output);
            }
        }
    }

    private static void WriteSample(string path, NpzWriter writer)
    {
        using var w = writer;
        w.Add<byte>("u1", new byte[] { 0, 1, 2, 250, 255 });
        w.Add<sbyte>("i1", new sbyte[] { sbyte.MinValue, -1, 0, 1, sbyte.MaxValue });
        w.Add<short>("i2", new short[] { short.MinValue, -2, 0, 3, short.MaxValue });
        w.Add<ushort>("u2", new ushort[] { 0, 1, 40000, ushort.MaxValue });
        w.Add<int>("i4", new[] { int.MinValue, -5, 0, 7, int.MaxValue });
        w.Add<uint>("u4", new[] { 0u, 1u, 3_000_000_000u, uint.MaxValue });
        w.Add<long>("i8", new[] { long.MinValue, -9, 0, 11, long.MaxValue });
        w.Add<ulong>("u8", new[] { 0ul, 1ul, ulong.MaxValue });
        w.Add<float>("f4", new[] { -1.5f, 0f, 3.25f, float.MaxValue, float.Epsilon });
        w.Add<double>("f8", new[] { -1.5, 0, Math.PI, double.MinValue });
        w.Add<bool>("b1", new[] { true, false, true });
        w.Add<float>("matrix", Enumerable.Range(0, 24).Select(i => i * 0.5f).ToArray(), 2, 3, 4);
        w.Add<double>("empty", ReadOnlySpan<double>.Empty, 0);
        w.Add<int>("empty2d", ReadOnlySpan<int>.Empty, 0, 2);
        w.AddScalar("scalar", 42.5);
        w.AddScalar("scalar_i", 7);
        w.AddStrings("names", ["alpha", "b", "", "γδ", "😀x"]);
        w.AddStrings("no_names", Array.Empty<string>());
        Assert.False(File.Exists(path));
        w.Complete();
        Assert.True(File.Exists(path));
    }

    private static void WriteRawNpy(ZipArchive zip, string name, string dict, byte[] data)
    {
        int total = (10 + dict.Length + 1 + 63) / 64 * 64;
        string padded = dict.PadRight(total - 10 - 1) + "\n";
        using var s = zip.CreateEntry(name + ".npy").Open();
        s.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)(padded.Length & 0xFF), (byte)(padded.Length >> 8)]);
        s.Write(System.Text.Encoding.ASCII.GetBytes(padded));
        s.Write(data);
    }

    private static bool PythonHasNumpy()
    {
        if (!File.Exists("/usr/bin/python3"))
        {
            return false;
        }

        try
        {
            return RunPython("import numpy", null).ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    private static (int ExitCode, string Output) RunPython(string script, string? arg)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(script);
        if (arg is not null)
        {
            psi.ArgumentList.Add(arg);
        }

        using var p = Process.Start(psi)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            return (-1, "python timed out");
        }

        return (p.ExitCode, stdout + stderr.Result);
    }

    private string P(string name) => Path.Combine(_dir, name);
}
