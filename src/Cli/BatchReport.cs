using System.Globalization;
using System.Text;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using Vips = NetVips;

namespace ActorSeg.Cli;

/// <summary>
/// The batch's HTML report, readable in any browser from file:// and still whole when the batch folder is moved: the
/// previews are embedded (data: URLs), the training curves are inline SVG, and every link to a slide's files is
/// relative. Per slide: overlay and error map, per-class precision/recall/F1/IoU, the confusion matrix (counts and
/// row-normalised) and links to its files. Every string from the input (slide names, paths, reasons, class names) is
/// HTML-encoded.
/// </summary>
public static class BatchReport
{
    /// <summary>The error map beside each measured slide's overlay.</summary>
    public const string ErrorMapFile = "errors.png";
    /// <summary>The model's per-epoch history, copied beside the report so its link survives a move.</summary>
    public const string CurvesFile = "training-curves.csv";

    private static readonly CultureInfo I = CultureInfo.InvariantCulture;
    private static string H(string? s) => System.Net.WebUtility.HtmlEncode(s ?? "");
    /// <summary>A relative URL to a file of a slide (each path segment percent-encoded), HTML-encoded for an attribute.</summary>
    private static string Href(params string[] segments) => H(string.Join('/', segments.Select(Uri.EscapeDataString)));

    /// <summary>Files a slide's folder may hold, in the order they are linked, with what they are.</summary>
    private static readonly (string File, string What)[] SlideFiles =
    [
        ("mask.ome.tif", "mask (OME-TIFF, for QuPath, napari, Fiji)"), ("mask.tif", "mask (pyramidal TIFF of class ids)"),
        ("prob.tif", "probability map (the painted class's probability × 255)"),
        ("overlay.png", "overlay"), (ErrorMapFile, "error map"), ("objects.geojson", "objects (GeoJSON)"),
        ("segment.json", "segmentation summary"), ("metrics.json", "metrics"), ("slide.json", "slide record"),
        ("graph/graph.json", "graph summary"), ("graph/classes.json", "classes"),
    ];

