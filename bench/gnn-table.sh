#!/usr/bin/env bash
# GNN accuracy on the shared real data: the published recipe against ActorSeg's improved features and edges.
# Fixed split: files sorted by name; the last TEST files of each dataset are held out, the rest train (15% of those
# graphs validate). Usage: bench/gnn-table.sh [SHARED_DATA_DIR] [WORK_DIR]   (after ./run.sh build)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}; WORK=${2:-/tmp/actorseg-gnn-bench}; TEST=${TEST:-10}
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
row() { # dataset features edges
  local name=$1 feat=$2 edges=$3 model="$WORK/$1/$2/model-$3"
  local log; log=$($A train --graphs "$WORK/$name/$feat/train" --edges "$edges" --out "$model" 2>&1)
  local secs rss; secs=$(echo "$log" | grep -o 'stopped.*' | grep -oE '[0-9.]+s, peak RSS [0-9]+' | head -1)
  local ev; ev=$($A evaluate --model "$model/best.model" --graphs "$WORK/$name/$feat/test" 2>&1 | sed -n 2p)
  echo "| $name | $feat | $edges | $(echo "$ev" | sed -E 's/pixel accuracy ([0-9.]+ %) +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+) +superpixel ceiling ([0-9.]+ %)/\1 | \2 | \3 | \4/') | $secs MiB |"
}
for feat in published texture; do
  build nist "$DATA/nist-colonies/images" "$DATA/nist-colonies/masks" .tif 1000 $feat
  build bbbc039 "$DATA/bbbc039/images" "$DATA/bbbc039/masks" .png 3000 $feat
done
echo "| data (train / test fields) | features | edges | pixel accuracy | macro F1 | micro Jaccard | superpixel ceiling | training time, peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
for name in nist bbbc039; do
  for cfg in "published knn" "published knn-scaled" "texture knn-scaled" "texture rag"; do row $name $cfg; done
done
