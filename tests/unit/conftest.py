"""Shared fixtures for the unit tests.

* makes ``ansible_collections.msa.platform`` importable from the checkout (``make venv`` links it
  under ``.venv/collections``; ansible-test provides its own path, which wins);
* tiny HTTP servers on 127.0.0.1 that play the blue and green colors;
* a DNS server answering SRV queries as Consul DNS does (``dns_srv_server.py``), for HAProxy's
  ``server-template`` slots (:class:`HAProxyDiscoveryLab`);
* a real HAProxy and a real NGINX on loopback, each in a temp dir (no systemd). The binaries are
  installed with apt-get when missing and the tests run as root; otherwise those tests are skipped
  with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dns_srv_server import DnsSrvServer

ROOT = Path(__file__).resolve().parents[2]
_COLLECTIONS = ROOT / ".venv" / "collections"
if _COLLECTIONS.is_dir() and "ansible_collections.msa" not in sys.modules:
    sys.path.insert(0, str(_COLLECTIONS))

LOOPBACK = "127.0.0.1"


def free_port():
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class ColorApp:
    """An HTTP server on 127.0.0.1 (or ``address``, another loopback address such as 127.0.0.2)
    that says which color it is; ``healthy`` toggles /health."""

    def __init__(self, color, port=None, slow=0.0, address=LOOPBACK, label=None):
        self.color = color
        self.label = label or color  # what it answers
        self.address = address
        self.port = port or (free_port() if address == LOOPBACK else 0)
        self.healthy = True
        self.slow = slow
        self.hits = 0  # every request, the checks' too
        self.served = 0  # requests other than /health: traffic
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                if self.path == "/health":
                    code = 200 if app.healthy else 503
                elif self.path == "/slow":
                    time.sleep(app.slow)
                    code = 200
                else:
                    code = 200
                app.hits += 1
                if self.path != "/health":
                    app.served += 1
                body = ("%s\n" % app.label).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, self.port), Handler)
        self.port = self.server.server_address[1]
        self.server.daemon_threads = True
        # HAProxy's checks close connections early; a reset is not a test failure.
        self.server.handle_error = lambda *_args: None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def wait():
    """``wait(predicate, timeout=..., what=...)`` polls until true or fails the test."""
    return wait_for


@pytest.fixture
def color_apps():
    """``{(host, color): ColorApp}`` for hosts app1, app2 and both colors."""
    apps = {(host, color): ColorApp(color) for host in ("app1", "app2") for color in ("blue", "green")}
    yield apps
    for app in apps.values():
        with contextlib.suppress(OSError):
            app.stop()


def _ensure_binary(name, package):
    path = shutil.which(name) or (("/usr/sbin/%s" % name) if os.path.exists("/usr/sbin/%s" % name) else None)
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("%s is not installed and cannot be installed here (needs root and apt-get)" % name)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", package],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    path = shutil.which(name) or (("/usr/sbin/%s" % name) if os.path.exists("/usr/sbin/%s" % name) else None)
    if not path:
        pytest.skip("apt-get install %s failed: %s" % (package, (proc.stderr or proc.stdout)[-500:]))
    return path


@pytest.fixture(scope="session")
def haproxy_bin():
    return _ensure_binary("haproxy", "haproxy")


@pytest.fixture(scope="session")
def nginx_bin():
    return _ensure_binary("nginx", "nginx")


class HAProxyLab:
    """HAProxy with backend be_orders (app1/app2 x blue/green) on loopback, in a temp dir."""

    def __init__(self, binary, tmp, apps, live="blue", fallback=False):
        self.binary = binary
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.apps = apps
        self.fallback = fallback
        self.socket = str(self.tmp / "admin.sock")
        self.state_file = str(self.tmp / "server-state")
        self.cfg = self.tmp / "haproxy.cfg"
        self.lb_port = free_port()
        self.proc = None
        self.write_config(live)

    def write_config(self, live):
        servers = "\n".join(
            "  server %s-%s %s:%d check weight %d" % (host, color, LOOPBACK, app.port, 100 if color == live else 0)
            for (host, color), app in sorted(self.apps.items())
        )
        # As the haproxy role renders it with haproxy_fallback_to_idle.
        use_fallback = "  use_backend fb_orders if { nbsrv(be_orders) eq 0 } { nbsrv(fb_orders) gt 0 }\n"
        fallback = "backend fb_orders\n" + "\n".join(
            "  server %s-%s %s:%d track be_orders/%s-%s" % (host, color, LOOPBACK, app.port, host, color)
            for (host, color), app in sorted(self.apps.items())
        )
        self.cfg.write_text(
            self.render_config(
                servers,
                frontend=use_fallback if self.fallback else "",
                tail=(fallback if self.fallback else "") + "\n",
            )
        )

    def render_config(self, servers, *, sections="", frontend="", tail=""):
        """The haproxy.cfg text: ``global`` (admin socket, state file), then ``sections`` (such as a
        ``resolvers`` section), ``defaults``, ``frontend fe_orders`` on ``lb_port`` with the
        ``frontend`` lines before its ``default_backend be_orders``, ``backend be_orders`` (round
        robin, fast /health checks) with the ``servers`` lines, and last ``tail``."""
        return (
            "global\n"
            "  stats socket %s mode 600 level admin\n"
            "  server-state-file %s\n"
            "%s"
            "defaults\n"
            "  mode http\n"
            "  timeout connect 1s\n"
            "  timeout client 10s\n"
            "  timeout server 10s\n"
            "  load-server-state-from-file global\n"
            "frontend fe_orders\n"
            "  bind %s:%d\n"
            "%s"
            "  default_backend be_orders\n"
            "backend be_orders\n"
            "  balance roundrobin\n"
            "  option httpchk GET /health\n"
            "  default-server inter 100ms fall 1 rise 1\n"
            "%s\n"
            "%s" % (self.socket, self.state_file, sections, LOOPBACK, self.lb_port, frontend, servers, tail)
        )

    def start(self):
        check = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stderr
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, what="haproxy socket")
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited: %s" % self.proc.stderr.read().decode())
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self):
        """Stop and start again: what a reload does to runtime weights (they come from the state file)."""
        self.stop()
        return self.start()

    def request(self, path="/"):
        import urllib.request  # noqa: PLC0415 - only the live tests need it

        with urllib.request.urlopen("http://%s:%d%s" % (LOOPBACK, self.lb_port, path), timeout=5) as resp:  # noqa: S310
            return resp.read().decode().strip()


class HAProxyDiscoveryLab(HAProxyLab):
    """HAProxy whose be_orders has no listed servers but server-template slots ``blue-1..N`` and
    ``green-1..N``, filled from the SRV records ``_orders._<color>.service.consul`` that ``dns`` (a
    :class:`DnsSrvServer`) answers, as the haproxy role renders it for Consul DNS.
    Short resolver timers and checks: a change in DNS shows in HAProxy within about a second.

    ``ignore_weight``: ``resolve-opts ignore-weight`` on the slots. Without it HAProxy gives a
    filled slot the SRV record's weight (``weight / 256 + 1``: 1 for Consul's default weight 1)
    at every resolution, over the configured and the runtime weight, and the flip cannot hold."""

    def __init__(self, binary, tmp, dns, *, slots=4, live="blue", ignore_weight=True):
        self.dns = dns
        self.slots = slots
        self.ignore_weight = ignore_weight
        super().__init__(binary, tmp, {}, live=live)

    @staticmethod
    def srv_name(color):
        return "_orders._%s.service.consul" % color

    def write_config(self, live):
        templates = "\n".join(
            "  server-template %s- %d %s resolvers consul resolve-prefer ipv4%s init-addr none check weight %d"
            % (
                color,
                self.slots,
                self.srv_name(color),
                " resolve-opts ignore-weight" if self.ignore_weight else "",
                100 if color == live else 0,
            )
            for color in ("blue", "green")
        )
        resolvers = (
            "resolvers consul\n"
            "  nameserver consul %s:%d\n"
            "  accepted_payload_size 8192\n"
            "  resolve_retries 3\n"
            "  timeout resolve 200ms\n"
            "  timeout retry 200ms\n"
            "  hold valid 1s\n"
            "  hold obsolete 0s\n"
            "  hold nx 0s\n" % (self.dns.address, self.dns.port)
        )
        self.cfg.write_text(self.render_config(templates, sections=resolvers))


@pytest.fixture
def dns_server():
    """A :class:`DnsSrvServer` on 127.0.0.1 at a free port (SRV records, Consul style)."""
    server = DnsSrvServer()
    yield server
    server.stop()


@pytest.fixture
def haproxy_lab(haproxy_bin, tmp_path, color_apps):
    lab = HAProxyLab(haproxy_bin, tmp_path / "haproxy", color_apps)
    lab.start()
    yield lab
    lab.stop()


class NginxLab:
    """NGINX on loopback in a temp dir, proxying to upstream msa_orders from an upstream file."""

    def __init__(self, binary, tmp, apps, live="blue"):
        self.binary = binary
        self.tmp = Path(tmp)
        self.apps = apps
        self.port = free_port()
        self.upstream_dir = self.tmp / "upstreams"
        self.upstream_dir.mkdir(parents=True)
        self.conf = self.tmp / "nginx.conf"
        self.pid = self.tmp / "nginx.pid"
        self.proc = None
        # One port per color on every "host": the apps are all on 127.0.0.1, so the test uses
        # host app1 only and names it by address.
        self.ports = {"blue": apps[("app1", "blue")].port, "green": apps[("app1", "green")].port}
        ports_line = self.ports[live]
        (self.upstream_dir / "orders.conf").write_text(
            "# managed by the nginx_gateway role (test copy)\n"
            "upstream msa_orders {\n"
            "    server %s:%d max_fails=1;\n"
            "    keepalive 4;\n"
            "}\n" % (LOOPBACK, ports_line)
        )
        self.conf.write_text(
            "worker_processes 1;\n"
            "pid %s;\n"
            "error_log %s/error.log;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "  access_log off;\n"
            "  client_body_temp_path %s/body;\n"
            "  proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi;\n"
            "  uwsgi_temp_path %s/uwsgi;\n"
            "  scgi_temp_path %s/scgi;\n"
            "  include %s/*.conf;\n"
            "  server {\n"
            "    listen %s:%d;\n"
            "    location / { proxy_pass http://msa_orders; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; }\n'
            "  }\n"
            "}\n"
            % (
                self.pid,
                self.tmp,
                self.tmp,
                self.tmp,
                self.tmp,
                self.tmp,
                self.tmp,
                self.upstream_dir,
                LOOPBACK,
                self.port,
            )
        )

    def argv(self, *extra):
        return [self.binary, "-p", str(self.tmp), "-e", str(self.tmp / "error.log"), "-c", str(self.conf), *extra]

    def start(self):
        proc = subprocess.run(self.argv(), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        wait_for(self.pid.exists, what="nginx pid file")
        return self

    def stop(self):
        if self.pid.exists():
            subprocess.run(self.argv("-s", "quit"), capture_output=True, check=False)
            wait_for(lambda: not self.pid.exists(), what="nginx to stop")

    def request(self, path="/"):
        import urllib.request  # noqa: PLC0415 - only the live tests need it

        with urllib.request.urlopen("http://%s:%d%s" % (LOOPBACK, self.port, path), timeout=5) as resp:  # noqa: S310
            return resp.read().decode().strip()

    def serves(self, color, times=10):
        """True when ``times`` requests in a row reach ``color``.

        Just after a reload an old worker may still answer, from the old upstream: with that
        color dead, a 502. That is "not yet", and the caller's wait polls again.
        """
        try:
            return all(self.request() == color for _attempt in range(times))
        except urllib.error.HTTPError:
            return False


@pytest.fixture
def nginx_lab(nginx_bin, tmp_path, color_apps):
    lab = NginxLab(nginx_bin, tmp_path / "nginx", color_apps)
    lab.start()
    yield lab
    lab.stop()


def subprocess_runner(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def runner():
    """``run(argv) -> (rc, stdout, stderr)``, the shape of ``AnsibleModule.run_command``."""
    return subprocess_runner
