using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ActorSeg.GpuTrainer;

/// <summary>
/// Measured on this project's machines (AMD EPYC with AVX-512, libtorch 2.10 CPU): oneDNN's AVX-512 convolution kernels
/// return NaN within the first epochs of UNet training (every run, at any learning rate), while AVX2 gives the correct
/// result. Before libtorch is loaded, this caps oneDNN at AVX2 on CPUs with AVX-512 unless the user chose an ISA
/// (DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA set: left alone). The GNN does not use oneDNN and is unaffected.
/// </summary>
internal static class NativeCpuIsa
{
    [DllImport("libc", SetLastError = true, EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    public static bool Capped { get; private set; }

    [ModuleInitializer]
    internal static void CapOneDnnIsa()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return;
        if (Environment.GetEnvironmentVariable("DNNL_MAX_CPU_ISA") is not null || Environment.GetEnvironmentVariable("ONEDNN_MAX_CPU_ISA") is not null) return;
        if (!System.Runtime.Intrinsics.X86.Avx512F.IsSupported) return;
        // the native library reads the process environment (getenv): .NET's own copy is not enough
        try { if (SetEnv("DNNL_MAX_CPU_ISA", "AVX2", 0) == 0) Capped = true; }
        catch (EntryPointNotFoundException) { }
        Environment.SetEnvironmentVariable("DNNL_MAX_CPU_ISA", "AVX2");
    }
}
