using ActorSeg.Core.IO;
using ActorSeg.Core.Pipeline;
using ActorSeg.GpuTrainer;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cli;

/// <summary>
/// The absolute feature set: the texture features in the image's grey levels scaled to 8 bits instead of z units of the
/// image's own statistics. The same superpixels and nodes as texture; every feature the same affine function of the
/// texture one (up to the texture planes' rounding); tiled equals whole; a model of it segments with it and refuses
/// graphs of the other set.
/// </summary>
public class AbsoluteFeatureTests(ITestOutputHelper output) : TempDirTest("absolute")
{
    private (string Img, string Mask) Generate(string name, int bits, int seed, int size = 320)
    {
        var r = TestPaths.RunCli("generate", "--out", _dir, "--name", name, "--width", size.ToString(), "--height", size.ToString(),
            "--kind", "colonies", "--bits", bits.ToString(), "--seed", seed.ToString());
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return (lines[0].Trim(), lines[1].Trim());
    }

    [Theory]
    [InlineData(16)]
    [InlineData(8)]
    public void AbsoluteFeatures_AreTheTextureOnesInGreyLevels_OnTheSameNodes_AndTiledEqualsWhole(int bits)
    {
        var (img, mask) = Generate($"c{bits}", bits, 7);
        string tex = Path.Combine(_dir, "texture"), abs = Path.Combine(_dir, "absolute"), tiled = Path.Combine(_dir, "absolute-tiled");
        Assert.Equal(0, TestPaths.RunCli("graph", img, "--mask", mask, "--out", tex, "--spacing", "12", "--features", "texture").ExitCode);
        var r = TestPaths.RunCli("graph", img, "--mask", mask, "--out", abs, "--spacing", "12", "--features", "absolute");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var t = NpzReader.Read(Path.Combine(tex, "graph.npz")); var a = NpzReader.Read(Path.Combine(abs, "graph.npz"));

        // the same superpixels, nodes and edges: only the features' units differ
        foreach (var key in new[] { "pos", "area", "first_pixel", "rag_edge_index", "rag_boundary_length", "edge_index", "y", "class_hist" })
            Assert.True(t[key].Data.AsSpan().SequenceEqual(a[key].Data), $"{key} differs");
        var tn = t["feature_names"].Strings(); var an = a["feature_names"].Strings();
        Assert.Equal(tn.Select(n => "abs_" + n), an);
        Assert.Equal(("texture", "absolute"), (GraphRequest.FeatureSetOf(tn), GraphRequest.FeatureSetOf(an)));

        // texture = (v − mean) / std of the image; absolute = v / 2^(bits − 8): each feature is the other's affine image
        double mean = t["image_mean"].AsSpan<double>()[0], std = t["image_std"].AsSpan<double>()[0], unit = Math.Pow(2, bits - 8);
        Assert.True(std > 0);
        var tx = t["x"].AsSpan<float>(); var ax = a["x"].AsSpan<float>();
        int F = tn.Length, n = t["x"].Shape[0];
        Assert.Equal(34, F);
        // a texture plane holds its value rounded to 1/256 of its unit: std grey levels for texture, unit ones for absolute
        double planeTol = 0.5 * (std / unit + 1) / 256 + 1e-3;
        int checkedValues = 0;
        for (int i = 0; i < n; i++)
            for (int f = 0; f < F; f++)
            {
                string name = tn[f];
                double got = ax[i * F + f], tv = tx[i * F + f];
                // location (mean, deciles): shifted and scaled; spread, contrast and the texture planes (whose zero is zero): scaled
                double want = name == "mean" || name.StartsWith('q') ? (tv * std + mean) / unit : tv * std / unit;
                double tol = name.StartsWith("grad_") || name.StartsWith("lstd_") ? planeTol * (name.EndsWith("_std") ? 2 : 1) : 1e-4 * Math.Max(1, Math.Abs(want));
                Assert.True(Math.Abs(got - want) <= tol, $"node {i} feature {name}: absolute {got}, from texture {want} (± {tol})");
                checkedValues++;
            }
        output.WriteLine($"{bits}-bit: {n} nodes, {checkedValues} feature values checked; image mean {mean:F1}, std {std:F1}, unit {unit}");

        // tiled with a halo over the whole image: the same bytes as one tile
        Assert.Equal(0, TestPaths.RunCli("graph", img, "--mask", mask, "--out", tiled, "--spacing", "12", "--features", "absolute",
            "--tile-size", "100", "--halo", "600", "--workers", "3").ExitCode);
        var b = NpzReader.Read(Path.Combine(tiled, "graph.npz"));
        foreach (var key in new[] { "x", "rag_contrast", "edge_index" })
            Assert.True(a[key].Data.AsSpan().SequenceEqual(b[key].Data), $"{key} differs tiled");
    }

    [Fact]
    public void AModelOfAbsoluteFeatures_SegmentsWithThem_AndRefusesTextureGraphs()
    {
        string imgs = Path.Combine(_dir, "images"), masks = Path.Combine(_dir, "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 2; s++)
        {
            var (i, m) = Generate($"f{s}", 16, s);
            File.Move(i, Path.Combine(imgs, $"f{s}.tif")); File.Move(m, Path.Combine(masks, $"f{s}.tif"));
        }
        var model = Path.Combine(_dir, "model");
        var r = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--features", "absolute", "--segments", "200", "--epochs", "3", "--val-frac", "0.5", "--no-refine", "--out", model);
        output.WriteLine(r.Stderr);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var (spec, _) = ModelFile.Load(Path.Combine(model, "best.model"));
        Assert.Equal("absolute", spec.FeatureSet);
        Assert.All(spec.FeatureNames, n => Assert.StartsWith("abs_", n));

        // segment builds the image's graph with the model's features
        var seg = Path.Combine(_dir, "seg");
        r = TestPaths.RunCli("segment", Path.Combine(imgs, "f1.tif"), "--model", Path.Combine(model, "best.model"), "--out", seg);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(spec.FeatureNames, an(Path.Combine(seg, "graph", "graph.npz")));

        // graphs of the texture set are refused, naming the graph and both feature lists
        var texGraph = Path.Combine(_dir, "texgraph");
        Assert.Equal(0, TestPaths.RunCli("graph", Path.Combine(imgs, "f1.tif"), "--mask", Path.Combine(masks, "f1.tif"), "--segments", "200", "--features", "texture", "--out", texGraph, "--no-node-map").ExitCode);
        r = TestPaths.RunCli("evaluate", "--model", Path.Combine(model, "best.model"), "--graphs", Path.Combine(texGraph, "graph.npz"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains(Path.Combine(texGraph, "graph.npz"), r.Stderr);
        Assert.Contains("differ from the model's", r.Stderr);

        static string[] an(string npz) => NpzReader.Read(npz)["feature_names"].Strings();
    }
}
