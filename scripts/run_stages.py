"""Runs every check of `make test` as a named stage and prints their times.

Stages form one pool that keeps MSA_TEST_JOBS stages running at once (default 2,
one per core). A stage starts as soon as a slot is free and the stages
it needs have passed; the longest stages (by their last recorded time) go first.
One stage more (up to MSA_TEST_MAX_JOBS, default 3) starts while the CPU has been
idle for a good part of the last minute: the per-role scenarios spend much of their
time waiting (flips spaced out, tokens expiring, servers starting), the layouts never.
All stages run even when one fails, so one run shows everything; the exit status
is non-zero if any failed.

    STAGES="lint unit"   run only stages whose name starts with one of these words
    MSA_TEST_JOBS=N      stages at once (default 2)
    MSA_TEST_MAX_JOBS=N  stages at once while the CPU idles (default 3; = MSA_TEST_JOBS: never more)

Scenarios and their distributions come from molecule/scenarios.yml.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "msa-platform"
TIMES_FILE = CACHE / "stage-times.json"
# Each stage's whole output from the newest run, kept after it ends: CI prints only part of it.
LOGS_DIR = CACHE / "stage-logs"
ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")
DISTRO_NUMBERS = {"bookworm": "12", "trixie": "13"}
BUDGET_WARM_MIN = 40
BUDGET_FRESH_MIN = 60
# One more stage starts when the CPU was idle this share of the last IDLE_WINDOW seconds, and
# the newest stage has run that long (a scenario starting its lab hosts is not yet busy).
IDLE_FOR_ANOTHER = 0.25
IDLE_WINDOW = 60

CHECKS = {
    "yamllint": "yamllint -s .",
    "ansible-lint": "ansible-lint",
    "ruff": "ruff check . && ruff format --check .",
    "argspecs": "python3 scripts/check_argument_specs.py",
    "doc-tags": "python3 scripts/documented_tags.py",
    "changelog": "antsibull-changelog lint",
    # Most of the unit tests' time is waiting on the servers they start: 60 s instead of 250.
    "unit": "python3 -m pytest tests/unit -q -p no:cacheprovider -n 8 --dist worksteal",
    "sanity": "scripts/sanity",
    "build": "scripts/build-check",
    "lab-images": "python3 lab/lab.py image --distro bookworm && python3 lab/lab.py image --distro trixie",
    "artifacts": "python3 lab/artifacts.py build",
}

# Checks that use a cached artifact: the unit tests start a real OpenBao server.
CHECK_NEEDS = {"unit": ["artifacts"]}
# Seconds a check takes on a 2-core machine, for ordering a run with no recorded times (a fresh
# machine); scenarios say theirs in molecule/scenarios.yml (minutes).
CHECK_ESTIMATES = {"ansible-lint": 130, "sanity": 90, "unit": 100}


@dataclass
class Stage:
    name: str
    command: str
    needs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    estimate: int = 0
    result: str = ""
    seconds: int = 0
    started_at: int = 0
    log: Path | None = None
    process: subprocess.Popen | None = None
    began: float = 0.0


class CpuIdle:
    """The share of CPU time spent idle, from /proc/stat: over the last IDLE_WINDOW seconds,
    and over the whole run."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self.first = self.read()

    @staticmethod
    def read() -> tuple[float, int, int]:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return time.monotonic(), fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all

    def sample(self) -> None:
        self.samples.append(self.read())
        self.samples = [s for s in self.samples if s[0] >= self.samples[-1][0] - IDLE_WINDOW - 1]

    @staticmethod
    def share(old: tuple[float, int, int], new: tuple[float, int, int]) -> float:
        return (new[1] - old[1]) / max(1, new[2] - old[2])

    def recent(self) -> float:
        """Idle share over the last IDLE_WINDOW seconds; 0 until that long has been sampled."""
        if not self.samples or self.samples[-1][0] - self.samples[0][0] < IDLE_WINDOW:
            return 0.0
        return self.share(self.samples[0], self.samples[-1])

    def whole_run(self) -> float:
        return self.share(self.first, self.read())


def mitogen_env() -> dict[str, str]:
    """Ansible's settings for the Mitogen strategy (in the venv): one Python per host for the
    whole run instead of one per task. Its SSH skips ssh_config's host key settings, and lab
    hosts make new host keys whenever they are created."""
    package = importlib.util.find_spec("ansible_mitogen")
    if package is None or package.origin is None:
        raise SystemExit("run-stages: a scenario asks for Mitogen, which is not installed (make venv)")
    return {
        "ANSIBLE_STRATEGY_PLUGINS": str(Path(package.origin).parent / "plugins" / "strategy"),
        "ANSIBLE_STRATEGY": "mitogen_linear",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
    }


