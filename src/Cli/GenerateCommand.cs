using System.CommandLine;
using ActorSeg.Core.Imaging;
using Serilog;

namespace ActorSeg.Cli;

public static class GenerateCommand
{
    public static Command Create(Option<bool> verbose)
    {
        var output = new Option<DirectoryInfo>("--out", "-o") { Description = "Directory for NAME.tif and NAME_mask.tif.", Required = true };
        var name = new Option<string>("--name") { Description = "Base name of the files.", DefaultValueFactory = _ => "sample" };
        var width = new Option<int>("--width") { Description = "Width in pixels.", DefaultValueFactory = _ => 4096 };
        var height = new Option<int>("--height") { Description = "Height in pixels.", DefaultValueFactory = _ => 4096 };
        var kind = new Option<string>("--kind")
        {
            Description = "colonies (phase-contrast-like, texture differs), nuclei (fluorescence-like) or cells (five classes, the mask holds class ids: "
                + "0 background, 1 cytoplasm, 2 nucleus, 3 membrane, a line 3 px wide (thin), 4 mitotic nucleus (rare); train with --mask-mode classes), "
                + "or fibres (the same cells crossed by straight fibres 2 px wide over cells and background alike: class 5, thin and inside other classes' regions).",
            DefaultValueFactory = _ => "colonies",
        };
        kind.AcceptOnlyFromAmong("colonies", "nuclei", "cells", "fibres");
        var bits = new Option<int>("--bits") { Description = "8 or 16 bits per sample.", DefaultValueFactory = _ => 16 };
        bits.AcceptOnlyFromAmong("8", "16");
        var channels = new Option<int>("--channels") { Description = "1 (grey) or 3 (RGB).", DefaultValueFactory = _ => 1 };
        channels.AcceptOnlyFromAmong("1", "3");
        var seed = new Option<int>("--seed") { Description = "Random seed (same seed, same image).", DefaultValueFactory = _ => 1 };
        var format = new Option<string>("--format") { Description = "tiff (tiled BigTIFF) or svs (an Aperio-style tiled pyramid that OpenSlide reads, tiles as --compression says; RGB, 8-bit).", DefaultValueFactory = _ => "tiff" };
        format.AcceptOnlyFromAmong("tiff", "svs");
        var mpp = new Option<double>("--mpp") { Description = "Microns per pixel written into an svs slide.", DefaultValueFactory = _ => 0.499 };
        var glass = new Option<double>("--glass") { Description = "svs only: the fraction of the slide that is bare glass around tissue islands (brightfield-like, stained), e.g. 0.6.", DefaultValueFactory = _ => 0 };
        var compression = new Option<string>("--compression")
        {
            Description = "Tiles of an svs slide: jpeg (lossy, libvips), jp2k (lossless JPEG 2000, Aperio's RGB compression 33005) or jp2k-ycbcr "
                + "(lossless JPEG 2000 codestreams of YCbCr 4:2:2, Aperio's compression 33003); JPEG 2000 needs opj_compress (Debian's libopenjp2-tools).",
            DefaultValueFactory = _ => "jpeg",
        };
        compression.AcceptOnlyFromAmong("jpeg", "jp2k", "jp2k-ycbcr");
        const int MaxSide = 1 << 20;
        foreach (var side in new[] { width, height })
            side.Validators.Add(r => { if (OptionRanges.TryValue(r, out int v) && v is < 1 or > MaxSide) r.AddError($"{side.Name} must be 1 to {MaxSide:N0} pixels (got {v})"); });
        name.Validators.Add(r =>
        {
            var n = r.GetValueOrDefault<string>() ?? "";
            if (n.Length == 0 || n is "." or ".." || n.IndexOfAny([.. Path.GetInvalidFileNameChars(), '/', '\\']) >= 0)
                r.AddError($"--name must be a plain file name, without a folder (got '{n}')");
        });
        mpp.Validators.Add(r => { if (OptionRanges.TryValue(r, out double v) && !(v > 0 && v < 1000)) r.AddError($"--mpp must be a number of microns per pixel in (0, 1000) (got {v})"); });
        glass.Validators.Add(r => { if (OptionRanges.TryValue(r, out double v) && !(v >= 0 && v <= 0.95)) r.AddError($"--glass must be in [0, 0.95] (got {v})"); });
        var cmd = new Command("generate", "Generate a synthetic microscopy image with its exact mask, as tiled BigTIFF, never holding the whole image.")
        {
            output, name, width, height, kind, bits, channels, seed, format, mpp, compression, glass,
        };
        cmd.SetAction((pr, ct) =>
        {
            Logging.Configure(pr.GetValue(verbose));
            bool svs = pr.GetValue(format) == "svs";
            if (svs && (pr.GetValue(bits) != 8 && pr.GetResult(bits) is { Implicit: false } || pr.GetValue(channels) != 3 && pr.GetResult(channels) is { Implicit: false }))
            {
                Console.Error.WriteLine("actorseg generate: --format svs writes 8-bit RGB slides (leave out --bits and --channels, or give --bits 8 --channels 3)");
                return Task.FromResult(ExitCodes.Usage);
            }
            var tiles = pr.GetValue(compression) switch { "jp2k" => SvsCompression.Jp2kRgb, "jp2k-ycbcr" => SvsCompression.Jp2kYcbcr, _ => SvsCompression.Jpeg };
            if (!svs && tiles != SvsCompression.Jpeg)
            {
                Console.Error.WriteLine("actorseg generate: --compression chooses the tiles of an svs slide (add --format svs)");
                return Task.FromResult(ExitCodes.Usage);
            }
            if (tiles != SvsCompression.Jpeg && !SlideWriter.Jp2kAvailable)
            {
                Console.Error.WriteLine($"actorseg generate: JPEG 2000 tiles are encoded by {SlideWriter.Jp2kEncoder}, which is not on the PATH: install Debian's libopenjp2-tools");
                return Task.FromResult(ExitCodes.Failed);
            }
            if (pr.GetValue(glass) != 0 && !svs)
            {
                Console.Error.WriteLine("actorseg generate: --glass makes a brightfield slide: use it with --format svs");
                return Task.FromResult(ExitCodes.Usage);
            }
            var (img, mask) = Run(pr.GetValue(output)!.FullName, pr.GetValue(name)!, pr.GetValue(width), pr.GetValue(height),
                pr.GetValue(kind)!, svs ? 8 : pr.GetValue(bits), svs ? 3 : pr.GetValue(channels), pr.GetValue(seed), ct);
            if (svs && pr.GetValue(glass) is > 0 and var gf)
            {
                var withGlass = Path.ChangeExtension(img, ".glass.tif");
                var maskGlass = mask + ".glass.tif";
                Log.Information("Adding glass: {Glass:P0} of the slide", gf);
                SlideWriter.AddGlass(img, mask, withGlass, maskGlass, gf, pr.GetValue(seed));
                File.Move(withGlass, img, overwrite: true);
                File.Move(maskGlass, mask, overwrite: true);
            }
            if (svs)
            {
                var slide = Path.ChangeExtension(img, ".svs");
                Log.Information("Writing an Aperio-style slide {Slide} ({Mpp} µm/px, {Compression} tiles)", slide, pr.GetValue(mpp), pr.GetValue(compression));
                SlideWriter.WriteSvs(img, slide, pr.GetValue(mpp), compression: tiles);
                File.Delete(img);
                img = slide;
            }
            Console.WriteLine(img);
            Console.WriteLine(mask);
            return Task.FromResult(ExitCodes.Ok);
        });
        return cmd;
    }

