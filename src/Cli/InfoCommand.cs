using System.CommandLine;
using System.Globalization;
using ActorSeg.Core.Imaging;
using Serilog;

namespace ActorSeg.Cli;

/// <summary><c>actorseg info IMAGE</c>: what an image or whole slide is, as ActorSeg reads it.</summary>
public static class InfoCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var image = new Argument<string>("IMAGE") { Description = "An image (TIFF, OME-TIFF, PNG, JPEG) or a whole slide (SVS, NDPI, MRXS, SCN, … through OpenSlide)." };
        var series = GraphCommand.SeriesOption();
        var cmd = new Command("info", "Describe an image or whole slide: format or vendor, pyramid levels with their size, downsample and microns per pixel, and the slide's properties; a CZI's scenes and a LIF's images.") { image, series };
        cmd.SetAction((pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            var path = Path.GetFullPath(pr.GetValue(image)!);
            try { Console.Write(Describe(path, pr.GetValue(series) ?? -1)); return Task.FromResult(ExitCodes.Ok); }
            catch (InputFileException e) { Log.Error("{Error}", e.Message); return Task.FromResult(ExitCodes.Failed); }
        });
        return cmd;
    }

    /// <summary>The pixel size the image states (<see cref="PixelSize.MicronsPerPixel"/>: OME-XML, resolution tags, ImageJ's unit), in words.</summary>
    private static string Microns(string path, int series = -1)
    {
        var I = CultureInfo.InvariantCulture;
        try { return PixelSize.MicronsPerPixel(path, 0, series) is { } um ? string.Format(I, "{0:0.#####} x {1:0.#####}", um.X, um.Y) : "unknown (the file states none)"; }
        catch (Exception e) when (e is InputFileException or NetVips.VipsException or IOException) { return $"unknown ({e.Message.Split('\n')[0]})"; }
    }

    /// <summary>The listing of a file's images (a LIF's, a CZI's scenes), at most 100 lines.</summary>
    private static void Series(System.Text.StringBuilder sb, string heading, IEnumerable<string> lines, int count)
    {
        if (count < 2) return;
        sb.AppendLine(heading);
        foreach (var line in lines.Take(100)) sb.Append("  ").AppendLine(line);
        if (count > 100) sb.AppendLine(CultureInfo.InvariantCulture, $"  … and {count - 100} more");
    }

    /// <param name="series">a CZI's scene or a LIF's image to describe (−1: what is read by default)</param>
    public static string Describe(string path, int series = -1)
    {
        var sb = new System.Text.StringBuilder();
        var I = CultureInfo.InvariantCulture;
        if (LifSource.IsLif(path))
        {
            using var l = LifSource.Open(path, 0, series);
            sb.AppendLine(I, $"file: {path}");
            sb.AppendLine(I, $"format: Leica LIF (read by ActorSeg: {(series < 0 ? "the first" : $"image {series}")} of its {l.Images} image(s), at the first index of every dimension but X and Y)");
            sb.AppendLine(I, $"image: {l.ImageName}");
            sb.AppendLine(I, $"size: {l.Width} x {l.Height}, {l.Channels} channel(s), {l.BitDepth}-bit (samples of {string.Join(", ", l.ChannelBits.Distinct())} bits)");
            sb.AppendLine(I, $"microns per pixel: {Microns(path, series)}");
            if (l.OtherDimensions.Count > 0) sb.AppendLine(I, $"other dimensions (the first index read): {string.Join(", ", l.OtherDimensions.Select(d => $"{d.Count} {d.Name}"))}");
            Series(sb, "images (--series N reads image N):", l.ImageList.Select((m, i) => string.Create(I, $"{i}: {m.Name}, {m.Width} x {m.Height}")), l.Images);
            return sb.ToString();
        }
        if (CziSource.IsCzi(path))
        {
            using var c = CziSource.Open(path, 0, series);
            sb.AppendLine(I, $"file: {path}");
            sb.AppendLine(I, $"format: Zeiss CZI (read by ActorSeg: the first focal plane and time point{(series < 0 ? "" : $", scene {series} alone")})");
            sb.AppendLine(I, $"size: {c.Width} x {c.Height}, {c.Channels} channel(s), {c.BitDepth}-bit ({c.PixelType}{(c.Origin is (0, 0) ? "" : $"; its top-left pixel at {c.Origin.X},{c.Origin.Y} in the file's coordinates")})");
            sb.AppendLine(I, $"microns per pixel: {Microns(path, series)}");
            sb.AppendLine(I, $"subblocks read: {c.Subblocks} ({string.Join(", ", c.Compressions)}); scenes in the file: {c.Scenes}{(c.Scenes < 2 ? "" : series >= 0 ? $" (scene {series} read)" : c.ScenesRead > 1 ? " (parts of one slide: read together)" : " (far apart: the first is read)")}");
            if (c.ChannelNames.Count > 0) sb.AppendLine(I, $"channels: {string.Join(", ", c.ChannelNames)}");
            Levels(sb, path, "levels (--level; the reduced ones are the pyramid's subsampled subblocks):", series);
            Series(sb, "scenes (--series N reads scene N alone):", c.SceneList.Select((sc, i) => string.Create(I, $"{i}: S={sc.S}, {sc.Width} x {sc.Height}")), c.Scenes);
            return sb.ToString();
        }
        ImageSources.CheckOneImage(path, series);
        if (ImageSources.IsSlide(path))
        {
            using var s = OpenSlideSource.Open(path);
            sb.AppendLine(I, $"file: {path}");
            sb.AppendLine(I, $"vendor: {s.Vendor} (opened through OpenSlide)");
            sb.AppendLine(I, $"level 0 pixels: read through {(s.DirectReader == "libvips" ? "libvips from the TIFF page (the same samples as OpenSlide on probe regions, about twice as fast)" : "OpenSlide")}");
            sb.AppendLine(I, $"microns per pixel: {(s.MppX is { } x ? x.ToString("0.####", I) : "unknown")} x {(s.MppY is { } y ? y.ToString("0.####", I) : "unknown")} (level 0)");
            sb.AppendLine("levels:");
            for (int l = 0; l < s.Levels.Count; l++)
            {
                var (w, h, d) = s.Levels[l];
                string mpp = s.MppX is { } m0 ? $", {m0 * d:0.####} µm/px" : "";
                sb.AppendLine(I, $"  {l}: {w} x {h}, downsample {d:0.###}{mpp}");
            }
            sb.AppendLine("properties:");
            foreach (var (k, v) in s.Properties.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                sb.AppendLine(I, $"  {k} = {v.ReplaceLineEndings(" ")}");
            return sb.ToString();
        }
        if (OmeChannels.IsCompanion(path))
        {
            using var set = ImageSources.Open(path);
            sb.AppendLine(I, $"file: {path}");
            sb.AppendLine(I, $"format: OME companion file (the OME-XML of a multi-file set; its pixels are in the TIFF files it names beside it)");
            sb.AppendLine(I, $"size: {set.Width} x {set.Height}, {set.Channels} channel(s), {set.BitDepth}-bit");
            sb.AppendLine(I, $"microns per pixel: {Microns(path)}");
            string planes = set is MultiPageSource sm
                ? $"OME-TIFF channels: {sm.Channels}, on pages {string.Join(", ", sm.Planes.Select(p => $"{p.Page} of {p.File}"))} (the first focal plane and time point), read together as one {sm.Channels}-channel image"
                : $"its one plane: {(set is VipsImageSource v ? v.Path : "")}";
            sb.AppendLine(planes);
            Levels(sb, path);
            return sb.ToString();
        }
        using var img = VipsImageSource.Open(path);
        sb.AppendLine(I, $"file: {path}");
        sb.AppendLine(I, $"format: {img.Loader} (read through libvips), {img.Pages} page(s)");
        using var whole = ImageSources.Open(path);
        // the channels as read: an OME-TIFF's or ImageJ hyperstack's channel pages together, not page 0's alone
        sb.AppendLine(I, $"size: {img.Width} x {img.Height}, {whole.Channels} channel(s), {img.BitDepth}-bit{(img.SignedShift > 0 ? $" (signed samples, read shifted by +{img.SignedShift})" : "")}{(img.ScaledRange is { } r ? $" (32-bit samples, read spread over 0..65535 from {string.Join(", ", r.Select(x => $"{x.Min:G6}..{x.Max:G6}"))})" : "")}");
        sb.AppendLine(I, $"microns per pixel: {Microns(path)}");
        if (whole is MultiPageSource m)
            sb.AppendLine(I, $"{(m.MappedBy == "OME-XML" ? "OME-TIFF" : "ImageJ hyperstack")} channels: {m.Channels}, {(m.Planes.Any(p => p.Contiguous) ? $"planes 0 to {m.Channels - 1} stored one after another from page 0 (ImageJ's layout for stacks over 4 GB)" : $"on pages {string.Join(", ", m.Planes.Select(p => p.File is null ? $"{p.Page}" : $"{p.Page} of {p.File}"))}")} (the first focal plane and time point), read together as one {m.Channels}-channel image");
        Levels(sb, path);
        return sb.ToString();
    }

    /// <summary>A pyramid's levels (an OME-TIFF's SubIFDs or pages, a CZI's subsampled subblocks), which --level and --mpp
    /// choose from; nothing for other images. <paramref name="heading"/> says what the reduced levels are, where the
    /// pyramid's kind does not (a CZI's).</summary>
    private static void Levels(System.Text.StringBuilder sb, string path, string? heading = null, int series = -1)
    {
        var I = CultureInfo.InvariantCulture;
        var (levels, subIfds) = ImageSources.Pyramid(path, series);
        if (levels.Length < 2) return;
        var um = PixelSize.MicronsPerPixel(path, 0, series);
        sb.AppendLine(heading ?? (subIfds ? "levels (--level; the reduced ones are SubIFDs of the first page):" : "levels (--level; pages, each smaller than the one before):"));
        for (int l = 0; l < levels.Length; l++)
        {
            double d = ImageSources.Downsample(levels, l).X;
            string mpp = um is { } u ? $", {u.X * d:0.####} µm/px" : "";
            sb.AppendLine(I, $"  {l}: {levels[l].Width} x {levels[l].Height}, downsample {d:0.###}{mpp}");
        }
    }
}
