#!/usr/bin/env bash
# Build tools the tests need into .tools/bin (git-ignored). Idempotent: a tool already
# at the pinned version is left alone. Go's module and build caches make a rebuild cheap.
#   kustomize   renders k8s/overlays/* for tests/unit/test_k8s_manifests.py
# Needs Go (>= 1.26 for kustomize v5.8.2; v5.8.3 needs Go 1.27). GOTOOLCHAIN=local:
# never download another Go toolchain behind the caller's back.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="$ROOT/.tools/bin"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.2}"

die() { echo "error: $*" >&2; exit 2; }

install_kustomize() {
  local bin="$TOOLS_BIN/kustomize" have="" tmp start
  [ -x "$bin" ] && have="$("$bin" version 2>/dev/null || true)"
  if [ "$have" = "$KUSTOMIZE_VERSION" ]; then
    return 0
  fi
  command -v go >/dev/null || die "go not found: kustomize is built from source (apt-get install golang-go, Go >= 1.26)"
  echo "tools: building kustomize $KUSTOMIZE_VERSION with $(go env GOVERSION) (first time: about a minute)"
  start=$SECONDS
  mkdir -p "$TOOLS_BIN"
  tmp="$(mktemp -d "$ROOT/.tools/tmp.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  GOTOOLCHAIN=local GOBIN="$tmp" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" \
    || die "go install kustomize $KUSTOMIZE_VERSION failed (Go too old? set KUSTOMIZE_VERSION=v5.8.1 for Go 1.24)"
  mv -f "$tmp/kustomize" "$bin"   # whole or not at all: a half-written binary never sits at $bin
  echo "tools: kustomize $("$bin" version) in $((SECONDS - start)) s"
}

install_kustomize
