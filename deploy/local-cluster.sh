#!/usr/bin/env bash
# The Kubernetes deployment's roles as local processes: the settings of deploy/k8s/base/configmap.yaml, with only the
# addresses changed (127.0.0.2 coordinator with its HTTP API, 127.0.0.3-4 tile workers, 127.0.0.5 gpu-trainer), a
# SQLite journal instead of PostgreSQL, discovery by the config method (the four nodes' bootstrap endpoints) instead
# of the Kubernetes pod list, then a batch of generated slides through them to the end, measured.
#
#   deploy/local-cluster.sh [--work DIR] [--slides N] [--size PX] [--giga] [--broken N] [--keep-running]
#
# Prints the batch's wall time, slides per hour and the peak RSS of every node; exits with the batch's exit code
# (1 when a slide failed: the deliberately broken ones do). After ./run.sh build.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=/tmp/actorseg-local-cluster; SLIDES=20; SIZE=2048; GIGA=0; BROKEN=2; KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --work) WORK=$2; shift 2 ;; --slides) SLIDES=$2; shift 2 ;; --size) SIZE=$2; shift 2 ;;
    --giga) GIGA=1; shift ;; --broken) BROKEN=$2; shift 2 ;; --keep-running) KEEP=1; shift ;;
    *) sed -n '2,10p' "$0"; exit 2 ;;
  esac
done
BIN=${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}
A="dotnet $BIN/actorseg.dll"
[ -f "$BIN/actorseg.dll" ] || { echo "build first: ./run.sh build" >&2; exit 2; }
mkdir -p "$WORK"/{slides,masks,train/images,train/masks,logs}

# the manifests' settings, as the pods get them from the ConfigMap, except TLS (the pods' certificate paths): these
# processes bind loopback addresses only, which needs no TLS (plain akka.tcp://)
while IFS= read -r line; do
  if [[ $line =~ ^\ +(ACTORSEG_[A-Z_]+):\ \"(.*)\"$ ]] && [[ ${BASH_REMATCH[1]} != ACTORSEG_TLS__* ]]; then
    export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
  fi
done < deploy/k8s/base/configmap.yaml
# ... with local addresses, journal and data root instead of the cluster's (and a random API token: the program
# refuses tokens shorter than 16 characters)
export ACTORSEG_HOSTNAME=127.0.0.1
# no seed list, as in Kubernetes: the nodes find each other through discovery and the cluster bootstrap, here by the
# config method (the list of their bootstrap endpoints, what the pod list gives in the cluster)
export ACTORSEG_DISCOVERY__METHOD=config
export ACTORSEG_DISCOVERY__CONTACTPOINTS="127.0.0.2:$ACTORSEG_MANAGEMENTPORT,127.0.0.3:$ACTORSEG_MANAGEMENTPORT,127.0.0.4:$ACTORSEG_MANAGEMENTPORT,127.0.0.5:$ACTORSEG_MANAGEMENTPORT"
export ACTORSEG_COORDINATOR="akka.tcp://actorseg@127.0.0.2:4053"
export ACTORSEG_PERSISTENCE__PROVIDER=sqlite ACTORSEG_PERSISTENCE__CONNECTIONSTRING="Data Source=$WORK/journal.db"
export ACTORSEG_DATAROOTS="$WORK" ACTORSEG_APITOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" ACTORSEG_LOG_FORMAT=json

pids=()
node() { # name ip roles [env...]
  local name=$1 ip=$2 roles=$3; shift 3
  env ACTORSEG_ROLES="$roles" ACTORSEG_HOSTNAME="$ip" ACTORSEG_PUBLICHOSTNAME="$ip" "$@" $A node > "$WORK/logs/$name.log" 2>&1 &
  pids+=($!); echo "$name $!" >> "$WORK/logs/pids"
}
stop() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
[ $KEEP = 1 ] || trap stop EXIT
: > "$WORK/logs/pids"
node coordinator 127.0.0.2 coordinator ACTORSEG_HTTPPORT=8080
node worker-1 127.0.0.3 tile-worker ACTORSEG_WORKERS=1
node worker-2 127.0.0.4 tile-worker ACTORSEG_WORKERS=1
node trainer 127.0.0.5 gpu-trainer ACTORSEG_DEVICE=auto

# the data: training fields, slides of mixed sizes (one a gigapixel with --giga), some broken on purpose
gen() { [ -f "$2/$1.tif" ] || { $A generate --out "$WORK/gen" --name "$1" --width "$3" --height "$3" --seed "$4" >/dev/null 2>&1
  mv "$WORK/gen/$1.tif" "$2/"; mv "$WORK/gen/$1_mask.tif" "$5/$1.tif"; }; }
for s in 1 2; do gen "f$s" "$WORK/train/images" 1024 "$s" "$WORK/train/masks"; done
for i in $(seq 1 $((SLIDES - BROKEN - GIGA))); do gen "slide-$(printf %03d "$i")" "$WORK/slides" $((SIZE / 2 + (i % 3) * SIZE / 2)) $((100 + i)) "$WORK/masks"; done
[ $GIGA = 1 ] && gen slide-giga "$WORK/slides" 32768 7 "$WORK/masks"
for b in $(seq 1 "$BROKEN"); do head -c $((4096 * b)) /dev/urandom > "$WORK/slides/broken-$b.tif"; done

curl -fsS --retry 30 --retry-delay 1 --retry-all-errors http://127.0.0.2:8080/readyz >/dev/null
echo "cluster ready: $(curl -fsS http://127.0.0.2:8080/readyz)"
$A submit-train --images "$WORK/train/images" --masks "$WORK/train/masks" --epochs 60 --out "$WORK/model" --job-id "model-$$" 2>"$WORK/logs/train.log" >/dev/null
start=$(date +%s.%N)
set +e
$A batch "$WORK/slides" --masks "$WORK/masks" --model "$WORK/model/best.model" --out "$WORK/results" --parallel 2 2>"$WORK/logs/batch.log"
rc=$?
set -e
end=$(date +%s.%N)
n=$(tail -n +2 "$WORK/results/summary.csv" | wc -l)
echo "batch: $n slides in $(python3 -c "print(round($end-$start,1))") s ($(python3 -c "print(round($n*3600/($end-$start)))") slides/hour); exit $rc"
cut -d, -f1,5,6 "$WORK/results/summary.csv" | column -t -s, | head -40
for p in $(awk '{print $2}' "$WORK/logs/pids"); do
  name=$(awk -v p="$p" '$2==p {print $1}' "$WORK/logs/pids")
  [ -r "/proc/$p/status" ] && echo "peak RSS $name: $(awk '/VmHWM/ {printf "%.0f MiB", $2/1024}' "/proc/$p/status")"
done
echo "report: $WORK/results/report.html"
exit $rc
