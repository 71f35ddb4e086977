using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using ActorSeg.Cli;
using ActorSeg.Core.Imaging;
using ActorSeg.Core.IO;
using ActorSeg.GpuTrainer;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cli;

/// <summary>A fact that is skipped, saying why, when Debian's <c>chromium</c> is not installed (<c>./run.sh test</c> installs it).</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (HeadlessChromium.Find() is null) Skip = "chromium is not installed (apt-get install chromium; ./run.sh test installs it)";
    }
}

/// <summary>
/// A headless Chromium driven over the DevTools protocol (a WebSocket, no library): navigate to a page and evaluate
/// JavaScript in it, so a test sees what a person's browser sees. The browser is killed on dispose.
/// </summary>
public sealed class HeadlessChromium : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _profile;
    private readonly ClientWebSocket _ws = new();
    private int _id;

    public static string? Find() =>
        new[] { "chromium", "chromium-browser", "google-chrome" }
            .SelectMany(n => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, n)))
            .FirstOrDefault(File.Exists);

    private HeadlessChromium(Process process, string profile) { _process = process; _profile = profile; }

    public static async Task<HeadlessChromium> StartAsync(TimeSpan timeout)
    {
        var exe = Find() ?? throw new InvalidOperationException("chromium not found");
        var profile = TestPaths.NewTempDir("chromium");
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                     "--disable-extensions", "--remote-debugging-port=0", $"--user-data-dir={profile}", "--window-size=1400,1000", "about:blank" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, _) => { }; p.ErrorDataReceived += (_, _) => { };
        p.BeginOutputReadLine(); p.BeginErrorReadLine();
        var chrome = new HeadlessChromium(p, profile);
        try
        {
            // the browser writes its port into the profile once it listens
            var portFile = Path.Combine(profile, "DevToolsActivePort");
            var sw = Stopwatch.StartNew();
            int port = 0;
            while (port == 0)
            {
                if (p.HasExited) throw new InvalidOperationException($"chromium exited with {p.ExitCode} before listening");
                if (sw.Elapsed > timeout) throw new TimeoutException("chromium did not write DevToolsActivePort");
                if (File.Exists(portFile) && File.ReadAllLines(portFile) is { Length: >= 1 } l && int.TryParse(l[0], out var n)) port = n;
                else await Task.Delay(100);
            }
            // the page target's socket (the browser made one for about:blank)
            using var http = new HttpClient { Timeout = timeout };
            string? pageSocket = null;
            while (pageSocket is null)
            {
                var list = JsonNode.Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/json/list"))!.AsArray();
                pageSocket = list.FirstOrDefault(t => (string?)t!["type"] == "page")?["webSocketDebuggerUrl"]?.GetValue<string>();
                if (pageSocket is null) { if (sw.Elapsed > timeout) throw new TimeoutException("chromium has no page"); await Task.Delay(100); }
            }
            using var cts = new CancellationTokenSource(timeout);
            await chrome._ws.ConnectAsync(new Uri(pageSocket), cts.Token);
            return chrome;
        }
        catch
        {
            await chrome.DisposeAsync();
            throw;
        }
    }

    /// <summary>Sends one DevTools command and returns its result (events in between are dropped).</summary>
    public async Task<JsonNode> SendAsync(string method, object? parameters, TimeSpan timeout)
    {
        int id = Interlocked.Increment(ref _id);
        using var cts = new CancellationTokenSource(timeout);
        var msg = JsonSerializer.SerializeToUtf8Bytes(new { id, method, @params = parameters ?? new { } });
        await _ws.SendAsync(msg, WebSocketMessageType.Text, true, cts.Token);
        var buf = new byte[1 << 16];
        while (true)
        {
            using var ms = new MemoryStream();
            WebSocketReceiveResult r;
            do { r = await _ws.ReceiveAsync(buf, cts.Token); ms.Write(buf, 0, r.Count); } while (!r.EndOfMessage);
            if (r.MessageType == WebSocketMessageType.Close) throw new InvalidOperationException("chromium closed the DevTools connection");
            var node = JsonNode.Parse(ms.ToArray())!;
            if ((int?)node["id"] != id) continue;
            if (node["error"] is { } err) throw new InvalidOperationException($"{method}: {err.ToJsonString()}");
            return node["result"]!;
        }
    }

    /// <summary>Evaluates <paramref name="expression"/> in the page (a promise is awaited) and returns its value as a string.</summary>
    public async Task<string> EvaluateAsync(string expression, TimeSpan timeout)
    {
        var r = await SendAsync("Runtime.evaluate", new { expression, awaitPromise = true, returnByValue = true }, timeout);
        if (r["exceptionDetails"] is { } ex) throw new InvalidOperationException("the page's script failed: " + ex.ToJsonString());
        return r["result"]!["value"]?.ToString() ?? "";
    }

    public async ValueTask DisposeAsync()
    {
        try { if (_ws.State == WebSocketState.Open) await _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None); } catch { }
        _ws.Dispose();
        try { if (!_process.HasExited) { _process.Kill(entireProcessTree: true); _process.WaitForExit(10_000); } } catch { }
        _process.Dispose();
        try { Directory.Delete(_profile, true); } catch { }
    }
}

