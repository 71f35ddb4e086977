using System.Globalization;
using System.Text.Json;

namespace ActorSeg.Core.IO;

/// <summary>One class of a segmentation: its id (the value in the mask), a name and a display colour (#rrggbb).</summary>
public sealed record ClassInfo(int Id, string Name, string Color);

/// <summary>
/// The names and colours of a model's classes: given when training (<c>--classes background:#000000,colony:#ff0000</c>),
/// kept in the model, written as <c>classes.json</c> beside every classification, and used by the overlay and the
/// OME-XML of the mask. Without names, class 0 is "background" and the others "class N" in the default palette.
/// </summary>
public static class ClassTable
{
    public const string FileName = "classes.json";
    private static readonly string[] Palette = ["#ff2828", "#28dc28", "#3c78ff", "#ffc800", "#c832c8", "#00c8c8", "#ff8c00", "#8c5a28"];

    public static ClassInfo[] Default(int classes) =>
        Enumerable.Range(0, Math.Max(2, classes)).Select(c => new ClassInfo(c, c == 0 ? "background" : $"class {c}", c == 0 ? "#000000" : Palette[(c - 1) % Palette.Length])).ToArray();

    /// <summary>Parses "name[:#rrggbb],…" (class ids in order); an exception names what is wrong.</summary>
    public static ClassInfo[] Parse(string spec)
    {
        var parts = spec.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 2) throw new ArgumentException($"--classes needs at least two classes, background first (got '{spec}')");
        var fallback = Default(parts.Length);
        var result = new ClassInfo[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            var kv = parts[i].Split(':', 2, StringSplitOptions.TrimEntries);
            if (kv[0].Length == 0) throw new ArgumentException($"--classes: class {i} has no name ('{parts[i]}')");
            var color = kv.Length > 1 ? kv[1] : fallback[i].Color;
            if (!IsColor(color)) throw new ArgumentException($"--classes: '{color}' (class {kv[0]}) is not a colour like #ff0000");
            result[i] = new ClassInfo(i, kv[0], color.ToLowerInvariant());
        }
        if (result.Select(c => c.Name).Distinct(StringComparer.OrdinalIgnoreCase).Count() != result.Length)
            throw new ArgumentException($"--classes: class names must differ ('{spec}')");
        return result;
    }

    public static bool IsColor(string c) => c.Length == 7 && c[0] == '#' && int.TryParse(c.AsSpan(1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out _);

    public static double[] Rgb(string color)
    {
        int v = int.Parse(color.AsSpan(1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
    }

    public static void Write(string folder, IReadOnlyList<ClassInfo> classes) =>
        SafePaths.WriteAllText(Path.Combine(folder, FileName), JsonSerializer.Serialize(classes, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }), "class table");

    /// <summary>The table in <paramref name="folder"/>/classes.json, or null when there is none (or it cannot be read).</summary>
    public static ClassInfo[]? Read(string folder)
    {
        var path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            var t = JsonSerializer.Deserialize<ClassInfo[]>(File.ReadAllText(path), new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase });
            return t is { Length: > 0 } && t.All(c => IsColor(c.Color)) ? t : null;
        }
        catch (JsonException) { return null; }
    }
}
