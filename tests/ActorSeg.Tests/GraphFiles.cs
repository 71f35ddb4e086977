using ActorSeg.Core.IO;
using Xunit;

namespace ActorSeg.Tests;

/// <summary>Graph files compared as what they describe.</summary>
public static class GraphFiles
{
    /// <summary>
    /// Asserts that two <c>graph.npz</c> files hold the same graph: the same arrays, element for element, byte for byte,
    /// but for the image's pixel size (<see cref="GraphOutputs.PixelSizeArray"/>), which is the image file's metadata, not
    /// its pixels: the same pixels read from a slide and from a plain TIFF without a resolution give the same graph.
    /// </summary>
    public static void AssertSameGraph(string expected, string actual)
    {
        var a = NpzReader.Read(expected);
        var b = NpzReader.Read(actual);
        var keys = a.Keys.Where(k => k != GraphOutputs.PixelSizeArray).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(keys, b.Keys.Where(k => k != GraphOutputs.PixelSizeArray).Order(StringComparer.Ordinal).ToArray());
        foreach (var k in keys)
        {
            Assert.True(a[k].Dtype == b[k].Dtype && a[k].Shape.SequenceEqual(b[k].Shape), $"'{k}': {a[k].Dtype} ({string.Join(", ", a[k].Shape)}) against {b[k].Dtype} ({string.Join(", ", b[k].Shape)})");
            Assert.True(a[k].Data.AsSpan().SequenceEqual(b[k].Data), $"'{k}' differs between {expected} and {actual}");
        }
    }
}
