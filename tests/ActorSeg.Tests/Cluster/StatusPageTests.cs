using System.Net;
using System.Text.Json;
using ActorSeg.Core.Imaging;
using ActorSeg.Tests.Cli;
using Xunit;
using Xunit.Abstractions;

namespace ActorSeg.Tests.Cluster;

/// <summary>The coordinator's status page as a person sees it: opened in headless Chromium while a job runs, its
/// progress bar moving, the worker listed with its slot; its data behind a token (the read-only status token will do).</summary>
public class StatusPageTests(ITestOutputHelper output) : ClusterTestBase("statuspage")
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(90);

    [ChromiumFact]
    public async Task TheStatusPage_ShowsARunningJobsProgressMoving_AndItsDataNeedsAToken()
    {
        var data = Path.Combine(_dir, "data");
        Directory.CreateDirectory(data);
        var img = Path.Combine(data, "slide.tif");
        SyntheticMicroscopy.Generate(new SyntheticSpec(3072, 3072, SyntheticKind.Colonies, 8, 1, 4), img, Path.Combine(data, "slide_mask.tif"));
        const string apiToken = "api-token-0123456789abcdef", statusToken = "status-token-0123456789abcdef";
        var h = NewCluster();
        int pc = ClusterHarness.FreePort(), http = ClusterHarness.FreePort();
        var env = new Dictionary<string, string> { ["ACTORSEG_APITOKEN"] = apiToken, ["ACTORSEG_STATUSTOKEN"] = statusToken, ["ACTORSEG_DATAROOTS"] = data };
        var node = h.Start("coordinator", pc, env, "--roles", "coordinator,tile-worker", "--workers", "1", "--http-port", http.ToString(),
            "--db", $"Data Source={Path.Combine(_dir, "j.db")}");
        using var web = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
        ClusterHarness.WaitFor(() => { try { return web.GetAsync("/readyz").Result.IsSuccessStatusCode; } catch (Exception) { return false; } }, T, "/readyz", node);

        // the page itself holds no data; its data needs a token, and the status token opens nothing else
        var page = await web.GetStringAsync("/");
        Assert.Contains("<title>ActorSeg cluster</title>", page);
        Assert.Equal(HttpStatusCode.Unauthorized, (await web.GetAsync("/status")).StatusCode);
        HttpRequestMessage With(HttpMethod m, string path, string token, HttpContent? body = null)
        {
            var r = new HttpRequestMessage(m, path) { Content = body };
            r.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
            return r;
        }
        var job = JsonSerializer.Serialize(new { jobId = "page-1", image = img, @out = Path.Combine(data, "out"), tileSize = 256 });
        Assert.Equal(HttpStatusCode.Unauthorized, (await web.SendAsync(With(HttpMethod.Post, "/jobs", statusToken, new StringContent(job, System.Text.Encoding.UTF8, "application/json")))).StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await web.SendAsync(With(HttpMethod.Post, "/jobs", apiToken, new StringContent(job, System.Text.Encoding.UTF8, "application/json")))).StatusCode);

        await using var chrome = await HeadlessChromium.StartAsync(T);
        await chrome.SendAsync("Page.navigate", new { url = $"http://127.0.0.1:{http}/#token={statusToken}" }, T);
        // the job's bar, part-way; then further along (the page redraws itself every two seconds)
        const string bar = "document.querySelector('tr[data-job=\"page-1\"] progress')";
        string WaitFor(string condition, string what) => $$"""
            new Promise((resolve, reject) => {
              const t0 = Date.now();
              (function check() {
                const p = {{bar}};
                if ({{condition}}) resolve(p.value);
                else if (Date.now() - t0 > 60000) reject(new Error('{{what}}: ' + document.body.innerText));
                else setTimeout(check, 100);
              })();
            })
            """;
        double first = double.Parse(await chrome.EvaluateAsync(WaitFor("p && p.value > 0 && p.value < p.max", "no progress shown"), T));
        double later = double.Parse(await chrome.EvaluateAsync(WaitFor($"p && p.value > {first}", "the progress did not move"), T));
        output.WriteLine($"progress bar: {first} tiles, then {later}");
        Assert.True(later > first);
        var nodes = await chrome.EvaluateAsync("[...document.querySelectorAll('#nodes tbody tr')].map(r => r.innerText).join('\\n')", T);
        output.WriteLine(nodes);
        Assert.Contains("tile-worker", nodes);
        Assert.Contains($"127.0.0.1:{pc}", nodes);
        // tiles per second, measured by the page between two redraws, is a number above zero while the job runs
        var rate = await chrome.EvaluateAsync("""
            new Promise((resolve, reject) => {
              const t0 = Date.now();
              (function check() {
                const r = document.querySelector('tr[data-job="page-1"]');
                const v = r ? parseFloat(r.cells[4].textContent) : 0;
                if (v > 0 || (r && r.cells[1].textContent === 'done')) resolve(String(v));
                else if (Date.now() - t0 > 60000) reject(new Error('no rate: ' + document.body.innerText));
                else setTimeout(check, 100);
              })();
            })
            """, T);
        output.WriteLine($"tiles/s shown: {rate}");
        // and the job ends as done on the page
        var phase = await chrome.EvaluateAsync("""
            new Promise((resolve, reject) => {
              const t0 = Date.now();
              (function check() {
                const r = document.querySelector('tr[data-job="page-1"]');
                if (r && r.cells[1].textContent === 'done') resolve('done');
                else if (Date.now() - t0 > 60000) resolve('not done: ' + document.body.innerText);
                else setTimeout(check, 200);
              })();
            })
            """, T);
        Assert.True(phase == "done", phase + "\n---\n" + node.Log);

        // a wrong token: the page says so and asks for one, showing nothing
        // (a new document: with only the fragment changed the browser would not load the page again)
        await chrome.SendAsync("Page.navigate", new { url = $"http://127.0.0.1:{http}/?again#token=wrong-token-0123456789" }, T);
        // navigate answers before the new document exists: wait until it is the one being evaluated, and loaded
        var loading = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            string where = "";
            try { where = await chrome.EvaluateAsync("location.search + '|' + document.readyState", T); }
            catch (InvalidOperationException) { } // the old document went away under the evaluation
            if (where == "?again|complete") break;
            Assert.True(loading.Elapsed < T, $"the page did not load again ({where})");
            await Task.Delay(100);
        }
        var refused = await chrome.EvaluateAsync("""
            new Promise(resolve => {
              const t0 = Date.now();
              (function check() {
                const el = document.getElementById('state'), s = el ? el.textContent : '';
                if (s.includes('refused')) resolve(s + '|' + document.getElementById('login').hidden + '|' + document.querySelectorAll('#jobs tbody tr').length);
                else if (Date.now() - t0 > 30000) resolve('not refused: ' + s);
                else setTimeout(check, 100);
              })();
            })
            """, T);
        Assert.Equal("the token was refused|false|0", refused);
    }
}
