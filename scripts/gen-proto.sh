#!/usr/bin/env bash
# Generates the TypeScript for the .proto files with buf and protoc-gen-es (both npm packages):
#   ttrpc/proto/ -> ttrpc/generated/   (ttrpc.Request/Response/KeyValue, google.rpc.Status)
#   shim/proto/  -> shim/generated/    (the containerd shim v2 protos)
# The generated code is committed; a test regenerates it into a temporary copy and compares.
# Usage: scripts/gen-proto.sh [ROOT]   (ROOT: a tree with ttrpc/proto and shim/proto; default: this package)
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"
cd "${1:-$pkg}"
export PATH="$pkg/node_modules/.bin:$PATH"
for m in ttrpc shim; do
  buf generate "$m/proto" --template "$m/proto/buf.gen.yaml"
done
