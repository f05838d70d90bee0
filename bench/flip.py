"""Blue/green flip benchmark (not a test: it prints figures next to their targets).

Brings up its own lab (gw1 gateway, lb1 HAProxy, app1 + app2 services; the layout and
inventory of molecule/bluegreen), converges it with molecule/bluegreen/converge.yml, then:

1. gateway overhead: requests/s and p99 straight to a service port, through HAProxy, and
   through the NGINX gateway + HAProxy, same client and concurrency (loadgen.py, unthrottled);
2. under a steady load through the gateway, `blue_green.yml -e version=1.1.0` and then
   `rollback.yml`. The load runs in this process (loadgen.py's workers with a recorder that
   keeps every response's completion time), so the flip latency is measured to the
   millisecond: from the start of the flip task (its banner in the playbook output) to the
   last answer from the old color, i.e. 100 % of the traffic on the new color;
3. a timeline chart (requests/s by version, failed requests, the flip and rollback marked)
   to bench/out/flip-timeline.png, drawn by the bench virtualenv's matplotlib
   (`python flip.py --chart EVENTS.json PNG`).

Run it through bench/flip, which prepares both virtualenvs. The lab is removed at the end
(--keep leaves it up; --reuse skips `lab.py up` and the first converge).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SCENARIO = ROOT / "molecule" / "bluegreen"
LAB = "bench-flip"
sys.path.insert(0, str(ROOT / "molecule" / "_shared" / "files"))

import loadgen  # noqa: E402 - the shared load generator, found on the path set above

OLD, NEW = "1.0.0/blue", "1.1.0/green"
FLIP_TASK = "TASK [Flip the traffic to the new color]"
ROLLBACK_TASK = "TASK [Flip back]"
TARGETS = {"failed": 0, "flip_s": 1.0, "rollback_s": 10.0, "throughput_share": 0.80}


def log(message: str) -> None:
    print(f"[flip-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the lab


def write_inventory(path: Path) -> None:
    """The molecule scenario's hosts and group_vars, reached through Docker."""
    import yaml  # noqa: PLC0415 - only the main run needs it, the chart run has no PyYAML

    scenario = yaml.safe_load((SCENARIO / "molecule.yml").read_text(encoding="utf-8"))
    env = dict(
        os.environ,
        MOLECULE_PROJECT_DIRECTORY=str(ROOT),
        MOLECULE_SCENARIO_NAME=LAB,
        MOLECULE_EPHEMERAL_DIRECTORY=str(OUT / "flip-lab"),
    )

    def expand(value):
        if isinstance(value, str):
            for key in ("HOME", "MOLECULE_PROJECT_DIRECTORY", "MOLECULE_SCENARIO_NAME", "MOLECULE_EPHEMERAL_DIRECTORY"):
                value = value.replace("${%s}" % key, env[key])
            return value
        if isinstance(value, dict):
            return {k: expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        return value

    group_vars = expand(scenario["provisioner"]["inventory"]["group_vars"]["all"])
    group_vars.update(
        ansible_connection="community.docker.docker",
        ansible_host=LAB + "-{{ inventory_hostname }}",
        ansible_user="root",
    )
    children: dict[str, dict] = {}
    for platform in scenario["platforms"]:
        for group in platform["groups"]:
            children.setdefault(group, {"hosts": {}})["hosts"][platform["name"]] = None
    path.write_text(yaml.safe_dump({"all": {"vars": group_vars, "children": children}}), encoding="utf-8")


def platforms() -> list[str]:
    import yaml  # noqa: PLC0415

    return [p["name"] for p in yaml.safe_load((SCENARIO / "molecule.yml").read_text(encoding="utf-8"))["platforms"]]


def lab(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), *args], check=True, stdout=subprocess.DEVNULL)


def address(host: str) -> str:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", f"{LAB}-{host}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_PIPELINING="true", ANSIBLE_FORCE_COLOR="false", PYTHONUNBUFFERED="1")


def playbook(inventory: Path, name: str, *args: str, log_name: str) -> dict:
    """Runs a playbook; returns start/end epoch, rc and when each TASK banner appeared."""
    cmd = ["ansible-playbook", "-i", str(inventory), *args, name]
    banners: dict[str, float] = {}
    start = time.time()
    with (OUT / log_name).open("w", encoding="utf-8") as logfile:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible_env())
        assert proc.stdout is not None  # noqa: S101 - Popen with stdout=PIPE
        for line in proc.stdout:
            now = time.time()
            logfile.write(f"{now:.3f} {line}")
            if line.startswith("TASK ["):
                banners.setdefault(line.split("]")[0] + "]", now)
        rc = proc.wait()
    end = time.time()
    if rc != 0:
        raise SystemExit(f"{name} failed (rc {rc}); see {OUT / log_name}")
    return {"start": start, "end": end, "seconds": end - start, "banners": banners}


