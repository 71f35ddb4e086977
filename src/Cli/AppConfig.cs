using System.Configuration;

namespace ActorSeg.Cli;

/// <summary>The application configuration file that Akka reads through System.Configuration on every start.</summary>
public static class AppConfig
{
    /// <summary>Where System.Configuration looks for it: the program's assembly path with ".config" added.</summary>
    public static string PathBesideProgram => typeof(AppConfig).Assembly.Location + ".config";

    /// <summary>
    /// Null when there is no file at <paramref name="path"/> (the usual case, checked without parsing anything) or it is
    /// a well-formed configuration file; else one line naming the file, the line and what is wrong.
    /// </summary>
    public static string? Problem(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var map = new ExeConfigurationFileMap { ExeConfigFilename = path };
            var config = ConfigurationManager.OpenMappedExeConfiguration(map, ConfigurationUserLevel.None);
            _ = config.GetSection("akka"); // the section Akka asks for: a declared but malformed one fails here
            return null;
        }
        catch (ConfigurationErrorsException e)
        {
            var where = e.Line > 0 ? $" (line {e.Line})" : "";
            var what = string.Join(' ', e.BareMessage.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
            return $"{e.Filename ?? path}: not a valid application configuration file{where}: {what}";
        }
    }
}
