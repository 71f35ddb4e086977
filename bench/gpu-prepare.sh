#!/usr/bin/env bash
# Prepares, on this machine, everything bench/gpu.sh needs on a GPU machine that has python3, torch (CUDA), numpy and
# perhaps torch_geometric, but no network and perhaps no .NET (issue #14). Everything lands in OUT (default
# bench/gpu-data, ignored by git), small enough to travel with the working tree (the device tool carries 64 MiB):
#   graphs-SIZE/{train,held}/NAME.npz   ActorSeg's graphs (actorseg graph, default features "absolute") of generated
#                                       SIZE² colony fields: the arrays the default recipe trains on (x, rag_edge_index
#                                       as int32, rag_boundary_length, y, class_hist, feature_names, seed_spacing,
#                                       image_shape, area), LZMA zip members (np.load reads them)
#   fields-FIELD/{train,held}/NAME.npz  the FIELD² fields themselves (8-bit image, 0/1 mask), for the UNet, and
#   graphs-FIELD/…                      their graphs, so the GNN and the UNet also meet on the same pixels
#   peers/unet_peer.py, peers/reference_pipeline.py   copies of ../shared/peers (the GPU machine has no ../shared)
# TRAIN training fields (seeds 1..TRAIN; the last one validates) and one held-out field (seed 42) per size.
# Pixels do not compress (an 8-bit 8192² field is ~34 MiB even with LZMA), so the UNet gets FIELD² fields (4096²
# default) and the GNN gets both sizes; gpu.sh measures one UNet training step on an 8192² image on top.
# With --actorseg, also bench/gpu-actorseg/actorseg.tar.xz: ActorSeg published framework-dependent without libtorch
# (the GPU machine's python torch provides it) plus this machine's .NET runtime, for gpu.sh's third part (its own
# carry: about 41 MiB, too much beside the data in one run).
# Usage: bench/gpu-prepare.sh [--size 8192] [--field 4096] [--train 3] [--out bench/gpu-data] [--work DIR] [--actorseg]
#   (after ./run.sh build; needs /usr/bin/python3 with numpy and tifffile: apt-get install -y python3-tifffile)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=8192; FIELD=4096; TRAIN=3; OUT=bench/gpu-data; WORK=/tmp/actorseg-gpu-prepare; BUNDLE=
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=$2; shift 2;; --field) FIELD=$2; shift 2;; --train) TRAIN=$2; shift 2;;
    --out) OUT=$2; shift 2;; --work) WORK=$2; shift 2;; --actorseg) BUNDLE=1; shift;;
    *) echo "unknown option $1 (see the comment at the top of $0)" >&2; exit 2;;
  esac
done
PY=/usr/bin/python3
$PY -c "import numpy, tifffile" 2>/dev/null || { echo "needs $PY with numpy and tifffile: apt-get install -y python3-numpy python3-tifffile" >&2; exit 2; }
BIN=${ACTORSEG_BIN:-src/Cli/bin/Release/net10.0}
[ -f "$BIN/actorseg.dll" ] || { echo "no $BIN/actorseg.dll: run ./run.sh build first" >&2; exit 2; }
A="dotnet $BIN/actorseg.dll"
mkdir -p "$WORK" "$OUT"

# one field: generate (8-bit grey colonies, exact mask), build its graph; SIZE PART NAME SEED
field() {
  local size=$1 part=$2 name=$3 seed=$4 d="$WORK/$1"
  mkdir -p "$d/$part"
  if [ ! -f "$d/$part/$name.tif" ]; then
    $A generate --out "$d/gen" --name "$name" --width "$size" --height "$size" --seed "$seed" --bits 8 >/dev/null 2>&1
    mv "$d/gen/$name.tif" "$d/$part/$name.tif"; mv "$d/gen/${name}_mask.tif" "$d/$part/${name}_mask.tif"
  fi
  if [ ! -f "$d/graphs/$part/$name/graph.npz" ]; then
    echo "graph of $name (${size}², seed $seed)" >&2
    $A graph "$d/$part/$name.tif" --mask "$d/$part/${name}_mask.tif" --no-node-map --out "$d/graphs/$part/$name" >/dev/null 2>&1
  fi
}
sizes=$(echo "$SIZE $FIELD" | tr ' ' '\n' | sort -un)
for s in $sizes; do
  for i in $(seq 1 "$TRAIN"); do field "$s" train "f$i" "$i"; done
  field "$s" held held 42
done

# pack: slim LZMA graphs for every size, images and masks for FIELD
$PY - "$WORK" "$OUT" "$FIELD" $sizes <<'EOF'
import glob, os, sys, zipfile, numpy as np, tifffile
work, out, field, sizes = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(s) for s in sys.argv[4:]]

