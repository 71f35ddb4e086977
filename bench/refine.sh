#!/usr/bin/env bash
# The boundary refinement measured on the shared real data (issue #14): for each dataset, the default GNN recipe
# (coarse), the same GNN with its boundary refinement, the published recipe, the superpixel ceiling, and ActorSeg's UNet
# baseline, on one split; each with its training time and the training process's peak RSS (GNU time's maximum RSS).
#
# Split (fixed, the one of bench/recipe-sweep.sh): a dataset's images sorted by name, the last TEST (default 30) held
# out; the others train (15 % of them validating). Every figure is pixel-exact against the held-out masks.
# PEER=1 also trains the Python peer UNet (../shared/peers/dataset_eval.py) on the same split, when it can run here.
#
# Usage: bench/refine.sh [SHARED_DATA_DIR] [WORK_DIR]   (after ./run.sh build)
#   DATASETS="nist bbbc039"  TEST=30  SEED=1  FEATURES=absolute (the default recipe's; texture: z units)  UNET=0 (skip the UNet)  UNET_ARGS="--depth 4 --patch 256" (the peer's shape)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(cd "${1:-../shared/data}" && pwd); WORK=${2:-/tmp/actorseg-refine}
TEST=${TEST:-30}; SEED=${SEED:-1}; FEATURES=${FEATURES:-absolute}; DATASETS=${DATASETS:-"nist bbbc039"}; UNET=${UNET:-1}
A="dotnet ${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll"
[ -d "$DATA/nist-colonies" ] || { echo "no shared data at $DATA" >&2; exit 1; }
# Debian packages installed when missing (as root, or through sudo); false when they could not be
install_debs() {
  local sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 ||
    { $sudo_ apt-get update -qq >/dev/null 2>&1; $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; }
}
# GNU time measures the peak RSS and bc the seconds (Debian's `time` and `bc`, not in every minimal image)
if [ ! -x /usr/bin/time ] || ! command -v bc >/dev/null; then
  install_debs time bc || { echo "bench/refine.sh needs GNU time (/usr/bin/time) and bc: Debian's packages 'time' and 'bc'" >&2; exit 1; }
fi
# runs a command, keeping its output in $out, its wall seconds in $secs and its peak RSS in MiB in $mib
timed() {
  local t; t=$(mktemp); local t0; t0=$(date +%s.%N)
  out=$(/usr/bin/time -f '%M' -o "$t" "$@" 2>&1) || { echo "$out" | tail -5 >&2; rm -f "$t"; exit 1; }
  secs=$(printf %.1f "$(echo "$(date +%s.%N) - $t0" | bc)"); mib=$(( $(tail -1 "$t") / 1024 )); rm -f "$t"
}
metric() { sed -E 's/pixel accuracy ([0-9.]+) % +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+) +superpixel ceiling ([0-9.]+) %/\1 \2 \3 \4/'; }