def scenario_stages() -> list[Stage]:
    registry = yaml.safe_load((ROOT / "molecule" / "scenarios.yml").read_text()) or {}
    on_disk = sorted(p.name for p in (ROOT / "molecule").iterdir() if p.is_dir() and not p.name.startswith("_"))
    unknown = [name for name in on_disk if name not in registry]
    missing = [name for name in registry if name not in on_disk]
    if unknown or missing:
        raise SystemExit(
            "run-stages: molecule/scenarios.yml and molecule/ disagree: "
            f"not registered {unknown}, no directory {missing}"
        )
    stages = []
    for name, spec in registry.items():
        for distro in spec.get("distros", ["bookworm"]):
            ephemeral = CACHE / "molecule" / f"{name}-{DISTRO_NUMBERS[distro]}"
            stages.append(
                Stage(
                    name=f"molecule:{name}@{distro}",
                    command=f"molecule test -s {shlex.quote(name)}",
                    needs=["lab-images", *spec.get("needs", [])],
                    estimate=int(spec.get("minutes", 0) * 60),
                    env={
                        "MSA_LAB_DISTRO": distro,
                        "MOLECULE_EPHEMERAL_DIRECTORY": str(ephemeral),
                        # Each playbook's slowest tasks at its end, and a clock on every task,
                        # in the stage log: where a scenario's minutes go.
                        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "10",
                        **(mitogen_env() if spec.get("mitogen") else {}),
                    },
                )
            )
    return stages


def same_scenario(stage: Stage, running: list[Stage]) -> bool:
    """Whether another distribution of this scenario runs now: verify steps on the control
    node may share paths, so they take turns while other stages fill the slot."""
    scenario = stage.name.split("@")[0]
    return "@" in stage.name and any(r.name.split("@")[0] == scenario for r in running)


def selected(name: str) -> bool:
    words = os.environ.get("STAGES", "").split()
    return not words or any(name.startswith(word) for word in words)


def load_times() -> dict[str, int]:
    try:
        times = json.loads(TIMES_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in times.items() if isinstance(v, int)} if isinstance(times, dict) else {}


def save_times(stages: list[Stage]) -> None:
    times = load_times()
    times.update({s.name: s.seconds for s in stages if s.result == "ok"})
    TIMES_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = TIMES_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
    tmp.replace(TIMES_FILE)


def start(stage: Stage, logs: Path, origin: float) -> None:
    stage.log = logs / (stage.name.replace(":", "_").replace("@", "_") + ".log")
    stage.began = time.monotonic()
    stage.started_at = int(stage.began - origin)
    print(f"===== {stage.name}: started at {stage.started_at // 60}m{stage.started_at % 60:02d}s", flush=True)
    with stage.log.open("wb") as out:
        stage.process = subprocess.Popen(
            ["bash", "-c", stage.command],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **stage.env},
        )


def report(stage: Stage) -> list[str]:
    """Prints the stage's output (the tail when it passed); returns its artifact cache lines."""
    text = stage.log.read_text(errors="replace") if stage.log else ""
    lines = text.splitlines()
    shown = lines if stage.result != "ok" else lines[-40:]
    print(f"\n===== {stage.name}: {stage.result} in {stage.seconds}s, its output:", flush=True)
    print("\n".join(shown), flush=True)
    return [line for line in lines if line.startswith("artifact")]


def print_times(stages: list[Stage], wall: int, concurrency: str, fresh: bool) -> None:
    print("\n===== stage times (start offset, duration)")
    for s in sorted(stages, key=lambda s: s.started_at):
        print(f"{s.name:44} {s.result:8} at {s.started_at:5}s  {s.seconds:5}s")
    busy = sum(s.seconds for s in stages)
    print(f"{'total':44} {'':8} wall {wall}s ({wall / 60:.1f} min), stage time {busy}s, {concurrency}")
    # `make test` sets its own start: on a fresh machine the virtualenv it builds first counts too.
    test_started = os.environ.get("MSA_TEST_STARTED", "")
    setup = max(0, int(time.time() - wall - int(test_started))) if test_started.isdigit() else 0
    took = wall + setup
    budget = BUDGET_FRESH_MIN if fresh else BUDGET_WARM_MIN
    print(
        f"budget: {BUDGET_WARM_MIN} min warm, {BUDGET_FRESH_MIN} min fresh; this run "
        f"({'fresh: no artifact cache at start' if fresh else 'warm'}) took {took / 60:.1f} min "
        f"({setup}s of it making the virtualenv), {'within' if took <= budget * 60 else 'OVER'} its {budget} min"
    )


