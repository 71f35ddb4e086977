using System.Buffers.Binary;
using System.Text;

namespace ActorSeg.JpegXrDecoder;

/// <summary>The decoder's loop (see Program.cs for the protocol): run by actorseg-jxr, and by a self-contained ActorSeg
/// program, which has no dotnet host to start actorseg-jxr with, as its hidden <see cref="Verb"/>.</summary>
public static class DecoderLoop
{
    /// <summary>The argument that makes a self-contained ActorSeg program a decoder process.</summary>
    public const string Verb = "__jxr-decoder";

    /// <returns>the process's exit code: 0 when <paramref name="input"/> ended between requests, 2 on a broken request</returns>
    public static int Run(Stream input, Stream output)
    {
        var header = new byte[Protocol.RequestHeader];
        byte[] data = [], pixels = [];
        while (true)
        {
            int got = 0;
            while (got < header.Length)
            {
                int n = input.Read(header, got, header.Length - got);
                if (n == 0)
                {
                    if (got == 0) return 0; // the parent closed the pipe: done
                    return Fail("a request ended inside its header");
                }
                got += n;
            }
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Protocol.Magic) return Fail("a request without the AJXR mark");
            int length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(4)), width = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8)),
                height = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12)), bps = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(16)),
                spp = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(20));
            long size = (long)width * height * bps * spp;
            if (length < 0 || length > Protocol.MaxData || width < 1 || height < 1 || bps is not (1 or 2) || spp is not (1 or 3) || size > Protocol.MaxPixels)
                return Fail($"a request out of bounds ({length} bytes, {width} x {height}, {bps} bytes x {spp} samples)");
            if (data.Length < length) data = new byte[length];
            input.ReadExactly(data, 0, length);
            if (pixels.Length < size) pixels = new byte[size];
            var px = pixels.AsSpan(0, (int)size);
            bool ok = JxrLib.Decode(data.AsSpan(0, length), width, height, bps, spp, px, out string? problem, out bool isShort);
            var reply = new byte[8];
            if (ok)
            {
                BinaryPrimitives.WriteInt32LittleEndian(reply, isShort ? Protocol.DecodedShort : Protocol.Decoded);
                BinaryPrimitives.WriteInt32LittleEndian(reply.AsSpan(4), (int)size);
                output.Write(reply);
                output.Write(px);
            }
            else
            {
                var text = Encoding.UTF8.GetBytes(problem ?? "not decoded");
                BinaryPrimitives.WriteInt32LittleEndian(reply, Protocol.NotDecoded);
                BinaryPrimitives.WriteInt32LittleEndian(reply.AsSpan(4), text.Length);
                output.Write(reply);
                output.Write(text);
            }
            output.Flush();
        }
    }

    private static int Fail(string what)
    {
        Console.Error.WriteLine($"actorseg-jxr: {what}");
        return 2;
    }
}
