using System.Runtime.InteropServices;

namespace ActorSeg.Core;

public static partial class ProcessStats
{
    /// <summary>The clock of the phase diagnostics (<see cref="PhaseClock"/>): wall time by default; the calling thread's
    /// CPU time when a benchmark asks for it (figures that hold on a machine busy with other work).</summary>
    public static bool ThreadCpuClock { get; set; }

    /// <summary>Now, in <see cref="System.Diagnostics.Stopwatch"/> ticks of wall time or of this thread's CPU time.</summary>
    public static long PhaseClock() => ThreadCpuClock ? (long)(ThreadCpuSeconds() * System.Diagnostics.Stopwatch.Frequency) : System.Diagnostics.Stopwatch.GetTimestamp();

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeSpec { public long Sec; public long NSec; }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec t);

    /// <summary>CPU seconds the calling thread has used (Linux CLOCK_THREAD_CPUTIME_ID; elsewhere the process's).</summary>
    public static double ThreadCpuSeconds()
    {
        if (OperatingSystem.IsLinux() && ClockGetTime(3, out var t) == 0) return t.Sec + t.NSec * 1e-9;
        return System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
    }

    /// <summary>Current resident set size of this process in MiB (VmRSS on Linux).</summary>
    public static double CurrentRssMiB()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmRSS:"))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        }
        catch (IOException) { }
        return System.Diagnostics.Process.GetCurrentProcess().WorkingSet64 / 1048576.0;
    }

    /// <summary>Peak resident set size of this process in MiB (VmHWM on Linux; the .NET peak working set elsewhere).</summary>
    public static double PeakRssMiB(int? pid = null)
    {
        var path = $"/proc/{(pid is { } p ? p.ToString() : "self")}/status";
        try
        {
            foreach (var line in File.ReadLines(path))
                if (line.StartsWith("VmHWM:"))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return System.Diagnostics.Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0;
    }

    /// <summary>Minor page faults of this process so far (field 10 of /proc/self/stat on Linux; 0 elsewhere): on a
    /// machine whose fresh memory is dear, each is a first touch of a page.</summary>
    public static long MinorFaults()
    {
        try
        {
            var stat = File.ReadAllText("/proc/self/stat");
            // the command name, field 2, is in parentheses and may hold spaces: count fields after its closing one
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[7]); // field 10 overall: minflt
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }
}
