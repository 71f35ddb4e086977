using ActorSeg.Core.Imaging;

namespace ActorSeg.Tests;

/// <summary>Collects the input warnings (<see cref="VipsWarnings.InputWarning"/>) raised while it is alive, from any thread.</summary>
internal sealed class InputWarnings : IDisposable
{
    private readonly List<string> _seen = [];

    public InputWarnings() => VipsWarnings.InputWarning += Listen;

    private void Listen(string message) { lock (_seen) _seen.Add(message); }

    /// <summary>The warnings so far, in the order raised (a copy).</summary>
    public List<string> All { get { lock (_seen) return [.. _seen]; } }

    public void Clear() { lock (_seen) _seen.Clear(); }

    public void Dispose() => VipsWarnings.InputWarning -= Listen;
}
