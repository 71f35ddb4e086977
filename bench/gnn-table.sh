#!/usr/bin/env bash
# GNN accuracy on the shared real data: the published recipe against ActorSeg's improved features and edges.
# Fixed split: files sorted by name; the last TEST files of each dataset are held out, the rest train (15% of those
# graphs validate). Usage: bench/gnn-table.sh [SHARED_DATA_DIR] [WORK_DIR]   (after ./run.sh build)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(cd "${1:-../shared/data}" && pwd); WORK=${2:-/tmp/actorseg-gnn-bench}; TEST=${TEST:-10}
A="dotnet src/Cli/bin/Release/net10.0/actorseg.dll"
[ -d "$DATA/nist-colonies" ] || { echo "no shared data at $DATA"; exit 1; }
mkdir -p "$WORK"
build() { # dataset imgdir maskdir maskext segments features
  local name=$1 imgs=$2 masks=$3 ext=$4 seg=$5 feat=$6
  local files; files=$(ls "$imgs" | sort); local n; n=$(echo "$files" | wc -l)
  local i=0
  for f in $files; do
    i=$((i+1)); local b="${f%.*}"; local part=train; [ $i -gt $((n-TEST)) ] && part=test
    local out="$WORK/$name/$feat/$part/$b"
    [ -f "$out/graph.npz" ] || $A graph "$imgs/$f" --mask "$masks/$b$ext" --segments "$seg" --features "$feat" --no-node-map --out "$out" >/dev/null 2>&1
  done
}
row() { # dataset features edges [extra train options...]
  local name=$1 feat=$2 edges=$3; shift 3
  local extra="$*" model="$WORK/$name/$feat/model-$edges$(echo "$*" | tr -d ' -')"
  local log; log=$($A train --graphs "$WORK/$name/$feat/train" --edges "$edges" $extra --out "$model" 2>&1)
  local secs rss; secs=$(echo "$log" | grep -o 'stopped.*' | grep -oE '[0-9.]+s, peak RSS [0-9]+' | head -1)
  local ev; ev=$($A evaluate --model "$model/best.model" --graphs "$WORK/$name/$feat/test" 2>&1 | sed -n 2p)
  echo "| $name | $feat | $edges ${extra:+($extra)} | $(echo "$ev" | sed -E 's/pixel accuracy ([0-9.]+ %) +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+) +superpixel ceiling ([0-9.]+ %)/\1 | \2 | \3 | \4/') | $secs MiB |"
}
for feat in published texture; do
  build nist "$DATA/nist-colonies/images" "$DATA/nist-colonies/masks" .tif 1000 $feat
  build bbbc039 "$DATA/bbbc039/images" "$DATA/bbbc039/masks" .png 3000 $feat
done
echo "| data (train / test fields) | features | edges | pixel accuracy | macro F1 | micro Jaccard | superpixel ceiling | training time, peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
for name in nist bbbc039; do
  for cfg in "published knn" "published knn-scaled" "texture knn-scaled" "texture rag" \
             "texture rag --hidden 64 --layers 4" "texture rag --conv sage --hidden 64 --layers 6 --dropout 0.3"; do row $name $cfg; done
done
# the UNet baseline on the same split (NIST only by default: about 4 minutes here; UNET_DATASETS="nist bbbc039" for both)
for name in ${UNET_DATASETS:-nist}; do
  case $name in nist) imgs="$DATA/nist-colonies/images"; masks="$DATA/nist-colonies/masks"; ext=.tif ;; bbbc039) imgs="$DATA/bbbc039/images"; masks="$DATA/bbbc039/masks"; ext=.png ;; esac
  u="$WORK/$name/unet"; rm -rf "$u/tr" "$u/te"; mkdir -p "$u"/{tr,te}/{images,masks}
  files=$(ls "$imgs" | sort); n=$(echo "$files" | wc -l); i=0
  for f in $files; do i=$((i+1)); b="${f%.*}"; part=tr; [ $i -gt $((n-TEST)) ] && part=te
    ln -sf "$imgs/$f" "$u/$part/images/$f"; ln -sf "$masks/$b$ext" "$u/$part/masks/$b$ext"; done
  log=$($A unet-train --images "$u/tr/images" --masks "$u/tr/masks" --out "$u/model" 2>&1)
  secs=$(echo "$log" | grep -o 'stopped.*' | grep -oE '[0-9.]+s, peak RSS [0-9]+' | head -1)
  ev=$($A unet-evaluate --model "$u/model/best.unet" --images "$u/te/images" --masks "$u/te/masks" 2>&1 | sed -n 2p)
  echo "| $name | UNet | – | $(echo "$ev" | sed -E 's/pixel accuracy ([0-9.]+ %) +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+)/\1 | \2 | \3/') | – | $secs MiB |"
done
