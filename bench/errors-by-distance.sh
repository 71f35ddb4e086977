#!/usr/bin/env bash
# Where a model's pixel errors lie (issue #14): by distance to the truth's outline, for the refined mask, the coarse mask
# and the superpixel ceiling (every node painted with its majority true class), on the held-out fields of
# bench/refine.sh's split. It tells boundary errors (within a few pixels of the hand-drawn outline, where even the
# ceiling errs) from region errors (whole superpixels called wrong far from any outline), which no refinement of the
# boundary can mend.
#
# Usage: bench/errors-by-distance.sh [DATASET] [WORK_DIR]   (after bench/refine.sh has trained the model of DATASET)
#   DATASET nist (default) or bbbc039; WORK_DIR as bench/refine.sh's (default /tmp/actorseg-refine); SEED=1
# Needs /usr/bin/python3 with numpy, scipy and tifffile (Debian's python3-numpy, python3-scipy, python3-tifffile,
# installed when missing, as bench/refine.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:-nist}; WORK=${2:-/tmp/actorseg-refine}; SEED=${SEED:-1}
A="dotnet ${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}/actorseg.dll"
split="$WORK/$NAME/split-test${TEST:-30}/test"; model="$WORK/$NAME/gnn-s$SEED/refined.model"
[ -f "$model" ] || { echo "no refined model at $model: run bench/refine.sh first (UNET=0 skips its UNet)" >&2; exit 1; }
if ! /usr/bin/python3 -c 'import numpy, scipy, tifffile' 2>/dev/null; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy python3-scipy python3-tifffile >/dev/null 2>&1 ||
    { echo "bench/errors-by-distance.sh needs /usr/bin/python3 with numpy, scipy and tifffile" >&2; exit 1; }
fi
out="$WORK/$NAME/errors-by-distance"; rm -rf "$out"; mkdir -p "$out"
for img in "$split"/images/*; do
  b=$(basename "${img%.*}")
  # the held-out image segmented as a user would: refined (the default) and coarse
  $A segment "$img" --model "$model" --out "$out/refined/$b" --objects none >/dev/null 2>&1
  $A segment "$img" --model "$model" --out "$out/coarse/$b" --objects none --no-refine >/dev/null 2>&1
done
/usr/bin/python3 - "$split" "$out" "$WORK/$NAME/all" <<'EOF'
import sys, glob, os
import numpy as np, tifffile
from scipy import ndimage as ndi
split, out, graphs = sys.argv[1:4]
def read(p):
    if p.endswith('.png'):
        from PIL import Image
        a = np.asarray(Image.open(p))
        return (a[..., 0] if a.ndim == 3 else a) > 0
    return tifffile.imread(p)
bands = [(-10**9, -16), (-15, -8), (-7, -4), (-3, -3), (-2, -2), (-1, -1), (1, 1), (2, 2), (3, 3), (4, 7), (8, 15), (16, 10**9)]
names = ['outside ≥16', 'outside 8-15', 'outside 4-7', 'outside 3', 'outside 2', 'outside 1',
         'inside 1', 'inside 2', 'inside 3', 'inside 4-7', 'inside 8-15', 'inside ≥16']
N = np.zeros(len(bands)); E = {k: np.zeros(len(bands)) for k in ('refined', 'coarse', 'ceiling')}
per_field = []
for m in sorted(glob.glob(f'{split}/masks/*')):
    b = os.path.splitext(os.path.basename(m))[0]
    truth = read(m).astype(np.int64)
    if truth.ndim == 3: truth = truth[..., 0]
    truth = (truth > 0).astype(np.int64) if m.endswith('.png') else truth
    nodes = tifffile.imread(f'{graphs}/{b}/nodes.tif').astype(np.int64)
    k = int(nodes.max()) + 1; C = int(truth.max()) + 1
    hist = np.zeros((k, C), np.int64); np.add.at(hist, (nodes.ravel(), truth.ravel()), 1)
    pred = {'ceiling': hist.argmax(1)[nodes]}
    for kind in ('refined', 'coarse'): pred[kind] = tifffile.imread(f'{out}/{kind}/{b}/mask.tif').astype(np.int64)
    # signed distance to the nearest pixel of another true class: + inside the pixel's class; 1 = next to the outline
    d = np.full(truth.shape, 10**9, np.int64)
    for c in range(C):
        own = truth == c
        if own.all() or not own.any(): continue
        d[own] = np.minimum(d[own], np.ceil(ndi.distance_transform_edt(own)[own]).astype(np.int64))
    # outside: the distance of a pixel of the majority-background class (class 0) to the nearest foreground pixel
    bg = truth == 0
    if bg.any() and (~bg).any(): d[bg] = -np.ceil(ndi.distance_transform_edt(bg)[bg]).astype(np.int64)
    for i, (lo, hi) in enumerate(bands):
        sel = (d >= lo) & (d <= hi); N[i] += sel.sum()
        for kind in E: E[kind][i] += (pred[kind] != truth)[sel].sum()
    per_field.append((b, *[100 * (pred[k] == truth).mean() for k in ('refined', 'coarse', 'ceiling')]))
tot = N.sum()
print(f'| truth outline distance (px; class 0 is "outside") | share of pixels | refined: error rate, points | coarse: error rate, points | ceiling: error rate, points |')
print('|---|---|---|---|---|')
for i, n in enumerate(names):
    cells = ' | '.join(f'{100 * E[k][i] / max(N[i], 1):.1f} %, {100 * E[k][i] / tot:.3f}' for k in ('refined', 'coarse', 'ceiling'))
    print(f'| {n} | {100 * N[i] / tot:.1f} % | {cells} |')
near = [i for i, (lo, hi) in enumerate(bands) if abs(lo) <= 3 and abs(hi) <= 3]
far = [i for i in range(len(bands)) if i not in near]
for k in ('refined', 'coarse', 'ceiling'):
    print(f'{k}: accuracy {100 - 100 * E[k].sum() / tot:.2f} %; error points within 3 px of the outline {100 * E[k][near].sum() / tot:.3f}, farther {100 * E[k][far].sum() / tot:.3f}')
worst = sorted(per_field, key=lambda r: r[1] - r[3])[:3]
print('fields furthest below their ceiling (refined, coarse, ceiling %): ' + '; '.join(f'{b} {r:.2f} / {c:.2f} / {x:.2f}' for b, r, c, x in worst))
EOF