    public static void Write(string path, string outDir, IReadOnlyList<BatchRow> rows, string? model, double seconds)
    {
        var sb = new StringBuilder();
        sb.Append("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ActorSeg batch report</title><style>")
          .Append("body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}table{border-collapse:collapse;margin:6px 0}")
          .Append("td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums}")
          .Append(".failed,.rejected{background:#fde2e2}.skipped{background:#eef}.done{background:#e6f6e6}td.warning{background:#fff4d6;color:#6b4e00}")
          .Append("figure{display:inline-block;margin:6px;vertical-align:top}figure img{max-width:640px;border:1px solid #ccc}")
          .Append(".swatch{display:inline-block;width:1em;height:1em;border:1px solid #888;vertical-align:middle;margin-right:4px}")
          .Append("section.slide{border-top:2px solid #ddd;margin-top:1.5em}.tables{display:flex;flex-wrap:wrap;gap:2em}caption{text-align:left;font-weight:600}")
          .Append("</style></head><body>");
        int ok = rows.Count(r => r.Status is "done" or "skipped");
        sb.Append(I, $"<h1>ActorSeg batch</h1><p>{H(outDir)} — {rows.Count} slides: {ok} done, {rows.Count - ok} failed or rejected; {seconds:F1} s. ")
          .Append(model is null ? "Graphs only." : $"Model: {H(model)}.").Append(I, $" Written {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC. ")
          .Append("<a href=\"summary.csv\">summary.csv</a></p>");
        var measured = rows.Where(r => r.Metrics is not null).ToList();
        if (measured.Count > 0)
            sb.Append(I, $"<p>Mean pixel accuracy {measured.Average(r => r.Metrics!.Accuracy):P2}, mean macro F1 {measured.Average(r => r.Metrics!.MacroF1):F3} over {measured.Count} slides with masks.</p>");

        // one row per slide
        sb.Append("<table id=\"summary\"><tr><th>slide</th><th>status</th><th>level</th><th>µm/px</th><th>tissue fraction</th><th>tiles skipped</th><th>nodes</th><th>seconds</th>")
          .Append("<th>pixel accuracy</th><th>macro F1</th><th>micro Jaccard</th><th>superpixel ceiling</th><th>reason or warning</th></tr>");
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            var m = r.Metrics;
            bool hasSection = r.Status is "done" or "skipped";
            sb.Append($"<tr class=\"{H(r.Status)}\"><td>").Append(hasSection ? $"<a href=\"#slide-{i}\">{H(r.Name)}</a>" : H(r.Name)).Append($"</td><td>{H(r.Status)}</td>")
              .Append(I, $"<td class=\"n\">{r.Level}</td><td class=\"n\">{(r.MicronsPerPixel is { } um ? um.ToString("0.####", I) : "")}</td>")
              .Append(I, $"<td class=\"n\">{(r.TissueFraction is { } tf ? tf.ToString("P1", I) : "")}</td><td class=\"n\">{r.TilesSkipped?.ToString(I) ?? ""}</td>")
              .Append(I, $"<td class=\"n\">{r.Nodes}</td><td class=\"n\">{r.Seconds:F1}</td>")
              .Append($"<td class=\"n\">{(m is null ? "" : m.Accuracy.ToString("P2", I))}</td><td class=\"n\">{(m is null ? "" : m.MacroF1.ToString("F3", I))}</td>")
              .Append($"<td class=\"n\">{(m is null ? "" : m.MicroJaccard.ToString("F3", I))}</td><td class=\"n\">{(m is null ? "" : m.SuperpixelCeiling.ToString("P2", I))}</td>")
              .Append(r.Reason is null && r.Warnings is { } warn ? $"<td class=\"warning\">warning: {H(warn)}</td></tr>" : $"<td>{H(r.Reason)}</td></tr>");
        }
        sb.Append("</table>");

        if (model is not null && Path.Combine(Path.GetDirectoryName(model)!, "curves.csv") is var curves && File.Exists(curves))
        {
            sb.Append("<h2>Training</h2>");
            try
            {
                var history = ReadCurves(curves);
                SafePaths.WriteAllBytes(Path.Combine(outDir, CurvesFile), File.ReadAllBytes(curves), "training curves");
                sb.Append(CurvesSvg(history)).Append($"<p><a href=\"{Href(CurvesFile)}\">{CurvesFile}</a> (per epoch: training loss, validation loss, validation node accuracy)</p>");
            }
            catch (Exception e) when (e is FormatException or IOException or IndexOutOfRangeException)
            {
                sb.Append($"<p>The training curves could not be read: {H(e.Message)}</p>");
            }
        }

        if (measured.Count > 0)
            sb.Append("<h2>Slides</h2><p>Error maps: the image in grey; ")
              .Append($"<span class=\"swatch\" style=\"background:{MaskComparison.FalsePositiveColor}\"></span>false positive (predicted a class where the mask has background), ")
              .Append($"<span class=\"swatch\" style=\"background:{MaskComparison.FalseNegativeColor}\"></span>false negative (predicted background where the mask has a class), ")
              .Append($"<span class=\"swatch\" style=\"background:{MaskComparison.WrongClassColor}\"></span>wrong class (foreground of another class). ")
              .Append("Downscaled, a pixel shows its block's commonest error, stronger the more of the block is wrong. ")
              .Append("Confusion matrices: rows are the mask's (true) classes, columns the predicted ones.</p>");
        else sb.Append("<h2>Slides</h2>");
        for (int i = 0; i < rows.Count; i++)
        {
            var r = rows[i];
            if (r.Status is not ("done" or "skipped")) continue;
            var dir = Path.Combine(outDir, "slides", r.Name);
            sb.Append($"<section class=\"slide\" id=\"slide-{i}\"><h3>{H(r.Name)}</h3><p>{H(r.Image)}")
              .Append(r.Mask is null ? "" : $" — mask {H(r.Mask)}").Append(I, $"; level {r.Level}")
              .Append(r.MicronsPerPixel is { } um ? string.Format(I, ", {0:0.####} µm/px", um) : "")
              .Append(r.TissueFraction is { } tf ? string.Format(I, ", tissue {0:P1}", tf) : "")
              .Append(r.TilesSkipped is { } ts ? string.Format(I, ", {0} tiles skipped", ts) : "").Append("</p>");
            // links to the slide's files, relative to the report
            var links = SlideFiles.Where(f => File.Exists(Path.Combine(dir, f.File))).ToList();
            if (links.Count > 0)
                sb.Append("<p class=\"files\">Files: ").AppendJoin(" · ", links.Select(f =>
                    $"<a href=\"{Href(["slides", r.Name, .. f.File.Split('/')])}\" title=\"{H(f.What)}\">{H(f.File)}</a>")).Append("</p>");
            foreach (var (file, caption) in new[] { ("overlay.png", "overlay"), (ErrorMapFile, "errors against the mask") })
            {
                var png = Path.Combine(dir, file);
                if (!File.Exists(png)) continue;
                using var img = Vips.Image.Thumbnail(png, 640, size: Vips.Enums.Size.Down);
                var data = Convert.ToBase64String(img.PngsaveBuffer());
                sb.Append($"<figure><a href=\"{Href("slides", r.Name, file)}\"><img alt=\"{H(r.Name)}: {caption}\" src=\"data:image/png;base64,{data}\"></a>")
                  .Append($"<figcaption>{H(r.Name)}: {caption}</figcaption></figure>");
            }
            if (r.Metrics is { } m) sb.Append(ClassTables(m, ClassNames(Path.Combine(dir, "graph"), m.Classes)));
            sb.Append("</section>");
        }
        sb.Append("</body></html>");
        // a unique temporary name in the same folder, flushed, then renamed over report.html (SafePaths.WriteAtomic)
        SafePaths.WriteAllText(path, sb.ToString(), "batch report");
    }

