using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using System.Text;
using ActorSeg.JpegXrDecoder;

namespace ActorSeg.Core.Imaging;

/// <summary>How this process starts its JPEG XR decoder processes (<see cref="JpegXr"/>).</summary>
public static class JpegXrDecoders
{
    /// <summary>
    /// A program that runs the decoder loop when given <see cref="DecoderLoop.Verb"/> alone: the
    /// ActorSeg program, where it was started by its own launcher (<c>actorseg</c>, not <c>dotnet actorseg.dll</c>). A
    /// self-contained deployment (the CUDA trainer image) has no dotnet host to start actorseg-jxr.dll with; null: the
    /// dotnet host this process runs under starts actorseg-jxr.dll.
    /// </summary>
    public static string? SelfHost { get; set; }
}

/// <summary>
/// JPEG XR decoding for the JPEG XR subblocks of Zeiss CZI files (ZEN's default compression for slide scans), through
/// jxrlib in separate processes (actorseg-jxr, beside this assembly, or the program itself: <see cref="JpegXrDecoders"/>). jxrlib is old C that crashes on damaged data (in a
/// fuzz run, 58 of 400 mutated tiles ended the process); out here a crash, or a decode that never ends, costs the one
/// subblock, reported as damage naming it, while the worker, the coordinator and the other jobs of a one-process run
/// go on. The decoder processes are kept and reused, one per thread decoding at once; each ends when this process
/// closes its standard input, or dies.
/// </summary>
internal static class JpegXr
{
    private const string Glue = "libjxrglue.so.0", Codec = "libjpegxr.so.0";
    internal const string MissingLibrary = "JPEG XR needs jxrlib (Debian and Ubuntu: apt install libjxr0, or libjxr0t64), which is not installed";

    /// <summary>How long one subblock may take in its decoder process before the process is ended and the subblock
    /// reported (a 1024² tile takes some 20 ms; jxrlib may loop on damaged data).</summary>
    internal static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static readonly ConcurrentBag<Decoder> Idle = [];

    /// <summary>Whether jxrlib can be loaded here (only loaded, never called in this process).</summary>
    public static bool Available
    {
        get
        {
            try { return NativeLibrary.TryLoad(Glue, out var g) && NativeLibrary.TryLoad(Codec, out var c) && g != 0 && c != 0; }
            catch { return false; }
        }
    }

    /// <summary>
    /// Decodes one JPEG XR image of <paramref name="width"/> × <paramref name="height"/> into samples of
    /// <paramref name="bytesPerSample"/> bytes and <paramref name="samplesPerPixel"/> samples, little-endian, colour as
    /// B, G, R (CZI's order), into <paramref name="pixels"/> (exactly their length); false with <paramref name="problem"/>
    /// when it cannot (what is wrong, in words).
    /// </summary>
    public static bool Decode(ReadOnlySpan<byte> data, int width, int height, int bytesPerSample, int samplesPerPixel, Span<byte> pixels, out string? problem)
        => Decode(data, width, height, bytesPerSample, samplesPerPixel, pixels, out problem, out _);

