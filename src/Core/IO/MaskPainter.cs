using ActorSeg.Core.Imaging;
using Vips = NetVips;

namespace ActorSeg.Core.IO;

/// <summary>
/// Paints node classes back to pixels through a node-label map, band by band (never the whole image), into a
/// pyramidal tiled BigTIFF mask that QuPath and napari open, and draws a downscaled overlay PNG a person can look at.
/// </summary>
public static class MaskPainter
{
    /// <param name="nodeMap">nodes.tif written by the graph step (uint32 node ids)</param>
    /// <param name="classOfNode">class of every node</param>
    /// <param name="sourceImage">the segmented image: its pixel size (resolution) is carried over to the mask</param>
    public static void Paint(string nodeMap, ReadOnlySpan<byte> classOfNode, string maskPath, IProgress<string>? progress = null, int tile = 256, string? sourceImage = null)
    {
        double xres = 0, yres = 0; // pixels per millimetre, as libvips keeps them
        if (sourceImage is not null)
            using (var src = Vips.Image.NewFromFile(sourceImage, access: Vips.Enums.Access.Sequential)) { xres = src.Xres; yres = src.Yres; }
        using var map = Vips.Image.NewFromFile(nodeMap, access: Vips.Enums.Access.Sequential, failOn: Vips.Enums.FailOn.Error);
        if (map.Format != Vips.Enums.BandFormat.Uint || map.Bands != 1) throw new InputFileException(nodeMap, "not a node-label map (expected one uint32 band)");
        int W = map.Width, H = map.Height;
        // unique temporary names: a re-run of a lost paint task may overlap this one
        var flat = $"{maskPath}.{Guid.NewGuid():N}.flat.tif";
        try
        {
            using (var writer = new TiledTiffWriter(flat, W, H, 1, TiffSampleType.UInt8, tile))
            {
                var buf = new byte[tile * tile];
                int rows = (H + tile - 1) / tile, cols = (W + tile - 1) / tile;
                for (int br = 0; br < rows; br++)
                {
                    int y0 = br * tile, bh = Math.Min(tile, H - y0);
                    uint[] band;
                    using (var crop = map.Crop(0, y0, W, bh)) band = crop.WriteToMemory<uint>();
                    for (int bc = 0; bc < cols; bc++)
                    {
                        Array.Clear(buf);
                        int x0 = bc * tile, bw = Math.Min(tile, W - x0);
                        for (int y = 0; y < bh; y++)
                            for (int x = 0; x < bw; x++)
                            {
                                uint id = band[y * W + x0 + x];
                                if (id >= classOfNode.Length) throw new InputFileException(nodeMap, $"node id {id} at ({x0 + x}, {y0 + y}) but the graph has {classOfNode.Length} nodes");
                                buf[y * tile + x] = classOfNode[(int)id];
                            }
                        writer.WriteTile<byte>(bc, br, buf);
                    }
                    if (progress is not null && rows >= 20 && br % (rows / 10) == 0) progress.Report($"painting {100 * (br + 1) / rows}%");
                }
                writer.Complete();
            }
            // the pyramid, streamed by libvips from the flat tiled file
            var tmp = $"{maskPath}.{Guid.NewGuid():N}.partial.tif";
            using (var flatImg = Vips.Image.NewFromFile(flat, access: Vips.Enums.Access.Sequential))
            {
                // 1 px/mm is libvips' "no resolution"; anything else is the source's pixel size, kept (in pixels per centimetre)
                bool res = xres > 0 && yres > 0 && !(xres == 1 && yres == 1);
                flatImg.Tiffsave(tmp, compression: Vips.Enums.ForeignTiffCompression.Deflate, tile: true, tileWidth: tile, tileHeight: tile,
                    pyramid: true, bigtiff: true, regionShrink: Vips.Enums.RegionShrink.Mode,
                    xres: res ? xres : null, yres: res ? yres : null, resunit: res ? Vips.Enums.ForeignTiffResunit.Cm : null);
            }
            SafePaths.Publish(tmp, maskPath, "mask");
        }
        finally
        {
            if (File.Exists(flat)) File.Delete(flat);
        }
    }

    /// <summary>A downscaled RGB overlay: the image in grey, class 1.. tinted (red, green, blue, ...).</summary>
    public static void Overlay(string imagePath, string maskPath, string pngPath, int maxSide = 1536)
    {
        using var img = Vips.Image.NewFromFile(imagePath, access: Vips.Enums.Access.Sequential);
        double scale = Math.Min(1.0, (double)maxSide / Math.Max(img.Width, img.Height));
        using var grey0 = img.Bands >= 3 ? img.ExtractBand(0, n: 3).Colourspace(Vips.Enums.Interpretation.Bw) : img.ExtractBand(0);
        using var small = grey0.Resize(scale).CopyMemory(); // one streaming pass over the image; the rest works on the small copy
        // stretch to 8 bits between the 1st and 99th percentiles
        double lo = small.Percent(1), hi = small.Percent(99);
        if (hi <= lo) hi = lo + 1;
        using var grey = small.Linear(new[] { 255.0 / (hi - lo) }, new[] { -lo * 255.0 / (hi - lo) }).Cast(Vips.Enums.BandFormat.Uchar);
        using var mask0 = Vips.Image.NewFromFile(maskPath, access: Vips.Enums.Access.Sequential);
        using var mask = mask0.Resize(scale, kernel: Vips.Enums.Kernel.Nearest).CopyMemory();
        using var m = mask.Width == grey.Width && mask.Height == grey.Height ? mask.Copy() : mask.Embed(0, 0, grey.Width, grey.Height);
        using var rgb = grey.Bandjoin(grey, grey).Copy(interpretation: Vips.Enums.Interpretation.Srgb);
        var colours = new[] { new double[] { 255, 40, 40 }, new double[] { 40, 220, 40 }, new double[] { 60, 120, 255 }, new double[] { 255, 200, 0 } };
        Vips.Image result = rgb.Copy();
        for (int c = 1; c <= colours.Length; c++)
        {
            using var sel = m.Equal(c);
            using var tint = (result * 0.5 + colours[c - 1].Select(v => v * 0.5).ToArray()).Cast(Vips.Enums.BandFormat.Uchar);
            var next = sel.Ifthenelse(tint, result);
            result.Dispose();
            result = next;
        }
        // a unique temporary name, renamed into place: a link planted at the destination is replaced, never followed
        var tmp = $"{pngPath}.{Guid.NewGuid():N}.partial.png";
        try
        {
            using (result) result.Pngsave(tmp);
            SafePaths.Publish(tmp, pngPath, "overlay");
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }
}
