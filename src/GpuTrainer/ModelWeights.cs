using TorchSharp;

namespace ActorSeg.GpuTrainer;

/// <summary>Checks on the weights a model file gave.</summary>
public static class ModelWeights
{
    /// <summary>Refuses weights or buffers holding NaN or infinity: such a model would paint every pixel of every image
    /// with whatever the arithmetic of NaN makes of it, and write probabilities no one can read.</summary>
    /// <exception cref="InvalidDataException">names the first tensor that is not finite</exception>
    public static void RequireFinite(torch.nn.Module model, string what)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var (name, p) in model.named_parameters())
            if (!p.isfinite().all().item<bool>())
                throw new InvalidDataException($"{what}'s weights '{name}' hold values that are not finite (NaN or infinity)");
        foreach (var (name, b) in model.named_buffers())
            if (b.is_floating_point() && !b.isfinite().all().item<bool>())
                throw new InvalidDataException($"{what}'s buffer '{name}' holds values that are not finite (NaN or infinity)");
    }
}
