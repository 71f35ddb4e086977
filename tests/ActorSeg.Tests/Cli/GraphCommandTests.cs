using System.Diagnostics;
using ActorSeg.Core.IO;
using Xunit;
using Xunit.Abstractions;
using Vips = NetVips;

namespace ActorSeg.Tests.Cli;

/// <summary>The real program, run as a separate process, end to end.</summary>
public class GraphCommandTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("cli");
    private readonly ITestOutputHelper _out;
    public GraphCommandTests(ITestOutputHelper output) => _out = output;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch { } }

    private (string Img, string Mask) Generate(int w, int h, string kind = "colonies", int bits = 16, int seed = 3)
    {
        var r = TestPaths.RunCli("generate", "--out", _dir, "--name", $"{kind}-{w}x{h}-{bits}", "--width", w.ToString(), "--height", h.ToString(),
            "--kind", kind, "--bits", bits.ToString(), "--seed", seed.ToString());
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return (lines[0].Trim(), lines[1].Trim());
    }

    private static uint[] ReadNodeMap(string path, out int w, out int h)
    {
        using var img = Vips.Image.NewFromFile(path, access: Vips.Enums.Access.Sequential);
        w = img.Width; h = img.Height;
        Assert.Equal(Vips.Enums.BandFormat.Uint, img.Format);
        return img.WriteToMemory<uint>();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void TheGraph_IsTheSameBytes_WhateverVectorWidthTheCpuOffers(int channels)
    {
        // nodes of one cluster may differ in CPU: with AVX-512 turned off the runtime takes the 256-bit paths, with
        // hardware intrinsics off the scalar ones; all must give the same bits as the 512-bit ones (where the CPU has
        // AVX-512; elsewhere those runs take the same path). Grey and RGB: the kernels for one channel are apart.
        string img, mask;
        if (channels == 1) (img, mask) = Generate(900, 700, bits: 8);
        else
        {
            var r = TestPaths.RunCli("generate", "--out", _dir, "--name", "rgb", "--width", "700", "--height", "600", "--kind", "nuclei",
                "--bits", "8", "--channels", "3", "--seed", "5");
            Assert.True(r.ExitCode == 0, r.Stderr);
            var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            (img, mask) = (lines[0].Trim(), lines[1].Trim());
        }
        string Run(string name, params (string Key, string Value)[] env)
        {
            var outDir = Path.Combine(_dir, name);
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add(TestPaths.CliDll);
            foreach (var a in new[] { "graph", img, "--mask", mask, "--out", outDir, "--tile-size", "256", "--spacing", "12" }) psi.ArgumentList.Add(a);
            foreach (var (k, v) in env) psi.Environment[k] = v;
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, err.Result);
            return outDir;
        }
        string a = Run("wide"), b = Run("narrow", ("DOTNET_EnableAVX512F", "0")), c = Run("scalar", ("DOTNET_EnableHWIntrinsic", "0"));
        _out.WriteLine($"AVX-512 here: {System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated}");
        var graph = File.ReadAllBytes(Path.Combine(a, "graph.npz"));
        var nodes = ReadNodeMap(Path.Combine(a, "nodes.tif"), out _, out _);
        foreach (var other in new[] { b, c })
        {
            Assert.Equal(graph, File.ReadAllBytes(Path.Combine(other, "graph.npz")));
            Assert.Equal(nodes, ReadNodeMap(Path.Combine(other, "nodes.tif"), out _, out _));
        }
    }

    [Fact]
    public void GenerateThenGraph_WritesAConsistentGraphAndNodeMap()
    {
        var (img, mask) = Generate(700, 520);
        var outDir = Path.Combine(_dir, "out");
        var r = TestPaths.RunCli("graph", img, "--mask", mask, "--out", outDir, "--tile-size", "256", "--spacing", "16", "--workers", "2");
        _out.WriteLine(r.Stderr);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("graph.npz", r.Stdout);
        Assert.Contains("tiles", r.Stderr); // progress and a summary were logged
        var npz = NpzReader.Read(Path.Combine(outDir, "graph.npz"));
        var x = npz["x"]; var ei = npz["edge_index"]; var y = npz["y"]; var area = npz["area"];
        int n = x.Shape[0];
        Assert.Equal(11 + 11 + 11 + 1, x.Shape[1]); // intensity, gradient, local variation, contrast
        Assert.Equal(2, ei.Shape[0]);
        Assert.Equal(n, y.Shape[0]);
        Assert.InRange(n, 700 * 520 / (16 * 16) / 2, 700 * 520 / (16 * 16) * 2);
        // the default features: the best recipe's, in absolute grey levels (abs_; z units with --features texture)
        var names = npz["feature_names"].Strings();
        Assert.Equal(new[] { "mean", "std", "q10", "q20", "q30", "q40", "q50", "q60", "q70", "q80", "q90" }.Select(s => "abs_" + s), names[..11]);
        Assert.Equal(new[] { "abs_grad_mean", "abs_grad_std" }, names[11..13]);
        Assert.Equal("abs_lstd_q90", names[32]);
        Assert.Equal("abs_contrast", names[33]);
        var edges = ei.AsSpan<long>();
        Assert.All(edges.ToArray(), v => Assert.InRange(v, 0, n - 1));
        // the node map: every node id present, pixel counts equal the areas
        var map = ReadNodeMap(Path.Combine(outDir, "nodes.tif"), out int w, out int h);
        Assert.Equal((700, 520), (w, h));
        var counts = new long[n];
        foreach (var v in map) { Assert.InRange(v, 0u, (uint)n - 1); counts[v]++; }
        Assert.Equal(area.AsSpan<long>().ToArray(), counts);
        // labels: both classes present, deciles ordered
        var ys = y.AsSpan<long>().ToArray();
        Assert.Contains(0L, ys); Assert.Contains(1L, ys);
        var xs = x.AsSpan<float>();
        for (int i = 0; i < n; i++) for (int d = 3; d < 11; d++) Assert.True(xs[i * 34 + d] >= xs[i * 34 + d - 1]);
        // colonies differ from background by texture: gradient magnitude is higher on colony nodes
        double gc = 0, gb = 0; int nc = 0, nb = 0;
        for (int i = 0; i < n; i++) { if (ys[i] == 1) { gc += xs[i * 34 + 11]; nc++; } else if (ys[i] == 0) { gb += xs[i * 34 + 11]; nb++; } }
        Assert.True(gc / nc > gb / nb, $"gradient on colonies {gc / nc:F3} vs background {gb / nb:F3}");
        Assert.True(File.Exists(Path.Combine(outDir, "graph.json")));
        Assert.Empty(Directory.GetDirectories(outDir, ".work-*")); // work files cleaned

        // numpy users load it with numpy alone (where python3-numpy is installed)
        if (PythonHasNumpy())
        {
            var py = RunPython($"import numpy as np; d = np.load(r'{Path.Combine(outDir, "graph.npz")}'); print(d['x'].shape[0], d['x'].dtype, d['edge_index'].dtype, d['edge_weight'].shape[0] == d['edge_index'].shape[1], list(d['feature_names'])[:2])");
            Assert.Equal($"{n} float32 int64 True ['abs_mean', 'abs_std']", py.Trim());
        }
        // the published feature set alone
        var pub = Path.Combine(_dir, "published");
        Assert.Equal(0, TestPaths.RunCli("graph", img, "--mask", mask, "--out", pub, "--spacing", "16", "--features", "published", "--no-node-map").ExitCode);
        Assert.Equal(11, NpzReader.Read(Path.Combine(pub, "graph.npz"))["x"].Shape[1]);
        {
        }
    }

    [Fact]
    public void TiledRunThroughTheActors_EqualsSingleTileRun()
    {
        var (img, mask) = Generate(520, 390, "nuclei", 8, seed: 5);
        var a = Path.Combine(_dir, "whole"); var b = Path.Combine(_dir, "tiled");
        Assert.Equal(0, TestPaths.RunCli("graph", img, "--mask", mask, "--out", a, "--tile-size", "4096", "--spacing", "12").ExitCode);
        // halo covering the whole image: the stitched graph must be identical array for array
        Assert.Equal(0, TestPaths.RunCli("graph", img, "--mask", mask, "--out", b, "--tile-size", "100", "--halo", "600", "--spacing", "12", "--workers", "3").ExitCode);
        var ga = NpzReader.Read(Path.Combine(a, "graph.npz")); var gb = NpzReader.Read(Path.Combine(b, "graph.npz"));
        foreach (var key in new[] { "x", "pos", "area", "bbox", "first_pixel", "edge_index", "edge_weight", "edge_weight_scaled", "rag_edge_index", "rag_boundary_length", "rag_contrast", "y", "class_hist" })
        {
            Assert.Equal(ga[key].Shape, gb[key].Shape);
            Assert.True(ga[key].Data.AsSpan().SequenceEqual(gb[key].Data), $"{key} differs");
        }
        Assert.Equal(ReadNodeMap(Path.Combine(a, "nodes.tif"), out _, out _), ReadNodeMap(Path.Combine(b, "nodes.tif"), out _, out _));
    }

    [Fact]
    public void MaskOfTheWrongSize_FailsClearly_AndLeavesEarlierOutputIntact()
    {
        var (img, mask) = Generate(300, 200);
        var (_, otherMask) = Generate(310, 200, seed: 4);
        var outDir = Path.Combine(_dir, "out");
        Assert.Equal(0, TestPaths.RunCli("graph", img, "--mask", mask, "--out", outDir, "--spacing", "10").ExitCode);
        var before = File.ReadAllBytes(Path.Combine(outDir, "graph.npz"));
        var r = TestPaths.RunCli("graph", img, "--mask", otherMask, "--out", outDir, "--spacing", "10");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(otherMask, r.Stderr);
        Assert.Contains("310x200", r.Stderr);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(outDir, "graph.npz")));
        Assert.True(File.Exists(Path.Combine(outDir, "graph.json")));
        Assert.Empty(Directory.GetDirectories(outDir, ".work-*"));
    }

    [Fact]
    public void ConstantImage_AndTruncatedImage_FailWithoutOutput()
    {
        var constant = Path.Combine(_dir, "flat.tif");
        using (var im = Vips.Image.NewFromMemory(Enumerable.Repeat((byte)77, 200 * 100).ToArray(), 200, 100, 1, Vips.Enums.BandFormat.Uchar))
            im.Tiffsave(constant);
        var o1 = Path.Combine(_dir, "o1");
        var r1 = TestPaths.RunCli("graph", constant, "--out", o1);
        Assert.Equal(1, r1.ExitCode);
        Assert.Contains(constant, r1.Stderr);
        Assert.Contains("constant", r1.Stderr);
        Assert.False(File.Exists(Path.Combine(o1, "graph.json")));

        var (img, _) = Generate(900, 900);
        var cut = Path.Combine(_dir, "cut.tif");
        var bytes = File.ReadAllBytes(img);
        File.WriteAllBytes(cut, bytes[..(bytes.Length * 2 / 3)]);
        var o2 = Path.Combine(_dir, "o2");
        var r2 = TestPaths.RunCli("graph", cut, "--out", o2, "--spacing", "20");
        _out.WriteLine(r2.Stderr);
        Assert.Equal(1, r2.ExitCode);
        Assert.Contains(cut, r2.Stderr);
        Assert.False(File.Exists(Path.Combine(o2, "graph.json")));
        Assert.False(File.Exists(Path.Combine(o2, "graph.npz")));

        var r3 = TestPaths.RunCli("graph", Path.Combine(_dir, "missing.tif"), "--out", o2);
        Assert.NotEqual(0, r3.ExitCode);

        // a named pipe given as the image or the mask (a slip of the path): refused at once, where reading it would wait
        // for a writer for ever (it once held the job in its prepare step until the job deadline)
        var pipe = Path.Combine(_dir, "pipe.tif");
        Assert.Equal(0, Process.Start("mkfifo", [pipe])!.WaitForExitAsync().Wait(TimeSpan.FromSeconds(10)) ? 0 : 1);
        var r4 = TestPaths.RunCli("graph", pipe, "--out", Path.Combine(_dir, "o4"));
        Assert.Equal(1, r4.ExitCode);
        Assert.Contains(pipe, r4.Stderr);
        Assert.Contains("named pipe", r4.Stderr);
        var r5 = TestPaths.RunCli("graph", img, "--mask", pipe, "--out", Path.Combine(_dir, "o5"), "--spacing", "20");
        Assert.Equal(1, r5.ExitCode);
        Assert.Contains(pipe, r5.Stderr);
        Assert.False(File.Exists(Path.Combine(_dir, "o5", "graph.json")));
    }

    private static bool PythonHasNumpy()
    {
        try { return RunPython("import numpy; print('ok')").Trim() == "ok"; } catch { return false; }
    }

    private static string RunPython(string code)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c"); psi.ArgumentList.Add(code);
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEnd(); var e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException(e);
        return o;
    }
}

