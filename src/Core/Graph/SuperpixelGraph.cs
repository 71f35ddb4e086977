namespace ActorSeg.Core.Graph;

/// <summary>The global superpixel graph of one image, nodes ordered by their first pixel in raster order.</summary>
public sealed class SuperpixelGraph
{
    public int Width, Height, Channels;
    public int NodeCount;
    /// <summary>Mean superpixel spacing, sqrt(image area / node count): the length scale of the scaled edge weight.</summary>
    public double MeanSpacing;
    public double SeedSpacing;

    public long[] MinLinear = [];
    public int[] Area = [];
    public double[] CentroidX = [];
    public double[] CentroidY = [];
    public int[] BBox = [];             // N × 4: x0, y0, x1, y1 (inclusive)
    public string[] FeatureNames = [];
    public float[] Features = [];       // N × F

    public bool HasLabels;
    public int NumClasses;
    public int[] Label = [];            // -1 = unlabelled
    public int[] ClassHist = [];        // N × NumClasses

    // region adjacency (each unordered pair once, A < B)
    public int[] RagA = [];
    public int[] RagB = [];
    public int[] RagLength = [];
    public float[] RagContrast = [];    // mean |Δz| across the shared boundary, averaged over channels

    // k nearest centroids as published: k+1 nearest including self, symmetrised, deduplicated, sorted by (src, dst)
    public int K;
    public int[] EdgeSrc = [];
    public int[] EdgeDst = [];
    public float[] EdgeDist = [];

    public int FeatureCount => FeatureNames.Length;
}
