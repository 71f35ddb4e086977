using TorchSharp;
using static TorchSharp.torch;

namespace ActorSeg.GpuTrainer;

/// <summary>Picks the device: CUDA when present (and not disabled), the CPU otherwise.</summary>
public static class TorchDevice
{
    public static Device Pick(string? requested = null)
    {
        requested = (requested ?? "auto").ToLowerInvariant();
        bool cuda = cuda_is_available();
        return requested switch
        {
            "cpu" => CPU,
            "cuda" when cuda => CUDA,
            "cuda" => throw new InvalidOperationException("--device cuda was asked for, but CUDA is not available (is this a CPU build? build with -p:TorchBackend=cuda on a GPU image)"),
            "auto" => cuda ? CUDA : CPU,
            _ => throw new ArgumentException($"device must be auto, cpu or cuda (got '{requested}')"),
        };
    }

    public static string Describe(Device d) =>
        d.type == DeviceType.CUDA ? $"cuda ({cuda.device_count()} device(s))" : $"cpu ({torch.get_num_threads()} threads)";
}
