#!/usr/bin/env bash
# The boundary refinement measured on the shared real data (issue #14): for each dataset, the default GNN recipe
# (coarse), the same GNN with its boundary refinement, the superpixel ceiling, and ActorSeg's UNet baseline, on one split.
#
# Split (fixed, the one of bench/recipe-sweep.sh): a dataset's images sorted by name, the last TEST (default 30) held
# out; the others train (15 % of them validating). Every figure is pixel-exact against the held-out masks.
# PEER=1 also trains the Python peer UNet (../shared/peers/dataset_eval.py) on the same split, when it can run here.
#
# Usage: bench/refine.sh [SHARED_DATA_DIR] [WORK_DIR]   (after ./run.sh build)
#   DATASETS="nist bbbc039"  TEST=30  SEED=1  UNET=0 (skip the UNet)  UNET_ARGS="--depth 4 --patch 256" (the peer's shape)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(cd "${1:-../shared/data}" && pwd); WORK=${2:-/tmp/actorseg-refine}
TEST=${TEST:-30}; SEED=${SEED:-1}; DATASETS=${DATASETS:-"nist bbbc039"}; UNET=${UNET:-1}
A="dotnet ${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll"
[ -d "$DATA/nist-colonies" ] || { echo "no shared data at $DATA" >&2; exit 1; }
peak() { grep -oE 'peak RSS [0-9]+ MiB' | tail -1 | grep -oE '[0-9]+'; }
metric() { sed -E 's/pixel accuracy ([0-9.]+) % +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+) +superpixel ceiling ([0-9.]+) %/\1 \2 \3 \4/'; }

echo "| data | method | pixel accuracy | macro F1 | superpixel ceiling | pixels refined | training s |"
echo "|---|---|---|---|---|---|---|"
for name in $DATASETS; do
  case $name in
    nist) imgs="$DATA/nist-colonies/images"; masks="$DATA/nist-colonies/masks"; ext=.tif; seg=1000 ;;
    bbbc039) imgs="$DATA/bbbc039/images"; masks="$DATA/bbbc039/masks"; ext=.png; seg=3000 ;;
    *) echo "unknown dataset $name" >&2; exit 2 ;;
  esac
  files=$(ls "$imgs" | sort); n=$(echo "$files" | wc -l); i=0
  split="$WORK/$name/split-test$TEST"; rm -rf "$split"; mkdir -p "$split"/{train,test}/{graphs,images,masks}
  for f in $files; do
    i=$((i+1)); b="${f%.*}"; part=train; [ $i -gt $((n-TEST)) ] && part=test
    g="$WORK/$name/all/$b"
    # graphs with their node maps (the refinement reads them), built once
    [ -f "$g/graph.npz" ] || $A graph "$imgs/$f" --mask "$masks/$b$ext" --segments "$seg" --features texture --out "$g" >/dev/null 2>&1
    ln -sf "$g/graph.npz" "$split/$part/graphs/$b.npz"
    ln -sf "$imgs/$f" "$split/$part/images/$f"; ln -sf "$masks/$b$ext" "$split/$part/masks/$b$ext"
  done
  m="$WORK/$name/gnn-s$SEED"; rm -rf "$m"
  t0=$(date +%s.%N)
  log=$($A train --graphs "$split/train/graphs" --no-refine --seed "$SEED" --out "$m" 2>&1) || { echo "$log" | tail -5 >&2; exit 1; }
  t1=$(date +%s.%N)
  read -r acc f1 _ ceil < <($A evaluate --model "$m/best.model" --graphs "$split/test/graphs" 2>&1 | sed -n 2p | metric)
  echo "| $name | GNN, default recipe (coarse) | $acc % | $f1 | $ceil % | – | $(printf %.1f "$(echo "$t1 - $t0" | bc)") |"
  t0=$(date +%s.%N)
  $A refine --model "$m/best.model" --out "$m/refined.model" --seed "$SEED" >/dev/null 2>&1
  t1=$(date +%s.%N)
  ev=$($A evaluate --model "$m/refined.model" --graphs "$split/test/graphs" 2>&1)
  read -r acc f1 _ ceil < <(echo "$ev" | sed -n 2p | metric)
  refined=$(echo "$ev" | sed -n 1p | grep -oE 'refined [0-9,]+ \([0-9.]+ %\)')
  echo "| $name | GNN + boundary refinement | **$acc %** | $f1 | $ceil % | ${refined#refined } | + $(printf %.1f "$(echo "$t1 - $t0" | bc)") |"
  if [ "$UNET" = 1 ]; then
    u="$WORK/$name/unet-s$SEED"; rm -rf "$u"
    t0=$(date +%s.%N)
    log=$($A unet-train --images "$split/train/images" --masks "$split/train/masks" --seed "$SEED" --out "$u" ${UNET_ARGS:-} 2>&1) || { echo "$log" | tail -5 >&2; exit 1; }
    t1=$(date +%s.%N)
    read -r acc f1 _ < <($A unet-evaluate --model "$u/best.unet" --images "$split/test/images" --masks "$split/test/masks" 2>&1 | sed -n 2p | sed -E 's/pixel accuracy ([0-9.]+) % +macro F1 ([0-9.]+).*/\1 \2 x/')
    echo "| $name | ActorSeg UNet (same split) | $acc % | $f1 | – | – | $(printf %.1f "$(echo "$t1 - $t0" | bc)") |"
  fi
  if [ "${PEER:-0}" = 1 ]; then
    # Debian's python3-torch, -skimage, -scipy, -sklearn and -tifffile (../shared/peers/README.md), installed when missing
    if ! /usr/bin/python3 -c 'import torch, skimage, scipy, sklearn, tifffile' 2>/dev/null; then
      sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
      $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-skimage python3-scipy python3-sklearn python3-tifffile >/dev/null 2>&1 ||
        { $sudo_ apt-get update -qq >/dev/null 2>&1; $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch python3-skimage python3-scipy python3-sklearn python3-tifffile >/dev/null 2>&1; } || true
    fi
    if /usr/bin/python3 -c 'import torch, skimage, scipy, sklearn, tifffile' 2>/dev/null; then
      pe=$(/usr/bin/python3 "$DATA/../peers/dataset_eval.py" unet "$split/train/images" "$split/train/masks" \
           "$split/test/images" "$split/test/masks" --mask-ext "$ext" 2>&1 | tail -4 | tr '\n' ' ')
    else pe="not run: /usr/bin/python3 lacks torch, skimage, scipy, sklearn or tifffile"; fi
    echo "| $name | Python peer UNet (same split) | $pe | | | | |"
  fi
done
