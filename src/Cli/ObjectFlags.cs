using System.CommandLine;
using ActorSeg.Core.IO;

namespace ActorSeg.Cli;

/// <summary><c>--objects</c> and <c>--simplify</c>: the segmentation's regions as QuPath objects (objects.geojson), shared by segment, submit and batch.</summary>
public static class ObjectFlags
{
    public static Option<string> Format()
    {
        var o = new Option<string>("--objects")
        {
            DefaultValueFactory = _ => "geojson",
            Description = "The mask's regions as QuPath objects in OUT: geojson (objects.geojson), geojson.gz (objects.geojson.gz) or none. One polygon with holes per connected region of a class, in level-0 pixels.",
        };
        o.AcceptOnlyFromAmong("geojson", "geojson.gz", "none");
        return o;
    }

    public static Option<double> Simplify()
    {
        var o = new Option<double>("--simplify")
        {
            DefaultValueFactory = _ => 0,
            Description = "Simplify the objects' polygons with this tolerance in level-0 pixels (topology preserving; 0 = exact pixel edges, the default). The reported areas stay the pixel counts.",
        };
        o.Validators.Add(r => { if (OptionRanges.TryValue(r, out double s) && ObjectExporter.ValidateSimplify(s) is { } why) r.AddError(why); });
        return o;
    }
}
