using System.Runtime.CompilerServices;

namespace ActorSeg.Core.Graph;

/// <summary>
/// Hashing for (a, b) pairs packed into a long. long.GetHashCode folds the halves with XOR, so packed pairs of
/// nearby ids collide massively; this mixes all 64 bits instead.
/// </summary>
public sealed class PairKey : IEqualityComparer<long>
{
    public static readonly PairKey Instance = new();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Pack(int a, int b) => ((long)a << 32) | (uint)b;

    public bool Equals(long x, long y) => x == y;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int GetHashCode(long k)
    {
        ulong z = (ulong)k * 0x9E3779B97F4A7C15UL;
        return (int)(z >> 32) ^ (int)z;
    }
}
