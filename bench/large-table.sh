#!/usr/bin/env bash
# GNN against the UNet on large generated images: three 8192² training fields (one validates) and a held-out 8192²
# field, colonies with exact masks. For each model: pixel accuracy, macro F1, micro Jaccard, superpixel ceiling,
# training time and peak training RSS, inference (segmenting the held-out image from its file) time and peak RSS, per
# megapixel. Usage: bench/large-table.sh [WORK_DIR] (after ./run.sh build). SIZE=8192 UNET_EPOCHS=30 to change.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/actorseg-large-bench}; SIZE=${SIZE:-8192}; UNET_EPOCHS=${UNET_EPOCHS:-4}
A="dotnet ${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll"
mkdir -p "$WORK"/{train/images,train/masks,held/images,held/masks}
for s in 1 2 3; do
  [ -f "$WORK/train/images/f$s.tif" ] || { $A generate --out "$WORK/gen" --name "f$s" --width $SIZE --height $SIZE --seed $s >/dev/null 2>&1
    mv "$WORK/gen/f$s.tif" "$WORK/train/images/"; mv "$WORK/gen/f${s}_mask.tif" "$WORK/train/masks/f$s.tif"; }
done
[ -f "$WORK/held/images/held.tif" ] || { $A generate --out "$WORK/gen" --name held --width $SIZE --height $SIZE --seed 42 >/dev/null 2>&1
  mv "$WORK/gen/held.tif" "$WORK/held/images/"; mv "$WORK/gen/held_mask.tif" "$WORK/held/masks/held.tif"; }
MP=$(python3 -c "print($SIZE*$SIZE/1e6)")

# peak RSS (MiB) and wall seconds of a command: "SECONDS MIB"
measure() { local err; err=$(mktemp "$WORK/measure.XXXXXX")
  if ! /usr/bin/time -f "TIME %e %M" "$@" >/dev/null 2>"$err"; then echo "FAILED: $*" >&2; tail -5 "$err" >&2; rm -f "$err"; return 1; fi
  grep -aoE 'TIME [0-9.]+ [0-9]+' "$err" | tail -1 | awk '{printf "%s %.0f\n", $2, $3/1024}'; rm -f "$err"; }

echo "| model | pixel accuracy | macro F1 | micro Jaccard | superpixel ceiling | training graphs (3 × ${SIZE}²) | training | training peak RSS | segmenting ${SIZE}² from its file | s / MP | inference peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
graphs() { # features -> "SECONDS MIB" of building the three training graphs (the slowest one's RSS)
  local feat=$1 total=0 peak=0
  for s in 1 2 3; do
    local g="$WORK/graphs-$feat/train/f$s"
    if [ ! -f "$g/graph.npz" ]; then
      read -r sec rss < <(measure $A graph "$WORK/train/images/f$s.tif" --mask "$WORK/train/masks/f$s.tif" --features "$feat" --no-node-map --out "$g")
      total=$(python3 -c "print(round($total+$sec,1))"); if [ "$rss" -gt "$peak" ]; then peak=$rss; fi
      echo "$total $peak" > "$WORK/graphs-$feat/cost"
    fi
  done
  local g="$WORK/graphs-$feat/held"
  [ -f "$g/graph.npz" ] || $A graph "$WORK/held/images/held.tif" --mask "$WORK/held/masks/held.tif" --features "$feat" --no-node-map --out "$g" >/dev/null 2>&1
  cat "$WORK/graphs-$feat/cost"
}
gnn() { # name features edges [train options...]
  local name=$1 feat=$2 edges=$3; shift 3
  local m; m="$WORK/model-$(echo "$name" | tr -c 'A-Za-z0-9' '-')"
  rm -rf "$m"
  read -r gsec grss < <(graphs "$feat")
  read -r tsec trss < <(measure $A train --graphs "$WORK/graphs-$feat/train" --edges "$edges" --val-frac 0.34 --out "$m" "$@")
  local ev; ev=$($A evaluate --model "$m/best.model" --graphs "$WORK/graphs-$feat/held" 2>&1 | sed -n 2p)
  read -r isec irss < <(measure $A segment "$WORK/held/images/held.tif" --model "$m/best.model" --out "$m/segment")
  echo "| GNN $name | $(echo "$ev" | sed -E 's/pixel accuracy ([0-9.]+ %) +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+) +superpixel ceiling ([0-9.]+ %)/\1 | \2 | \3 | \4/') | ${gsec} s, ${grss} MiB | ${tsec} s | ${trss} MiB | ${isec} s | $(python3 -c "print(f'{$isec/$MP:.3f}')") | ${irss} MiB |"
}
if [ -z "${SKIP_GNN:-}" ]; then
  gnn "published (11 features, kNN exp(-d))" published knn
  gnn "improved (texture, region adjacency)" texture rag
  gnn "improved, SAGE 6×64" texture rag --conv sage --hidden 64 --layers 6 --dropout 0.3
fi

# the UNet validates on a whole held-out-sized field every epoch (about 100 s per epoch here at 8192²): UNET_EPOCHS bounds it
u="$WORK/unet"; rm -rf "$u"
read -r tsec trss < <(measure $A unet-train --images "$WORK/train/images" --masks "$WORK/train/masks" --val-frac 0.34 --epochs "$UNET_EPOCHS" --patience 3 --out "$u")
err=$(mktemp "$WORK/measure.XXXXXX")
/usr/bin/time -f "TIME %e %M" $A unet-evaluate --model "$u/best.unet" --images "$WORK/held/images" --masks "$WORK/held/masks" >"$u/eval.txt" 2>"$err"
read -r isec irss < <(grep -aoE 'TIME [0-9.]+ [0-9]+' "$err" | tail -1 | awk '{printf "%s %.0f\n", $2, $3/1024}'); rm -f "$err"
ev=$(sed -n 2p "$u/eval.txt")
echo "| UNet (patches 128², augmentation, early stopping, ≤ $UNET_EPOCHS epochs) | $(echo "$ev" | sed -E 's/pixel accuracy ([0-9.]+ %) +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+).*/\1 | \2 | \3/') | – | – | ${tsec} s | ${trss} MiB | ${isec} s (with scoring) | $(python3 -c "print(f'{$isec/$MP:.3f}')") | ${irss} MiB |"
