"""Lab and CI artifacts: build each server once, keep it in a cache outside the clone.

Each artifact has a recipe, `lab/recipes/NAME.sh`, that fetches or builds it through a
registry's ordinary client (pip, Maven, the Go module proxy) and writes the files into
the directory named by $OUT. The recipe fixes the version (`VERSION=...`) and names the
file a role installs (`MAIN=...`).

    artifacts.py build [NAME ...]   # build or reuse (all recipes when none named)
    artifacts.py path NAME          # print the entry directory (building it if missing)
    artifacts.py manifest NAME      # print the entry's manifest.json (building it if missing)
    artifacts.py list               # recipes, versions and whether they are cached
    artifacts.py verify [NAME ...]  # re-hash cached files against their manifests
    artifacts.py prune              # remove entries no current recipe produces

Cache root: $MSA_ARTIFACT_CACHE, else ~/.cache/msa-platform/artifacts. An entry is
`NAME-VERSION-KEY`, KEY being the first 12 hex digits of SHA-256 over the name, the version
and the recipe's bytes, so editing a recipe builds a new entry; deleting an entry forces a
rebuild. A build runs in a temporary directory beside the cache and is renamed into place
only when it succeeded, under a per-entry lock, so concurrent jobs share one build.
Standard library only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

RECIPES = Path(__file__).resolve().parent / "recipes"
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


def log(message: str) -> None:
    print(f"artifacts: {message}", file=sys.stderr, flush=True)


def fail(message: str) -> SystemExit:
    return SystemExit(f"artifacts: {message}")


def cache_root() -> Path:
    configured = os.environ.get("MSA_ARTIFACT_CACHE")
    root = Path(configured) if configured else Path.home() / ".cache" / "msa-platform" / "artifacts"
    return root.expanduser().resolve()


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    main: str
    script: Path
    key: str
    data: bytes = field(repr=False, default=b"")

    @property
    def entry_name(self) -> str:
        return f"{self.name}-{self.version}-{self.key}"

    def entry(self, root: Path) -> Path:
        return root / self.entry_name


def shell_assignment(text: str, variable: str, script: Path) -> str:
    """The value of a top-level `VARIABLE=value` line; `${VERSION}` is expanded."""
    match = re.search(rf"^{variable}=(\"[^\"\n]*\"|'[^'\n]*'|\S+)\s*$", text, flags=re.M)
    if not match:
        raise fail(f"{script} sets no {variable}=... line")
    return match.group(1).strip("\"'")


def load_recipe(name: str) -> Recipe:
    script = RECIPES / f"{name}.sh"
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) or not script.is_file():
        raise fail(f"no recipe {name!r}; known: {', '.join(recipe_names()) or 'none'}")
    data = script.read_bytes()
    text = data.decode()
    version = shell_assignment(text, "VERSION", script)
    main = shell_assignment(text, "MAIN", script).replace("${VERSION}", version).replace("$VERSION", version)
    if "$" in main or "/" in main:
        raise fail(f"{script}: MAIN must be a plain file name (only ${{VERSION}} is expanded), got {main!r}")
    digest = hashlib.sha256(b"\0".join([name.encode(), version.encode(), data])).hexdigest()
    return Recipe(name=name, version=version, main=main, script=script, key=digest[:12], data=data)


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.sh"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(entry: Path) -> dict | None:
    """The entry's manifest if the entry is complete, else None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or manifest.get("main") not in files:
        return None
    if not all((entry / name).is_file() for name in files):
        return None
    return manifest


