#!/usr/bin/env bash
# Renders every overlay with `kubectl kustomize` and validates every object against the Kubernetes schemas, offline
# (kubernetes-models from npm). Installs kubectl and Node.js from Debian when missing. Exit 1 when anything is invalid.
set -euo pipefail
cd "$(dirname "$0")"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root to run: $*" >&2; return 1; fi; }
missing=()
command -v kubectl >/dev/null || missing+=(kubectl)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -d validate/node_modules/kubernetes-models ] || (cd validate && npm install --no-audit --no-fund --loglevel=error >/dev/null)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for o in overlays/*/; do
  name=$(basename "$o")
  kubectl kustomize "$o" > "$out/$name.yaml"
  echo "rendered $name: $(grep -c '^kind:' "$out/$name.yaml") objects"
done
node validate/validate.mjs "$out"/*.yaml