    /// <param name="Short">true when the JPEG XR image was smaller than <paramref name="width"/> × <paramref name="height"/>
    /// (its pixels top-left, the rest 0)</param>
    /// <param name="deadline">how long the decoder process may take (<see cref="Deadline"/> when null)</param>
    public static bool Decode(ReadOnlySpan<byte> data, int width, int height, int bytesPerSample, int samplesPerPixel, Span<byte> pixels, out string? problem, out bool Short,
        TimeSpan? deadline = null)
    {
        problem = null; Short = false;
        if (data.Length == 0) { problem = "no JPEG XR data"; return false; }
        if (data.Length > Protocol.MaxData) { problem = $"{data.Length} bytes of JPEG XR data, more than one subblock may hold"; return false; }
        if (width < 1 || height < 1 || bytesPerSample is not (1 or 2) || samplesPerPixel is not (1 or 3))
        { problem = $"a {width} x {height} image of {samplesPerPixel} samples of {bytesPerSample} bytes, which JPEG XR subblocks do not hold"; return false; }
        if (pixels.Length != (long)width * height * bytesPerSample * samplesPerPixel)
        { problem = $"{pixels.Length} bytes given for {(long)width * height * bytesPerSample * samplesPerPixel}"; return false; }
        Decoder? decoder;
        while (Idle.TryTake(out decoder) && decoder.HasExited) decoder.Dispose(); // (killed while idle: not this subblock's fault)
        if (decoder == null)
        {
            if (!Available) { problem = MissingLibrary; return false; }
            try { decoder = Decoder.Start(); }
            catch (Exception e) when (e is not OutOfMemoryException)
            { problem = $"the JPEG XR decoder process could not start: {e.Message}"; return false; }
        }
        bool keep = false;
        try
        {
            int status = decoder.Run(data, width, height, bytesPerSample, samplesPerPixel, pixels, deadline ?? Deadline, out problem);
            // a clean refusal leaves the process fit for the next; one the deadline ended is not
            keep = (problem == null || status == Protocol.NotDecoded) && !decoder.Killed;
            Short = status == Protocol.DecodedShort;
            return problem == null;
        }
        finally
        {
            if (keep) Idle.Add(decoder); else decoder.Dispose();
        }
    }

    /// <summary>One actorseg-jxr process and its pipes.</summary>
    private sealed class Decoder : IDisposable
    {
        private readonly Process _process;
        private readonly Stream _in, _out;
        private readonly byte[] _header = new byte[Protocol.RequestHeader];
        private string _lastError = "";
        private volatile bool _killed;

        public bool HasExited => _process.HasExited;

        /// <summary>Whether the deadline ended the process (it is not used again).</summary>
        public bool Killed => _killed;

        private Decoder(Process process)
        {
            _process = process;
            _in = process.StandardInput.BaseStream;
            _out = process.StandardOutput.BaseStream;
            process.ErrorDataReceived += (_, e) => { if (!string.IsNullOrWhiteSpace(e.Data)) _lastError = e.Data.Trim(); };
            process.BeginErrorReadLine();
        }

        public static Decoder Start()
        {
            ProcessStartInfo psi;
            if (JpegXrDecoders.SelfHost is { } program)
            {
                // a program started by its own launcher (self-contained: no dotnet host exists) runs the loop itself
                psi = new ProcessStartInfo(program);
                psi.ArgumentList.Add(DecoderLoop.Verb);
            }
            else
            {
                string dir = Path.GetDirectoryName(typeof(JpegXr).Assembly.Location) ?? AppContext.BaseDirectory;
                string dll = Path.Combine(dir, "actorseg-jxr.dll");
                if (!File.Exists(dll)) throw new FileNotFoundException($"actorseg-jxr.dll, the JPEG XR decoder, is missing from {dir}");
                psi = new ProcessStartInfo(DotnetHost());
                psi.ArgumentList.Add("exec");
                string config = Path.Combine(dir, "actorseg-jxr.runtimeconfig.json");
                if (File.Exists(config)) { psi.ArgumentList.Add("--runtimeconfig"); psi.ArgumentList.Add(config); }
                psi.ArgumentList.Add(dll);
            }
            psi.RedirectStandardInput = psi.RedirectStandardOutput = psi.RedirectStandardError = true;
            psi.UseShellExecute = false;
            psi.CreateNoWindow = true;
            return new Decoder(Process.Start(psi) ?? throw new InvalidOperationException("Process.Start gave no process"));
        }

