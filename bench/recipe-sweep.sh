#!/usr/bin/env bash
# The sweep that chose `actorseg train`'s default recipe (issue #14): each candidate recipe trained on the same real
# fields and measured on the same held-out fields, pixel-exact against the masks.
#
# Split (fixed, documented): a dataset's images sorted by name; the last TEST (default 30) are held out and never seen
# in training; the others train, 15 % of them (by graph, seed-chosen) validating for early stopping. Every graph is built
# once per feature set (`actorseg graph --segments SEG`) and reused by every recipe. With several SEEDS each recipe is
# trained once per seed (the seed moves the validation split and the initial weights); the table gives every seed and
# the mean.
#
# Usage: bench/recipe-sweep.sh [SHARED_DATA_DIR] [WORK_DIR]   (after ./run.sh build)
#   DATASETS="nist bbbc039"  TEST=30  SEEDS="1 2 3"  TRAIN=N (use only the first N training fields: a quick sweep)
#   RECIPES='…'  one recipe per line: FEATURES EDGES [train options…]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(cd "${1:-../shared/data}" && pwd); WORK=${2:-/tmp/actorseg-recipe-sweep}
TEST=${TEST:-30}; SEEDS=${SEEDS:-1}; DATASETS=${DATASETS:-nist}; TRAIN=${TRAIN:-}
A="dotnet ${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll"
[ -d "$DATA/nist-colonies" ] || { echo "no shared data at $DATA" >&2; exit 1; }
RECIPES=${RECIPES:-"published knn --recipe published
texture knn --layers 3 --hidden 32
texture knn-scaled --layers 3 --hidden 32
texture rag --layers 3 --hidden 32
texture rag --recipe best
absolute rag --recipe best
absolute rag --recipe best --patience 20
texture rag --layers 6 --hidden 64
texture rag --conv sage --layers 6 --hidden 64 --dropout 0.3"}

graphs() { # dataset imgdir maskdir maskext segments features: builds every field's graph once, links the split
  local name=$1 imgs=$2 masks=$3 ext=$4 seg=$5 feat=$6
  local files n i=0 b part; files=$(ls "$imgs" | sort); n=$(echo "$files" | wc -l)
  local split="$WORK/$name/$feat/split-test$TEST${TRAIN:+-train$TRAIN}"
  rm -rf "$split"; mkdir -p "$split/train" "$split/test"
  for f in $files; do
    i=$((i+1)); b="${f%.*}"; part=train; [ $i -gt $((n-TEST)) ] && part=test
    [ "$part" = train ] && [ -n "$TRAIN" ] && [ $i -gt "$TRAIN" ] && continue
    local g="$WORK/$name/$feat/all/$b"
    [ -f "$g/graph.npz" ] || $A graph "$imgs/$f" --mask "$masks/$b$ext" --segments "$seg" --features "$feat" --no-node-map --out "$g" >/dev/null 2>&1
    ln -sf "$g/graph.npz" "$split/$part/$b.npz"
  done
  echo "$split"
}

metric() { sed -E 's/pixel accuracy ([0-9.]+) % +macro F1 ([0-9.]+) +micro Jaccard ([0-9.]+) +superpixel ceiling ([0-9.]+) %/\1 \2 \3 \4/'; }

for name in $DATASETS; do
  case $name in
    nist) imgs="$DATA/nist-colonies/images"; masks="$DATA/nist-colonies/masks"; ext=.tif; seg=1000 ;;
    bbbc039) imgs="$DATA/bbbc039/images"; masks="$DATA/bbbc039/masks"; ext=.png; seg=3000 ;;
    *) echo "unknown dataset $name" >&2; exit 2 ;;
  esac
  total=$(ls "$imgs" | wc -l)
  declare -A split=()
  # every feature set a recipe line names (first column), built once
  for feat in $(echo "$RECIPES" | awk 'NF {print $1}' | sort -u); do split[$feat]=$(graphs $name "$imgs" "$masks" $ext $seg $feat); done
  first=$(echo "$RECIPES" | awk 'NF {print $1; exit}'); ntrain=$(ls "${split[$first]}/train" | wc -l)
  echo
  echo "$name: $ntrain training fields (15 % of them validating), the last $TEST of $total held out; seeds: $SEEDS"
  echo
  echo "| features | edges | options | pixel accuracy (mean) | per seed | macro F1 (mean) | micro Jaccard (mean) | superpixel ceiling | training s (mean) |"
  echo "|---|---|---|---|---|---|---|---|---|"
  while read -r feat edges opts; do
    [ -n "$feat" ] || continue
    accs=(); f1s=(); jacs=(); secs=(); ceil=
    for seed in $SEEDS; do
      m="$WORK/$name/models/$(echo "$feat-$edges-$opts-s$seed" | tr -c 'A-Za-z0-9.-' '_')"
      rm -rf "$m"
      log=$($A train --graphs "${split[$feat]}/train" --edges "$edges" $opts --seed "$seed" --out "$m" 2>&1) || { echo "training failed: $log" | tail -5 >&2; exit 1; }
      sec=$(echo "$log" | grep -oE 'stopped after .*; ([0-9.]+)s' | grep -oE '[0-9.]+s$' | tr -d s)
      read -r acc f1 jac ceil < <($A evaluate --model "$m/best.model" --graphs "${split[$feat]}/test" 2>&1 | sed -n 2p | metric)
      accs+=("$acc"); f1s+=("$f1"); jacs+=("$jac"); secs+=("$sec")
    done
    mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[2:]]; print(format(sum(v)/len(v), sys.argv[1]))" "$@"; }
    echo "| $feat | $edges | ${opts:-–} | $(mean .2f "${accs[@]}") % | $(IFS=/; echo "${accs[*]}") | $(mean .3f "${f1s[@]}") | $(mean .3f "${jacs[@]}") | $ceil % | $(mean .1f "${secs[@]}") |"
  done <<< "$RECIPES"
done