    /// <summary>The classes' names and colours: classes.json beside the slide's classification, else the defaults.</summary>
    private static ClassInfo[] ClassNames(string graphDir, int classes)
    {
        var table = ClassTable.Read(graphDir);
        var fallback = ClassTable.Default(classes);
        return Enumerable.Range(0, classes).Select(c => table is not null && c < table.Length ? table[c] : fallback[c]).ToArray();
    }

    /// <summary>Per-class precision, recall, F1 and IoU; the confusion matrix as counts and row-normalised.</summary>
    public static string ClassTables(PixelMetrics m, IReadOnlyList<ClassInfo> names)
    {
        int K = m.Classes;
        string Name(int c) => $"<span class=\"swatch\" style=\"background:{H(names[c].Color)}\"></span>{H(names[c].Name)}";
        long Row(int t) { long s = 0; for (int p = 0; p < K; p++) s += m.Confusion[t * K + p]; return s; }
        long Col(int p) { long s = 0; for (int t = 0; t < K; t++) s += m.Confusion[t * K + p]; return s; }
        string F(double[]? a, int c) => a is null ? "" : a[c].ToString("F4", I);
        var sb = new StringBuilder("<div class=\"tables\">");
        sb.Append("<table class=\"per-class\"><caption>Per class</caption><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>IoU</th><th>true pixels</th><th>predicted pixels</th></tr>");
        for (int c = 0; c < K; c++)
            sb.Append($"<tr><td>{Name(c)}</td><td class=\"n\">{F(m.Precision, c)}</td><td class=\"n\">{F(m.Recall, c)}</td><td class=\"n\">{F(m.F1, c)}</td><td class=\"n\">{F(m.IoU, c)}</td>")
              .Append(I, $"<td class=\"n\">{Row(c):N0}</td><td class=\"n\">{Col(c):N0}</td></tr>");
        sb.Append(I, $"<tr><th>macro</th><td></td><td></td><td class=\"n\">{m.MacroF1:F4}</td><td class=\"n\">{m.IoU.Average():F4}</td><td class=\"n\">{m.Pixels:N0}</td><td></td></tr></table>");
        foreach (var normalised in new[] { false, true })
        {
            sb.Append($"<table class=\"{(normalised ? "confusion-rows" : "confusion-counts")}\"><caption>Confusion matrix, {(normalised ? "row-normalised (recall on the diagonal)" : "pixels")}</caption>")
              .Append("<tr><th>true \\ predicted</th>");
            for (int p = 0; p < K; p++) sb.Append($"<th>{Name(p)}</th>");
            sb.Append("</tr>");
            for (int t = 0; t < K; t++)
            {
                long row = Row(t);
                sb.Append($"<tr><th>{Name(t)}</th>");
                for (int p = 0; p < K; p++)
                {
                    long v = m.Confusion[t * K + p];
                    double frac = row == 0 ? 0 : (double)v / row;
                    // shade by the row share: the diagonal green, the rest red
                    string bg = frac <= 0 ? "" : string.Format(I, " style=\"background:rgba({0},{1:F2})\"", t == p ? "40,160,60" : "220,50,50", 0.08 + 0.5 * frac);
                    sb.Append($"<td class=\"n\"{bg}>").Append(normalised ? (row == 0 ? "–" : frac.ToString("P1", I)) : v.ToString("N0", I)).Append("</td>");
                }
                sb.Append("</tr>");
            }
            sb.Append("</table>");
        }
        return sb.Append("</div>").ToString();
    }

