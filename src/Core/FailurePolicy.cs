using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;

namespace ActorSeg.Core;

/// <summary>
/// One rule, for every role, on whether a failure can go away by trying again. Permanent: the input is bad (a file that
/// is missing, unreadable as what it claims to be, or refused as a path; an argument out of range; a result that fails
/// its checksum) — trying again elsewhere gives the same answer, so the job fails with the reason. Everything else (a
/// disk or network hiccup, a lost node, out of memory) is transient and counts as one attempt.
/// </summary>
public static class FailurePolicy
{
    public static bool IsPermanent(Exception e) => e switch
    {
        AggregateException { InnerException: { } inner } => IsPermanent(inner),
        InputFileException or InvalidDataException or ArgumentException or ResultStoreException or UnsafePathException
            or OutputFolderException or OutputFolderInUseException or FileNotFoundException or DirectoryNotFoundException or Refine.RefinerNotTrainableException
            // a name longer than the file system allows (ENAMETOOLONG): as long the next time
            or PathTooLongException
            // the job has ended: nothing to try again
            or PublishRefusedException => true,
        _ => false,
    };

    /// <summary>The message to show: bad input speaks for itself; anything else is named by its type.</summary>
    public static string Describe(Exception e) => e switch
    {
        AggregateException { InnerException: { } inner } => Describe(inner),
        _ when IsPermanent(e) => e.Message,
        _ => $"{e.GetType().Name}: {e.Message}",
    };
}
