using ActorSeg.Cli;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>The application configuration file Akka reads on every start: a malformed one is named in one line.</summary>
public class AppConfigTests() : TempDirTest("appconfig")
{
    [Fact]
    public void NoFile_IsNoProblem() => Assert.Null(AppConfig.Problem(Path.Combine(_dir, "actorseg.dll.config")));

    [Fact]
    public void AWellFormedFileWithAnAkkaSection_IsNoProblem()
    {
        var path = Path.Combine(_dir, "good.config");
        File.WriteAllText(path, """
            <?xml version="1.0"?>
            <configuration>
              <configSections><section name="akka" type="Akka.Configuration.Hocon.AkkaConfigurationSection, Akka"/></configSections>
              <akka><hocon><![CDATA[ akka.loglevel = WARNING ]]></hocon></akka>
            </configuration>
            """);
        Assert.Null(AppConfig.Problem(path));
    }

    [Theory]
    [InlineData("<configuration><broken", "line 1")]
    [InlineData("<configuration>\n  <configSections><section name=\"akka\" type=\"No.Such.Type, NoSuchAssembly\"/></configSections>\n  <akka/>\n</configuration>", "")]
    public void AMalformedFile_IsNamedWithWhatIsWrong(string text, string where)
    {
        var path = Path.Combine(_dir, "bad.config");
        File.WriteAllText(path, text);
        var problem = AppConfig.Problem(path);
        Assert.NotNull(problem);
        Assert.Contains(path, problem);
        Assert.Contains("not a valid application configuration file", problem);
        Assert.Contains(where, problem);
        Assert.DoesNotContain("\n", problem); // one line, no stack trace
    }
}
