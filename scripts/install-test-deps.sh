#!/usr/bin/env bash
# Installs the tools the tests use, when they are missing, and starts the
# Docker daemon when none answers. Idempotent; needs root (or sudo) for
# Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin:/usr/sbin:/sbin"
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo

if ! command -v staticcheck >/dev/null; then
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi

# Debian packages, by the command that shows they are there:
#   chromium   the web page's browser tests (internal/web)
#   kamailio   a real registrar for the trunk tests (internal/trunk)
#   sipp       SIP scenarios (internal/trunk, internal/mds), from sip-tester
#   dockerd    the docker backend's tests (internal/service/docker)
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v kamcmd >/dev/null || missing+=(kamailio)
command -v sipp >/dev/null || missing+=(sip-tester)
command -v dockerd >/dev/null || missing+=(docker.io)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
for cmd in staticcheck chromium kamcmd sipp dockerd; do
  command -v "$cmd" >/dev/null || { echo "$cmd missing after install" >&2; exit 1; }
done

scripts/start-dockerd.sh
