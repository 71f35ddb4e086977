namespace ActorSeg.Cli;

/// <summary>The command-line parser's messages in a user's words: it names the .NET type it could not read a value as
/// ("as expected type 'System.Nullable`1[System.Int32]'"), which says nothing to a person who typed --segments 1e12.</summary>
public static class UsageText
{
    private static readonly (string Type, string Plain)[] Types =
    [
        ("System.Nullable`1[System.Int32]", "a whole number from -2,147,483,648 to 2,147,483,647"),
        ("System.Int32", "a whole number from -2,147,483,648 to 2,147,483,647"),
        ("System.Nullable`1[System.Int64]", "a whole number"),
        ("System.Int64", "a whole number"),
        ("System.Nullable`1[System.Double]", "a number"),
        ("System.Double", "a number"),
        ("System.IO.DirectoryInfo", "a folder path"),
        ("System.IO.FileInfo", "a file path"),
        ("System.Boolean", "true or false"),
    ];

    public static string Plain(string message)
    {
        foreach (var (type, plain) in Types)
            message = message.Replace($"as expected type '{type}'", $"as {plain}", StringComparison.Ordinal);
        return message;
    }
}
