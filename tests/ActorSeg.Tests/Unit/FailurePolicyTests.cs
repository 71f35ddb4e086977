using ActorSeg.Core;
using Xunit;

namespace ActorSeg.Tests.Unit;

public class FailurePolicyTests : TempDirTest
{
    public FailurePolicyTests() : base("policy") { }

    [Fact]
    public void ANameTooLongForTheFileSystem_FailsTheJob_WhereADiskHiccupIsTriedAgain()
    {
        // what the file system says of a 300-character folder name, as a job's output folder meets it
        var e = Assert.ThrowsAny<IOException>(() => Directory.CreateDirectory(Path.Combine(_dir, new string('x', 300))));
        Assert.IsType<PathTooLongException>(e);
        Assert.True(FailurePolicy.IsPermanent(e));
        Assert.True(FailurePolicy.IsPermanent(new AggregateException(e)));
        Assert.Equal(e.Message, FailurePolicy.Describe(e));
        Assert.False(FailurePolicy.IsPermanent(new IOException("Input/output error")));
    }
}
