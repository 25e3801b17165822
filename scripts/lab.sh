#!/usr/bin/env bash
# Builds the resilience binary and runs the lab: a whole deployment on
# loopback. Extra arguments go to `resilience lab` (--dir, --base-port).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
mkdir -p bin
go build -ldflags "-X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)" -o bin/resilience ./cmd/resilience
exec bin/resilience lab "$@"
