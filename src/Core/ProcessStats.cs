namespace ActorSeg.Core;

public static class ProcessStats
{
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
}
