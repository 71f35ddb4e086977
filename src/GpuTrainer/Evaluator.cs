using TorchSharp;
using static TorchSharp.torch;

namespace ActorSeg.GpuTrainer;

/// <summary>Pixel-level metrics of node predictions, exact against the mask: every pixel of a node takes the node's class.
/// <see cref="Confusion"/> is row-major, row = true class, column = predicted class. <see cref="Precision"/> and
/// <see cref="Recall"/> are per class (null in metrics written before they were kept).</summary>
public sealed record PixelMetrics(long[] Confusion, int Classes, double Accuracy, double[] F1, double MacroF1, double[] IoU,
    double MicroJaccard, double SuperpixelCeiling, long Pixels, double[]? Precision = null, double[]? Recall = null)
{
    /// <summary>From each node's class histogram (pixels of each true class) and its predicted class.</summary>
    public static PixelMetrics FromHistograms(IEnumerable<(long[] Hist, int Classes, long[] Pred)> graphs, int classes)
    {
        var cm = new long[classes * classes];
        long ceilingRight = 0;
        foreach (var (hist, k, pred) in graphs)
        {
            for (int v = 0; v < pred.Length; v++)
            {
                long best = 0;
                for (int t = 0; t < k; t++)
                {
                    long c = hist[v * k + t];
                    if (c == 0) continue;
                    if (t >= classes) throw new InvalidDataException($"class {t} is not known to the model");
                    cm[t * classes + pred[v]] += c;
                    best = Math.Max(best, c);
                }
                ceilingRight += best;
            }
        }
        return FromConfusion(cm, classes, (double)ceilingRight / Math.Max(1, cm.Sum()));
    }

    /// <summary>From a pixel confusion matrix (row = true class, column = predicted; e.g. counted over a painted mask and
    /// its ground truth) and the superpixel ceiling, which only the graph knows. A class absent from both truth and
    /// prediction scores 1 (nothing to get wrong); precision of a class never predicted, or recall of one never present, is 0
    /// unless the other is empty too.</summary>
    public static PixelMetrics FromConfusion(long[] cm, int classes, double superpixelCeiling)
    {
        if (cm.Length != classes * classes) throw new ArgumentException($"a confusion matrix of {classes} classes has {classes * classes} cells, not {cm.Length}");
        long total = cm.Sum(), tp = 0;
        var f1 = new double[classes]; var iou = new double[classes]; var precision = new double[classes]; var recall = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            long tpc = cm[c * classes + c], row = 0, col = 0;
            for (int j = 0; j < classes; j++) { row += cm[c * classes + j]; col += cm[j * classes + c]; }
            tp += tpc;
            f1[c] = row + col == 0 ? 1 : 2.0 * tpc / (row + col);
            iou[c] = row + col - tpc == 0 ? 1 : (double)tpc / (row + col - tpc);
            precision[c] = col == 0 ? (row == 0 ? 1 : 0) : (double)tpc / col;
            recall[c] = row == 0 ? (col == 0 ? 1 : 0) : (double)tpc / row;
        }
        return new PixelMetrics(cm, classes, (double)tp / Math.Max(1, total), f1, f1.Average(), iou,
            (double)tp / Math.Max(1, 2 * total - tp), superpixelCeiling, total, precision, recall);
    }
}

public static class Predictor
{
    /// <summary>The class of every node of a graph.</summary>
    public static long[] Predict(ModelSpec spec, GnnModel model, GraphSample g, Device device) => PredictWithProbabilities(spec, model, g, device, probabilities: false).Classes;

    /// <summary>The class of every node of a graph and, when asked, the softmax class probabilities (N×C, row per node).</summary>
    public static (long[] Classes, float[] Probabilities) PredictWithProbabilities(ModelSpec spec, GnnModel model, GraphSample g, Device device, bool probabilities = true)
    {
        spec.CheckCompatible(g);
        int F = g.F;
        var x = new float[g.X.Length];
        for (int v = 0; v < g.Nodes; v++) for (int f = 0; f < F; f++) x[v * F + f] = (g.X[v * F + f] - spec.FeatureMean[f]) / spec.FeatureStd[f];
        using var scope = torch.NewDisposeScope();
        model.eval();
        using var _ = torch.no_grad();
        var logits = model.forward(torch.tensor(x, [g.Nodes, F], device: device), torch.tensor(g.EdgeIndex, [2, g.E], device: device), torch.tensor(g.EdgeWeight, device: device));
        // finite weights (checked when the model was loaded) and finite features (checked when the graph was) can still
        // overflow on features far outside what the model was trained on: refused, never painted or reported as NaN
        if (!logits.isfinite().all().item<bool>())
        {
            long bad = logits.isfinite().all(1).logical_not().sum().item<long>();
            throw new InvalidDataException($"{g.Path}: the model's outputs are not finite (NaN or infinity) for {bad:N0} of {g.Nodes:N0} nodes; " +
                                           "the graph's features lie far outside those the model was trained on, or the model is damaged");
        }
        var classes = logits.argmax(1).cpu().data<long>().ToArray();
        return (classes, probabilities ? torch.nn.functional.softmax(logits, 1).to(torch.float32).cpu().data<float>().ToArray() : []);
    }
}
