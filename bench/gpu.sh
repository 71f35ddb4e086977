#!/usr/bin/env bash
# The GPU bench (issue #14), run on a GPU machine with python3, torch (CUDA), numpy and perhaps torch_geometric, and
# no network, on what bench/gpu-prepare.sh made here (bench/gpu-data, carried with the working tree):
#   1. ActorSeg's default GNN recipe (4 GraphConv × 64, region adjacency weighted by shared boundary, texture features in absolute units)
#      on ActorSeg's graphs of every carried size: in PyTorch Geometric when it imports, and in plain torch (sparse A·X,
#      ActorSeg's own formulation) always; CUDA when present, the CPU otherwise;
#   2. the peer UNet (unet_peer.py, whole fields) on the carried fields, then one whole-image training step at PROBE²;
#   3. ActorSeg's own trainer (actorseg train / evaluate --device cuda) through TorchSharp on the libtorch of the python
#      torch package: with `dotnet` when the machine has one, else the runtime in bench/gpu-actorseg/actorseg.tar.xz
#      (gpu-prepare.sh --actorseg), else it says why not.
# Prints one markdown table on stdout (logs on stderr); results.jsonl and the logs go to $OUT when set (the device
# tool brings $OUT back), else to /tmp/actorseg-gpu.
# Usage: bench/gpu.sh [DATA]   PARTS="gnn unet actorseg" UNET_SECONDS=150 PROBE=8192 PROBE_BATCHES=1,2 DEVICE=auto
#   (PYTHON=python3; for trying part 3 elsewhere: TORCH_LIB=DIR instead of the python package's, ACTORSEG_DOTNET=bundled)
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-bench/gpu-data}; PARTS=${PARTS:-"gnn unet actorseg"}; UNET_SECONDS=${UNET_SECONDS:-150}
PROBE=${PROBE:-8192}; PROBE_BATCHES=${PROBE_BATCHES:-1,2}; DEVICE=${DEVICE:-auto}
RES=${OUT:-/tmp/actorseg-gpu}; mkdir -p "$RES"; R="$RES/results.jsonl"; : > "$R"
PY=${PYTHON:-python3}; B="$PY bench/gpu_bench.py"
[ -d "$DATA" ] || { echo "no $DATA: run bench/gpu-prepare.sh on the build machine and carry it" >&2; exit 2; }
T0=$(date +%s)
step() { # name command… : runs one part in its own process (its own GPU peak), its JSON lines into results.jsonl
  local name=$1; shift
  echo "== $name" >&2
  if ! "$@" >>"$R" 2>>"$RES/$name.log"; then
    echo "   failed: $(tail -3 "$RES/$name.log" | tr '\n' ' ')" >&2
    echo "{\"kind\": \"failed\", \"name\": \"$name\"}" >>"$R"
  fi
}
step env $B env
has_pyg=$($PY -c "import torch_geometric" 2>/dev/null && echo 1)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2

case " $PARTS " in *" gnn "*)
  for g in $(ls -d "$DATA"/graphs-* 2>/dev/null | sort -t- -k2 -n); do
    [ -n "$has_pyg" ] && step "gnn-pyg-$(basename "$g")" $B gnn "$g" --impl pyg --device "$DEVICE"
    step "gnn-sparse-$(basename "$g")" $B gnn "$g" --impl sparse --device "$DEVICE"
  done;;
esac

case " $PARTS " in *" unet "*)
  for f in "$DATA"/fields-*; do
    [ -d "$f" ] || continue
    step "unet-$(basename "$f")" $B unet "$f" "$DATA/peers" --max-seconds "$UNET_SECONDS" --device "$DEVICE"
    step "unet-probe-$PROBE" $B unet-probe "$f" "$DATA/peers" --size "$PROBE" --batches "$PROBE_BATCHES" --device "$DEVICE"
  done;;
esac