echo "| data | method | pixel accuracy | macro F1 | superpixel ceiling | pixels refined | training s | training peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
for name in $DATASETS; do
  case $name in
    nist) imgs="$DATA/nist-colonies/images"; masks="$DATA/nist-colonies/masks"; ext=.tif; seg=1000 ;;
    bbbc039) imgs="$DATA/bbbc039/images"; masks="$DATA/bbbc039/masks"; ext=.png; seg=3000 ;;
    *) echo "unknown dataset $name" >&2; exit 2 ;;
  esac
  files=$(ls "$imgs" | sort); n=$(echo "$files" | wc -l); i=0
  split="$WORK/$name/split-test$TEST"; rm -rf "$split"; mkdir -p "$split"/{train,test}/{graphs,published,images,masks}
  for f in $files; do
    i=$((i+1)); b="${f%.*}"; part=train; [ $i -gt $((n-TEST)) ] && part=test
    g="$WORK/$name/all-$FEATURES/$b"
    # graphs with their node maps (the refinement reads them), built once, with the default recipe's features
    [ -f "$g/graph.npz" ] || $A graph "$imgs/$f" --mask "$masks/$b$ext" --segments "$seg" --features "$FEATURES" --out "$g" >/dev/null 2>&1
    ln -sf "$g/graph.npz" "$split/$part/graphs/$b.npz"
    # and with the published features, for the published recipe
    gp="$WORK/$name/published/$b"
    [ -f "$gp/graph.npz" ] || $A graph "$imgs/$f" --mask "$masks/$b$ext" --segments "$seg" --features published --no-node-map --out "$gp" >/dev/null 2>&1
    ln -sf "$gp/graph.npz" "$split/$part/published/$b.npz"
    ln -sf "$imgs/$f" "$split/$part/images/$f"; ln -sf "$masks/$b$ext" "$split/$part/masks/$b$ext"
  done
  p="$WORK/$name/published-s$SEED"; rm -rf "$p"
  timed $A train --graphs "$split/train/published" --recipe published --no-refine --seed "$SEED" --out "$p"
  read -r acc f1 _ ceil < <($A evaluate --model "$p/best.model" --graphs "$split/test/published" 2>&1 | sed -n 2p | metric)
  echo "| $name | GNN, \`--recipe published\` | $acc % | $f1 | $ceil % | – | $secs | $mib |"
  m="$WORK/$name/gnn-s$SEED"; rm -rf "$m"
  timed $A train --graphs "$split/train/graphs" --no-refine --seed "$SEED" --out "$m"
  read -r acc f1 _ ceil < <($A evaluate --model "$m/best.model" --graphs "$split/test/graphs" 2>&1 | sed -n 2p | metric)
  echo "| $name | GNN, default recipe (coarse) | $acc % | $f1 | $ceil % | – | $secs | $mib |"
  timed $A refine --model "$m/best.model" --out "$m/refined.model" --seed "$SEED"
  ev=$($A evaluate --model "$m/refined.model" --graphs "$split/test/graphs" 2>&1)
  read -r acc f1 _ ceil < <(echo "$ev" | sed -n 2p | metric)
  refined=$(echo "$ev" | sed -n 1p | grep -oE 'refined [0-9,]+ \([0-9.]+ %\)')
  echo "| $name | GNN + boundary refinement | **$acc %** | $f1 | $ceil % | ${refined#refined } | + $secs | $mib |"
  if [ "$UNET" = 1 ]; then
    u="$WORK/$name/unet-s$SEED"; rm -rf "$u"
    # shellcheck disable=SC2086
    timed $A unet-train --images "$split/train/images" --masks "$split/train/masks" --seed "$SEED" --out "$u" ${UNET_ARGS:-}
    read -r acc f1 _ < <($A unet-evaluate --model "$u/best.unet" --images "$split/test/images" --masks "$split/test/masks" 2>&1 | sed -n 2p | sed -E 's/pixel accuracy ([0-9.]+) % +macro F1 ([0-9.]+).*/\1 \2 x/')
    echo "| $name | ActorSeg UNet (same split${UNET_ARGS:+, $UNET_ARGS}) | $acc % | $f1 | – | – | $secs | $mib |"
  fi
  if [ "${PEER:-0}" = 1 ]; then
    # Debian's python3-torch, -skimage, -scipy, -sklearn and -tifffile (../shared/peers/README.md), installed when missing
    /usr/bin/python3 -c 'import torch, skimage, scipy, sklearn, tifffile' 2>/dev/null ||
      install_debs python3-torch python3-skimage python3-scipy python3-sklearn python3-tifffile || true
    if /usr/bin/python3 -c 'import torch, skimage, scipy, sklearn, tifffile' 2>/dev/null; then
      pe=$(/usr/bin/python3 "$DATA/../peers/dataset_eval.py" unet "$split/train/images" "$split/train/masks" \
           "$split/test/images" "$split/test/masks" --mask-ext "$ext" 2>&1 | tail -4 | tr '\n' ' ')
    else pe="not run: /usr/bin/python3 lacks torch, skimage, scipy, sklearn or tifffile"; fi
    echo "| $name | Python peer UNet (same split) | $pe | | | | | |"
  fi
done
