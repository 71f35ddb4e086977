#!/usr/bin/env bash
# The multi-class check (issue #14): generated cells, five classes with their exact mask (0 background, 1 cytoplasm,
# 2 nucleus, 3 membrane: a line 3 px wide, the thin class; 4 mitotic nucleus, the rare class), through the GNN (the
# default recipe, --mask-mode classes) at two superpixel spacings and the UNet baseline (--mask-mode classes), measured
# per class on a held-out field. TRAIN fields of SIZE² train (a third of them validating), one HELD² field (seed 42)
# is held out. Usage: bench/multiclass.sh [WORK_DIR]  (after ./run.sh build)
# Each GNN is measured coarse and with its boundary refinement (actorseg refine). UNET=0 leaves the UNet out.
# KIND=fibres: the same cells crossed by fibres 2 px wide (class 5), a thin class inside other classes' regions;
# WHOLE=1 adds the refinement without classes refined whole (--refine-whole 1), the boundary rule alone.
#   TRAIN=6 SIZE=1024 HELD=2048 SPACINGS="41 20" UNET_EPOCHS=30 UNET=1 KIND=cells WHOLE=0
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${KIND:-cells}; WHOLE=${WHOLE:-0}
WORK=${1:-/tmp/actorseg-multiclass$([ "$KIND" = cells ] || echo "-$KIND")}; TRAIN=${TRAIN:-6}; SIZE=${SIZE:-1024}; HELD=${HELD:-2048}
SPACINGS=${SPACINGS:-"41 20"}; UNET_EPOCHS=${UNET_EPOCHS:-30}; UNET=${UNET:-1}
A="dotnet ${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll"
CLASSES="background:#000000,cytoplasm:#00c000,nucleus:#0060ff,membrane:#ffff00,mitotic:#ff00ff"
[ "$KIND" = fibres ] && CLASSES="$CLASSES,fibre:#ff8000"
mkdir -p "$WORK"/{train/images,train/masks,held/images,held/masks}
gen() { # name size seed dir
  [ -f "$WORK/$4/images/$1.tif" ] && return
  $A generate --kind "$KIND" --out "$WORK/gen" --name "$1" --width "$2" --height "$2" --seed "$3" >/dev/null 2>&1
  mv "$WORK/gen/$1.tif" "$WORK/$4/images/"; mv "$WORK/gen/$1_mask.tif" "$WORK/$4/masks/$1.tif"
}
for s in $(seq 1 "$TRAIN"); do gen "f$s" "$SIZE" "$s" train; done
gen held "$HELD" 42 held