public class UsageTests
{
    [Fact]
    public void UsageErrors_Exit2_HelpExits0()
    {
        var noArgs = TestPaths.RunCli("graph");
        Assert.Equal(2, noArgs.ExitCode);
        Assert.Contains("--out", noArgs.Stderr);
        var badMode = TestPaths.RunCli("graph", "x.tif", "--out", "/tmp/x", "--mask-mode", "weird");
        Assert.Equal(2, badMode.ExitCode);
        var help = TestPaths.RunCli("--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("graph", help.Stdout);
        Assert.Contains("generate", help.Stdout);
        var graphHelp = TestPaths.RunCli("graph", "--help");
        Assert.Equal(0, graphHelp.ExitCode);
        Assert.Contains("--halo", graphHelp.Stdout);
    }

    [Theory]
    [InlineData("train", "--refine-whole", "0")]
    [InlineData("train", "--refine-whole", "1.5")]
    [InlineData("train", "--refine-threshold", "-0.1")]
    [InlineData("refine", "--refine-whole", "2")]
    [InlineData("refine", "--refine-threshold", "1.5")]
    public void RefinementOptionsOutOfRange_Exit2_BeforeAnyWork(string command, string option, string value)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"actorseg-usage-{Guid.NewGuid():N}");
        try
        {
            // the graphs and the model named here do not exist: a check after training would name them instead
            string[] args = command == "train" ? ["train", "--graphs", Path.Combine(dir, "graphs"), option, value, "--out", Path.Combine(dir, "model")]
                : ["refine", "--model", Path.Combine(dir, "best.model"), option, value, "--out", Path.Combine(dir, "refined.model")];
            var r = TestPaths.RunCli(args);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains($"{option} must be a number in", r.Stderr);
            Assert.Contains($"(got {value})", r.Stderr);
            Assert.False(Directory.Exists(dir));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }
}
