using System.Buffers.Binary;
using System.Text;
using ActorSeg.JpegXrDecoder;

// actorseg-jxr: decodes JPEG XR images for the process that started it, one at a time, until its standard input ends.
//   request:  "AJXR", then little-endian int32s: data length, width, height, bytes per sample, samples per pixel; the data
//   response: int32 status (0 decoded, 1 decoded but the image was smaller: the rest is 0, 2 not decoded), int32 length,
//             then that many bytes: the pixels (width × height × samples × bytes, B, G, R for colour), or the problem
//             in UTF-8
// Nothing else is written to standard output. A request that breaks the protocol ends the process with exit code 2.
var input = Console.OpenStandardInput();
var output = Console.OpenStandardOutput();
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

static int Fail(string what)
{
    Console.Error.WriteLine($"actorseg-jxr: {what}");
    return 2;
}
