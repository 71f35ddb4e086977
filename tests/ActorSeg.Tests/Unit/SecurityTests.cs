using ActorSeg.Cli;
using ActorSeg.Coordinator;
using ActorSeg.Core.IO;
using ActorSeg.Messages;
using Xunit;

namespace ActorSeg.Tests.Unit;

/// <summary>The coordinator's admission check, path safety, secrets and node settings, as plain functions.</summary>
public class SecurityTests : TempDirTest
{
    private readonly string _data, _img;

    public SecurityTests() : base("sec")
    {
        _data = Path.Combine(_dir, "data");
        Directory.CreateDirectory(Path.Combine(_data, "slides"));
        _img = Path.Combine(_data, "slides", "a.tif");
        File.WriteAllText(_img, "x");
    }

    private JobPolicy Roots => new(new DataRoots([_data]), RequireRoots: true);

    [Fact]
    public void Jobs_AreConfinedToTheDataRoots_WhateverTheirPaths()
    {
        var ok = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "out")), Roots, []);
        Assert.Null(ok.Refused);
        var outside = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_dir, "elsewhere")), Roots, []);
        Assert.Equal(RefusalCodes.Forbidden, outside.Refused!.Code);
        Assert.Contains("outside the data roots", outside.Refused.Reason);
        var dotdot = JobAuthorization.Check("j", new GraphJobSpec(Path.Combine(_data, "..", "x.tif"), null, Path.Combine(_data, "out")), Roots, []);
        Assert.Equal(RefusalCodes.Forbidden, dotdot.Refused!.Code);
        var model = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "out"), ModelPath: "/etc/passwd"), Roots, []);
        Assert.Equal(RefusalCodes.Forbidden, model.Refused!.Code);
        var relative = JobAuthorization.Check("j", new GraphJobSpec("slides/a.tif", null, Path.Combine(_data, "out")), Roots, []);
        Assert.Equal(RefusalCodes.Invalid, relative.Refused!.Code);
        // a newline (or an escape) in a path would split the log line, CSV row and report naming it: refused, shown escaped
        foreach (var (c, shown) in new[] { ('\n', "\\u000A"), ('\u001b', "\\u001B"), ('\t', "\\u0009") })
        {
            var control = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, $"out{c}x")), Roots, []);
            Assert.Equal(RefusalCodes.Invalid, control.Refused!.Code);
            Assert.Equal($"output folder '{Path.Combine(_data, "out")}{shown}x' contains a control character (U+{(int)c:X4}): rename it", control.Refused.Reason);
        }
        // a tissue mask is an input like the image: outside the roots refused, inside kept canonical, the words auto/none kept
        var tissue = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "out"), Tissue: "/etc/passwd"), Roots, []);
        Assert.Equal(RefusalCodes.Forbidden, tissue.Refused!.Code);
        var ownTissue = Path.Combine(_data, "tissue.png");
        File.WriteAllBytes(ownTissue, [1]);
        Assert.Equal(ownTissue, JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "out"), Tissue: ownTissue), Roots, []).Spec!.Tissue);
        Assert.Equal("none", JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "out"), Tissue: "none"), Roots, []).Spec!.Tissue);
        var tissueInOut = JobAuthorization.Check("j", new GraphJobSpec(_img, null, _data, Tissue: ownTissue), Roots, []);
        Assert.Equal(RefusalCodes.Conflict, tissueInOut.Refused!.Code); // the output folder would hold its own input
        var train = JobAuthorization.Check("t", new TrainJobSpec(["/etc/passwd"], Path.Combine(_data, "model")), Roots, []);
        Assert.Equal(RefusalCodes.Forbidden, train.Refused!.Code);
        // a training job's refinement settings outside the ranges of train's options: refused as it is admitted
        foreach (var (spec, why) in new[]
        {
            (new TrainJobSpec([_img], Path.Combine(_data, "model"), RefineThreshold: 1.5), "the refinement threshold must be in [0, 1] (got 1.5)"),
            (new TrainJobSpec([_img], Path.Combine(_data, "model"), RefineWhole: 0), "the refinement's whole-class share must be in (0, 1] (got 0)"),
            (new TrainJobSpec([_img], Path.Combine(_data, "model"), RefineWhole: double.NaN), "the refinement's whole-class share must be in (0, 1] (got NaN)"),
        })
        {
            var bad = JobAuthorization.Check("t", spec, Roots, []);
            Assert.Equal(RefusalCodes.Invalid, bad.Refused!.Code);
            Assert.Contains(why, bad.Refused.Reason);
        }
        Assert.Null(JobAuthorization.Check("t", new TrainJobSpec([_img], Path.Combine(_data, "model"), RefineThreshold: 0.5, RefineWhole: 1), Roots, []).Refused);
        // a node reachable from the network with no roots refuses everything; a loopback one allows absolute paths
        var none = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "out")), new JobPolicy(new DataRoots([]), true), []);
        Assert.Equal(RefusalCodes.Forbidden, none.Refused!.Code);
        Assert.Null(JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_dir, "o")), JobPolicy.Open, []).Refused);
    }

    [Fact]
    public void Paths_AreRecordedCanonical_SoALinkIsResolvedBeforeTheCheck()
    {
        var link = Path.Combine(_data, "link-out");
        Directory.CreateSymbolicLink(link, Path.Combine(_dir));
        var escaped = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(link, "o")), Roots, []);
        Assert.Equal(RefusalCodes.Forbidden, escaped.Refused!.Code);
        var inner = Path.Combine(_data, "inner");
        Directory.CreateDirectory(Path.Combine(_data, "real"));
        Directory.CreateSymbolicLink(inner, Path.Combine(_data, "real"));
        var c = JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(inner, "o")), Roots, []);
        Assert.Equal(Path.Combine(_data, "real", "o"), c.Spec!.OutDir);
    }

    [Fact]
    public void Outputs_MayNotOverlapTheJobsInputs_OrAnotherOpenJobsOutput()
    {
        var mask = Path.Combine(_data, "res", "mask.tif");
        var own = JobAuthorization.Check("j", new GraphJobSpec(_img, mask, Path.Combine(_data, "res")), Roots, []);
        Assert.Equal(RefusalCodes.Conflict, own.Refused!.Code);
        Assert.Contains("mask", own.Refused.Reason);
        var open = new[] { new OutputFootprint("other", Path.Combine(_data, "res"), true), new OutputFootprint("train", Path.Combine(_data, "model"), false) };
        Assert.Equal(RefusalCodes.Conflict, JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "res")), Roots, open).Refused!.Code);
        Assert.Equal(RefusalCodes.Conflict, JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "res", "sub")), Roots, open).Refused!.Code);
        Assert.Equal(RefusalCodes.Conflict, JobAuthorization.Check("j", new GraphJobSpec(_img, null, _data), Roots, open).Refused!.Code);
        Assert.Equal(RefusalCodes.Conflict, JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "model")), Roots, open).Refused!.Code);
        // a graph job below a training job's model folder writes none of its files (the cluster's training does that)
        Assert.Null(JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "model", "graphs", "a")), Roots, open).Refused);
        Assert.Null(JobAuthorization.Check("j", new GraphJobSpec(_img, null, Path.Combine(_data, "res2")), Roots, open).Refused);
        Assert.Null(JobAuthorization.Check("other", new GraphJobSpec(_img, null, Path.Combine(_data, "res")), Roots, open).Refused); // itself
        Assert.Equal(RefusalCodes.Conflict, JobAuthorization.Check("t2", new TrainJobSpec([_img], Path.Combine(_data, "model")), Roots, open).Refused!.Code);
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("a/b")]
    [InlineData(".hidden")]
    [InlineData("")]
    [InlineData("tab\there")]
    public void BadJobIds_AreRefused(string id) =>
        Assert.Equal(RefusalCodes.Invalid, JobAuthorization.Check(id, new GraphJobSpec(_img, null, Path.Combine(_data, "o")), JobPolicy.Open, []).Refused!.Code);

    [Fact]
    public void WorkFolders_AreCreatedExclusively_AndNeverThroughALink()
    {
        var work = Path.Combine(_data, "out", ".work-j");
        Assert.True(SafePaths.CreatePrivateDirectory(work, mayExist: false, "work folder"));
        Assert.Throws<UnsafePathException>(() => SafePaths.CreatePrivateDirectory(work, mayExist: false, "work folder"));
        Assert.False(SafePaths.CreatePrivateDirectory(work, mayExist: true, "work folder")); // the same job resuming
        var planted = Path.Combine(_data, "out", ".work-k");
        Directory.CreateSymbolicLink(planted, _dir);
        Assert.Throws<UnsafePathException>(() => SafePaths.CreatePrivateDirectory(planted, mayExist: true, "work folder"));
    }

    [Fact]
    public void AFolderThatCannotBeMade_FailsNamingTheFolderAndItsRole()
    {
        // a file stands where a parent folder should be; and a place no one may write (/proc)
        var file = Path.Combine(_data, "a-file");
        File.WriteAllText(file, "x");
        foreach (var dir in new[] { Path.Combine(file, "out", ".work-j"), "/proc/actorseg-out/.work-j" })
        {
            var e = Assert.ThrowsAny<IOException>(() => SafePaths.CreatePrivateDirectory(dir, mayExist: false, "work folder"));
            Assert.Contains("work folder", e.Message);
            Assert.Contains(Path.GetDirectoryName(dir)!, e.Message);
            Assert.Contains("cannot be created", e.Message);
        }
    }

    [Fact]
    public void DerivedFiles_ReplaceAPlantedLink_InsteadOfWritingThroughIt()
    {
        var outDir = Path.Combine(_data, "out");
        Directory.CreateDirectory(outDir);
        var precious = Path.Combine(_dir, "precious.txt");
        File.WriteAllText(precious, "keep me");
        var target = Path.Combine(outDir, "segment.json");
        File.CreateSymbolicLink(target, precious);
        SafePaths.WriteAllText(target, "{}");
        Assert.Equal("keep me", File.ReadAllText(precious));
        Assert.Null(new FileInfo(target).LinkTarget);
        Assert.Equal("{}", File.ReadAllText(target));
        Assert.Empty(Directory.GetFiles(outDir, "*.partial"));
        // a folder swapped for a link after the job was checked is caught where the file is opened
        var moved = Path.Combine(_data, "moved");
        Directory.Move(outDir, moved);
        Directory.CreateSymbolicLink(outDir, _dir);
        Assert.Throws<UnsafePathException>(() => SafePaths.WriteAllText(Path.Combine(outDir, "segment.json"), "{}"));
        Assert.False(File.Exists(Path.Combine(_dir, "segment.json")));
    }

    [Fact]
    public void AWriteThatFailsHalfWay_LeavesTheEarlierFileWhole_AndNoTemporaryFile()
    {
        // what a full disk does to an output: the writer throws part-way through
        var outDir = Path.Combine(_data, "out");
        Directory.CreateDirectory(outDir);
        var target = Path.Combine(outDir, "graph.json");
        SafePaths.WriteAllText(target, "{\"good\": true}");
        var e = Assert.Throws<IOException>(() => SafePaths.WriteAtomic(target, s =>
        {
            s.Write(new byte[4096]);
            throw new IOException("No space left on device");
        }));
        Assert.Contains("No space left", e.Message);
        Assert.Equal("{\"good\": true}", File.ReadAllText(target));
        Assert.Equal(new[] { target }, Directory.GetFiles(outDir));
        // the same for writers that take a file name (libvips' savers: the overlay, the OME maps, tissue.png)
        var png = Path.Combine(outDir, "overlay.png");
        File.WriteAllText(png, "old");
        Assert.Throws<IOException>(() => SafePaths.WriteByName(png, ".png", tmp =>
        {
            File.WriteAllBytes(tmp, new byte[4096]);
            throw new IOException("No space left on device");
        }));
        Assert.Equal("old", File.ReadAllText(png));
        Assert.Equal(new[] { target, png }.Order(), Directory.GetFiles(outDir).Order());
        SafePaths.WriteByName(png, ".png", tmp => File.WriteAllText(tmp, "new"));
        Assert.Equal("new", File.ReadAllText(png));
        Assert.Equal(new[] { target, png }.Order(), Directory.GetFiles(outDir).Order());
    }

    [Fact]
    public void AssignmentsNamingOtherPaths_AreRefusedByTheWorker()
    {
        var outDir = Path.Combine(_data, "out");
        Directory.CreateDirectory(outDir);
        var roots = new DataRoots([_data]);
        var r = new ResultRef(Path.Combine(outDir, "graph", "nodes.tif"), 1, "0");
        var good = new PaintAssignment("j", "a", _img, r, r, Path.Combine(outDir, "mask.tif"), Path.Combine(outDir, "overlay.png"), 1, outDir);
        Assert.Null(AssignmentPaths.Check(good, roots));
        Assert.NotNull(AssignmentPaths.Check(good with { MaskPath = Path.Combine(_data, "slides", "a.tif") }, roots));
        Assert.NotNull(AssignmentPaths.Check(good with { OutDir = "/etc" }, roots));
        Assert.NotNull(AssignmentPaths.Check(good with { OutDir = null }, roots));
        Assert.NotNull(AssignmentPaths.Check(good with { NodeMap = r with { Path = "/etc/shadow" } }, roots));
        var tile = new TileAssignment("j", "a", Path.Combine(outDir, ".work-j", "job.json"), 0, 1, outDir);
        Assert.Null(AssignmentPaths.Check(tile, roots));
        Assert.NotNull(AssignmentPaths.Check(tile with { ManifestPath = Path.Combine(_dir, "job.json") }, roots));
        Assert.NotNull(AssignmentPaths.Check(tile with { JobId = "../j" }, roots));
        var cls = new ClassifyNodes("j", "a", new ResultRef(Path.Combine(outDir, "graph.npz"), 1, "0"), Path.Combine(_data, "m.model"), Path.Combine(outDir, "classes.u8"), null, 1, outDir);
        Assert.Null(AssignmentPaths.Check(cls, roots));
        Assert.NotNull(AssignmentPaths.Check(cls with { ClassesPath = Path.Combine(_dir, "classes.u8") }, roots));
        Assert.NotNull(AssignmentPaths.Check(new TrainModel("t", new TrainJobSpec([_img], _dir), 1), roots));
    }

    [Theory]
    [InlineData("Host=db;Username=u;Password=hunter2;Database=d")]
    [InlineData("Host=db;PWD=hunter2")]
    [InlineData("Host=db;pwd = hunter2")]
    [InlineData("Host=db;User Password=hunter2")]
    [InlineData("Data Source=x.db;Password='hunter2;still'")]
    [InlineData("Host=db;SSL Password=hunter2;Password=hunter2")]
    public void ConnectionStrings_AreRedacted_WhateverTheKeySpelling(string cs)
    {
        var shown = Secrets.Redact(cs);
        Assert.DoesNotContain("hunter2", shown);
        Assert.Contains("***", shown);
        Assert.DoesNotContain("hunter2", new PersistenceOptions { Provider = "postgresql", ConnectionString = cs }.Describe());
    }

    [Fact]
    public void NodeSettings_RefuseExposureWithoutTls_AndPlaceholderSecrets()
    {
        var e = Assert.Throws<ArgumentException>(() => new NodeOptions { Hostname = "0.0.0.0" }.Validate());
        Assert.Contains("without TLS", e.Message);
        new NodeOptions { Hostname = "0.0.0.0", Insecure = true }.Validate();
        new NodeOptions { Hostname = "127.0.0.5" }.Validate();
        Assert.Contains("placeholder", Assert.Throws<ArgumentException>(() => new NodeOptions { ApiToken = "change-me-too" }.Validate()).Message);
        Assert.Throws<ArgumentException>(() => new NodeOptions { ApiToken = "short" }.Validate());
        var pg = new NodeOptions { Persistence = new PersistenceOptions { Provider = "postgresql", ConnectionString = "Host=h;Password=change-me;Database=d" } };
        Assert.Contains("placeholder", Assert.Throws<ArgumentException>(() => pg.Validate()).Message);
        // TLS needs all three files; seeds follow the transport
        Assert.Throws<ArgumentException>(() => new NodeOptions { Tls = new TlsOptions { Certificate = "/nope.crt" } }.Validate());
        var ca = new ActorSeg.Tests.Cluster.TestCa(Path.Combine(_dir, "certs"), "c");
        var id = ca.Issue("n");
        var tls = new NodeOptions { Tls = new TlsOptions { Certificate = id.Cert, Key = id.Key, Ca = ca.CaPath }, Seeds = ["akka.tcp://actorseg@127.0.0.1:4053"] }.Validate();
        Assert.Equal("akka.ssl.tcp://actorseg@127.0.0.1:4053", tls.Seeds[0]);
    }
}
