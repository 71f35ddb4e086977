using ActorSeg.Core.IO;
using Xunit;

namespace ActorSeg.Tests.Unit;

public class ClassTableTests
{
    [Fact]
    public void ClassLists_AreParsedInOrder_WithDefaultColours_AndBadOnesAreNamed()
    {
        var t = ClassTable.Parse("background:#000000, nucleus, membrane:#FFAA00");
        Assert.Equal(new[] { 0, 1, 2 }, t.Select(c => c.Id));
        Assert.Equal(new[] { "background", "nucleus", "membrane" }, t.Select(c => c.Name));
        Assert.Equal("#ffaa00", t[2].Color);
        Assert.True(ClassTable.IsColor(t[1].Color));
        Assert.Contains("at least two", Assert.Throws<ArgumentException>(() => ClassTable.Parse("background")).Message);
        Assert.Contains("not a colour", Assert.Throws<ArgumentException>(() => ClassTable.Parse("background,cell:red")).Message);
        Assert.Contains("must differ", Assert.Throws<ArgumentException>(() => ClassTable.Parse("a,A")).Message);
        Assert.Equal(new[] { 255.0, 170, 0 }, ClassTable.Rgb("#ffaa00"));
    }
}
