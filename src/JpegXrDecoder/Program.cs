using ActorSeg.JpegXrDecoder;

// actorseg-jxr: decodes JPEG XR images for the process that started it, one at a time, until its standard input ends.
//   request:  "AJXR", then little-endian int32s: data length, width, height, bytes per sample, samples per pixel; the data
//   response: int32 status (0 decoded, 1 decoded but the image was smaller: the rest is 0, 2 not decoded), int32 length,
//             then that many bytes: the pixels (width × height × samples × bytes, B, G, R for colour), or the problem
//             in UTF-8
// Nothing else is written to standard output. A request that breaks the protocol ends the process with exit code 2.
return DecoderLoop.Run(Console.OpenStandardInput(), Console.OpenStandardOutput());
