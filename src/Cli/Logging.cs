using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace ActorSeg.Cli;

public static class Logging
{
    /// <summary>Readable console text interactively; compact JSON (one event per line) when ACTORSEG_LOG_FORMAT=json.</summary>
    public static void Configure(bool verbose) => Configure(verbose, defaultJson: false, toStdout: false, node: Environment.MachineName);

    /// <param name="defaultJson">JSON unless ACTORSEG_LOG_FORMAT=text (cluster nodes whose output is not a terminal)</param>
    /// <param name="toStdout">events to stdout (cluster nodes: the container log); CLI commands keep stdout for results</param>
    public static void Configure(bool verbose, bool defaultJson, bool toStdout, string node, string? roles = null)
    {
        var fmt = Environment.GetEnvironmentVariable("ACTORSEG_LOG_FORMAT");
        var json = fmt is null ? defaultJson : string.Equals(fmt, "json", StringComparison.OrdinalIgnoreCase);
        var cfg = new LoggerConfiguration()
            .MinimumLevel.Is(verbose ? LogEventLevel.Debug : LogEventLevel.Information)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .MinimumLevel.Override("Akka", LogEventLevel.Warning)
            .Enrich.FromLogContext()
            .Enrich.WithProperty("Node", node);
        if (roles is not null) cfg = cfg.Enrich.WithProperty("NodeRoles", roles);
        var errFrom = toStdout ? LogEventLevel.Fatal + 1 : LogEventLevel.Verbose;
        cfg = json
            ? cfg.WriteTo.Console(new CompactJsonFormatter(), standardErrorFromLevel: errFrom)
            : cfg.WriteTo.Console(outputTemplate: toStdout ? "[{Timestamp:HH:mm:ss} {Level:u3} {Role}] {Message:lj}{NewLine}{Exception}" : "[{Timestamp:HH:mm:ss} {Level:u3}] {Message:lj}{NewLine}{Exception}", standardErrorFromLevel: errFrom);
        Log.Logger = cfg.CreateLogger();
        ActorSeg.Core.Imaging.VipsWarnings.Warning += m => Log.Debug("libvips: {VipsWarning}", m);
        ActorSeg.Core.Imaging.VipsWarnings.InputWarning += m => Log.Warning("{InputWarning}", m);
    }
}
