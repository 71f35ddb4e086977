using System.Runtime.InteropServices;

namespace ActorSeg.JpegXrDecoder;

/// <summary>
/// JPEG XR decoding through jxrlib (Debian's libjxr0: libjxrglue and libjpegxr), for the JPEG XR subblocks of Zeiss CZI
/// files (ZEN's default compression for slide scans). jxrlib's decoder is a C struct of function pointers
/// (<c>PKImageDecode</c> in JXRGlue.h); the ones used are called through their places in it. Called only in this
/// process (actorseg-jxr): jxrlib may crash on damaged data.
/// </summary>
internal static unsafe class JxrLib
{
    private const string Glue = "libjxrglue.so.0", Codec = "libjpegxr.so.0";

    [DllImport(Glue)] private static extern int PKImageDecode_Create_WMP(out IntPtr decoder);
    [DllImport(Codec)] private static extern int CreateWS_Memory(out IntPtr stream, IntPtr data, nuint size);
    [DllImport(Codec)] private static extern int CloseWS_Memory(ref IntPtr stream);

    // the places of PKImageDecode's function pointers (JXRGlue.h: Initialize, GetPixelFormat, GetSize, GetResolution,
    // GetColorContext, GetDescriptiveMetadata, GetRawStream, Copy, GetFrameCount, SelectFrame, Release)
    private const int Initialize = 0, GetPixelFormat = 1, GetSize = 2, Copy = 7, Release = 10;

    private readonly record struct Rect(int X, int Y, int Width, int Height);

    /// <summary>jxrlib's pixel formats (GUID_PKPixelFormat… in JXRGlue.h): all share their first 15 bytes and differ in the last.</summary>
    private static readonly byte[] FormatPrefix = [0x24, 0xc3, 0xdd, 0x6f, 0x03, 0x4e, 0xfe, 0x4b, 0xb1, 0x85, 0x3d, 0x77, 0x76, 0x8d, 0xc9];
    private const byte Gray8 = 0x08, Gray16 = 0x0b, Bgr24 = 0x0c, Rgb24 = 0x0d, Rgb48 = 0x15;

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
    public static bool Decode(ReadOnlySpan<byte> data, int width, int height, int bytesPerSample, int samplesPerPixel, Span<byte> pixels, out string? problem, out bool Short)
    {
        problem = null; Short = false;
        if (data.Length == 0) { problem = "no JPEG XR data"; return false; }
        IntPtr decoder = 0, stream = 0;
        var copy = Marshal.AllocHGlobal(data.Length); // jxrlib reads from it while decoding
        try
        {
            data.CopyTo(new Span<byte>((void*)copy, data.Length));
            int err;
            try { err = PKImageDecode_Create_WMP(out decoder); }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                problem = "JPEG XR needs jxrlib (Debian and Ubuntu: apt install libjxr0, or libjxr0t64), which is not installed";
                return false;
            }
            if (err < 0 || decoder == 0) { problem = $"jxrlib could not make a decoder (error {err})"; return false; }
            if ((err = CreateWS_Memory(out stream, copy, (nuint)data.Length)) < 0) { problem = $"jxrlib could not read the data (error {err})"; return false; }
            var fns = (IntPtr*)decoder;
            if ((err = ((delegate* unmanaged[Cdecl]<IntPtr, IntPtr, int>)fns[Initialize])(decoder, stream)) < 0)
            { problem = $"not a JPEG XR image jxrlib can read (error {err})"; return false; }
            var format = stackalloc byte[16];
            ((delegate* unmanaged[Cdecl]<IntPtr, byte*, int>)fns[GetPixelFormat])(decoder, format);
            int w, h;
            ((delegate* unmanaged[Cdecl]<IntPtr, int*, int*, int>)fns[GetSize])(decoder, &w, &h);
            // ZEN rounds some pyramid edge tiles' stored size up and encodes the smaller image: that part is read, the rest
            // is 0 (as ZEN's own reader does); a larger image, or one of another shape, is damage
            if (w < 1 || h < 1 || w > width || h > height) { problem = $"its JPEG XR image is {w} x {h}, not the subblock's {width} x {height}"; return false; }
            Short = w != width || h != height;
            var prefix = new ReadOnlySpan<byte>(format, 15);
            byte kind = prefix.SequenceEqual(FormatPrefix) ? format[15] : (byte)0;
            (int bps, int spp, bool rgb) = kind switch
            {
                Gray8 => (1, 1, false), Gray16 => (2, 1, false), Bgr24 => (1, 3, false), Rgb24 => (1, 3, true), Rgb48 => (2, 3, true),
                _ => (0, 0, false),
            };
            if (bps != bytesPerSample || spp != samplesPerPixel)
            { problem = $"its JPEG XR pixel format ({Convert.ToHexString(new ReadOnlySpan<byte>(format, 16))}) is not the subblock's pixel type"; return false; }
            int stride = width * bps * spp;
            if (pixels.Length != (long)stride * height) { problem = $"{pixels.Length} bytes given for {(long)stride * height}"; return false; }
            if (Short) pixels.Clear();
            var rect = new Rect(0, 0, w, h);
            fixed (byte* p = pixels)
                if ((err = ((delegate* unmanaged[Cdecl]<IntPtr, Rect*, byte*, uint, int>)fns[Copy])(decoder, &rect, p, (uint)stride)) < 0)
                { problem = $"jxrlib could not decode it (error {err}): damaged"; return false; }
            if (rgb) Swap(pixels, bps); // R, G, B as decoded: to CZI's B, G, R
            return true;
        }
        finally
        {
            if (decoder != 0) ((delegate* unmanaged[Cdecl]<IntPtr*, int>)((IntPtr*)decoder)[Release])(&decoder);
            if (stream != 0) CloseWS_Memory(ref stream);
            Marshal.FreeHGlobal(copy);
        }
    }

    private static void Swap(Span<byte> px, int bps)
    {
        int step = 3 * bps;
        for (int i = 0; i + step <= px.Length; i += step)
            for (int b = 0; b < bps; b++) (px[i + b], px[i + 2 * bps + b]) = (px[i + 2 * bps + b], px[i + b]);
    }
}
