#!/usr/bin/env python3
"""The GPU machine's side of bench/gpu.sh (issue #14): needs python3, numpy and torch only; torch_geometric when present.
Each subcommand prints one JSON line (appended to a results file by gpu.sh); `table` turns them into markdown.
  gpu_bench.py env
  gpu_bench.py gnn GRAPHS_DIR [--impl pyg|sparse] [--device auto|cuda|cpu]
  gpu_bench.py unet FIELDS_DIR PEERS_DIR [--max-epochs N] [--max-seconds S]
  gpu_bench.py unet-probe FIELDS_DIR PEERS_DIR --size N [--batches 1,2]
  gpu_bench.py full-graphs GRAPHS_DIR OUT_DIR     (the carried graphs in the layout actorseg's NpzReader reads)
  gpu_bench.py table RESULTS.jsonl"""
import argparse, ast, glob, json, os, random, resource, sys, time, types
import numpy as np


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def pick_device(torch, requested):
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    return torch.device("cuda")


class Clock:
    """Wall seconds that wait for the GPU's queued work."""
    def __init__(self, torch, dev):
        self.torch, self.cuda = torch, dev.type == "cuda"

    def __call__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
        return time.perf_counter()


def gpu_peaks(torch, dev):
    if dev.type != "cuda":
        return dict(gpu_peak_allocated_mib=None, gpu_peak_reserved_mib=None)
    return dict(gpu_peak_allocated_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1),
                gpu_peak_reserved_mib=round(torch.cuda.max_memory_reserved() / 2**20, 1))


