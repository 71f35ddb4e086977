using System.CommandLine;
using ActorSeg.Messages;
using Serilog;

namespace ActorSeg.Cli;

public static class DemoCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var output = new Option<DirectoryInfo>("--out", "-o") { Description = "Working directory for the sample data and results.", DefaultValueFactory = _ => new DirectoryInfo("runs/demo") };
        var size = new Option<int>("--size") { Description = "Side of the generated square image in pixels.", DefaultValueFactory = _ => 4096 };
        var workers = new Option<int>("--workers", "-w") { Description = "Tile worker actors.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var cmd = new Command("demo", "The main job end to end on generated sample data: generate an image with its mask, then build its graph.")
        {
            output, size, workers,
        };
        cmd.SetAction(async (pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            var dir = pr.GetValue(output)!.FullName;
            int n = pr.GetValue(size);
            var (img, mask) = GenerateCommand.Run(Path.Combine(dir, "data"), "sample", n, n, "colonies", 16, 1, 1, ct);
            var spec = new GraphJobSpec(img, mask, Path.Combine(dir, "graph"));
            int rc = await GraphCommand.RunAsync(spec, pr.GetValue(workers), ct);
            if (rc == ExitCodes.Ok) Log.Information("Demo finished: graph in {Dir}", Path.Combine(dir, "graph"));
            return rc;
        });
        return cmd;
    }
}
