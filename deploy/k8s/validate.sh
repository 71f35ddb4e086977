#!/usr/bin/env bash
# Renders every overlay (and cert-manager/) with `kubectl kustomize` and validates every object against the Kubernetes
# schemas, offline (kubernetes-models from npm), and the deployment's security rules (validate/validate.mjs).
# The secret files base/secrets/* are git-ignored and operator-supplied: the overlays are rendered from a temporary
# copy of base/ and overlays/ with throwaway random secret files (the operator's, if any, are neither copied nor read),
# so a clean clone validates; nothing is written into the repository (except validate/node_modules, git-ignored).
# Installs kubectl and Node.js from Debian when missing. Exit 1 when anything is invalid.
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
[ -d validate/node_modules/kubernetes-models ] && [ -d validate/node_modules/@kubernetes-models/cert-manager ] ||
  (cd validate && npm install --no-audit --no-fund --loglevel=error >/dev/null)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/k8s" "$tmp/out"
tar -cf - --exclude='./base/secrets/*' ./base ./overlays | tar -xf - -C "$tmp/k8s"
mkdir -p "$tmp/k8s/base/secrets"
for f in postgres-password api-token; do   # as base/secrets/README.md makes them, but thrown away
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/k8s/base/secrets/$f")
done
for o in "$tmp"/k8s/overlays/*/; do
  name=$(basename "$o")
  kubectl kustomize "$o" > "$tmp/out/$name.yaml"
  echo "rendered $name: $(grep -c '^kind:' "$tmp/out/$name.yaml") objects"
done
# cert-manager/ is applied on its own (not part of an overlay); its kinds are checked against cert-manager's schemas
kubectl kustomize cert-manager > "$tmp/out/cert-manager.yaml"
echo "rendered cert-manager: $(grep -c '^kind:' "$tmp/out/cert-manager.yaml") objects"
node validate/validate.mjs "$tmp"/out/*.yaml