def warm_up(torch, dev):
    """CUDA context, cuBLAS and the caching allocator start outside every timed or measured span."""
    if dev.type == "cuda":
        a = torch.randn(256, 256, device=dev)
        (a @ a).sum().item()
        del a
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def cmd_env(a):
    import torch
    out = dict(kind="env", python=sys.version.split()[0], numpy=np.__version__, torch=torch.__version__,
               torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               cxx11_abi=bool(getattr(torch, "compiled_with_cxx11_abi", lambda: None)()),
               torch_lib=os.path.join(os.path.dirname(torch.__file__), "lib"))
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), gpus=torch.cuda.device_count())
    try:
        import torch_geometric
        out["torch_geometric"] = torch_geometric.__version__
    except Exception as e:  # absent, or present but broken against this torch
        out["torch_geometric"] = None
        out["torch_geometric_error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))


# ---------------------------------------------------------------- the GNN: ActorSeg's default recipe ("best")
# Recipes.Best: texture features in absolute units, region-adjacency edges, each node's incoming weights proportional to the shared
# boundary length and summing to 1 (GraphSample.Load, edges "rag"); 4 GraphConv layers of width 64 (x'_i = W1 x_i +
# W2 Σ_j w_ji x_j), leaky ReLU (slope 0.01) and dropout 0.5 between layers; features normalised with the training nodes'
# mean and standard deviation; cross entropy weighted max(count)/count over the training nodes, unlabelled (−1)
# ignored; Adam lr 0.01; one step per training graph per epoch; early stopping on the validation graphs' mean loss
# (min delta 1e-4, patience 20, at most 500 epochs), the best epoch's weights kept (Trainer.Train, TrainOptions).
ARCH = dict(layers=4, hidden=64, dropout=0.5, lr=0.01, max_epochs=500, patience=20, min_delta=1e-4)


def load_graph(path):
    z = np.load(path)
    x = z["x"].astype(np.float32)
    n = x.shape[0]
    ei = z["rag_edge_index"].astype(np.int64)
    ln = z["rag_boundary_length"].astype(np.float64)
    total = np.bincount(ei[1], weights=ln, minlength=n)
    w = (ln / total[ei[1]]).astype(np.float32)
    return dict(path=path, x=x, ei=ei, w=w, y=z["y"].astype(np.int64), hist=z["class_hist"].astype(np.int64), n=n)


def split_graphs(graph_dir):
    """train/*.npz: the last one by name validates (actorseg train --val-frac 0.34 holds out one graph of three;
    which one depends on .NET's Random), the rest train; held/*.npz is held out."""
    tr = sorted(glob.glob(os.path.join(graph_dir, "train", "*.npz")))
    held = sorted(glob.glob(os.path.join(graph_dir, "held", "*.npz")))
    if len(tr) < 2 or not held:
        raise SystemExit(f"{graph_dir}: needs at least two graphs under train/ and one under held/")
    return tr[:-1], tr[-1:], held


def make_model(torch, impl, F, K):
    nn = torch.nn

    class SparseGraphConv(nn.Module):
        # ActorSeg's own formulation (Layers.cs): the aggregation as one sparse product A·X with A[i, j] = w_ji
        def __init__(self, fin, fout):
            super().__init__()
            self.root = nn.Linear(fin, fout, bias=True)
            self.rel = nn.Linear(fin, fout, bias=False)

        def forward(self, x, g):
            return self.root(x) + self.rel(torch.sparse.mm(g["adj"], x))

    if impl == "pyg":
        from torch_geometric.nn import GraphConv  # x'_i = W1 x_i + W2 Σ_j e_ji x_j (aggr "add")

        def conv(fin, fout):
            c = GraphConv(fin, fout, aggr="add")
            return lambda x, g, c=c: c(x, g["ei"], g["w"]), c
    else:
        def conv(fin, fout):
            c = SparseGraphConv(fin, fout)
            return c, c

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            calls, mods = [], []
            for i in range(ARCH["layers"]):
                fin = F if i == 0 else ARCH["hidden"]
                fout = K if i == ARCH["layers"] - 1 else ARCH["hidden"]
                f, m = conv(fin, fout)
                calls.append(f); mods.append(m)
            self.convs = nn.ModuleList(mods)
            self.calls = calls

        def forward(self, x, g):
            for i, f in enumerate(self.calls):
                x = f(x, g)
                if i < len(self.calls) - 1:
                    x = torch.nn.functional.leaky_relu(x, 0.01)
                    x = torch.nn.functional.dropout(x, ARCH["dropout"], self.training)
            return x

    return Net()


def pixel_metrics(cm):
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    rows, cols = cm.sum(1), cm.sum(0)
    f1 = [1.0 if rows[c] + cols[c] == 0 else 2 * tp[c] / (rows[c] + cols[c]) for c in range(len(tp))]
    return float(tp.sum() / max(1, cm.sum())), float(np.mean(f1))


def cmd_gnn(a):
    import torch
    F_ = torch.nn.functional
    dev = pick_device(torch, a.device)
    impl = a.impl
    if impl == "pyg":
        import torch_geometric  # noqa: F401  (fails loudly: gpu.sh asks for pyg only when it imports)
    torch.manual_seed(a.seed); np.random.seed(a.seed); random.seed(a.seed)
    clock = Clock(torch, dev)
    warm_up(torch, dev)
    t0 = clock()
    tr, va, held = split_graphs(a.graphs)
    graphs = {p: load_graph(p) for p in tr + va + held}
    Fdim = graphs[tr[0]]["x"].shape[1]
    K = max(2, max(int(g["y"].max()) + 1 for g in graphs.values()), max(g["hist"].shape[1] for g in graphs.values()))
    # normalisation and class weights from the training graphs' labelled nodes (double precision, as Trainer.cs)
    xs = np.concatenate([graphs[p]["x"][graphs[p]["y"] >= 0] for p in tr]).astype(np.float64)
    mean = xs.mean(0); std = np.maximum(1e-6, np.sqrt(np.maximum(0, (xs * xs).mean(0) - mean * mean)))
    counts = np.bincount(np.concatenate([graphs[p]["y"][graphs[p]["y"] >= 0] for p in tr]), minlength=K).astype(np.float64)
    cw = torch.tensor(counts.max() / np.maximum(counts, 1), dtype=torch.float32, device=dev)

    def to_dev(g):
        x = torch.tensor(((g["x"] - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32), device=dev)
        ei = torch.tensor(g["ei"], device=dev); w = torch.tensor(g["w"], device=dev)
        d = dict(x=x, ei=ei, w=w, y=torch.tensor(g["y"], device=dev), n=g["n"])
        if impl == "sparse":
            d["adj"] = torch.sparse_coo_tensor(torch.stack([ei[1], ei[0]]), w, (g["n"], g["n"])).coalesce()
        return d

    data = {p: to_dev(g) for p, g in graphs.items()}
    t_load = clock() - t0
    model = make_model(torch, impl, Fdim, K).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=ARCH["lr"])
    best, best_epoch, since, state, epoch = float("inf"), 0, 0, None, 0
    t1 = clock()
    for epoch in range(1, ARCH["max_epochs"] + 1):
        model.train()
        for p in tr:
            d = data[p]
            opt.zero_grad()
            loss = F_.cross_entropy(model(d["x"], d), d["y"], weight=cw, ignore_index=-1)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            vl = sum(F_.cross_entropy(model(data[p]["x"], data[p]), data[p]["y"], weight=cw, ignore_index=-1).item() for p in va) / len(va)
        if not np.isfinite(vl):
            raise SystemExit(f"training diverged at epoch {epoch}")
        if vl < best - ARCH["min_delta"]:
            best, best_epoch, since = vl, epoch, 0
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= ARCH["patience"]:
                break
    t_train = clock() - t1
    model.load_state_dict(state)
    model.eval()
    # held-out: pixel-exact, from each node's class histogram (every pixel of a node takes the node's class), as
    # actorseg evaluate measures it without the node map
    cm = np.zeros((K, K), np.int64); ceiling = 0; pixels = 0; t_inf = 0.0
    for p in held:
        d, g = data[p], graphs[p]
        t2 = clock()
        with torch.no_grad():
            pred = model(d["x"], d).argmax(1)
        pred = pred.cpu().numpy()
        t_inf += clock() - t2
        h = g["hist"]
        for t in range(h.shape[1]):
            np.add.at(cm[t], pred, h[:, t])
        ceiling += int(h.max(1).sum()); pixels += int(h.sum())
    acc, f1 = pixel_metrics(cm)
    size = int(np.load(held[0])["image_shape"][0])
    nodes = sum(graphs[p]["n"] for p in tr)
    out = dict(kind="gnn", impl=impl, device=dev.type, size=size, graphs=os.path.normpath(a.graphs),
               train_graphs=len(tr), val_graphs=len(va), train_nodes=int(nodes),
               train_edges=int(sum(graphs[p]["ei"].shape[1] for p in tr)), features=int(Fdim), classes=int(K),
               epochs=epoch, best_epoch=best_epoch, best_val_loss=round(best, 5),
               load_s=round(t_load, 3), train_s=round(t_train, 3), s_per_epoch=round(t_train / max(1, epoch), 4),
               held_inference_s=round(t_inf, 4), pixel_accuracy=acc, macro_f1=f1,
               superpixel_ceiling=ceiling / max(1, pixels), accuracy_kind="pixel-exact (node class histograms)",
               peak_rss_mib=round(rss_mib(), 1), **gpu_peaks(torch, dev))
    print(json.dumps(out))


# ---------------------------------------------------------------- the peer UNet (../shared/peers/unet_peer.py)
def import_peer(peers):
    """unet_peer.py imports reference_pipeline, which needs scikit-image, scipy and tifffile at import time. Where they
    are missing, the few functions the UNet uses (zscore, to_gray, metrics) are taken from reference_pipeline.py's own
    source (parsed, not imported), so the peer runs unchanged."""
    sys.path.insert(0, peers)
    try:
        import reference_pipeline  # noqa: F401
        how = "reference_pipeline imported"
    except ImportError as e:
        src = open(os.path.join(peers, "reference_pipeline.py")).read()
        tree = ast.parse(src)
        keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("zscore", "to_gray", "metrics")]
        mod = types.ModuleType("reference_pipeline")
        mod.np = np
        exec(compile(ast.Module(body=keep, type_ignores=[]), "reference_pipeline.py", "exec"), mod.__dict__)
        mod.read = lambda p: (_ for _ in ()).throw(RuntimeError("reference_pipeline.read is not available here"))
        sys.modules["reference_pipeline"] = mod
        how = f"reference_pipeline's zscore, to_gray, metrics taken from its source ({e.name or e} missing)"
    import unet_peer
    return unet_peer, sys.modules["reference_pipeline"], how