    public static (string Image, string Mask) Run(string dir, string name, int width, int height, string kind, int bits, int channels, int seed, CancellationToken ct)
    {
        if (File.Exists(dir)) throw new Core.IO.OutputFolderException($"output folder {dir} cannot be created: a file of that name is there");
        Directory.CreateDirectory(dir);
        var img = Path.Combine(dir, name + ".tif");
        var mask = Path.Combine(dir, name + "_mask.tif");
        var spec = new SyntheticSpec(width, height, kind switch { "nuclei" => SyntheticKind.Nuclei, "cells" or "fibres" => SyntheticKind.Cells, _ => SyntheticKind.Colonies }, bits, channels, seed,
            Fibres: kind == "fibres");
        Log.Information("Generating {Kind} image {Width}x{Height}, {Bits}-bit, {Channels} channel(s) → {Image}", kind, width, height, bits, channels, img);
        int lastPct = -1;
        var progress = new Core.InlineProgress<double>(p =>
        {
            int pct = (int)(p * 100);
            if (pct / 10 != lastPct / 10) { lastPct = pct; Console.Error.WriteLine($"  generating: {pct}%"); }
        });
        var r = SyntheticMicroscopy.Generate(spec, img, mask, progress, ct);
        Log.Information("Generated {Result}", r);
        if (spec.Kind == SyntheticKind.Cells && r.ClassPixels is { } cp)
        {
            long total = (long)width * height;
            var classes = spec.Fibres ? SyntheticMicroscopy.FibreClasses : SyntheticMicroscopy.CellClasses;
            Log.Information("Mask classes (pixels): {Classes}; train and evaluate with --mask-mode classes --classes {ClassList}",
                string.Join(", ", classes.Split(',').Select((c, i) => FormattableString.Invariant($"{i} {c.Split(':')[0]} {100.0 * cp[i] / total:F2} %"))),
                classes);
        }
        return (img, mask);
    }
}
