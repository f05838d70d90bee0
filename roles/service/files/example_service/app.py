"""msa.platform example service: a small HTTP API built on the standard library.

It answers JSON that names the service, its version and the blue/green color it
runs in, so a deployment and a traffic flip can be watched from outside.

Settings come from the environment (the role writes them to the unit's env file):
  MSA_SERVICE  service name                    (default "example")
  MSA_COLOR    blue or green                   (default "blue")
  PORT         TCP port to listen on           (default 8080)
  MSA_BIND     address to bind                 (default "0.0.0.0")
  MSA_VERSION  overrides the VERSION file next to this script
  MSA_READY_DELAY  seconds before /health answers 200 (default 0)
  MSA_CONFIG_URL   Consul KV URL of the service's configuration (a recursive read of its
                   prefix); read once at start with the token in MSA_CONFIG_TOKEN. Unset: no
                   configuration. Not readable (or empty) for MSA_CONFIG_WAIT seconds (default
                   30): the process exits with an error, so it never serves without it.

Endpoints: /health, /metrics (Prometheus text), /openapi.json (OpenAPI 3.0),
/config (the configuration read at start),
/slow?seconds=N (answers after N seconds, at most 30: a long request, to watch a flip
drain the old color), and anything else answers a JSON greeting.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, urlsplit
from urllib.request import Request, urlopen

HERE = Path(__file__).resolve().parent


def _read_version() -> str:
    if os.environ.get("MSA_VERSION"):
        return os.environ["MSA_VERSION"]
    try:
        return (HERE / "VERSION").read_text(encoding="utf-8").strip() or "0.0.0"
    except OSError:
        return "0.0.0"


SERVICE = os.environ.get("MSA_SERVICE", "example")
COLOR = os.environ.get("MSA_COLOR", "blue")
VERSION = _read_version()
STARTED = time.monotonic()
READY_DELAY = float(os.environ.get("MSA_READY_DELAY", "0") or 0)
SLOW_MAX_SECONDS = 30

CONFIG: dict[str, str] = {}

_counts: dict[tuple[str, str, int], int] = {}
_lock = threading.Lock()


def _count(method: str, path: str, code: int) -> None:
    # Label by known endpoint, not raw path, so the metric cardinality stays bounded.
    label = path if path in ("/health", "/metrics", "/openapi.json", "/slow", "/config") else "/"
    with _lock:
        key = (method, label, code)
        _counts[key] = _counts.get(key, 0) + 1


def _metrics() -> str:
    lines = [
        "# HELP msa_http_requests_total HTTP requests served, by method, path and status code.",
        "# TYPE msa_http_requests_total counter",
    ]
    with _lock:
        for (method, path, code), value in sorted(_counts.items()):
            lines.append(f'msa_http_requests_total{{method="{method}",path="{path}",code="{code}"}} {value}')
    lines += [
        "# HELP msa_build_info Service name, version and color of this process.",
        "# TYPE msa_build_info gauge",
        f'msa_build_info{{service="{SERVICE}",version="{VERSION}",color="{COLOR}"}} 1',
        "# HELP msa_uptime_seconds Seconds since the process started.",
        "# TYPE msa_uptime_seconds gauge",
        f"msa_uptime_seconds {time.monotonic() - STARTED:.3f}",
    ]
    return "\n".join(lines) + "\n"


def _openapi() -> dict:
    info = {"type": "object", "properties": {k: {"type": "string"} for k in ("service", "version", "color")}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"{SERVICE} API",
            "version": VERSION,
            "description": f"Example service {SERVICE} of msa.platform ({COLOR}).",
        },
        "paths": {
            "/": {
                "get": {
                    "summary": "Who answers",
                    "operationId": "whoami",
                    "responses": {
                        "200": {
                            "description": "Service, version and color",
                            "content": {"application/json": {"schema": info}},
                        }
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Readiness",
                    "operationId": "health",
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Starting"}},
                }
            },
            "/slow": {
                "get": {
                    "summary": "Who answers, after a delay",
                    "operationId": "slow",
                    "parameters": [
                        {
                            "name": "seconds",
                            "in": "query",
                            "schema": {"type": "number", "minimum": 0, "maximum": SLOW_MAX_SECONDS},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Service, version and color",
                            "content": {"application/json": {"schema": info}},
                        },
                        "400": {"description": "seconds is not a number from 0 to %d" % SLOW_MAX_SECONDS},
                    },
                }
            },
            "/config": {
                "get": {
                    "summary": "The configuration read from the config store at start",
                    "operationId": "config",
                    "responses": {"200": {"description": "Service, version, color and configuration"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}},
                }
            },
        },
    }


def _fetch_config(url: str, token: str) -> dict[str, str]:
    """The keys under the URL's prefix (relative to it) and their values."""
    request = Request(url, headers={"X-Consul-Token": token} if token else {})  # noqa: S310 - the local agent
    with urlopen(request, timeout=5) as answer:  # noqa: S310 - the local agent
        entries = json.load(answer)
    prefix = urlsplit(url).path.split("/v1/kv/", 1)[-1]
    config = {}
    for entry in entries:
        key = entry["Key"][len(prefix) :].lstrip("/")
        if key and not key.endswith("/"):
            config[key] = base64.b64decode(entry.get("Value") or "").decode("utf-8")
    return config


