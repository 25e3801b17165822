#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh
# Debian machine, then runs the linters and every test with the race
# detector. Under CI=true nothing may be skipped for a missing tool.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"

step() { printf '\n==> %s\n' "$*"; }

step "install test tools"
scripts/install-test-deps.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'; git ls-files --others --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
staticcheck ./...

step "go test -race"
go test -race -count=1 -timeout 20m ./...

# The budget is a count of executions, not a duration: a duration budget
# hits a race in Go's fuzz coordinator (go.dev/issue/75804, fixed in Go
# 1.27) that fails the run with "context deadline exceeded" and no
# crasher when the machine is loaded. FUZZTIME=1000000x overrides it.
step "fuzz the decoders (short runs; seeds are in testdata/fuzz)"
for target in "./internal/config FuzzParse" "./internal/api FuzzDecode" "./internal/mds FuzzHandle" "./internal/edge FuzzParseHead"; do
  set -- $target
  go test -run='^$' -fuzz="^$2\$" -fuzztime="${FUZZTIME:-50000x}" "$1"
done

echo
echo "all checks passed"
