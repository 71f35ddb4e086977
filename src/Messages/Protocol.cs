namespace ActorSeg.Messages;

// The messages that move between ActorSeg's roles. They never carry pixels or large arrays: images, partial
// graphs and outputs live in shared storage and messages carry references (paths) to them.

/// <summary>What a graph job is asked to do (flat, primitive fields so it can cross the network).</summary>
public sealed record GraphJobSpec(
    string ImagePath,
    string? MaskPath,
    string OutDir,
    int Page = 0,
    string MaskMode = "binary",
    int? IgnoreValue = null,
    int? Segments = null,
    double Spacing = 40.96,
    double Compactness = 0.1,
    double Sigma = 1.0,
    int Iterations = 10,
    double WindowFactor = 1.0,
    double MinSizeFactor = 0.1,
    int TileSize = 2048,
    int? Halo = null,
    int K = 10,
    bool WriteNodeMap = true,
    bool KeepWork = false,
    string Features = "texture");

/// <summary>Client → coordinator: build the graph of one image.</summary>
public sealed record SubmitGraphJob(string JobId, GraphJobSpec Spec);

/// <summary>Coordinator → client: the job's inputs were read and its tiles planned.</summary>
public sealed record GraphJobAccepted(string JobId, string ImageId, int Width, int Height, int Channels, int Tiles, int Halo, int Seeds);

/// <summary>Coordinator → client: how far the job has come.</summary>
public sealed record GraphJobProgress(string JobId, string Phase, int TilesDone, int TilesTotal, double MegapixelsPerSecond);

/// <summary>Coordinator → client: the graph is written.</summary>
public sealed record GraphJobCompleted(string JobId, string OutDir, int Nodes, int AdjacencyEdges, int KnnEdges,
    double PrepareSeconds, double TilesSeconds, double StitchSeconds, double WriteSeconds, int Retries);

/// <summary>Coordinator → client: the job failed; nothing that looks complete was left behind.</summary>
public sealed record GraphJobFailed(string JobId, string Error);

/// <summary>Worker → coordinator: I can take <paramref name="FreeSlots"/> more tiles (pull-based distribution).</summary>
public sealed record RequestWork(int FreeSlots);

/// <summary>Coordinator → worker: process one tile of a job, described by the job manifest at <paramref name="ManifestPath"/>.</summary>
public sealed record TileAssignment(string JobId, string ImageId, string ManifestPath, int TileId, int Attempt);

/// <summary>Worker → coordinator: a tile's partial graph and label raster are written.</summary>
public sealed record TileCompleted(string JobId, int TileId, int Attempt, string ResultPath, string LabelsPath,
    int Fragments, int ShippedFragments, long Pixels, double Seconds);

/// <summary>Worker → coordinator: a tile failed. <paramref name="Permanent"/> when retrying cannot help (bad input).</summary>
public sealed record TileFailed(string JobId, int TileId, int Attempt, string Error, bool Permanent);
