using System.CommandLine;
using ActorSeg.Cli;
using Serilog;

Console.OutputEncoding = System.Text.Encoding.UTF8;
var verbose = new Option<bool>("--verbose", "-v") { Description = "Debug-level logs (every tile).", Recursive = true };
var node = NodeCommand.Create(verbose);
var root = new RootCommand("ActorSeg: segmentation of very large microscopy images with superpixel graphs, as an actor system.\n" +
                           "Logs go to stderr (text; ACTORSEG_LOG_FORMAT=json for one JSON event per line); results to stdout.")
{
    GraphCommand.Create(verbose),
    GenerateCommand.Create(verbose),
    InfoCommand.Create(verbose),
    DemoCommand.Create(verbose),
    TrainCommand.Create(verbose),
    EvaluateCommand.Create(verbose),
    RefineCommand.Create(verbose),
    SegmentCommand.Create(verbose),
    UNetCommands.Train(verbose),
    UNetCommands.Evaluate(verbose),
    node,
    ClientCommands.Submit(verbose),
    ClientCommands.SubmitTrain(verbose),
    ClientCommands.Status(verbose),
    BatchCommand.Create(verbose),
};
root.Options.Add(verbose);
try
{
    var parsed = root.Parse(args);
    if (parsed.Errors.Count > 0)
    {
        foreach (var e in parsed.Errors) Console.Error.WriteLine($"actorseg: {e.Message}");
        Console.Error.WriteLine("Try 'actorseg --help' or 'actorseg COMMAND --help'.");
        return ExitCodes.Usage;
    }
    // Akka reads an application configuration file (actorseg.dll.config beside the program) on every actor system's
    // start. One that is there but malformed is the user's input: said in one line naming it, before anything starts.
    // Without one, System.Configuration's first use still costs about 0.1 s: done here, on an idle core.
    if (AppConfig.Problem(AppConfig.PathBesideProgram) is { } problem)
    {
        Console.Error.WriteLine($"actorseg: {problem}");
        return ExitCodes.Failed;
    }
    ThreadPool.UnsafeQueueUserWorkItem(_ => { try { System.Configuration.ConfigurationManager.GetSection("akka"); } catch (Exception) { } }, null);
    // a cluster node owns its termination signals (NodeCommand.RunAsync): a second owner raced it at SIGTERM
    var invocation = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
    if (ReferenceEquals(parsed.CommandResult.Command, node)) invocation.ProcessTerminationTimeout = null;
    try
    {
        return await parsed.InvokeAsync(invocation);
    }
    catch (Exception e) when (ExitCodes.DescribeUserError(e) is { } line)
    {
        // what the user gave is wrong (a path, a file's contents, an option's value): one line naming it, no stack trace
        Console.Error.WriteLine($"actorseg {parsed.CommandResult.Command.Name}: {line}");
        return ExitCodes.Failed;
    }
    catch (OperationCanceledException)
    {
        Console.Error.WriteLine($"actorseg {parsed.CommandResult.Command.Name}: cancelled");
        return ExitCodes.Failed;
    }
    catch (Exception e)
    {
        // anything else is a fault of ActorSeg's: the whole trace, to be reported
        Console.Error.WriteLine($"actorseg {parsed.CommandResult.Command.Name}: internal error, please report it with this trace:\n{e}");
        return ExitCodes.Failed;
    }
}
finally
{
    await Log.CloseAndFlushAsync();
}