def load_config() -> dict[str, str]:
    """Read the configuration once at start, waiting for the agent a while; exit without it."""
    url = os.environ.get("MSA_CONFIG_URL", "")
    if not url:
        return {}
    token = os.environ.get("MSA_CONFIG_TOKEN", "")
    deadline = time.monotonic() + float(os.environ.get("MSA_CONFIG_WAIT", "30") or 0)
    while True:
        try:
            return _fetch_config(url, token)
        except HTTPError as err:
            # Consul answers a recursive read of keys the token may not see as it answers no keys.
            hidden = " (no keys there, or the token may not read them)" if err.code in (403, 404) else ""
            problem = f"HTTP {err.code}{hidden}"
        except (URLError, OSError, ValueError, KeyError) as err:
            problem = str(err)
        if time.monotonic() >= deadline:
            sys.exit(f"{SERVICE}: cannot read the configuration at {url.split('?', 1)[0]}: {problem}")
        time.sleep(1)


class Handler(BaseHTTPRequestHandler):
    server_version = f"msa-example/{VERSION}"
    protocol_version = "HTTP/1.1"

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Service", f"{SERVICE}/{VERSION}/{COLOR}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        _count(self.command, self.path.split("?", 1)[0], code)

    def _json(self, code: int, data: dict) -> None:
        self._send(code, (json.dumps(data, sort_keys=True) + "\n").encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/health":
            ready = time.monotonic() - STARTED >= READY_DELAY
            self._json(
                200 if ready else 503,
                {"status": "ok" if ready else "starting", "service": SERVICE, "version": VERSION, "color": COLOR},
            )
        elif path == "/metrics":
            self._send(200, _metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/openapi.json":
            self._json(200, _openapi())
        elif path == "/slow":
            self._slow()
        elif path == "/config":
            self._json(200, {"service": SERVICE, "version": VERSION, "color": COLOR, "config": CONFIG})
        else:
            self._json(
                200,
                {
                    "service": SERVICE,
                    "version": VERSION,
                    "color": COLOR,
                    "path": path,
                    "request_id": self.headers.get("X-Request-ID", ""),
                    # Who the gateway says called (its token check on guarded routes); empty elsewhere.
                    "caller": {
                        "subject": self.headers.get("X-Auth-Subject", ""),
                        "username": self.headers.get("X-Auth-Username", ""),
                        "roles": self.headers.get("X-Auth-Roles", ""),
                    },
                },
            )

    def _slow(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            seconds = float(query.get("seconds", ["1"])[0])
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= SLOW_MAX_SECONDS:
            self._json(400, {"error": "seconds must be a number from 0 to %d" % SLOW_MAX_SECONDS})
            return
        time.sleep(seconds)
        self._json(200, {"service": SERVICE, "version": VERSION, "color": COLOR, "path": "/slow", "seconds": seconds})

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature from the base class
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main() -> None:
    CONFIG.update(load_config())
    bind = os.environ.get("MSA_BIND", "0.0.0.0")  # noqa: S104 - a service answers its balancer
    server = ThreadingHTTPServer((bind, int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    # systemd stops with SIGTERM: finish the request in flight, then leave.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"{SERVICE} {VERSION} ({COLOR}) listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
