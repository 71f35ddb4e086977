using System.CommandLine;
using System.Runtime.InteropServices;
using ActorSeg.Cli;
using Serilog;

// a JPEG XR decoder process (JpegXr.cs): this program started by its own launcher starts its decoders as itself
if (args is [ActorSeg.JpegXrDecoder.DecoderLoop.Verb]) return ActorSeg.JpegXrDecoder.DecoderLoop.Run(Console.OpenStandardInput(), Console.OpenStandardOutput());
if (Environment.ProcessPath is { } launcher && !Path.GetFileNameWithoutExtension(launcher).Equals("dotnet", StringComparison.Ordinal))
    ActorSeg.Core.Imaging.JpegXrDecoders.SelfHost = launcher;
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
        foreach (var e in parsed.Errors) Console.Error.WriteLine($"actorseg: {UsageText.Plain(e.Message)}");
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
    // a cluster node owns its termination signals (NodeCommand.RunAsync): a second owner raced it at SIGTERM. Every other
    // command takes them here rather than through System.CommandLine, whose handler forces the command's return two
    // seconds after the first signal (cutting short a run's clean-up, such as a whole slide's work folder) and crashes
    // with an unhandled exception at a second signal after that. Here the first Ctrl-C or SIGTERM cancels the command,
    // which stops and cleans up; a second one ends the process at once (the signal's default action).
    var invocation = new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
    using var stop = new CancellationTokenSource();
    int signals = 0;
    void OnSignal(PosixSignalContext ctx)
    {
        if (Interlocked.Increment(ref signals) != 1) return; // the second: not cancelled, so the process ends now
        ctx.Cancel = true;
        Console.Error.WriteLine($"actorseg {parsed.CommandResult.Command.Name}: stopping ({ctx.Signal} again to quit at once)");
        stop.Cancel();
    }
    using var sigint = ReferenceEquals(parsed.CommandResult.Command, node) ? null : PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
    using var sigterm = ReferenceEquals(parsed.CommandResult.Command, node) ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    try
    {
        return await parsed.InvokeAsync(invocation, stop.Token);
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