def last_error(log: Path) -> list[str]:
    """The last failed task of a stage log, or its last lines; Molecule frames a playbook's
    output in colored "│ " boxes."""
    lines = [ANSI_COLOR.sub("", line).lstrip(" │") for line in log.read_text(errors="replace").splitlines()]
    errors = [n for n, line in enumerate(lines) if line.startswith(("fatal: ", "failed: "))]
    first = errors[-1] if errors else max(0, len(lines) - 12)
    return lines[first : first + 12]


@dataclass
class Pool:
    """Which stages run: `jobs` at once, and one more up to `max_jobs` while the CPU idles."""

    jobs: int
    max_jobs: int
    cpu: CpuIdle = field(default_factory=CpuIdle)
    running: list[Stage] = field(default_factory=list)
    newest_start: float = 0.0

    def has_room(self) -> bool:
        if len(self.running) < self.jobs:
            return True
        if len(self.running) >= self.max_jobs or time.monotonic() - self.newest_start < IDLE_WINDOW:
            return False
        idle = self.cpu.recent()
        if idle >= IDLE_FOR_ANOTHER:
            print(f"===== the CPU was {idle:.0%} idle over the last minute: one stage more", flush=True)
        return idle >= IDLE_FOR_ANOTHER

    def run(self, queue: list[Stage], by_name: dict[str, Stage], origin: float) -> list[str]:
        """Runs the queue to its end; returns the artifact cache lines the stages printed."""
        cache_lines: list[str] = []
        while queue or self.running:
            for stage in list(self.running):
                if stage.process and stage.process.poll() is not None:
                    stage.seconds = int(time.monotonic() - stage.began)
                    stage.result = "ok" if stage.process.returncode == 0 else "FAILED"
                    self.running.remove(stage)
                    cache_lines += report(stage)
            for stage in list(queue):
                states = [by_name[n].result for n in stage.needs]
                if any(r and r != "ok" for r in states):
                    stage.result = "SKIPPED"
                    queue.remove(stage)
                    print(f"===== {stage.name}: skipped, a stage it needs failed", flush=True)
                elif all(r == "ok" for r in states) and not same_scenario(stage, self.running) and self.has_room():
                    queue.remove(stage)
                    start(stage, LOGS_DIR, origin)
                    self.running.append(stage)
                    self.newest_start = stage.began
            time.sleep(1)
            self.cpu.sample()
        return cache_lines


def main() -> int:
    jobs = max(1, int(os.environ.get("MSA_TEST_JOBS", "2")))
    pool = Pool(jobs, max(jobs, int(os.environ.get("MSA_TEST_MAX_JOBS", "3"))))
    stages = [
        Stage(name, cmd, CHECK_NEEDS.get(name, []), estimate=CHECK_ESTIMATES.get(name, 0))
        for name, cmd in CHECKS.items()
    ] + scenario_stages()
    stages = [s for s in stages if selected(s.name)]
    chosen = {s.name for s in stages}
    for s in stages:  # a dependency left out by STAGES is taken as met
        s.needs = [n for n in s.needs if n in chosen]
    times = load_times()
    fresh = not (CACHE / "artifacts").is_dir()
    # Stages others wait for first, then the longest (by the last recorded time, else the
    # estimate; a stage with neither counts as longest): the pool ends when its longest stage does.
    needed = {n for s in stages for n in s.needs}
    queue = sorted(stages, key=lambda s: (s.name not in needed, -times.get(s.name, s.estimate or 10**6)))
    origin = time.monotonic()
    shutil.rmtree(LOGS_DIR, ignore_errors=True)
    LOGS_DIR.mkdir(parents=True)
    cache_lines = pool.run(queue, {s.name: s for s in stages}, origin)
    wall = int(time.monotonic() - origin)
    save_times(stages)
    print_times(stages, wall, f"{pool.jobs} at once, {pool.max_jobs} while the CPU idles", fresh)
    print(f"CPU idle {pool.cpu.whole_run():.0%} of the run")
    print("\n".join(cache_lines))
    passed = sum(s.result == "ok" for s in stages)
    failed = [s.name for s in stages if s.result != "ok"]
    for stage in stages:  # again at the end, where a reader of only the last lines looks
        if stage.result == "FAILED" and stage.log:
            print(f"===== {stage.name} FAILED, its last error:", *last_error(stage.log), sep="\n")
    print(f"stages: {passed} passed, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}")
    print(f"each stage's whole output: {LOGS_DIR}")
    return 0 if passed == len(stages) else 1


if __name__ == "__main__":
    sys.exit(main())