/// <summary>
/// The batch report as a person sees it: a real batch with masks, its report.html opened from file:// in headless
/// Chromium after the batch folder was moved, and checked from inside the browser.
/// </summary>
public class ReportBrowserTests(ITestOutputHelper output) : TempDirTest("report")
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(60);

    // runs in the page: everything the test needs to know, as JSON
    private const string Probe = """
        (async () => {
          if (document.readyState !== 'complete') await new Promise(r => addEventListener('load', r));
          await Promise.all([...document.images].map(i => i.decode().catch(() => null)));
          const cells = sel => [...document.querySelectorAll(sel)].map(t => [...t.querySelectorAll('td.n')].map(td => td.textContent.trim()));
          return JSON.stringify({
            images: [...document.images].map(i => ({ alt: i.alt, ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width })),
            svgs: [...document.querySelectorAll('svg')].map(s => { const b = s.getBBox(); return { w: b.width, h: b.height,
              xLabel: s.querySelector('.x-label')?.textContent, yLabel: s.querySelector('.y-label')?.textContent,
              legend: [...s.querySelectorAll('.legend')].map(t => t.textContent), texts: s.querySelectorAll('text').length, lines: s.querySelectorAll('polyline').length }; }),
            perClass: cells('table.per-class'), perClassHeads: [...document.querySelectorAll('table.per-class th')].map(t => t.textContent),
            classNames: [...document.querySelectorAll('table.per-class td:first-child')].map(t => t.textContent),
            counts: cells('table.confusion-counts'), rows: cells('table.confusion-rows'),
            links: [...document.querySelectorAll('a[href]')].filter(a => !a.getAttribute('href').startsWith('#')).map(a => ({ text: a.textContent, url: a.href })),
            anchors: [...document.querySelectorAll('a[href^="#"]')].map(a => !!document.getElementById(a.getAttribute('href').slice(1))),
            slides: [...document.querySelectorAll('section.slide h3')].map(h => h.textContent),
            injected: document.querySelectorAll('h3 b, td b, figcaption b').length,
            summaryHeads: [...document.querySelectorAll('#summary th')].map(t => t.textContent)
          });
        })()
        """;

    [ChromiumFact]
    public async Task TheReport_RendersEveryImageAndPlot_WithMetrics_AndLinksThatResolve_AfterTheFolderIsMoved()
    {
        // a quick model with named classes (a name that would be markup if not encoded)
        string imgs = Path.Combine(_dir, "tr", "images"), masks = Path.Combine(_dir, "tr", "masks");
        Directory.CreateDirectory(imgs); Directory.CreateDirectory(masks);
        for (int s = 1; s <= 2; s++)
            SyntheticMicroscopy.Generate(new SyntheticSpec(512, 512, SyntheticKind.Colonies, 16, 1, s), Path.Combine(imgs, $"f{s}.tif"), Path.Combine(masks, $"f{s}.tif"));
        var train = TestPaths.RunCli("train", "--images", imgs, "--masks", masks, "--segments", "1000", "--epochs", "12", "--val-frac", "0.5",
            "--classes", "background:#000000,col<b>ony:#ff0000", "--out", Path.Combine(_dir, "model"));
        Assert.True(train.ExitCode == 0, train.Stderr);

        // two slides with masks, one named with characters that HTML and URLs treat specially; one without a mask
        var slides = Path.Combine(_dir, "slides");
        Directory.CreateDirectory(slides);
        const string odd = "s11 & <b>one#1";
        SyntheticMicroscopy.Generate(new SyntheticSpec(600, 500, SyntheticKind.Colonies, 16, 1, 11), Path.Combine(slides, odd + ".tif"), Path.Combine(slides, "m11.tif"));
        SyntheticMicroscopy.Generate(new SyntheticSpec(520, 480, SyntheticKind.Colonies, 16, 1, 12), Path.Combine(slides, "s12.tif"), Path.Combine(slides, "m12.tif"));
        SyntheticMicroscopy.Generate(new SyntheticSpec(400, 400, SyntheticKind.Colonies, 16, 1, 13), Path.Combine(slides, "s13.tif"), Path.Combine(slides, "m13.tif"));
        var manifest = Path.Combine(_dir, "batch.csv");
        File.WriteAllText(manifest, $"image,mask\nslides/{odd}.tif,slides/m11.tif\nslides/s12.tif,slides/m12.tif\nslides/s13.tif,\n");
        var outDir = Path.Combine(_dir, "out");
        var r = TestPaths.RunCli("batch", manifest, "--out", outDir, "--model", Path.Combine(_dir, "model", "best.model"), "--tile-size", "256");
        output.WriteLine(r.Stderr);
        Assert.True(r.ExitCode == 0, r.Stderr);

        // files: the error maps, metrics with precision and recall equal to the graph's exact metrics, the new summary columns
        foreach (var name in new[] { odd, "s12" })
            Assert.True(File.Exists(Path.Combine(outDir, "slides", name, BatchReport.ErrorMapFile)), name);
        Assert.False(File.Exists(Path.Combine(outDir, "slides", "s13", BatchReport.ErrorMapFile)));
        var pm = JsonSerializer.Deserialize<PixelMetrics>(File.ReadAllText(Path.Combine(outDir, "slides", "s12", "metrics.json")))!;
        Assert.NotNull(pm.Precision); Assert.NotNull(pm.Recall);
        Assert.Equal(520L * 480, pm.Pixels);
        Assert.DoesNotContain("differs from the graph", r.Stderr); // the painted mask counts as the graph's histograms do
        var summary = File.ReadAllLines(Path.Combine(outDir, "summary.csv"));
        Assert.EndsWith(",level,um_per_pixel,tissue_fraction,tiles_skipped,warnings", summary[0]);
        Assert.All(summary.Skip(1), l => Assert.EndsWith(",,,", l)); // no tissue detection reported: empty, not zero (and no warning)
        Assert.False(Directory.EnumerateFiles(outDir).Any(f => f.Contains(".partial")), "a temporary file was left");

        // the folder moved elsewhere: the report must not depend on where it was written
        var moved = Path.Combine(_dir, "moved here");
        Directory.Move(outDir, moved);
        var report = Path.Combine(moved, "report.html");

        await using var chrome = await HeadlessChromium.StartAsync(T);
        await chrome.SendAsync("Page.enable", null, T);
        await chrome.SendAsync("Page.navigate", new { url = new Uri(report).AbsoluteUri }, T);
        string json = "";
        for (int attempt = 0; attempt < 50; attempt++)
        {
            // navigation is asynchronous: evaluate once the new document (not about:blank) is there
            if (await chrome.EvaluateAsync("location.protocol", T) == "file:") { json = await chrome.EvaluateAsync(Probe, T); break; }
            await Task.Delay(100);
        }
        Assert.NotEqual("", json);
        output.WriteLine(json);
        // ACTORSEG_REPORT_SCREENSHOT=FILE.png keeps a full-page picture of what the browser showed, to look at
        if (Environment.GetEnvironmentVariable("ACTORSEG_REPORT_SCREENSHOT") is { Length: > 0 } shot)
        {
            var pic = await chrome.SendAsync("Page.captureScreenshot", new { format = "png", captureBeyondViewport = true }, T);
            File.WriteAllBytes(shot, Convert.FromBase64String((string)pic["data"]!));
        }
        var page = JsonNode.Parse(json)!;

        // every image rendered (overlays of 3 slides, error maps of the 2 measured ones), at a visible size
        var images = page["images"]!.AsArray();
        Assert.Equal(5, images.Count);
        Assert.All(images, i => Assert.True((bool)i!["ok"]! && (int)i["w"]! > 0 && (double)i["shown"]! > 0, i!.ToJsonString()));
        Assert.Equal(2, images.Count(i => ((string)i!["alt"]!).EndsWith("errors against the mask")));

        // the training curves: plots with labelled axes, legends with final values, and drawn lines
        var svgs = page["svgs"]!.AsArray();
        Assert.Equal(2, svgs.Count);
        Assert.All(svgs, s =>
        {
            Assert.True((double)s!["w"]! > 100 && (double)s["h"]! > 100, s.ToJsonString());
            Assert.Equal("epoch", (string?)s["xLabel"]);
            Assert.Contains(s["legend"]!.AsArray(), l => ((string)l!).Contains("final "));
            Assert.True((int)s["texts"]! >= 8 && (int)s["lines"]! >= 1, s.ToJsonString()); // tick values and a line
        });
        Assert.Equal(new[] { "loss", "accuracy" }, svgs.Select(s => (string)s!["yLabel"]!).ToArray());

        // per-class metrics and the confusion matrix, numbers in every cell, for the two measured slides
        var perClass = page["perClass"]!.AsArray();
        Assert.Equal(2, perClass.Count);
        var heads = page["perClassHeads"]!.AsArray().Select(h => (string)h!).ToList();
        foreach (var h in new[] { "precision", "recall", "F1", "IoU" }) Assert.Contains(h, heads);
        Assert.Contains("col<b>ony", page["classNames"]!.AsArray().Select(c => (string)c!)); // the model's class name, as text
        foreach (var t in perClass) Assert.All(t!.AsArray(), c => Assert.Matches(@"^[0-9][0-9,]*(\.[0-9]+)?$", (string)c!));
        var counts = page["counts"]!.AsArray(); var rows = page["rows"]!.AsArray();
        Assert.Equal(2, counts.Count); Assert.Equal(2, rows.Count);
        foreach (var t in counts) { Assert.Equal(4, t!.AsArray().Count); Assert.All(t.AsArray(), c => Assert.Matches(@"^[0-9][0-9,]*$", (string)c!)); }
        foreach (var t in rows) { Assert.Equal(4, t!.AsArray().Count); Assert.All(t.AsArray(), c => Assert.Matches(@"^[0-9.]+ ?%$", (string)c!)); }
        // the confusion counts shown add up to the slide's pixels
        var s12 = counts.Select(t => t!.AsArray().Sum(c => long.Parse(((string)c!).Replace(",", "")))).ToList();
        Assert.Contains(520L * 480, s12);
        Assert.Contains(600L * 500, s12);

        // the odd slide name is shown as text, never as markup
        Assert.Equal(new[] { odd, "s12", "s13" }, page["slides"]!.AsArray().Select(s => (string)s!).ToArray());
        Assert.Equal(0, (int)page["injected"]!);
        foreach (var h in new[] { "level", "µm/px", "tissue fraction", "tiles skipped" })
            Assert.Contains(h, page["summaryHeads"]!.AsArray().Select(x => (string)x!));
        Assert.All(page["anchors"]!.AsArray(), a => Assert.True((bool)a!));

        // every link, as the browser resolved it, names a file inside the moved folder that exists
        var links = page["links"]!.AsArray().Select(l => ((string)l!["text"]!, (string)l["url"]!)).ToList();
        Assert.All(links, l =>
        {
            var uri = new Uri(l.Item2);
            Assert.Equal("file", uri.Scheme);
            Assert.StartsWith(moved + "/", uri.LocalPath);
            Assert.True(File.Exists(uri.LocalPath), $"{l.Item1} → {uri.LocalPath}");
        });
        foreach (var f in new[] { "mask.ome.tif", "mask.tif", "overlay.png", BatchReport.ErrorMapFile, "segment.json" })
            Assert.Contains(links, l => new Uri(l.Item2).LocalPath == Path.Combine(moved, "slides", odd, f));
        Assert.Contains(links, l => new Uri(l.Item2).LocalPath == Path.Combine(moved, "summary.csv"));
        Assert.Contains(links, l => new Uri(l.Item2).LocalPath == Path.Combine(moved, BatchReport.CurvesFile));
    }

    [Fact]
    public void TheConfusionMatrix_CountedOverTheMasks_MatchesEveryPixel_AndTheErrorMapColoursEachKind()
    {
        // a 4x3 image; truth and prediction differ by one false positive, one false negative, one wrong class; one pixel unlabelled
        byte[] truth = [0, 0, 1, 1, 0, 2, 2, 1, 0, 0, 9, 1];
        byte[] pred = [0, 1, 1, 0, 0, 2, 1, 1, 0, 0, 2, 1];
        string tp = Path.Combine(_dir, "truth.tif"), pp = Path.Combine(_dir, "pred.tif"), ip = Path.Combine(_dir, "img.tif"), png = Path.Combine(_dir, "errors.png");
        using (var t = NetVips.Image.NewFromMemory(truth, 4, 3, 1, NetVips.Enums.BandFormat.Uchar)) t.Tiffsave(tp);
        using (var p = NetVips.Image.NewFromMemory(pred, 4, 3, 1, NetVips.Enums.BandFormat.Uchar)) p.Tiffsave(pp);
        using (var i = NetVips.Image.NewFromMemory(Enumerable.Range(0, 12).Select(v => (byte)(v * 20)).ToArray(), 4, 3, 1, NetVips.Enums.BandFormat.Uchar)) i.Tiffsave(ip);
        var r = MaskComparison.Compare(pp, tp, 3, Core.Pipeline.MaskMode.Classes, ignoreValue: 9, errorMapPng: png, image: ip);
        Assert.Equal(1, r.Unlabelled);
        Assert.Equal((1L, 1L, 1L), (r.FalsePositives, r.FalseNegatives, r.WrongClass));
        Assert.Equal(new long[] { 4, 1, 0, /**/ 1, 3, 0, /**/ 0, 1, 1 }, r.Confusion);
        var m = PixelMetrics.FromConfusion(r.Confusion, 3, 1.0);
        Assert.Equal(11, m.Pixels);
        Assert.Equal(3.0 / 5, m.Precision![1], 6); // class 1: 3 right of 5 predicted
        Assert.Equal(3.0 / 4, m.Recall![1], 6);    // 3 of 4 true
        Assert.Equal(2.0 * 3 / 9, m.F1[1], 6);
        Assert.Equal(3.0 / 6, m.IoU[1], 6);
        using var map = NetVips.Image.NewFromFile(png);
        Assert.Equal((4, 3, 3), (map.Width, map.Height, map.Bands));
        double[] Px(int x, int y) => map.Getpoint(x, y);
        Assert.True(Px(1, 0)[1] < Px(1, 0)[0] && Px(1, 0)[1] < Px(1, 0)[2], "false positive: magenta");
        Assert.True(Px(3, 0)[0] < Px(3, 0)[2], "false negative: cyan");
        Assert.True(Px(2, 1)[2] < Px(2, 1)[0], "wrong class: yellow");
        Assert.Equal(Px(0, 0)[0], Px(0, 0)[1]); // right: grey
    }

    [Fact]
    public void TissueDetection_ReachesTheSummaryAndTheReport_WhenTheJobReportsIt()
    {
        var slide = Path.Combine(_dir, "slides", "a");
        Directory.CreateDirectory(slide);
        Assert.Equal((null, null), BatchCommand.Tissue(slide)); // no job summary: unknown
        File.WriteAllText(Path.Combine(slide, "segment.json"), """{"image":"a.svs","nodes":3}""");
        Assert.Equal((null, null), BatchCommand.Tissue(slide)); // a job without tissue detection: unknown, not zero
        File.WriteAllText(Path.Combine(slide, "segment.json"), """{"image":"a.svs","tissueFraction":0.4213,"tilesSkipped":7}""");
        var (tf, ts) = BatchCommand.Tissue(slide);
        Assert.Equal((0.4213, 7), (tf, ts));
        var row = new BatchRow("a", "a.svs", null, null, "done", null, 3, 1, null, 1, 0.5, tf, ts);
        BatchCommand.WriteSummary(Path.Combine(_dir, "summary.csv"), [row]);
        Assert.EndsWith(",1,0.5,0.4213,7,", File.ReadAllLines(Path.Combine(_dir, "summary.csv"))[1]);
        BatchReport.Write(Path.Combine(_dir, "report.html"), _dir, [row], null, 1);
        var html = File.ReadAllText(Path.Combine(_dir, "report.html"));
        Assert.Contains(">42.1 %<", html);
        Assert.Contains("7 tiles skipped", html);
    }

    [Fact]
    public void TheCurves_HaveRoundTicks()
    {
        Assert.Equal(new[] { 0, 0.2, 0.4, 0.6, 0.8, 1.0 }, BatchReport.Ticks(0, 1, 5).Select(t => Math.Round(t, 9)));
        Assert.Equal(new double[] { 0, 5, 10, 15, 20, 25 }, BatchReport.Ticks(1, 25, 6));
    }
}