    /// <summary>One epoch of the model's history (curves.csv); NaN where a column is absent.</summary>
    public sealed record Epoch(double Number, double TrainLoss, double ValidationLoss, double ValidationAccuracy);

    public static List<Epoch> ReadCurves(string curvesCsv)
    {
        var lines = File.ReadAllLines(curvesCsv);
        if (lines.Length == 0) return [];
        var header = lines[0].Split(',').Select(h => h.Trim()).ToList();
        int Col(string name, int fallback) => header.IndexOf(name) is var i and >= 0 ? i : fallback;
        int e = Col("epoch", 0), t = Col("train_loss", 1), v = Col("val_loss", 2), a = Col("val_node_accuracy", -1);
        double Get(string[] f, int i) => i >= 0 && i < f.Length && double.TryParse(f[i], NumberStyles.Float, I, out var x) ? x : double.NaN;
        return lines.Skip(1).Select(l => l.Split(',')).Where(f => f.Length >= 2)
            .Select(f => new Epoch(Get(f, e), Get(f, t), Get(f, v), Get(f, a))).Where(p => double.IsFinite(p.Number)).ToList();
    }

    /// <summary>The training history as two inline SVG plots: loss (training and validation) and validation node accuracy per epoch.</summary>
    public static string CurvesSvg(IReadOnlyList<Epoch> pts)
    {
        if (pts.Count < 2) return "<p>(too few epochs to plot)</p>";
        var best = pts.Where(p => double.IsFinite(p.ValidationLoss)).MinBy(p => p.ValidationLoss);
        var sb = new StringBuilder("<div class=\"curves\">");
        sb.Append(Plot("Loss per epoch", "loss", [("training loss", "#1f77b4", pts.Select(p => (p.Number, p.TrainLoss)).ToList()),
            ("validation loss", "#d62728", pts.Select(p => (p.Number, p.ValidationLoss)).ToList())], "G4", best?.Number, zeroBased: true));
        if (pts.Any(p => double.IsFinite(p.ValidationAccuracy)))
            sb.Append(Plot("Validation node accuracy per epoch", "accuracy", [("validation node accuracy", "#2ca02c", pts.Select(p => (p.Number, p.ValidationAccuracy)).ToList())],
                "P1", best?.Number, zeroBased: false, max: 1));
        sb.Append("</div>");
        if (best is not null)
            sb.Append(I, $"<p>Best validation loss {best.ValidationLoss:G4} at epoch {best.Number:0} (the model kept)")
              .Append(double.IsFinite(best.ValidationAccuracy) ? string.Format(I, ", validation node accuracy {0:P2} there", best.ValidationAccuracy) : "")
              .Append(I, $"; {pts.Count} epochs.</p>");
        return sb.ToString();
    }

