namespace ActorSeg.Core.Graph;

/// <summary>Per value plane (raw channels, then derived planes): the offset and scale that put its values in z units.</summary>
public sealed record PlaneNorms(double[] Mean, double[] InvStd)
{
    public int Count => Mean.Length;
}
