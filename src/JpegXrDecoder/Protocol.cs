namespace ActorSeg.JpegXrDecoder;

/// <summary>What actorseg-jxr and the process that starts it (ActorSeg.Core's JpegXr) agree on; see Program.cs.</summary>
public static class Protocol
{
    /// <summary>"AJXR", read as a little-endian uint32.</summary>
    public const uint Magic = 0x52584A41;
    public const int RequestHeader = 24;
    public const int Decoded = 0, DecodedShort = 1, NotDecoded = 2;
    /// <summary>The most compressed bytes and decoded bytes one request may carry (a CZI subblock's are bounded below both).</summary>
    public const int MaxData = 1 << 30, MaxPixels = int.MaxValue;
}