    /// <summary>A line plot with labelled axes, tick values, a legend, the final values and a dashed line at the best epoch.</summary>
    private static string Plot(string title, string yLabel, IReadOnlyList<(string Name, string Colour, List<(double X, double Y)> Points)> series, string fmt,
        double? bestEpoch, bool zeroBased, double? max = null)
    {
        const int W = 560, Hh = 300, L = 64, R = 16, T = 30, B = 64;
        var all = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.Y)).ToList();
        if (all.Count == 0) return "";
        double x0 = all.Min(p => p.X), x1 = Math.Max(all.Max(p => p.X), x0 + 1);
        double y0 = zeroBased ? Math.Min(0, all.Min(p => p.Y)) : all.Min(p => p.Y), y1 = all.Max(p => p.Y);
        if (y1 <= y0) y1 = y0 + (y0 == 0 ? 1 : Math.Abs(y0) * 0.1);
        var yt = Ticks(y0, y1, 5);
        y0 = Math.Min(y0, yt[0]); y1 = Math.Max(y1, yt[^1]);
        if (max is { } mx && y1 > mx && all.Max(p => p.Y) <= mx) { y1 = mx; yt = yt.Where(t => t <= mx + 1e-12).ToArray(); }
        var xt = Ticks(x0, x1, 6).Where(t => t >= x0 - 1e-9 && t <= x1 + 1e-9).ToArray();
        double X(double x) => L + (x - x0) / (x1 - x0) * (W - L - R);
        double Y(double y) => Hh - B - (y - y0) / (y1 - y0) * (Hh - T - B);
        var sb = new StringBuilder();
        sb.Append(I, $"<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" role=\"img\" aria-label=\"{H(title)}\" width=\"{W}\" height=\"{Hh}\" viewBox=\"0 0 {W} {Hh}\" font-family=\"system-ui,sans-serif\" font-size=\"11\" style=\"border:1px solid #ccc;margin:4px;background:#fff\">")
          .Append(I, $"<text x=\"{W / 2}\" y=\"18\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"600\">{H(title)}</text>");
        foreach (var t in yt)
            sb.Append(I, $"<line x1=\"{L}\" y1=\"{Y(t):F1}\" x2=\"{W - R}\" y2=\"{Y(t):F1}\" stroke=\"#eee\"/><text x=\"{L - 6}\" y=\"{Y(t) + 4:F1}\" text-anchor=\"end\">{t.ToString(fmt == "P1" ? "P1" : "G3", I)}</text>");
        foreach (var t in xt)
            sb.Append(I, $"<line x1=\"{X(t):F1}\" y1=\"{Hh - B}\" x2=\"{X(t):F1}\" y2=\"{Hh - B + 4}\" stroke=\"#666\"/><text x=\"{X(t):F1}\" y=\"{Hh - B + 16}\" text-anchor=\"middle\">{t:0.##}</text>");
        sb.Append(I, $"<line x1=\"{L}\" y1=\"{Hh - B}\" x2=\"{W - R}\" y2=\"{Hh - B}\" stroke=\"#666\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{Hh - B}\" stroke=\"#666\"/>")
          .Append(I, $"<text class=\"x-label\" x=\"{(L + W - R) / 2}\" y=\"{Hh - B + 32}\" text-anchor=\"middle\">epoch</text>")
          .Append(I, $"<text class=\"y-label\" x=\"14\" y=\"{(T + Hh - B) / 2}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {(T + Hh - B) / 2})\">{H(yLabel)}</text>");
        if (bestEpoch is { } be && be >= x0 && be <= x1)
            sb.Append(I, $"<line x1=\"{X(be):F1}\" y1=\"{T}\" x2=\"{X(be):F1}\" y2=\"{Hh - B}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/><text x=\"{X(be) + 3:F1}\" y=\"{T + 10}\" fill=\"#666\">best epoch {be:0}</text>");
        // legend, with each series' final value
        int ly = Hh - 14, lx = L;
        foreach (var (name, colour, points) in series)
        {
            var finite = points.Where(p => double.IsFinite(p.Y)).ToList();
            if (finite.Count == 0) continue;
            sb.Append(I, $"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{string.Join(' ', finite.Select(p => string.Format(I, "{0:F1},{1:F1}", X(p.X), Y(p.Y))))}\"/>");
            var last = finite[^1];
            string label = $"{name}: final {last.Y.ToString(fmt, I)}";
            sb.Append(I, $"<circle cx=\"{X(last.X):F1}\" cy=\"{Y(last.Y):F1}\" r=\"3\" fill=\"{colour}\"/>")
              .Append(I, $"<line x1=\"{lx}\" y1=\"{ly - 4}\" x2=\"{lx + 18}\" y2=\"{ly - 4}\" stroke=\"{colour}\" stroke-width=\"3\"/><text class=\"legend\" x=\"{lx + 22}\" y=\"{ly}\">{H(label)}</text>");
            lx += 22 + 7 * label.Length + 16;
        }
        return sb.Append("</svg>").ToString();
    }

    /// <summary>Round tick values (1, 2 or 5 × 10^k apart) covering [lo, hi].</summary>
    public static double[] Ticks(double lo, double hi, int target)
    {
        double raw = (hi - lo) / Math.Max(1, target), mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double step = new[] { 1.0, 2, 5, 10 }.Select(f => f * mag).First(s => s >= raw);
        double start = Math.Floor(lo / step) * step, end = Math.Ceiling(hi / step) * step;
        var t = new List<double>();
        for (double v = start; v <= end + step * 1e-6; v += step) t.Add(Math.Round(v / step) * step);
        return t.ToArray();
    }
}
