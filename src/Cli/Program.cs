using System.CommandLine;
using ActorSeg.Cli;
using Serilog;

Console.OutputEncoding = System.Text.Encoding.UTF8;
var verbose = new Option<bool>("--verbose", "-v") { Description = "Debug-level logs (every tile)." };
var root = new RootCommand("ActorSeg: segmentation of very large microscopy images with superpixel graphs, as an actor system.\n" +
                           "Logs go to stderr (text; ACTORSEG_LOG_FORMAT=json for one JSON event per line); results to stdout.")
{
    GraphCommand.Create(verbose),
    GenerateCommand.Create(verbose),
    DemoCommand.Create(verbose),
};
root.Options.Add(verbose);
try
{
    return await root.Parse(args).InvokeAsync();
}
finally
{
    await Log.CloseAndFlushAsync();
}
