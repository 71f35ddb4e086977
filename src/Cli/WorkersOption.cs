using System.CommandLine;

namespace ActorSeg.Cli;

/// <summary>
/// The in-process commands' --workers: tile worker actors in this process, each with its own tile buffers (about 100 MB
/// at the default tile size), so the count is bounded by the cores: a mistyped 100000 would otherwise start that many
/// actors and their memory before the first tile.
/// </summary>
public static class WorkersOption
{
    /// <summary>The most workers a command takes: four per core, and at least 8.</summary>
    public static int Max => Math.Max(8, 4 * Environment.ProcessorCount);

    public static Option<int> Create(string description)
    {
        var o = new Option<int>("--workers", "-w") { Description = description + " (default: one per core)", DefaultValueFactory = _ => Environment.ProcessorCount };
        o.Validators.Add(r =>
        {
            if (OptionRanges.TryValue(r, out int w) && (w < 1 || w > Max)) r.AddError($"--workers {w}: give 1 to {Max} (four per core on this machine's {Environment.ProcessorCount} cores, at least 8)");
        });
        return o;
    }
}
