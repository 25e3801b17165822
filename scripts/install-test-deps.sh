#!/usr/bin/env bash
# Installs the tools the tests use, when they are missing. Idempotent.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"

if ! command -v staticcheck >/dev/null; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
command -v staticcheck >/dev/null || { echo "staticcheck missing after install" >&2; exit 1; }
