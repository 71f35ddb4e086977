using ActorSeg.Core.IO;
using Xunit;

namespace ActorSeg.Tests.Unit;

public class DataRootsTests() : TempDirTest("roots")
{

    [Fact]
    public void PathsInsideTheRoots_AreAccepted_AndEscapesAreRefused()
    {
        var root = Path.Combine(_dir, "data"); var outside = Path.Combine(_dir, "secret");
        Directory.CreateDirectory(Path.Combine(root, "slides")); Directory.CreateDirectory(outside);
        File.WriteAllText(Path.Combine(root, "slides", "a.tif"), "x");
        File.WriteAllText(Path.Combine(outside, "key"), "x");
        File.CreateSymbolicLink(Path.Combine(root, "slides", "link-to-key"), Path.Combine(outside, "key"));
        Directory.CreateSymbolicLink(Path.Combine(root, "escape"), outside);
        var roots = new DataRoots([root]);

        Assert.Equal(Path.Combine(root, "slides", "a.tif"), roots.Confine(Path.Combine(root, "slides", "a.tif"), "image"));
        Assert.Equal(Path.Combine(root, "results", "new"), roots.Confine(Path.Combine(root, "results", "new"), "out")); // not there yet: fine
        Assert.Throws<UnauthorizedAccessException>(() => roots.Confine(Path.Combine(root, "slides", "..", "..", "secret", "key"), "image"));
        Assert.Throws<UnauthorizedAccessException>(() => roots.Confine(Path.Combine(root, "slides", "link-to-key"), "image"));
        Assert.Throws<UnauthorizedAccessException>(() => roots.Confine(Path.Combine(root, "escape", "key"), "image"));
        Assert.Throws<UnauthorizedAccessException>(() => roots.Confine(Path.Combine(root, "escape", "not-yet", "out"), "out"));
        Assert.Throws<UnauthorizedAccessException>(() => roots.Confine(root + "-sibling/a.tif", "image")); // a prefix is not a parent
        Assert.Throws<ArgumentException>(() => roots.Confine("slides/a.tif", "image"));
        Assert.Throws<UnauthorizedAccessException>(() => new DataRoots([]).Confine(Path.Combine(root, "slides", "a.tif"), "image"));
    }
}
