using System.CommandLine;
using System.Globalization;

namespace ActorSeg.Cli;

/// <summary>Ranges checked as the command line is read (usage errors, exit 2), before an actor system starts or any work
/// is done; the same limits the library checks again where the values are used (a job from a cluster client, the HTTP
/// door).</summary>
public static class OptionRanges
{
    private static string F(double v) => v.ToString("G", CultureInfo.InvariantCulture);

    public static Option<int> Within(this Option<int> o, int lo, int hi)
    {
        o.Validators.Add(r => { if (TryValue(r, out int v) && (v < lo || v > hi)) r.AddError($"{o.Name} must be in [{lo:N0}, {hi:N0}] (got {v})"); });
        return o;
    }

    public static Option<int?> Within(this Option<int?> o, int lo, int hi)
    {
        o.Validators.Add(r => { if (TryValue(r, out int? n) && n is { } v && (v < lo || v > hi)) r.AddError($"{o.Name} must be in [{lo:N0}, {hi:N0}] (got {v})"); });
        return o;
    }

    /// <summary>A finite number in [lo, hi], or [lo, hi) with <paramref name="hiOpen"/>, or (lo, hi] with <paramref name="loOpen"/>.</summary>
    public static Option<double> Within(this Option<double> o, double lo, double hi, bool loOpen = false, bool hiOpen = false)
    {
        o.Validators.Add(r => { if (TryValue(r, out double v) && !In(v, lo, hi, loOpen, hiOpen)) r.AddError(Message(o.Name, v, lo, hi, loOpen, hiOpen)); });
        return o;
    }

    public static Option<double?> Within(this Option<double?> o, double lo, double hi, bool loOpen = false, bool hiOpen = false)
    {
        o.Validators.Add(r => { if (TryValue(r, out double? n) && n is { } v && !In(v, lo, hi, loOpen, hiOpen)) r.AddError(Message(o.Name, v, lo, hi, loOpen, hiOpen)); });
        return o;
    }

    /// <summary>The option's value, unless it could not be read as its type (the parser reports that itself).</summary>
    /// <summary>Whether the command line gives <paramref name="o"/> (with any value, readable or not).</summary>
    public static bool Given(System.CommandLine.Parsing.CommandResult r, Option o) => r.GetResult(o) is { Implicit: false };

    /// <summary>A flag's value for a command's own checks; false when it was given a value that is no boolean (the parser
    /// reports that itself: reading it would throw).</summary>
    public static bool Flag(System.CommandLine.Parsing.CommandResult r, Option<bool> o)
    {
        try { return r.GetValue(o); }
        catch (InvalidOperationException) { return false; }
    }

    public static bool TryValue<T>(System.CommandLine.Parsing.OptionResult r, out T value)
    {
        try { value = r.GetValueOrDefault<T>()!; return true; }
        catch (InvalidOperationException) { value = default!; return false; }
    }

    private static bool In(double v, double lo, double hi, bool loOpen, bool hiOpen) =>
        double.IsFinite(v) && (loOpen ? v > lo : v >= lo) && (hiOpen ? v < hi : v <= hi);

    private static string Message(string name, double v, double lo, double hi, bool loOpen, bool hiOpen) =>
        $"{name} must be a number in {(loOpen ? "(" : "[")}{F(lo)}, {(double.IsPositiveInfinity(hi) ? "∞" : F(hi))}{(hiOpen || double.IsPositiveInfinity(hi) ? ")" : "]")} (got {F(v)})";
}
