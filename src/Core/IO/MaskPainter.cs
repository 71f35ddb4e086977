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
    /// <param name="classTable">names and colours of the classes, for the OME-XML (default: background, class 1, …)</param>
    /// <param name="probabilityOfNode">per node, the byte to paint into <paramref name="probabilityPath"/> (see <see cref="WinningProbabilities"/>)</param>
    /// <param name="probabilityPath">where the probability map goes (prob.tif beside the mask), painted in the same pass: a
    /// pyramidal tiled BigTIFF (uint8, the image's pixel size, coarser levels the mean of each 2×2 block); null: none</param>
    /// <param name="refine">the boundary refinement over this image and node map: the pixels of its flagged nodes are painted
    /// with its per-pixel classes (and probabilities); null: every pixel takes its node's class</param>
    /// <returns>pixels painted with each class (index = class id)</returns>
    public static long[] Paint(string nodeMap, ReadOnlySpan<byte> classOfNode, string maskPath, IProgress<string>? progress = null, int tile = 256, string? sourceImage = null,
        IReadOnlyList<ClassInfo>? classTable = null, ReadOnlySpan<byte> probabilityOfNode = default, string? probabilityPath = null, Refine.RefineBlocks? refine = null,
        int series = -1)
    {
        var counts = new long[256];
        if (probabilityPath is not null && probabilityOfNode.Length != classOfNode.Length)
            throw new ArgumentException($"{probabilityOfNode.Length} node probabilities for {classOfNode.Length} nodes");
        double xres = 0, yres = 0; // pixels per millimetre, as libvips keeps them
        using var map = Vips.Image.NewFromFile(nodeMap, access: Vips.Enums.Access.Sequential, failOn: Vips.Enums.FailOn.Error);
        // the microns per pixel of the level the job read (a whole slide's or an OME-TIFF pyramid's; else the image's own:
        // an OME-TIFF's PhysicalSize, else the resolution tags)
        if (sourceImage is not null && LevelScale(sourceImage, map.Width, map.Height, series) is (double mx, double my, var dx, var dy))
        {
            xres = 1000.0 / (mx * dx); yres = 1000.0 / (my * dy);
        }
        if (map.Format != Vips.Enums.BandFormat.Uint || map.Bands != 1) throw new InputFileException(nodeMap, "not a node-label map (expected one uint32 band)");
        int W = map.Width, H = map.Height;
        // unique temporary names: a re-run of a lost paint task may overlap this one
        var flat = $"{maskPath}.{Guid.NewGuid():N}.flat.tif";
        var flatProb = probabilityPath is null ? null : $"{probabilityPath}.{Guid.NewGuid():N}.flat.tif";
        bool res = xres > 0 && yres > 0 && !(xres == 1 && yres == 1); // 1 px/mm is libvips' "no resolution"
        try
        {
            using (var writer = new TiledTiffWriter(flat, W, H, 1, TiffSampleType.UInt8, tile))
            using (var probWriter = flatProb is null ? null : new TiledTiffWriter(flatProb, W, H, 1, TiffSampleType.UInt8, tile))
            {
                var buf = new byte[tile * tile];
                var probBuf = probWriter is null ? null : new byte[tile * tile];
                int cols0 = (W + tile - 1) / tile;
                // with the refinement, a band's tiles are refined on every core, then written in order
                var refined = refine is null ? null : Enumerable.Range(0, cols0).Select(_ => new byte[tile * tile]).ToArray();
                var refinedProb = refine is null || probBuf is null ? null : Enumerable.Range(0, cols0).Select(_ => new byte[tile * tile]).ToArray();
                int rows = (H + tile - 1) / tile, cols = (W + tile - 1) / tile;
                for (int br = 0; br < rows; br++)
                {
                    int y0 = br * tile, bh = Math.Min(tile, H - y0);
                    uint[] band = [];
                    if (refine is null) using (var crop = map.Crop(0, y0, W, bh)) band = crop.WriteToMemory<uint>();
                    else refine.PaintBand(y0, bh, tile, refined!, refinedProb);
                    for (int bc = 0; bc < cols; bc++)
                    {
                        Array.Clear(buf);
                        if (probBuf is not null) Array.Clear(probBuf);
                        int x0 = bc * tile, bw = Math.Min(tile, W - x0);
                        if (refine is not null)
                        {
                            // the refined classes of this tile (painted above, each with its own reads and the refiner's halo)
                            for (int y = 0; y < bh; y++)
                            {
                                refined![bc].AsSpan(y * bw, bw).CopyTo(buf.AsSpan(y * tile, bw));
                                if (probBuf is not null) refinedProb![bc].AsSpan(y * bw, bw).CopyTo(probBuf.AsSpan(y * tile, bw));
                            }
                        }
                        else for (int y = 0; y < bh; y++)
                            for (int x = 0; x < bw; x++)
                            {
                                uint id = band[y * W + x0 + x];
                                if (id == GraphOutputs.NoNode) continue; // glass outside the tissue: background
                                if (id >= classOfNode.Length) throw new InputFileException(nodeMap, $"node id {id} at ({x0 + x}, {y0 + y}) but the graph has {classOfNode.Length} nodes");
                                buf[y * tile + x] = classOfNode[(int)id];
                                if (probBuf is not null) probBuf[y * tile + x] = probabilityOfNode[(int)id];
                            }
                        for (int y = 0; y < bh; y++) foreach (var c in buf.AsSpan(y * tile, bw)) counts[c]++;
                        writer.WriteTile<byte>(bc, br, buf);
                        if (probBuf is not null) probWriter!.WriteTile<byte>(bc, br, probBuf);
                    }
                    if (progress is not null && rows >= 20 && br % (rows / 10) == 0) progress.Report($"painting {100 * (br + 1) / rows}%");
                }
                writer.Complete();
                probWriter?.Complete();
            }
            // the pyramid, streamed by libvips from the flat tiled file
            var tmp = $"{maskPath}.{Guid.NewGuid():N}.partial.tif";
            using (var flatImg = Vips.Image.NewFromFile(flat, access: Vips.Enums.Access.Sequential))
            {
                // the source's pixel size, when it has one, is kept (in pixels per centimetre)
                flatImg.Tiffsave(tmp, compression: Vips.Enums.ForeignTiffCompression.Deflate, tile: true, tileWidth: tile, tileHeight: tile,
                    pyramid: true, bigtiff: true, regionShrink: Vips.Enums.RegionShrink.Mode,
                    xres: res ? xres : null, yres: res ? yres : null, resunit: res ? Vips.Enums.ForeignTiffResunit.Cm : null);
            }
            SafePaths.Publish(tmp, maskPath, "mask");
            // the same mask as OME-TIFF for QuPath, napari and Fiji: SubIFD pyramid, OME-XML with the pixel size and the classes
            int classes = 1;
            foreach (var c in classOfNode) if (c + 1 > classes) classes = c + 1;
            for (int c = 0; c < counts.Length; c++) if (counts[c] > 0 && c + 1 > classes) classes = c + 1;
            var ome = OmePath(maskPath);
            var tmpOme = $"{ome}.{Guid.NewGuid():N}.partial.tif";
            using (var flatImg = Vips.Image.NewFromFile(flat, access: Vips.Enums.Access.Sequential))
            using (var described = flatImg.Mutate(m => m.Set(Vips.GValue.GStrType, "image-description",
                       OmeXml(W, H, xres > 0 && !(xres == 1 && yres == 1) ? 1000.0 / xres : null, yres > 0 && !(xres == 1 && yres == 1) ? 1000.0 / yres : null,
                           classTable is { Count: > 0 } t && t.Count >= classes ? t : ClassTable.Default(classes)))))
            {
                described.Tiffsave(tmpOme, compression: Vips.Enums.ForeignTiffCompression.Deflate, tile: true, tileWidth: tile, tileHeight: tile,
                    pyramid: true, subifd: true, bigtiff: true, regionShrink: Vips.Enums.RegionShrink.Mode);
            }
            SafePaths.Publish(tmpOme, ome, "OME-TIFF mask");
            if (flatProb is not null)
            {
                // the probability map: the mean of each 2×2 block in the coarser levels (a confidence, not a label)
                var tmpProb = $"{probabilityPath}.{Guid.NewGuid():N}.partial.tif";
                try
                {
                    using var flatImg = Vips.Image.NewFromFile(flatProb, access: Vips.Enums.Access.Sequential);
                    flatImg.Tiffsave(tmpProb, compression: Vips.Enums.ForeignTiffCompression.Deflate, tile: true, tileWidth: tile, tileHeight: tile,
                        pyramid: true, bigtiff: true, regionShrink: Vips.Enums.RegionShrink.Mean,
                        xres: res ? xres : null, yres: res ? yres : null, resunit: res ? Vips.Enums.ForeignTiffResunit.Cm : null);
                    SafePaths.Publish(tmpProb, probabilityPath!, "probability map");
                }
                finally { if (File.Exists(tmpProb)) File.Delete(tmpProb); }
            }
        }
        finally
        {
            if (flatProb is not null && File.Exists(flatProb)) File.Delete(flatProb);
            foreach (var t in Directory.GetFiles(Path.GetDirectoryName(Path.GetFullPath(maskPath))!, Path.GetFileName(OmePath(maskPath)) + ".*.partial.tif")) File.Delete(t);
            if (File.Exists(flat)) File.Delete(flat);
        }
        int last = 255;
        while (last > 0 && counts[last] == 0) last--;
        return counts[..(last + 1)];
    }

    /// <summary>
    /// Per node, the byte the probability map holds: the probability the model gave the node's painted class (its
    /// winning class), times 255, rounded to the nearest integer. <paramref name="probabilities"/> is N × C, row per node
    /// (probs.f32). A value q reads as probability q / 255 (± 0.002); glass outside the tissue, which has no node, is 0.
    /// </summary>
    public static byte[] WinningProbabilities(ReadOnlySpan<byte> classOfNode, ReadOnlySpan<float> probabilities, int classes)
    {
        if (classes < 1 || probabilities.Length != (long)classOfNode.Length * classes)
            throw new ArgumentException($"{probabilities.Length} probabilities are not {classes} per node for {classOfNode.Length} nodes");
        var b = new byte[classOfNode.Length];
        for (int v = 0; v < b.Length; v++)
        {
            int c = classOfNode[v];
            if (c >= classes) throw new ArgumentException($"node {v} has class {c}, but the probabilities cover {classes} classes");
            float p = probabilities[v * classes + c];
            b[v] = ProbabilityByte(p);
        }
        return b;
    }

    /// <summary>A probability as prob.tif holds it: × 255, rounded to the nearest integer (halves away from zero).</summary>
    public static byte ProbabilityByte(float p) => (byte)Math.Clamp((int)MathF.Round(p * 255f, MidpointRounding.AwayFromZero), 0, 255);

    /// <summary>A downscaled RGB overlay: the image in grey, class 1.. tinted (red, green, blue, ...).</summary>
    /// <param name="series">a CZI's scene or a LIF's image (<see cref="ImageSources.Open"/>)</param>
    public static void Overlay(string imagePath, string maskPath, string pngPath, int maxSide = 1536, IReadOnlyList<ClassInfo>? classTable = null, int series = -1)
    {
        using var mask0 = Vips.Image.NewFromFile(maskPath, access: Vips.Enums.Access.Sequential);
        double scale = Math.Min(1.0, (double)maxSide / Math.Max(mask0.Width, mask0.Height));
        using var small = Preview(imagePath, mask0.Width, mask0.Height, scale, series); // one streaming pass over the image; the rest works on the small copy
        // stretch to 8 bits between the 1st and 99th percentiles
        double lo = small.Percent(1), hi = small.Percent(99);
        if (hi <= lo) hi = lo + 1;
        using var grey = small.Linear(new[] { 255.0 / (hi - lo) }, new[] { -lo * 255.0 / (hi - lo) }).Cast(Vips.Enums.BandFormat.Uchar);
        using var mask = mask0.Resize(scale, kernel: Vips.Enums.Kernel.Nearest).CopyMemory();
        using var m = mask.Width == grey.Width && mask.Height == grey.Height ? mask.Copy() : mask.Embed(0, 0, grey.Width, grey.Height);
        using var rgb = grey.Bandjoin(grey, grey).Copy(interpretation: Vips.Enums.Interpretation.Srgb);
        var table = classTable is { Count: > 1 } ct ? ct : ClassTable.Default(5);
        var colours = table.Skip(1).Select(c => ClassTable.Rgb(c.Color)).ToArray();
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
        using (result) SafePaths.WriteByName(pngPath, ".png", tmp => result.Pngsave(tmp), "overlay");
    }

    /// <summary>
    /// The scale of a mask of <paramref name="width"/> x <paramref name="height"/> painted from <paramref name="sourceImage"/>:
    /// µm per level-0 pixel (null when unknown) and level-0 pixels per mask pixel (a whole slide's level downsample, a
    /// SubIFD pyramid level's size against level 0's, else 1).
    /// </summary>
    public static (double? MppX, double? MppY, double DownsampleX, double DownsampleY) LevelScale(string sourceImage, int width, int height, int series = -1)
    {
        if (SlideLevel(sourceImage, width, height) is { } lv)
        {
            using var slide = lv.Slide;
            return (slide.MppX, slide.MppY, lv.Downsample, lv.Downsample); // the slide's own level downsample, as OpenSlide and QuPath map levels
        }
        var um = PixelSize.MicronsPerPixel(sourceImage, 0, series); // an OME-TIFF's PhysicalSize, a CZI's Scaling, a LIF image's size, else the resolution tags
        // a reduced level of a TIFF pyramid kept in SubIFDs (an OME-TIFF's): level-0 pixels per mask pixel, as for slides
        if (ImageSources.PyramidLevels(sourceImage, series) is { Length: > 1 } levels && Array.FindIndex(levels, l => l.Width == width && l.Height == height) is > 0 and var k)
        {
            var (dx, dy) = ImageSources.Downsample(levels, k);
            return (um?.X, um?.Y, dx, dy);
        }
        return (um?.X, um?.Y, 1, 1);
    }

    /// <summary><see cref="LevelScale"/> for a mask file painted from <paramref name="sourceImage"/>.</summary>
    public static (double? MppX, double? MppY, double DownsampleX, double DownsampleY) LevelScaleOfMask(string sourceImage, string maskPath, int series = -1)
    {
        int w, h;
        using (var m = Vips.Image.NewFromFile(maskPath, access: Vips.Enums.Access.Sequential)) { w = m.Width; h = m.Height; }
        return LevelScale(sourceImage, w, h, series);
    }

    /// <summary>A whole slide opened at the level whose size is <paramref name="width"/> x <paramref name="height"/> (the level a job read), or null for other images.</summary>
    private static (OpenSlideSource Slide, int Level, double Downsample)? SlideLevel(string image, int width, int height)
    {
        if (!ImageSources.IsSlide(image)) return null;
        var s = OpenSlideSource.Open(image, direct: false); // its levels only
        for (int l = 0; l < s.Levels.Count; l++)
            if (s.Levels[l].Width == width && s.Levels[l].Height == height) return (s, l, s.Levels[l].Downsample);
        s.Dispose();
        throw new InputFileException(image, $"no level of this slide is {width}x{height}, the size of the mask");
    }

    /// <summary>The image, grey, at <paramref name="scale"/> of its <paramref name="width"/> x <paramref name="height"/> size, in memory.
    /// A whole slide is read from the coarsest pyramid level that is still at least that large, never from level 0.</summary>
    public static Vips.Image Preview(string imagePath, int width, int height, double scale, int series = -1)
    {
        int tw = Math.Max(1, (int)Math.Round(width * scale)), th = Math.Max(1, (int)Math.Round(height * scale));
        if (SlideLevel(imagePath, width, height) is not { } lv)
        {
            // an OME-TIFF pyramid: its smallest level that is still as large as the preview (a mask painted at a reduced
            // level is that level's size, not the image's)
            var (levels, subIfds) = ImageSources.Pyramid(imagePath, series);
            int level = levels.Length > 1 ? ImageSources.CoarsestAtLeast(levels, 0, tw, th) : 0;
            if (!OmeChannels.IsCompanion(imagePath)) // (a companion file holds no pixels of its own)
                try
                {
                    var opts = new Vips.VOption();
                    if (level > 0) opts.Add(subIfds ? "subifd" : "page", subIfds ? level - 1 : level);
                    using var img = Vips.Image.NewFromFile(imagePath, access: Vips.Enums.Access.Sequential, kwargs: opts);
                    using var grey0 = GreyPreview(img);
                    return grey0.Resize((double)tw / img.Width, vscale: (double)th / img.Height).CopyMemory();
                }
                catch (Vips.VipsException) { /* below */ }
            // a layout libvips does not decode but ActorSeg's own reader does (tiled separate planes), or a companion's
            // files: the same grey preview, from bands of rows read through it
            return PreviewByRegions(imagePath, level, tw, th, series);
        }
        int pick = ImageSources.CoarsestAtLeast(lv.Slide.Levels.Select(l => (l.Width, l.Height)).ToArray(), lv.Level, tw, th);
        lv.Slide.Dispose();
        using var s = OpenSlideSource.Open(imagePath, pick);
        var px = new ushort[(long)s.Width * s.Height * 3];
        s.ReadRegion(0, 0, s.Width, s.Height, px);
        var bytes = new byte[px.Length];
        for (int i = 0; i < px.Length; i++) bytes[i] = (byte)px[i];
        using var rgb = Vips.Image.NewFromMemory(bytes, s.Width, s.Height, 3, Vips.Enums.BandFormat.Uchar).Copy(interpretation: Vips.Enums.Interpretation.Srgb);
        using var grey = rgb.Colourspace(Vips.Enums.Interpretation.Bw);
        return grey.Resize((double)tw / s.Width, vscale: (double)th / s.Height).CopyMemory();
    }

    /// <summary>A <paramref name="tw"/> × <paramref name="th"/> grey preview (the mean of the channels, box-averaged) read
    /// through <see cref="ImageSources"/> in bands of rows, never the whole image at once.</summary>
    private static Vips.Image PreviewByRegions(string imagePath, int level, int tw, int th, int series)
    {
        using var src = ImageSources.Open(imagePath, level, series);
        int W = src.Width, H = src.Height, C = src.Channels;
        var sum = new double[(long)tw * th];
        var count = new long[(long)tw * th];
        var cellOfX = new int[W];
        for (int x = 0; x < W; x++) cellOfX[x] = (int)Math.Min(tw - 1, (long)x * tw / W);
        int band = (int)Math.Clamp((1 << 22) / Math.Max(1, (long)W * C), 1, H);
        var buf = new ushort[(long)W * band * C];
        for (int y0 = 0; y0 < H; y0 += band)
        {
            int h = Math.Min(band, H - y0);
            src.ReadRegion(0, y0, W, h, buf.AsSpan(0, W * h * C));
            for (int r = 0; r < h; r++)
            {
                long rowCell = Math.Min(th - 1, (long)(y0 + r) * th / H) * tw;
                for (int x = 0, i = r * W * C; x < W; x++)
                {
                    int v = 0;
                    for (int c = 0; c < C; c++) v += buf[i++];
                    sum[rowCell + cellOfX[x]] += (double)v / C;
                    count[rowCell + cellOfX[x]]++;
                }
            }
        }
        var px = new ushort[sum.Length];
        for (long k = 0; k < px.Length; k++) px[k] = count[k] > 0 ? (ushort)Math.Round(sum[k] / count[k]) : (ushort)0;
        return Vips.Image.NewFromMemory(px, tw, th, 1, Vips.Enums.BandFormat.Ushort).CopyMemory();
    }

    /// <summary>One grey band of an image for a preview: the luminance of a colour image (RGB, with or without alpha), the
    /// mean of the bands of any other (two or four fluorescence channels, three stored as minisblack samples), the band
    /// itself of a grey one.</summary>
    internal static Vips.Image GreyPreview(Vips.Image img)
    {
        if (img.Bands == 1) return img.Copy();
        bool colour = img.Interpretation is Vips.Enums.Interpretation.Srgb or Vips.Enums.Interpretation.Rgb16 or Vips.Enums.Interpretation.Rgb
            or Vips.Enums.Interpretation.Scrgb;
        if (colour && img.Bands >= 3)
        {
            using var rgb = img.ExtractBand(0, n: 3);
            return rgb.Colourspace(img.Interpretation == Vips.Enums.Interpretation.Rgb16 ? Vips.Enums.Interpretation.Grey16 : Vips.Enums.Interpretation.Bw);
        }
        return img.Bandmean();
    }

    /// <summary>mask.tif → mask.ome.tif beside it.</summary>
    public static string OmePath(string maskPath) => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(maskPath))!, Path.GetFileNameWithoutExtension(maskPath) + ".ome.tif");

    /// <summary>OME-XML for one plane of labels: a class-id mask (uint8, with the classes' names and colours as a map
    /// annotation) or another label image such as the node map (<paramref name="pixelType"/> uint32, no classes), with the
    /// physical pixel size in µm when known.</summary>
    public static string OmeXml(int width, int height, double? umX, double? umY, IReadOnlyList<ClassInfo>? classes,
        string pixelType = "uint8", string channelName = "class", string imageName = "segmentation")
    {
        var I = System.Globalization.CultureInfo.InvariantCulture;
        string size = umX is { } x && umY is { } y ? string.Format(I, " PhysicalSizeX=\"{0:R}\" PhysicalSizeXUnit=\"µm\" PhysicalSizeY=\"{1:R}\" PhysicalSizeYUnit=\"µm\"", x, y) : "";
        string Esc(string v) => System.Security.SecurityElement.Escape(v);
        string annotationRef = "", annotations = "";
        if (classes is not null)
        {
            var map = new System.Text.StringBuilder();
            foreach (var c in classes)
                map.Append(I, $"<M K=\"{c.Id}\">{Esc(c.Name)} {c.Color}</M>");
            annotationRef = "\n    <AnnotationRef ID=\"Annotation:Classes\"/>";
            annotations = $"\n  <StructuredAnnotations>\n    <MapAnnotation ID=\"Annotation:Classes\" Namespace=\"actorseg/classes\"><Value>{map}</Value></MapAnnotation>\n  </StructuredAnnotations>";
        }
        return $"""
            <?xml version="1.0" encoding="UTF-8"?>
            <OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.openmicroscopy.org/Schemas/OME/2016-06 http://www.openmicroscopy.org/Schemas/OME/2016-06/ome.xsd" Creator="ActorSeg">
              <Image ID="Image:0" Name="{Esc(imageName)}">
                <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="{pixelType}" SizeX="{width}" SizeY="{height}" SizeC="1" SizeZ="1" SizeT="1"{size}>
                  <Channel ID="Channel:0:0" Name="{Esc(channelName)}" SamplesPerPixel="1"/>
                  <TiffData IFD="0" PlaneCount="1"/>
                </Pixels>{annotationRef}
              </Image>{annotations}
            </OME>
            """;
    }
}