@contextmanager
def entry_lock(root: Path, recipe: Recipe) -> Iterator[int]:
    """Hold an exclusive flock on ROOT/NAME-VERSION-KEY.lock (waiting for another holder); yield its fd."""
    with (root / f"{recipe.entry_name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{recipe.name}: another job is building {recipe.entry_name}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_script(script: Path, cwd: Path, env: dict[str, str], lock_fd: int) -> int:
    """Run a recipe in its own process group; stop the whole group if we are interrupted.

    The recipe's output goes to stderr so stdout carries only the result lines. It inherits
    the entry lock, so if this process dies without cleaning up (SIGKILL), the lock stays
    held until the orphaned recipe ends and nobody builds beside it.
    """
    proc = subprocess.Popen(
        ["bash", str(script)], cwd=cwd, env=env, stdout=sys.stderr, pass_fds=(lock_fd,), start_new_session=True
    )
    try:
        return proc.wait()
    except BaseException:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise


def run_recipe(recipe: Recipe, root: Path, started: float, lock_fd: int) -> Path:
    """Run the recipe into a temporary directory and rename the result into place."""
    entry = recipe.entry(root)
    # Only the lock holder builds this entry, so older temporary directories are leftovers.
    for stale in root.glob(f"{TMP_PREFIX}{recipe.entry_name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if entry.exists():  # incomplete (no valid manifest): rebuild it
        log(f"{recipe.name}: removing incomplete entry {entry}")
        shutil.rmtree(entry)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{recipe.entry_name}-", dir=root))
    out, work = tmp / "out", tmp / "work"
    out.mkdir()
    work.mkdir()
    # Run the very bytes the key was computed from, so editing a recipe mid-build is harmless.
    script = tmp / recipe.script.name
    script.write_bytes(recipe.data)
    log(f"{recipe.name} {recipe.version}: running {recipe.script.name} (key {recipe.key})")
    try:
        env = dict(os.environ, OUT=str(out), WORK=str(work), ARTIFACT_NAME=recipe.name)
        returncode = run_script(script, work, env, lock_fd)
        if returncode != 0:
            raise fail(
                f"artifact {recipe.name} {recipe.version}: recipe {recipe.script} failed with exit code "
                f"{returncode} after {time.monotonic() - started:.0f} s; no cache entry written"
            )
        files = {
            path.relative_to(out).as_posix(): path
            for path in sorted(out.rglob("*"))
            if path.is_file() and not path.is_symlink()
        }
        files.pop(MANIFEST, None)
        if recipe.main not in files:
            raise fail(
                f"artifact {recipe.name} {recipe.version}: recipe {recipe.script} did not produce {recipe.main} "
                f"(produced: {', '.join(files) or 'nothing'}); no cache entry written"
            )
        manifest = {
            "name": recipe.name,
            "version": recipe.version,
            "files": {name: sha256_file(path) for name, path in files.items()},
            "main": recipe.main,
            "key": recipe.key,
            "seconds": round(time.monotonic() - started, 1),
        }
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        out.rename(entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def ensure(recipe: Recipe, root: Path) -> tuple[Path, bool, float]:
    """The entry directory, whether it was a cache hit, and the seconds this took."""
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    entry = recipe.entry(root)
    with entry_lock(root, recipe) as lock_fd:
        if read_manifest(entry) is not None:
            return entry, True, time.monotonic() - started
        run_recipe(recipe, root, started, lock_fd)
    return entry, False, time.monotonic() - started


def cmd_build(names: list[str], root: Path) -> None:
    recipes = [load_recipe(name) for name in (names or recipe_names())]
    hits = misses = 0
    for recipe in recipes:
        entry, hit, seconds = ensure(recipe, root)
        hits, misses = hits + hit, misses + (not hit)
        print(
            f"artifact {recipe.name} {recipe.version}: {'hit' if hit else 'miss'} in {seconds:.1f} s -> {entry}",
            flush=True,
        )
    print(f"artifact cache: {hits} hits, {misses} misses ({root})", flush=True)


def cmd_path(name: str, root: Path) -> None:
    recipe = load_recipe(name)
    entry, hit, seconds = ensure(recipe, root)
    if not hit:
        log(f"{recipe.name} {recipe.version}: built in {seconds:.0f} s")
    print(entry)


def cmd_manifest(name: str, root: Path) -> None:
    recipe = load_recipe(name)
    entry, hit, seconds = ensure(recipe, root)
    if not hit:
        log(f"{recipe.name} {recipe.version}: built in {seconds:.0f} s")
    sys.stdout.write((entry / MANIFEST).read_text())


def cmd_list(root: Path) -> None:
    for name in recipe_names():
        recipe = load_recipe(name)
        entry = recipe.entry(root)
        state = "cached" if read_manifest(entry) is not None else "missing"
        print(f"{recipe.name}\t{recipe.version}\t{state}\t{entry}")


def cmd_verify(names: list[str], root: Path) -> None:
    bad = []
    for name in names or recipe_names():
        recipe = load_recipe(name)
        entry = recipe.entry(root)
        manifest = read_manifest(entry)
        if manifest is None:
            print(f"artifact {name} {recipe.version}: not cached")
            continue
        wrong = [f for f, digest in manifest["files"].items() if sha256_file(entry / f) != digest]
        print(f"artifact {name} {recipe.version}: {'MISMATCH ' + ', '.join(wrong) if wrong else 'ok'} ({entry})")
        if wrong:
            bad.append(name)
    if bad:
        raise fail(f"files differ from their manifest in: {', '.join(bad)}; delete those entries and rebuild")


def cmd_prune(root: Path) -> None:
    """Remove entries (and leftover temporary directories) that no current recipe maps to."""
    if not root.is_dir():
        return
    current = {load_recipe(name).entry_name for name in recipe_names()}
    for path in sorted(root.iterdir()):
        if not path.is_dir():
            continue
        entry_name = path.name
        if entry_name.startswith(TMP_PREFIX):
            entry_name = entry_name[len(TMP_PREFIX) :].rsplit("-", 1)[0]
        elif entry_name in current:
            continue
        lock = root / f"{entry_name}.lock"
        with lock.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"skipping {path.name}: a build holds its lock")
                continue
            shutil.rmtree(path)
            print(f"removed {path}")
            if entry_name not in current:
                lock.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build or reuse artifacts (all when none named)")
    build.add_argument("names", nargs="*", metavar="NAME")
    path = sub.add_parser("path", help="print an artifact's entry directory, building it if missing")
    path.add_argument("name", metavar="NAME")
    manifest = sub.add_parser("manifest", help="print an artifact's manifest.json, building it if missing")
    manifest.add_argument("name", metavar="NAME")
    sub.add_parser("list", help="list recipes with version and cache state")
    verify = sub.add_parser("verify", help="re-hash cached files against their manifests")
    verify.add_argument("names", nargs="*", metavar="NAME")
    sub.add_parser("prune", help="remove entries that no current recipe produces")
    args = parser.parse_args(argv)

    # A cancelled CI job gets SIGTERM: unwind so the recipe is stopped and its temporary directory removed.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    root = cache_root()
    if args.command == "build":
        cmd_build(args.names, root)
    elif args.command == "path":
        cmd_path(args.name, root)
    elif args.command == "manifest":
        cmd_manifest(args.name, root)
    elif args.command == "list":
        cmd_list(root)
    elif args.command == "verify":
        cmd_verify(args.names, root)
    else:
        cmd_prune(root)


if __name__ == "__main__":
    main()