# ----------------------------------------------------------------------------- load


class EventRecorder(loadgen.Recorder):
    """loadgen's recorder that also keeps every response: (completion epoch, outcome, label)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[float, str, str]] = []

    def add(self, outcome: str, label: str, latency: float, error: str = "") -> None:
        super().add(outcome, label, latency, error)
        self.events.append((time.time(), outcome, label))


class Probe:
    """Steady load from this process, with loadgen.py's workers."""

    def __init__(self, url: str, host: str, workers: int, rate: float) -> None:
        args = argparse.Namespace(url=url, host=host, timeout=5.0, insecure=True)
        self.recorder = EventRecorder()
        self.stop = threading.Event()
        interval = workers / rate
        self.threads = [
            threading.Thread(target=loadgen.worker, args=(args, self.recorder, self.stop, interval), daemon=True)
            for _worker in range(workers)
        ]

    def __enter__(self) -> Probe:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=6)


def throughput(url: str, host: str, workers: int, seconds: float) -> dict:
    """Unthrottled loadgen.py run (its own process, so the client is the same for every target)."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "molecule" / "_shared" / "files" / "loadgen.py"),
            "--url",
            url,
            "--host",
            host,
            "--insecure",
            "--workers",
            str(workers),
            "--rate",
            "0",
            "--max-seconds",
            str(seconds),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


# ----------------------------------------------------------------------------- figures


def window(events: list, start: float, end: float) -> list:
    return [e for e in events if start <= e[0] < end]


def flip_figures(events: list, run: dict, task: str, colors: tuple[str, str], until: float) -> dict:
    """Flip latency: flip task start -> last answer from the old color (after which all is new)."""
    old, new = colors
    flip_at = run["banners"][task]
    during = window(events, run["start"], until)
    old_times = [t for t, outcome, label in during if label == old]
    new_times = [t for t, outcome, label in during if label == new]
    last_old = max(old_times) if old_times else flip_at
    first_new = min(new_times) if new_times else float("nan")
    after = [label for t, outcome, label in window(events, last_old + 1e-6, until) if outcome == "ok"]
    return {
        "flip_at": flip_at,
        "latency_s": last_old - flip_at,
        "first_new_s": first_new - flip_at,
        "mixed_ms": (last_old - first_new) * 1000 if new_times else float("nan"),
        "playbook_s": run["seconds"],
        "requests": len(during),
        "failed": sum(1 for e in during if e[1] == "failed"),
        "limited": sum(1 for e in during if e[1] == "limited"),
        "only_new_after": bool(after) and set(after) == {new},
    }


def mark(ok: bool) -> str:
    return "ok  " if ok else "MISS"


# ----------------------------------------------------------------------------- chart


def chart(events_file: Path, png: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only in the bench virtualenv

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    data = json.loads(events_file.read_text(encoding="utf-8"))
    t0 = data["t0"]
    bin_s = 0.5
    events = data["events"]
    end = max(e[0] for e in events) - t0
    nbins = int(end / bin_s) + 1
    series: dict[str, list[float]] = {}
    for when, outcome, label in events:
        key = "failed" if outcome == "failed" else (label or outcome)
        series.setdefault(key, [0.0] * nbins)[int((when - t0) / bin_s)] += 1 / bin_s
    xs = [i * bin_s for i in range(nbins)]
    colors = {OLD: "#1f5fbf", NEW: "#2ca02c", "failed": "#d62728"}

    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    bottom = [0.0] * nbins
    for key in [OLD, NEW] + sorted(k for k in series if k not in (OLD, NEW, "failed")):
        if key not in series:
            continue
        ax.bar(xs, series[key], width=bin_s, bottom=bottom, align="edge", color=colors.get(key, "#999999"), label=key)
        bottom = [b + v for b, v in zip(bottom, series[key], strict=True)]
    failed = series.get("failed", [0.0] * nbins)
    ax.bar(xs, failed, width=bin_s, bottom=bottom, align="edge", color=colors["failed"], label="failed")
    top = max(b + f for b, f in zip(bottom, failed, strict=True)) * 1.35
    ax.set_ylim(0, top)
    for span in data["spans"]:
        ax.axvspan(span["start"] - t0, span["end"] - t0, color="#f2e6c9", alpha=0.6, zorder=0)
        ax.text(span["start"] - t0 + 0.3, top * 0.93, span["label"], fontsize=9, va="top")
    for moment in data["marks"]:
        x = moment["at"] - t0
        ax.axvline(x, color="black", linestyle="--", linewidth=1)
        ax.text(x + 0.3, top * 0.80, moment["label"], fontsize=9, va="top", rotation=0)
    total_failed = int(sum(failed) * bin_s)
    ax.set_title(
        f"orders through gateway -> HAProxy: {data['rate']:.0f} req/s offered, {total_failed} failed requests "
        "(blue_green.yml 1.1.0, then rollback.yml)",
        fontsize=10,
    )
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel(f"requests per second ({bin_s:g} s bins)")
    ax.set_xlim(0, end)
    ax.legend(loc="lower left", fontsize=9, ncols=3)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    inventory = OUT / "flip-inventory.yml"
    write_inventory(inventory)
    hosts = platforms()
    if not args.reuse:
        log(f"lab {LAB} up: {' '.join(hosts)}")
        lab("down", "--lab", LAB)
        lab("up", "--lab", LAB, *hosts)
    log("converge (molecule/bluegreen/converge.yml)")
    converge = playbook(inventory, str(SCENARIO / "converge.yml"), log_name="flip-converge.log")
    log(f"converged in {converge['seconds']:.0f}s")
    state = subprocess.run(
        ["docker", "exec", f"{LAB}-lb1", "cat", "/var/lib/msa/bluegreen/orders.json"],
        check=False,
        capture_output=True,
        text=True,
    )
    if state.returncode == 0 and json.loads(state.stdout).get("live") != "blue":
        raise SystemExit("orders is not live on blue in this lab: run without --reuse for a fresh lab")

    gw, lb, app1 = address("gw1"), address("lb1"), address("app1")
    gateway_url = f"https://{gw}/api/orders/bench"

    log(f"overhead: {args.seconds:g}s unthrottled each, {args.workers} workers")
    overhead = {
        "direct (app1:8101)": throughput(f"http://{app1}:8101/bench", "app1", args.workers, args.seconds),
        "HAProxy (lb1:9101)": throughput(f"http://{lb}:9101/bench", "lb1", args.workers, args.seconds),
        "gateway+HAProxy (https://gw1)": throughput(gateway_url, "gw1", args.workers, args.seconds),
    }

    log(f"flip and rollback under {args.rate:g} req/s ({args.load_workers} workers) through the gateway")
    project = str(ROOT / "playbooks")
    with Probe(gateway_url, "gw1", args.load_workers, args.rate) as probe:
        time.sleep(args.settle)
        release = playbook(
            inventory,
            f"{project}/blue_green.yml",
            "-e",
            "service=orders",
            "-e",
            "version=1.1.0",
            log_name="flip-release.log",
        )
        time.sleep(args.settle)
        rollback = playbook(inventory, args.rollback_playbook, "-e", "service=orders", log_name="flip-rollback.log")
        time.sleep(args.settle)
    events = sorted(probe.recorder.events)
    t0 = probe.recorder.epoch

    rel = flip_figures(events, release, FLIP_TASK, (OLD, NEW), rollback["start"])
    rb = flip_figures(events, rollback, ROLLBACK_TASK, (NEW, OLD), events[-1][0] + 1)
    rb["failed_total"] = sum(1 for e in window(events, rollback["start"], events[-1][0] + 1) if e[1] == "failed")

    events_file = OUT / "flip-events.json"
    events_file.write_text(
        json.dumps(
            {
                "t0": t0,
                "rate": args.rate,
                "events": events,
                "spans": [
                    {"label": "blue_green.yml", "start": release["start"], "end": release["end"]},
                    {"label": "rollback.yml", "start": rollback["start"], "end": rollback["end"]},
                ],
                "marks": [
                    {"label": f"flip -> green\n{rel['latency_s'] * 1000:.0f} ms to 100%", "at": rel["flip_at"]},
                    {"label": f"flip back -> blue\n{rb['latency_s'] * 1000:.0f} ms to 100%", "at": rb["flip_at"]},
                ],
            }
        ),
        encoding="utf-8",
    )
    (OUT / "flip-figures.json").write_text(
        json.dumps({"release": rel, "rollback": rb, "overhead": overhead}, indent=1), encoding="utf-8"
    )

    direct = overhead["direct (app1:8101)"]
    print()
    print(f"Blue/green flip benchmark: lab {LAB} ({', '.join(hosts)}), orders 1.0.0/blue -> 1.1.0/green -> back")
    print(f"  load: {args.rate:g} req/s offered by {args.load_workers} keep-alive clients, https://gw1/api/orders/")
    print(f"  {'figure':<46} {'value':>12}   {'target':<12} ")
    rows = [
        ("failed requests during blue_green.yml", f"{rel['failed']}", "0", rel["failed"] == 0),
        ("  (requests answered during it)", f"{rel['requests']}", "", True),
        ("flip latency (flip task start -> 100% green)", f"{rel['latency_s'] * 1000:.0f} ms", "< 1000 ms",
         rel["latency_s"] < TARGETS["flip_s"]),
        ("  first green answer after the flip task start", f"{rel['first_new_s'] * 1000:.0f} ms", "", True),
        ("  blue and green both answering (mixed)", f"{rel['mixed_ms']:.0f} ms", "", True),
        ("  only green after it", f"{rel['only_new_after']}", "True", rel["only_new_after"]),
        ("blue_green.yml end to end (deploy + flip)", f"{rel['playbook_s']:.1f} s", "", True),
        ("failed requests during rollback.yml", f"{rb['failed_total']}", "0", rb["failed_total"] == 0),
        ("rollback.yml end to end", f"{rb['playbook_s']:.1f} s", "< 10 s", rb["playbook_s"] < TARGETS["rollback_s"]),
        ("  flip back latency (task start -> 100% blue)", f"{rb['latency_s'] * 1000:.0f} ms", "< 1000 ms",
         rb["latency_s"] < TARGETS["flip_s"]),
        ("  only blue after it", f"{rb['only_new_after']}", "True", rb["only_new_after"]),
    ]  # fmt: skip
    for name, value, target, ok in rows:
        print(f"  {name:<46} {value:>12}   {target:<12} {mark(ok) if target else ''}")
    print(f"  gateway overhead: {args.workers} clients, unthrottled, {args.seconds:g} s each")
    for name, rep in overhead.items():
        share = rep["rps"] / direct["rps"] if direct["rps"] else 0.0
        target = ">= 80%" if name.startswith("gateway") else ""
        ok = share >= TARGETS["throughput_share"]
        print(
            f"    {name:<30} {rep['rps']:>8.0f} req/s  p50 {rep['latency_ms']['p50']:>6.1f} ms"
            f"  p99 {rep['latency_ms']['p99']:>6.1f} ms  {share:>5.0%} of direct  failed {rep['failed']}"
            f"  limited {rep['limited']}  {target} {mark(ok) if target else ''}"
        )
    print("    (direct = one instance on app1; through HAProxy = app1 + app2 blue; the gateway terminates TLS)")

    png = OUT / "flip-timeline.png"
    subprocess.run(
        [args.chart_python, str(Path(__file__).resolve()), "--chart", str(events_file), str(png)], check=True
    )
    print(f"  timeline chart: {png}")
    if args.docs_image:
        target = ROOT / "docs" / "images" / "flip-timeline.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)
        print(f"  copied to {target.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chart", nargs=2, metavar=("EVENTS_JSON", "PNG"), help="only draw the chart")
    parser.add_argument("--chart-python", default=str(ROOT / ".venv" / "bench" / "bin" / "python"))
    parser.add_argument("--rate", type=float, default=150, help="requests/s offered during the flip (default 150)")
    parser.add_argument("--load-workers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=8, help="clients for the overhead runs")
    parser.add_argument("--seconds", type=float, default=10, help="length of each overhead run")
    parser.add_argument("--settle", type=float, default=4, help="seconds of steady load around each playbook")
    parser.add_argument(
        "--rollback-playbook",
        default=str(ROOT / "playbooks" / "rollback.yml"),
        help="the rollback playbook to time (default playbooks/rollback.yml)",
    )
    parser.add_argument("--reuse", action="store_true", help="use the running lab (orders must be live on blue)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    parser.add_argument("--no-docs-image", dest="docs_image", action="store_false", help="do not update docs/images")
    args = parser.parse_args()
    if args.chart:
        chart(Path(args.chart[0]), Path(args.chart[1]))
        return
    try:
        run(args)
    finally:
        if not args.keep:
            log(f"lab {LAB} down")
            lab("down", "--lab", LAB)


if __name__ == "__main__":
    main()