def fields(fields_dir):
    tr = sorted(glob.glob(os.path.join(fields_dir, "train", "*.npz")))
    held = sorted(glob.glob(os.path.join(fields_dir, "held", "*.npz")))
    if len(tr) < 2 or not held:
        raise SystemExit(f"{fields_dir}: needs at least two fields under train/ and one under held/")
    return tr, held


def cmd_unet(a):
    import torch
    dev = pick_device(torch, a.device)
    up, rp, how = import_peer(a.peers)
    log(f"unet peer: {how}")
    # the split of dataset_eval.py: 15 % of the training fields (at least one) validate, after a seeded shuffle
    torch.manual_seed(0); random.seed(0); np.random.seed(0)
    tr, held = fields(a.fields)
    random.Random(0).shuffle(tr)
    nv = max(1, int(len(tr) * 0.15)); va, tr = tr[:nv], tr[nv:]
    clock = Clock(torch, dev)
    warm_up(torch, dev)
    t0 = clock()

    def load(p):
        z = np.load(p)
        x, _ = up.prep(z["image"])
        m = z["mask"].astype(np.int64)
        y = torch.full(x.shape[2:], -100, dtype=torch.long); y[:m.shape[0], :m.shape[1]] = torch.from_numpy(m)
        return x.to(dev), y[None].to(dev), m

    T = [load(p) for p in tr]; V = [load(p) for p in va]
    t_load = clock() - t0
    classes = 2
    counts = sum(np.bincount(y[y >= 0].cpu().numpy(), minlength=classes) for _, y, _ in T)
    w = torch.tensor(counts.max() / np.maximum(counts, 1), dtype=torch.float32, device=dev)
    model = up.UNet(classes).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss(weight=w, ignore_index=-100)
    best, state, since, ep, stop = 1e9, None, 0, 0, "max epochs"
    t1 = clock()
    # unet_peer.train_unet's loop, on the device: batches of up to 4 same-shaped fields, random flips, validation
    # loss every epoch, early stopping (min delta 1e-3, patience 10); a time cap ends it at an epoch's end
    for ep in range(1, a.max_epochs + 1):
        model.train(); idx = np.random.permutation(len(T))
        for i in range(0, len(idx), 4):
            b = idx[i:i + 4]
            if len({tuple(T[j][0].shape) for j in b}) > 1: b = b[:1]
            xb = torch.cat([T[j][0] for j in b]); yb = torch.cat([T[j][1] for j in b])
            if np.random.rand() < 0.5: xb, yb = xb.flip(-1), yb.flip(-1)
            if np.random.rand() < 0.5: xb, yb = xb.flip(-2), yb.flip(-2)
            opt.zero_grad(); l = lossf(model(xb), yb); l.backward(); opt.step()
        model.eval()
        with torch.no_grad():
            vl = sum(lossf(model(x), y).item() for x, y, _ in V) / len(V)
        log(f"unet epoch {ep}: validation loss {vl:.4f}")
        if vl < best - 1e-3:
            best, since, state = vl, 0, {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= 10: stop = "early stopping"; break
        if clock() - t1 > a.max_seconds: stop = f"time cap {a.max_seconds:.0f} s"; break
    t_train = clock() - t1
    model.load_state_dict(state); model.eval()
    preds, truths, t_inf = [], [], 0.0
    for p in held:
        z = np.load(p)
        x, (h, wd) = up.prep(z["image"])
        t2 = clock()
        with torch.no_grad():
            pr = model(x.to(dev)).argmax(1)[0, :h, :wd]
        pr = pr.cpu().numpy()
        t_inf += clock() - t2
        preds.append(pr.reshape(-1)); truths.append(z["mask"].astype(np.int64).reshape(-1))
    m = rp.metrics(np.concatenate(preds), np.concatenate(truths), classes)
    size = int(T[0][2].shape[0])
    out = dict(kind="unet", device=dev.type, size=size, train_fields=len(tr), val_fields=len(va), epochs=ep, stop=stop,
               best_val_loss=round(best, 5), load_s=round(t_load, 3), train_s=round(t_train, 3),
               s_per_epoch=round(t_train / max(1, ep), 3), held_inference_s=round(t_inf, 3),
               pixel_accuracy=float(m["accuracy"]), macro_f1=float(m["f1_macro"]), accuracy_kind="pixel-exact",
               peak_rss_mib=round(rss_mib(), 1), **gpu_peaks(torch, dev))
    print(json.dumps(out))


def cmd_unet_probe(a):
    """One training field of SIZE² (a mosaic of the carried training fields: pixels do not travel at 8192²): a fresh
    peer UNet, whole-image steps (forward, backward, Adam) at each batch size; the second and third step are timed."""
    import torch
    dev = pick_device(torch, a.device)
    if dev.type == "cpu" and a.size > 2048:
        print(json.dumps(dict(kind="unet-probe", device="cpu", size=a.size, skipped=f"{a.size}² on the CPU (dry run)")))
        return
    up, _, _ = import_peer(a.peers)
    torch.manual_seed(0); np.random.seed(0)
    tr, _ = fields(a.fields)
    imgs = [np.load(p) for p in tr]
    f = imgs[0]["image"].shape[0]
    reps = -(-a.size // f)
    grid = lambda key: np.block([[imgs[(r * reps + c) % len(imgs)][key] for c in range(reps)] for r in range(reps)])[:a.size, :a.size]
    x, _ = up.prep(grid("image")); y = torch.from_numpy(grid("mask").astype(np.int64))[None]
    clock = Clock(torch, dev)
    for bs in [int(b) for b in a.batches.split(",")]:
        res = dict(kind="unet-probe", device=dev.type, size=a.size, batch=bs, mosaic_of=len(tr))
        model = opt = xb = yb = None
        try:
            warm_up(torch, dev)
            model = up.UNet(2).to(dev); opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            lossf = torch.nn.CrossEntropyLoss()
            xb = x.repeat(bs, 1, 1, 1).to(dev); yb = y.repeat(bs, 1, 1).to(dev)
            times = []
            for _ in range(3):
                t = clock(); opt.zero_grad(); l = lossf(model(xb), yb); l.backward(); opt.step(); times.append(clock() - t)
            res.update(step_s=round(float(np.mean(times[1:])), 3), first_step_s=round(times[0], 3), **gpu_peaks(torch, dev))
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
            msg = str(e).split("\n")[0]
            res.update(error=("out of memory: " if "out of memory" in msg else "") + msg[:300], **gpu_peaks(torch, dev))
        finally:
            del model, opt, xb, yb
            if dev.type == "cuda": torch.cuda.empty_cache()
        res["peak_rss_mib"] = round(rss_mib(), 1)
        print(json.dumps(res), flush=True)


def cmd_full_graphs(a):
    """The carried graphs (int32 edges, LZMA members) rewritten as actorseg graph writes the arrays actorseg train and
    evaluate read (int64 edge index and labels, plain or deflated zip members), for ActorSeg's own trainer."""
    for p in sorted(glob.glob(os.path.join(a.graphs, "*", "*.npz"))):
        part, name = p.split(os.sep)[-2], os.path.basename(p)[:-4]
        z = np.load(p)
        d = os.path.join(a.out, part, name); os.makedirs(d, exist_ok=True)
        np.savez(os.path.join(d, "graph.npz"), x=z["x"], rag_edge_index=z["rag_edge_index"].astype(np.int64),
                 rag_boundary_length=z["rag_boundary_length"].astype(np.int32), y=z["y"].astype(np.int64),
                 class_hist=z["class_hist"].astype(np.int64), feature_names=z["feature_names"],
                 seed_spacing=np.float64(z["seed_spacing"]), image_shape=z["image_shape"].astype(np.int64),
                 area=z["area"].astype(np.int64))


# ---------------------------------------------------------------- the table
def cmd_table(a):
    rows = [json.loads(l) for l in open(a.results) if l.strip().startswith("{")]
    env = next((r for r in rows if r["kind"] == "env"), {})
    mib = lambda v: "–" if v is None else f"{v:,.0f}"
    pct = lambda v: "–" if v is None else f"{100 * v:.2f} %"
    print(f"GPU: {env.get('gpu', 'none (CPU fallback)')}{' (' + str(env.get('gpu_memory_gib')) + ' GiB)' if env.get('gpu') else ''}; "
          f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}); torch_geometric {env.get('torch_geometric') or 'absent'}; "
          f"python {env.get('python')}, numpy {env.get('numpy')}")
    print()
    print("| run | device | field | training data | epochs | training s | s / epoch | held-out pixel accuracy | macro F1 | "
          "superpixel ceiling | peak GPU allocated MiB | peak GPU reserved MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        k = r["kind"]
        if k == "gnn":
            name = "GNN, default recipe, " + ("PyG GraphConv" if r["impl"] == "pyg" else "plain torch sparse A·X")
            data = f"{r['train_graphs']} graph(s), {r['train_nodes']:,} nodes, {r['train_edges']:,} edges; {r['val_graphs']} validating"
            print(f"| {name} | {r['device']} | {r['size']}² | {data} | {r['epochs']} (best {r['best_epoch']}) | {r['train_s']:.2f} | "
                  f"{r['s_per_epoch']:.4f} | {pct(r['pixel_accuracy'])} | {r['macro_f1']:.4f} | {pct(r['superpixel_ceiling'])} | "
                  f"{mib(r['gpu_peak_allocated_mib'])} | {mib(r['gpu_peak_reserved_mib'])} | {mib(r['peak_rss_mib'])} |")
        elif k == "unet":
            print(f"| UNet peer (unet_peer.py, whole fields; {r['stop']}) | {r['device']} | {r['size']}² | {r['train_fields']} field(s); "
                  f"{r['val_fields']} validating | {r['epochs']} | {r['train_s']:.1f} | {r['s_per_epoch']:.3f} | "
                  f"{pct(r['pixel_accuracy'])} | {r['macro_f1']:.4f} | – | {mib(r['gpu_peak_allocated_mib'])} | "
                  f"{mib(r['gpu_peak_reserved_mib'])} | {mib(r['peak_rss_mib'])} |")
        elif k == "unet-probe":
            if "skipped" in r:
                print(f"| UNet peer, one training step at {r['size']}² | {r['device']} | {r['size']}² | skipped: {r['skipped']} | | | | | | | | | |")
                continue
            what = f"batch {r['batch']} (a mosaic of the {r['mosaic_of']} training fields)"
            if "error" in r:
                print(f"| UNet peer, one training step at {r['size']}² | {r['device']} | {r['size']}² | {what} | – | {r['error']} | | | | | "
                      f"{mib(r['gpu_peak_allocated_mib'])} | {mib(r['gpu_peak_reserved_mib'])} | {mib(r['peak_rss_mib'])} |")
            else:
                print(f"| UNet peer, one training step at {r['size']}² | {r['device']} | {r['size']}² | {what} | – | "
                      f"{r['step_s']:.3f} per step (first {r['first_step_s']:.2f}) | – | – | – | – | "
                      f"{mib(r['gpu_peak_allocated_mib'])} | {mib(r['gpu_peak_reserved_mib'])} | {mib(r['peak_rss_mib'])} |")
        elif k == "failed":
            print(f"| {r['name']} | | | failed: see {r['name']}.log | | | | | | | | | |")
        elif k == "actorseg":
            if r.get("error"):
                print(f"| ActorSeg's own trainer (actorseg train) | {r.get('device', '–')} | {r.get('size', '–')}² | not run: {r['error']} | | | | | | | | | |")
            else:
                print(f"| ActorSeg's own trainer (actorseg train, TorchSharp on the python package's libtorch) | {r['device']} | {r['size']}² | "
                      f"{r['data']} | {r['epochs']} | {r['train_s']} | – | {r['pixel_accuracy']} | {r['macro_f1']} | {r['ceiling']} | "
                      + (f"{r['gpu_used_mib']} (nvidia-smi, process incl. context)" if r['gpu_used_mib'] != "–" else "–") + f" | – | {r['peak_rss_mib']} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("env")
    g = sub.add_parser("gnn"); g.add_argument("graphs"); g.add_argument("--impl", choices=["pyg", "sparse"], default="sparse")
    g.add_argument("--device", default="auto"); g.add_argument("--seed", type=int, default=1)
    u = sub.add_parser("unet"); u.add_argument("fields"); u.add_argument("peers"); u.add_argument("--device", default="auto")
    u.add_argument("--max-epochs", type=int, default=1000); u.add_argument("--max-seconds", type=float, default=150)
    p = sub.add_parser("unet-probe"); p.add_argument("fields"); p.add_argument("peers"); p.add_argument("--size", type=int, default=8192)
    p.add_argument("--batches", default="1,2"); p.add_argument("--device", default="auto")
    f = sub.add_parser("full-graphs"); f.add_argument("graphs"); f.add_argument("out")
    t = sub.add_parser("table"); t.add_argument("results")
    a = ap.parse_args()
    {"env": cmd_env, "gnn": cmd_gnn, "unet": cmd_unet, "unet-probe": cmd_unet_probe, "full-graphs": cmd_full_graphs,
     "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    main()
