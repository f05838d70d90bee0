"""Steady HTTP load that records what answered: the zero-downtime probe.

Sends requests from N worker threads (keep-alive connections) to one URL until a
stop file appears or a time limit passes, and writes a JSON report: totals,
failures (status >= 500 or connection errors; a 429 counts as "limited", not
failed), latency percentiles, and a per-second timeline of versions and colors
read from each response's JSON body. Standard library only, so it runs on a
fresh lab host. Bounded by --max-seconds whatever happens.

Like browsers and client libraries (RFC 9112, 9.3.1), a GET that finds its reused keep-alive
connection closed by the server before any answer (a graceful reload closes idle connections)
is sent again once on a new connection; those are counted as "stale_retries", and only a
failure of the new attempt counts as failed.

    python3 loadgen.py --url http://gw1/api/orders --workers 4 --rate 200 \
        --stop-file /tmp/loadgen.stop --max-seconds 300 --out /tmp/loadgen.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse
from collections import Counter, defaultdict


class Recorder:
    """Thread-safe tally of outcomes per second since start."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.epoch = time.time()
        self.lock = threading.Lock()
        self.seconds: dict[int, Counter] = defaultdict(Counter)
        self.latencies: list[float] = []
        self.errors: Counter = Counter()
        self.first_seen: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.extra: Counter = Counter()

    def add(self, outcome: str, label: str, latency: float, error: str = "") -> None:
        now = time.monotonic() - self.start
        with self.lock:
            bucket = self.seconds[int(now)]
            bucket[outcome] += 1
            if label:
                bucket["v:" + label] += 1
                self.first_seen.setdefault(label, now)
                self.last_seen[label] = now
            if error:
                self.errors[error] += 1
            self.latencies.append(latency)

    def count(self, name: str) -> None:
        with self.lock:
            self.extra[name] += 1

    def report(self) -> dict:
        with self.lock:
            totals: Counter = Counter()
            timeline = []
            for second in sorted(self.seconds):
                bucket = self.seconds[second]
                totals.update(bucket)
                timeline.append({"t": second, **dict(bucket)})
            latencies = sorted(self.latencies)
        requests = totals["ok"] + totals["failed"] + totals["limited"]

        def percentile(p: float) -> float:
            if not latencies:
                return 0.0
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

        elapsed = time.monotonic() - self.start
        return {
            "started_at": round(self.epoch, 3),
            "requests": requests,
            "ok": totals["ok"],
            "failed": totals["failed"],
            "limited": totals["limited"],
            "errors": {k: v for k, v in self.errors.items() if v},
            "stale_retries": self.extra["stale_retries"],
            "seconds": round(elapsed, 2),
            "rps": round(requests / elapsed, 1) if elapsed else 0.0,
            "latency_ms": {"p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99)},
            "versions": {k[2:]: v for k, v in totals.items() if k.startswith("v:")},
            "first_seen": {k: round(v, 3) for k, v in self.first_seen.items()},
            "last_seen": {k: round(v, 3) for k, v in self.last_seen.items()},
            "timeline": timeline,
        }


def connect(url: urllib.parse.SplitResult, timeout: float, insecure: bool) -> http.client.HTTPConnection:
    if url.scheme == "https":
        context = ssl.create_default_context()
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=timeout, context=context)
    return http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)


def label_of(body: bytes) -> str:
    """'version/color' from a JSON body that carries them, else ''."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    return "/".join(str(data[k]) for k in ("version", "color") if k in data)


def exchange(conn: http.client.HTTPConnection, path: str, host: str) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("GET", path, headers={"Host": host, "Connection": "keep-alive"})
    response = conn.getresponse()
    return response, response.read()


def worker(args: argparse.Namespace, recorder: Recorder, stop: threading.Event, interval: float) -> None:
    url = urllib.parse.urlsplit(args.url)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    conn = None
    next_at = time.monotonic()
    while not stop.is_set():
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        began = time.monotonic()
        try:
            reused = conn is not None
            if conn is None:
                conn = connect(url, args.timeout, args.insecure)
            try:
                response, body = exchange(conn, path, args.host or url.netloc)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                conn.close()
                recorder.count("stale_retries")
                conn = connect(url, args.timeout, args.insecure)
                response, body = exchange(conn, path, args.host or url.netloc)
            latency = time.monotonic() - began
            if response.status == 429:
                recorder.add("limited", "", latency)
            elif response.status >= 500 or response.status == 0:
                recorder.add("failed", "", latency, f"HTTP {response.status}")
            else:
                recorder.add("ok", label_of(body), latency)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as err:
            recorder.add("failed", "", time.monotonic() - began, type(err).__name__)
            if conn is not None:
                conn.close()
            conn = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--host", help="Host header, if not the URL's")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0, help="total requests per second; 0 = as fast as possible")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--insecure", action="store_true", help="skip TLS verification (lab CA not installed)")
    parser.add_argument("--stop-file", help="stop when this file appears")
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--out", help="write the JSON report here (default: stdout)")
    args = parser.parse_args()

    recorder = Recorder()
    stop = threading.Event()
    interval = args.workers / args.rate if args.rate else 0.0
    threads = [
        threading.Thread(target=worker, args=(args, recorder, stop, interval), daemon=True)
        for _worker in range(args.workers)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline and not (args.stop_file and os.path.exists(args.stop_file)):
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=args.timeout + 1)
    report = json.dumps(recorder.report(), indent=1)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(report)
        os.replace(tmp, args.out)
    else:
        print(report)


if __name__ == "__main__":
    main()
