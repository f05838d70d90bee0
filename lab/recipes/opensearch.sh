#!/usr/bin/env bash
# OpenSearch (Apache-2.0) from Maven Central through Maven's own client: the integ-test
# distribution zip and the security plugin zip, which must match the server version exactly
# (install it with `opensearch-plugin install --batch file://...`). Maven checks the
# repository's checksums (-C makes a mismatch fatal); the recipe also checks the SHA-256 pins.
# Maven's local repository stays in its default place (~/.m2), outside the clone.
# Run by lab/artifacts.py with OUT (directory to fill) and WORK (scratch directory).
set -euo pipefail

VERSION=2.19.4
MAIN=opensearch-${VERSION}.zip
PLUGIN=opensearch-security-${VERSION}.0.zip
SERVER_COORDINATES=org.opensearch.distribution.integ-test-zip:opensearch:${VERSION}:zip
PLUGIN_COORDINATES=org.opensearch.plugin:opensearch-security:${VERSION}.0:zip
SERVER_SHA256=3902e642715210d1d9d7cbdcc8f5abd6f931d1d7a679cea3750937becf16c406
PLUGIN_SHA256=1f673622c462c4171a8c53f9b1ad20e5b839834cb79b0d3b388da180a0e514e8

: "${OUT:?OUT must name the directory to fill}"
WORK="${WORK:-$(mktemp -d)}"
say() { echo "recipe opensearch ${VERSION}: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

command -v mvn >/dev/null || die "Maven is missing: apt-get install maven (it also needs a JDK)"

fetch() { # coordinates file sha256
	say "fetching $1 with mvn dependency:copy"
	# -C: a checksum mismatch is fatal. Debian's Maven 3.8 prints bare colour resets even in -q -B mode.
	(cd "$WORK" && mvn -q -B -C org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
		-Dartifact="$1" -DoutputDirectory="$OUT" 2>&1 | sed -e 's/\x1b\[[0-9;]*m//g' >&2) ||
		die "mvn could not fetch $1"
	[ -f "$OUT/$2" ] || die "mvn saved no $2"
	echo "$3  $OUT/$2" | sha256sum --check --quiet - || die "$2 SHA-256 differs from the pin"
	say "fetched $2 ($(du -h "$OUT/$2" | cut -f1), sha256 $(sha256sum "$OUT/$2" | cut -d' ' -f1))"
}

fetch "$SERVER_COORDINATES" "$MAIN" "$SERVER_SHA256"
fetch "$PLUGIN_COORDINATES" "$PLUGIN" "$PLUGIN_SHA256"