actorseg() { # part 3: appends one "actorseg" JSON line, with "error" when it could not run
  local g; g=$(ls -d "$DATA"/graphs-* 2>/dev/null | sort -t- -k2 -n | tail -1)
  local size=${g##*-} why= dn= app= tl dev=cuda
  fail() { $PY -c 'import json,sys; print(json.dumps(dict(kind="actorseg", size=int(sys.argv[1]) if sys.argv[1].isdigit() else None, device=sys.argv[2], error=sys.argv[3])))' "$size" "$dev" "$1" >>"$R"; echo "   actorseg: $1" >&2; }
  [ -n "$g" ] || { fail "no graphs carried"; return; }
  tl=${TORCH_LIB:-$($PY -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")}
  $PY -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" || dev=cpu
  [ "$DEVICE" = cpu ] && dev=cpu
  local work="$RES/actorseg"; rm -rf "$work"; mkdir -p "$work"
  if [ -f bench/gpu-actorseg/actorseg.tar.xz ]; then
    $PY -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" bench/gpu-actorseg/actorseg.tar.xz "$work" || { fail "the carried bundle does not unpack"; return; }
    app="$work/app/actorseg.dll"
  elif [ -f "${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll" ]; then app="${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll"
  fi
  if command -v dotnet >/dev/null && [ "${ACTORSEG_DOTNET:-}" != bundled ]; then dn=$(command -v dotnet); echo "   dotnet on this machine: $dn ($(dotnet --version 2>/dev/null || echo 'no SDK'); runtimes: $(dotnet --list-runtimes 2>/dev/null | cut -d' ' -f1,2 | tr '\n' ',' ))" >&2
  elif [ -x "$work/dotnet/dotnet" ]; then dn="$work/dotnet/dotnet"; export DOTNET_ROOT="$work/dotnet"
  fi
  [ -n "$dn" ] || { fail "no dotnet on this machine and no bench/gpu-actorseg/actorseg.tar.xz carried (bench/gpu-prepare.sh --actorseg)"; return; }
  [ -n "$app" ] || { fail "dotnet is here ($dn) but no built actorseg: carry bench/gpu-actorseg (gpu-prepare.sh --actorseg); building needs NuGet, unreachable here"; return; }
  local want; want=$(sed -n 's/.*libtorch-cpu-linux-x64" Version="\([0-9.]*\)".*/\1/p' Directory.Packages.props 2>/dev/null)
  echo "   libtorch: $tl (${TORCH_LIB:+TORCH_LIB, not }python torch $($PY -c 'import torch; print(torch.__version__, "cxx11abi", torch.compiled_with_cxx11_abi())')); TorchSharp's libLibTorchSharp.so is built against libtorch ${want:-?}" >&2
  local lts ldds=; lts=$(find "$(dirname "$app")" -name libLibTorchSharp.so | head -1)
  if [ -n "$lts" ] && command -v ldd >/dev/null; then
    LD_LIBRARY_PATH="$tl" ldd -r "$lts" >"$work/ldd.txt" 2>&1
    local miss und; miss=$(grep -c "=> not found" "$work/ldd.txt"); und=$(grep -c "undefined symbol" "$work/ldd.txt")
    ldds="ldd -r libLibTorchSharp.so with LD_LIBRARY_PATH=$tl: $miss libraries not found, $und undefined symbols"
    echo "   $ldds (a 'weak version GLIBCXX_3.4.32' line is harmless: Directory.Build.targets marks it weak)" >&2
    grep -m3 "=> not found\|undefined symbol" "$work/ldd.txt" | sed 's/^/     /' >&2
  fi
  $B full-graphs "$g" "$work/graphs" 2>>"$RES/actorseg.log" || { fail "could not rewrite the carried graphs"; return; }
  # GPU memory of the process from outside (TorchSharp has no allocator statistics): nvidia-smi every 0.2 s
  local poll=
  if [ "$dev" = cuda ] && command -v nvidia-smi >/dev/null; then
    ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1; sleep 0.2; done ) >"$work/smi.txt" &
    poll=$!
  fi
  local base; base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 2>/dev/null | head -1)
  local t=$(date +%s.%N)
  LD_LIBRARY_PATH="$tl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$dn" "$app" train --graphs "$work/graphs/train" \
    --val-frac 0.34 --device "$dev" --out "$work/model" >"$work/train.out" 2>"$work/train.log"
  local rc=$? secs; secs=$($PY -c "import time,sys; print(round(time.time()-float(sys.argv[1]),1))" "$t")
  [ -n "$poll" ] && kill "$poll" 2>/dev/null
  if [ $rc -ne 0 ]; then
    local reason; reason=$(grep -m1 -E -e "---> |Exception|error|Error|not available" "$work/train.log" | sed 's/^ *---> //' | cut -c1-260)
    fail "actorseg train exited $rc: ${reason:-$(tail -2 "$work/train.log" | tr '\n' ' ' | cut -c1-260)}; python torch $($PY -c 'import torch; print(torch.__version__)' 2>/dev/null), TorchSharp wants libtorch ${want:-?}${ldds:+; $ldds} (logs: actorseg-train.log)"
    cp "$work/train.log" "$RES/actorseg-train.log" 2>/dev/null; return
  fi
  LD_LIBRARY_PATH="$tl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$dn" "$app" evaluate --model "$work/model/best.model" --graphs "$work/graphs/held" \
    --device "$dev" --out "$work/eval" >"$work/eval.out" 2>"$work/eval.log" || { fail "actorseg evaluate failed: $(tail -2 "$work/eval.log" | tr '\n' ' ' | cut -c1-300)"; return; }
  $PY - "$work" "$size" "$dev" "${base:-}" "$secs" <<'EOF' >>"$R"
import glob, json, re, sys
work, size, dev, base, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
log = open(f"{work}/train.log").read()
m = json.load(open(f"{work}/eval/metrics.json")); o = m["overall"]
stop = re.search(r"stopped after (\d+) epochs; best validation loss [0-9.]+ at epoch (\d+); ([0-9.]+)s, peak RSS ([0-9]+) MiB", log)
devline = re.search(r"device (.*)", log)
smi = [int(l) for l in open(f"{work}/smi.txt").read().split() if l.strip().isdigit()] if dev == "cuda" else []
used = f"{max(smi) - int(base):,}" if smi and base.isdigit() else "–"
n = len(glob.glob(f"{work}/graphs/train/*/graph.npz"))
print(json.dumps(dict(kind="actorseg", device=(devline.group(1).strip() if devline else dev), size=size,
    data=f"{n} graphs ({n - 1} training, 1 validating: actorseg's --val-frac 0.34 choice)",
    epochs=f"{stop.group(1)} (best {stop.group(2)})" if stop else "?", train_s=f"{stop.group(3)} ({secs} with start-up)" if stop else secs,
    pixel_accuracy=f"{100 * o['Accuracy']:.2f} %", macro_f1=f"{o['MacroF1']:.4f}", ceiling=f"{100 * o['SuperpixelCeiling']:.2f} %",
    gpu_used_mib=used, peak_rss_mib=stop.group(4) if stop else "–")))
EOF
}
case " $PARTS " in *" actorseg "*) echo "== actorseg" >&2; actorseg;; esac

echo "(bench/gpu.sh: $(( $(date +%s) - T0 )) s in all; results in $R)" >&2
$B table "$R"