def save(path, arrays):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".partial"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as z:
        for k, v in arrays.items():
            with z.open(k + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(v), allow_pickle=False)
    os.replace(tmp, path)

KEEP = ["x", "rag_edge_index", "rag_boundary_length", "y", "class_hist", "feature_names", "seed_spacing", "image_shape", "area"]
for s in sizes:
    for g in sorted(glob.glob(f"{work}/{s}/graphs/*/*/graph.npz")):
        part, name = g.split("/")[-3], g.split("/")[-2]
        dst = f"{out}/graphs-{s}/{part}/{name}.npz"
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(g): continue
        z = np.load(g)
        a = {k: z[k] for k in KEEP}
        n = a["x"].shape[0]
        assert n < 2**31
        a["rag_edge_index"] = a["rag_edge_index"].astype(np.int32)   # lossless (fewer than 2³¹ nodes); gpu.sh widens it back
        save(dst, a)
        print(f"{dst}: {n} nodes, {a['rag_edge_index'].shape[1]} adjacency edges, {os.path.getsize(dst) / 2**20:.1f} MiB", file=sys.stderr)
for tif in sorted(glob.glob(f"{work}/{field}/*/*.tif")):
    if tif.endswith("_mask.tif"): continue
    part, name = tif.split("/")[-2], os.path.basename(tif)[:-4]
    dst = f"{out}/fields-{field}/{part}/{name}.npz"
    if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(tif): continue
    img = tifffile.imread(tif); mask = tifffile.imread(tif[:-4] + "_mask.tif")
    save(dst, {"image": img, "mask": (mask > 0).astype(np.uint8)})
    print(f"{dst}: {img.shape} {img.dtype}, {os.path.getsize(dst) / 2**20:.1f} MiB", file=sys.stderr)
EOF
mkdir -p "$OUT/peers"
cp ../shared/peers/unet_peer.py ../shared/peers/reference_pipeline.py "$OUT/peers/"
# only the sizes asked for stay (a rerun with other sizes would otherwise carry stale folders)
for d in "$OUT"/graphs-* "$OUT"/fields-*; do
  [ -d "$d" ] || continue
  b=$(basename "$d"); keep=
  for s in $sizes; do [ "$b" = "graphs-$s" ] && keep=1; done
  [ "$b" = "fields-$FIELD" ] && keep=1
  [ -n "$keep" ] || rm -rf "$d"
done

if [ -n "$BUNDLE" ]; then
  # ActorSeg without libtorch (found at run time in the python torch package) and a .NET runtime for a machine without one
  P="$WORK/publish"; rm -rf "$P"; mkdir -p "$P/app"
  echo "publishing actorseg (framework-dependent, linux-x64)" >&2
  dotnet publish src/Cli/ActorSeg.Cli.csproj -c Release -r linux-x64 --self-contained false -o "$P/app" -nologo -v quiet -clp:ErrorsOnly >&2
  find "$P/app" -name '*.pdb' -delete
  # libtorch's own libraries go; libLibTorchSharp.so (TorchSharp's C layer, built against libtorch 2.10) stays
  find "$P/app" \( -name 'libtorch*.so*' -o -name 'libc10*.so*' -o -name 'libgomp*.so*' -o -name 'libshm*.so*' \
    -o -name 'libnvrtc*' -o -name 'libcudnn*' -o -name 'libcupti*' -o -name 'libbackend_with_compiler*' -o -name 'libjitbackend*' \
    -o -name 'libaoti_custom_ops.so' -o -name 'libnnapi_backend.so' \) ! -name 'libLibTorchSharp.so' -delete
  # training reads graphs only: libvips (image reading) stays behind too
  find "$P/app" -name 'libvips.so*' -delete
  [ ! -d "$P/app/runtimes" ] || find "$P/app/runtimes" -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
  DN=$(dirname "$(readlink -f "$(command -v dotnet)")")
  mkdir -p "$P/dotnet/shared"
  cp -a "$DN/dotnet" "$DN/host" "$P/dotnet/"
  cp -a "$DN/shared/Microsoft.NETCore.App" "$DN/shared/Microsoft.AspNetCore.App" "$P/dotnet/shared/"
  mkdir -p bench/gpu-actorseg
  tar -C "$P" -cf - app dotnet | xz -9 -T1 > bench/gpu-actorseg/actorseg.tar.xz.partial
  mv bench/gpu-actorseg/actorseg.tar.xz.partial bench/gpu-actorseg/actorseg.tar.xz
  echo "bench/gpu-actorseg/actorseg.tar.xz: $(du -m bench/gpu-actorseg/actorseg.tar.xz | cut -f1) MiB" >&2
fi

echo "$OUT: $(du -sm "$OUT" | cut -f1) MiB" >&2
du -sh "$OUT"/* >&2