secs() { grep -oE 'stopped after .*; ([0-9.]+)s' | grep -oE '[0-9.]+s$' | tr -d s; }
declare -A METRICS TIME
for sp in $SPACINGS; do
  for part in train held; do
    for img in "$WORK/$part/images"/*.tif; do
      b=$(basename "$img" .tif); g="$WORK/graphs-$sp/$part/$b"
      [ -f "$g/graph.npz" ] || $A graph "$img" --mask "$WORK/$part/masks/$b.tif" --mask-mode classes --spacing "$sp" --out "$g" >/dev/null 2>&1
    done
  done
  m="$WORK/gnn-$sp"; rm -rf "$m"
  TIME[gnn-$sp]=$($A train --graphs "$WORK/graphs-$sp/train" --classes "$CLASSES" --val-frac 0.34 --no-refine --out "$m" 2>&1 | secs)
  $A evaluate --model "$m/best.model" --graphs "$WORK/graphs-$sp/held" --out "$m/eval" >/dev/null 2>&1
  METRICS[gnn-$sp]="$m/eval/metrics.json"
  t0=$(date +%s.%N)
  $A refine --model "$m/best.model" --out "$m/refined.model" >/dev/null 2>&1
  TIME[ref-$sp]="${TIME[gnn-$sp]} + $(printf %.1f "$(echo "$(date +%s.%N) - $t0" | bc)")"
  $A evaluate --model "$m/refined.model" --graphs "$WORK/graphs-$sp/held" --out "$m/eval-refined" >/dev/null 2>&1
  METRICS[ref-$sp]="$m/eval-refined/metrics.json"
  if [ "$WHOLE" = 1 ]; then
    t0=$(date +%s.%N)
    $A refine --model "$m/best.model" --refine-whole 1 --out "$m/boundary.model" >/dev/null 2>&1
    TIME[bnd-$sp]="${TIME[gnn-$sp]} + $(printf %.1f "$(echo "$(date +%s.%N) - $t0" | bc)")"
    $A evaluate --model "$m/boundary.model" --graphs "$WORK/graphs-$sp/held" --out "$m/eval-boundary" >/dev/null 2>&1
    METRICS[bnd-$sp]="$m/eval-boundary/metrics.json"
  fi
done
if [ "$UNET" = 1 ]; then
u="$WORK/unet"; rm -rf "$u"
TIME[unet]=$($A unet-train --images "$WORK/train/images" --masks "$WORK/train/masks" --mask-mode classes --classes "$CLASSES" --val-frac 0.34 \
  --epochs "$UNET_EPOCHS" --patience 8 --out "$u" 2>&1 | secs)
$A unet-evaluate --model "$u/best.unet" --images "$WORK/held/images" --masks "$WORK/held/masks" --mask-mode classes --out "$u/eval" >/dev/null 2>&1
METRICS[unet]="$u/eval/metrics.json"
fi

cols=(); for sp in $SPACINGS; do cols+=("gnn-$sp"); [ "$WHOLE" = 1 ] && cols+=("bnd-$sp"); cols+=("ref-$sp"); done; [ "$UNET" = 1 ] && cols+=(unet)
python3 - "$HELD" "${#cols[@]}" "${cols[@]}" <<EOF
import json, sys
held = int(sys.argv[1]); n = int(sys.argv[2]); names = sys.argv[3:3 + n]
files = {$(for c in "${cols[@]}"; do printf '"%s": "%s", ' "$c" "${METRICS[$c]}"; done)}
times = {$(for c in "${cols[@]}"; do printf '"%s": "%s", ' "$c" "${TIME[$c]}"; done)}
m = {c: json.load(open(files[c])) for c in names}
label = lambda c: "UNet" if c == "unet" else f"GNN, spacing {c.split('-')[1]} px" if c.startswith("gnn") else f"GNN + refinement, boundary rule only (--refine-whole 1), spacing {c.split('-')[1]} px" if c.startswith("bnd") else f"GNN + refinement, spacing {c.split('-')[1]} px"
print(f"held-out field {held}², seed 42; F1 (Dice) per class, precision / recall in brackets")
print()
print("| class | share of the held-out pixels | " + " | ".join(label(c) for c in names) + " |")
print("|---|---|" + "---|" * len(names))
first = m[names[0]]["perClass"]; total = sum(r["TruePixels"] for r in first)
for i, r in enumerate(first):
    cells = [f'{m[c]["perClass"][i]["F1"]:.3f} ({m[c]["perClass"][i]["Precision"]:.3f} / {m[c]["perClass"][i]["Recall"]:.3f})' for c in names]
    print(f'| {i} {r["Name"]} | {100 * r["TruePixels"] / total:.2f} % | ' + " | ".join(cells) + " |")
print("| pixel accuracy | | " + " | ".join(f'{100 * m[c]["overall"]["Accuracy"]:.2f} %' for c in names) + " |")
print("| macro F1 | | " + " | ".join(f'{m[c]["overall"]["MacroF1"]:.3f}' for c in names) + " |")
print("| superpixel ceiling | | " + " | ".join(f'{100 * m[c]["overall"]["SuperpixelCeiling"]:.2f} %' if c != "unet" else "–" for c in names) + " |")
print("| training | | " + " | ".join(f'{times[c]} s' for c in names) + " |")
EOF
