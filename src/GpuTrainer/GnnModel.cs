using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ActorSeg.GpuTrainer;

/// <summary>The architecture of a node classifier (stored in every model file).</summary>
public sealed record GnnArchitecture
{
    /// <summary>graphconv (published), sage, gcn or gat.</summary>
    public string Conv { get; init; } = "graphconv";
    public int Layers { get; init; } = 3;
    public int Hidden { get; init; } = 32;
    public double Dropout { get; init; } = 0.5;
    /// <summary>leaky_relu (published), relu or elu.</summary>
    public string Activation { get; init; } = "leaky_relu";

    public void Validate()
    {
        if (Conv is not ("graphconv" or "sage" or "gcn" or "gat")) throw new ArgumentException($"conv must be graphconv, sage, gcn or gat (got '{Conv}')");
        if (Layers < 1 || Layers > 16) throw new ArgumentException($"layers must be in [1, 16] (got {Layers})");
        if (Hidden < 1 || Hidden > 4096) throw new ArgumentException($"hidden must be in [1, 4096] (got {Hidden})");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentException($"dropout must be in [0, 1) (got {Dropout})");
        if (Activation is not ("leaky_relu" or "relu" or "elu")) throw new ArgumentException($"activation must be leaky_relu, relu or elu (got '{Activation}')");
    }
}

/// <summary>A stack of message-passing layers: the published model is 3 GraphConv layers, width 32, leaky ReLU, dropout 0.5.</summary>
public sealed class GnnModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly ModuleList<GraphLayer> layers = new();
    private readonly GnnArchitecture _arch;

    public GnnModel(GnnArchitecture arch, int features, int classes) : base(nameof(GnnModel))
    {
        arch.Validate();
        _arch = arch;
        for (int i = 0; i < arch.Layers; i++)
        {
            long fin = i == 0 ? features : arch.Hidden, fout = i == arch.Layers - 1 ? classes : arch.Hidden;
            layers.Add(arch.Conv switch
            {
                "sage" => new SageConv(fin, fout),
                "gcn" => new GcnConv(fin, fout),
                "gat" => new GatConv(fin, fout),
                _ => new GraphConv(fin, fout),
            });
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor edgeIndex, Tensor weight)
    {
        for (int i = 0; i < layers.Count; i++)
        {
            x = layers[i].forward(x, edgeIndex, weight);
            if (i < layers.Count - 1)
            {
                x = _arch.Activation switch
                {
                    "relu" => nn.functional.relu(x),
                    "elu" => nn.functional.elu(x, 1.0),
                    _ => nn.functional.leaky_relu(x),
                };
                x = nn.functional.dropout(x, _arch.Dropout, training);
            }
        }
        return x;
    }
}
