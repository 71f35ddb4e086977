using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace ActorSeg.Cli;

public static class Logging
{
    /// <summary>Readable console text interactively; compact JSON (one event per line) when ACTORSEG_LOG_FORMAT=json.</summary>
    public static void Configure(bool verbose)
    {
        var json = string.Equals(Environment.GetEnvironmentVariable("ACTORSEG_LOG_FORMAT"), "json", StringComparison.OrdinalIgnoreCase);
        var cfg = new LoggerConfiguration()
            .MinimumLevel.Is(verbose ? LogEventLevel.Debug : LogEventLevel.Information)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .MinimumLevel.Override("Akka", LogEventLevel.Warning)
            .Enrich.FromLogContext()
            .Enrich.WithProperty("Node", Environment.MachineName);
        cfg = json
            ? cfg.WriteTo.Console(new CompactJsonFormatter(), standardErrorFromLevel: LogEventLevel.Verbose)
            : cfg.WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss} {Level:u3}] {Message:lj}{NewLine}{Exception}", standardErrorFromLevel: LogEventLevel.Verbose);
        Log.Logger = cfg.CreateLogger();
        ActorSeg.Core.Imaging.VipsImageSource.Warning += m => Log.Debug("libvips: {VipsWarning}", m);
    }
}