        /// <summary>The dotnet host this process runs under (its runtime's folder is shared/Microsoft.NETCore.App/version
        /// under the host's), else the one on the PATH.</summary>
        private static string DotnetHost()
        {
            if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
            string runtime = RuntimeEnvironment.GetRuntimeDirectory().TrimEnd('/');
            string? root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(runtime)));
            string host = root == null ? "" : Path.Combine(root, "dotnet");
            return File.Exists(host) ? host : "dotnet";
        }

        /// <returns>the reply's status; <paramref name="problem"/> null when decoded</returns>
        public int Run(ReadOnlySpan<byte> data, int width, int height, int bps, int spp, Span<byte> pixels, TimeSpan deadline, out string? problem)
        {
            problem = null;
            try
            {
                BinaryPrimitives.WriteUInt32LittleEndian(_header, Protocol.Magic);
                BinaryPrimitives.WriteInt32LittleEndian(_header.AsSpan(4), data.Length);
                BinaryPrimitives.WriteInt32LittleEndian(_header.AsSpan(8), width);
                BinaryPrimitives.WriteInt32LittleEndian(_header.AsSpan(12), height);
                BinaryPrimitives.WriteInt32LittleEndian(_header.AsSpan(16), bps);
                BinaryPrimitives.WriteInt32LittleEndian(_header.AsSpan(20), spp);
                _in.Write(_header);
                _in.Write(data);
                _in.Flush();
                if (!ReplyWithin(deadline))
                {
                    _killed = true;
                    Kill();
                    problem = $"jxrlib took more than {deadline.TotalSeconds:0.###} s to decode it (its decoder process was ended): damaged";
                    return -1;
                }
                Span<byte> reply = stackalloc byte[8];
                _out.ReadExactly(reply);
                int status = BinaryPrimitives.ReadInt32LittleEndian(reply), length = BinaryPrimitives.ReadInt32LittleEndian(reply[4..]);
                if (status is Protocol.Decoded or Protocol.DecodedShort)
                {
                    if (length != pixels.Length) { problem = $"the JPEG XR decoder process sent {length} bytes for {pixels.Length}"; return status; }
                    _out.ReadExactly(pixels);
                    return status;
                }
                if (status != Protocol.NotDecoded || length is < 0 or > 1 << 16) { problem = $"the JPEG XR decoder process sent a reply it should not ({status}, {length})"; return status; }
                var text = new byte[length];
                _out.ReadExactly(text);
                problem = Encoding.UTF8.GetString(text);
                return status;
            }
            catch (Exception e) when (e is IOException or EndOfStreamException or ObjectDisposedException)
            {
                problem = $"jxrlib failed on it ({Ended()}): damaged";
                return -1;
            }
        }

        /// <summary>
        /// Waits, on this thread, until the reply starts (or the process's end closes the pipe) or the deadline passes:
        /// poll(2) on the pipe, not a timer, which would need a free thread-pool thread while every worker thread may be
        /// blocked in a read like this one.
        /// </summary>
        private bool ReplyWithin(TimeSpan deadline)
        {
            if (_out is not PipeStream pipe) return true; // (not so on Linux) the read itself waits
            var fd = new PollFd { Fd = (int)pipe.SafePipeHandle.DangerousGetHandle(), Events = PollIn };
            long end = Environment.TickCount64 + (long)Math.Ceiling(deadline.TotalMilliseconds);
            while (true)
            {
                int left = (int)Math.Clamp(end - Environment.TickCount64, 0, int.MaxValue);
                fd.Revents = 0;
                int r = poll(ref fd, 1, left);
                if (r > 0) return true; // data, or the pipe closed: the read tells which
                if (r == 0) return false;
                if (Marshal.GetLastPInvokeError() != EINTR) return true; // the read will report what is wrong
            }
        }

        private struct PollFd { public int Fd; public short Events, Revents; }
        private const short PollIn = 1;
        private const int EINTR = 4;
        [DllImport("libc", SetLastError = true)] private static extern int poll(ref PollFd fds, nuint count, int timeoutMs);

        /// <summary>How the process ended, in words, once it has.</summary>
        private string Ended()
        {
            if (!_process.WaitForExit(2000)) return "its decoder process stopped answering";
            int code = _process.ExitCode;
            string how = code > 128 && code < 160 ? $"its decoder process was killed by signal {code - 128}{(code - 128 == 11 ? ", a crash" : code - 128 == 6 ? ", an abort" : "")}"
                : $"its decoder process ended with exit code {code}";
            return _lastError.Length > 0 ? $"{how}: {_lastError}" : how;
        }

        private void Kill()
        {
            try { _process.Kill(); } catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception) { }
        }

        public void Dispose()
        {
            try { _in.Dispose(); } catch (IOException) { }
            if (!_process.WaitForExit(1000)) Kill();
            _process.Dispose();
        }
    }
}
