namespace ActorSeg.Cli;

/// <summary>The coordinator's status page (GET /): plain HTML and a little script, no build step, shipped inside the
/// program. It holds no data; its script reads GET /status with the person's token.</summary>
public static class StatusPage
{
    public static readonly string Html = Load();

    private static string Load()
    {
        using var s = typeof(StatusPage).Assembly.GetManifestResourceStream("ActorSeg.Cli.StatusPage.html")
            ?? throw new InvalidOperationException("the status page is missing from the program (embedded resource StatusPage.html)");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }
}
