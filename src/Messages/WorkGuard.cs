namespace ActorSeg.Messages;

/// <summary>
/// What a worker or trainer asks before it acts on an order: did the coordinator send it, and does it name only the
/// job's own paths? Null when the order may run; otherwise whether to answer (the coordinator gets a permanent
/// failure with the reason; anyone else gets nothing) and why.
/// </summary>
public sealed class WorkGuard<TSender>(Func<TSender, bool> isCoordinator)
{
    public (bool Answer, string Reason)? Refusal(TSender sender, Func<string?> check)
    {
        if (!isCoordinator(sender)) return (false, "it is not the coordinator; nothing was read or written");
        string? why;
        try { why = check(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { why = e.Message; }
        return why is null ? null : (true, why + "; nothing was written");
    }
}
