#!/usr/bin/env bash
# Zipkin server (Apache-2.0), the executable jar, from Maven Central through Maven's own
# client: io.zipkin:zipkin-server:jar:exec. Maven checks the repository's checksum (-C makes
# a mismatch fatal); the recipe also checks the SHA-256 pinned below.
# Maven's local repository stays in its default place (~/.m2), outside the clone.
# Run by lab/artifacts.py with OUT (directory to fill) and WORK (scratch directory).
set -euo pipefail

VERSION=3.6.1
MAIN=zipkin-server-${VERSION}-exec.jar
COORDINATES=io.zipkin:zipkin-server:${VERSION}:jar:exec
SHA256=d8326e0ed4f43855dba81228f688554706e52578a7c782d9a90b73f8680654a1

: "${OUT:?OUT must name the directory to fill}"
WORK="${WORK:-$(mktemp -d)}"
say() { echo "recipe zipkin ${VERSION}: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

command -v mvn >/dev/null || die "Maven is missing: apt-get install maven (it also needs a JDK)"

say "fetching ${COORDINATES} with mvn dependency:copy"
# -C: a checksum mismatch is fatal. Debian's Maven 3.8 prints bare colour resets even in -q -B mode.
(cd "$WORK" && mvn -q -B -C org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
	-Dartifact="$COORDINATES" -DoutputDirectory="$OUT" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' >&2) ||
	die "mvn could not fetch ${COORDINATES}"
[ -f "$OUT/$MAIN" ] || die "mvn saved no $MAIN"
echo "$SHA256  $OUT/$MAIN" | sha256sum --check --quiet - || die "$MAIN SHA-256 differs from the pin"
say "fetched $MAIN ($(du -h "$OUT/$MAIN" | cut -f1), sha256 $(sha256sum "$OUT/$MAIN" | cut -d' ' -f1))"
