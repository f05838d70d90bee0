#!/usr/bin/env bash
# Consul (MPL-2.0) built from the Go module proxy with a wrapper module.
# The release's own go.mod replaces its submodules with local directories, which a
# dependency cannot do, so the wrapper pins the tagged submodules instead. 1.15.4 declares
# api v1.21.0 but its tree needs backports first released in api v1.25.1.
# Cold: ~1.7 GB of modules and ~10 min on 2 cores; warm module and build caches: ~1 min.
# Module and build caches: the Go defaults (GOMODCACHE, GOCACHE), outside the clone.
# Run by lab/artifacts.py with OUT (directory to fill) and WORK (scratch directory).
set -euo pipefail

VERSION=1.15.4
MAIN=consul

: "${OUT:?OUT must name the directory to fill}"
WORK="${WORK:-$(mktemp -d)}"
say() { echo "recipe consul ${VERSION}: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

command -v go >/dev/null || die "the go command is missing (install Go >= 1.26)"

# The machine's configured module proxy only: never fall back to fetching from VCS hosts.
proxy="$(go env GOPROXY | tr ',|' '\n' | grep -vx -e direct -e off -e '' | paste -sd, -)" || true
[ -n "$proxy" ] || die "go env GOPROXY names no module proxy (only direct/off)"
export GOPROXY="$proxy" GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0

module="$WORK/consulbuild"
mkdir -p "$module"
cat >"$module/go.mod" <<'GOMOD'
module example.invalid/consulbuild

go 1.26

require (
	github.com/hashicorp/consul v1.15.4
	github.com/hashicorp/consul/api v1.25.1
	github.com/hashicorp/consul/envoyextensions v0.2.1
	github.com/hashicorp/consul/proto-public v0.3.0
	github.com/hashicorp/consul/troubleshoot v0.2.0
)

// sdk then resolves to v0.14.1
exclude (
	github.com/hashicorp/go-msgpack v1.1.5
	github.com/hashicorp/go-msgpack v1.1.6
)
GOMOD

cd "$module"
say "fetching github.com/hashicorp/consul@v${VERSION} and its modules through the configured Go module proxy ($(go version | cut -d' ' -f3))"
go get "github.com/hashicorp/consul@v${VERSION}" || die "go get github.com/hashicorp/consul@v${VERSION} failed"
say "building (CGO_ENABLED=0, -trimpath)"
go build -trimpath -o "$OUT/$MAIN" github.com/hashicorp/consul || die "go build failed"
chmod 0755 "$OUT/$MAIN"

# The whole output, then its first line: `| head -n1` would close the pipe early, and
# with pipefail the binary's SIGPIPE (exit 141) failed the recipe now and then.
reported="$("$OUT/$MAIN" version)"
reported="${reported%%$'\n'*}"
case "$reported" in
	*"v${VERSION}"*) say "built: $reported" ;;
	*) die "consul version says '$reported', expected v${VERSION}" ;;
esac
