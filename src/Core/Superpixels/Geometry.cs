namespace ActorSeg.Core.Superpixels;

/// <summary>An axis-aligned pixel rectangle [X, X+W) × [Y, Y+H).</summary>
public readonly record struct PixelRect(int X, int Y, int W, int H)
{
    public int Right => X + W;
    public int Bottom => Y + H;
    public long Area => (long)W * H;
    public bool Contains(int x, int y) => x >= X && x < Right && y >= Y && y < Bottom;
    public override string ToString() => $"{X},{Y} {W}x{H}";
}

/// <summary>One tile: it reads <see cref="Read"/> (core plus halo) and is responsible for exactly the pixels of <see cref="Core"/>.</summary>
public sealed record TileSpec(int Id, int Col, int Row, PixelRect Core, PixelRect Read);

/// <summary>Cuts an image into non-overlapping cores with overlapping read regions.</summary>
public sealed record TilePlan(int Width, int Height, int TileSize, int Halo)
{
    public int Cols => (Width + TileSize - 1) / TileSize;
    public int Rows => (Height + TileSize - 1) / TileSize;
    public int Count => Cols * Rows;
    /// <summary>The largest core any tile has (a full tile, or the whole image when it is smaller).</summary>
    public (int W, int H) LargestCore => (Math.Min(TileSize, Width), Math.Min(TileSize, Height));
    /// <summary>The largest read region any tile has: a full core with the halo on every side, clipped to the image.</summary>
    public (int W, int H) LargestRead => ((int)Math.Min(Width, LargestCore.W + 2L * Halo), (int)Math.Min(Height, LargestCore.H + 2L * Halo));

    public static TilePlan Create(int width, int height, int tileSize, int halo)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"image size {width}x{height} is empty");
        if (tileSize < 8) throw new ArgumentException($"tile size must be >= 8 (got {tileSize})");
        if (halo < 0) throw new ArgumentException($"halo must be >= 0 (got {halo})");
        return new TilePlan(width, height, tileSize, halo);
    }

    public TileSpec Tile(int id)
    {
        int col = id % Cols, row = id / Cols;
        int x = col * TileSize, y = row * TileSize;
        var core = new PixelRect(x, y, Math.Min(TileSize, Width - x), Math.Min(TileSize, Height - y));
        int rx = Math.Max(0, x - Halo), ry = Math.Max(0, y - Halo);
        int rr = Math.Min(Width, core.Right + Halo), rb = Math.Min(Height, core.Bottom + Halo);
        return new TileSpec(id, col, row, core, new PixelRect(rx, ry, rr - rx, rb - ry));
    }

    public IEnumerable<TileSpec> Tiles()
    {
        for (int i = 0; i < Count; i++) yield return Tile(i);
    }
}
