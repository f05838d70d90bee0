# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release.

"""Read, rewrite and activate the per-service NGINX upstream file.

``/etc/nginx/msa/upstreams/<svc>.conf`` holds ``upstream msa_<svc> { server host:port ...; }``
(written first by the ``nginx_gateway`` role). A flip changes only the port of each ``server``
line from the old color's port to the new one and keeps every other line (comments, ``keepalive``,
server parameters) as the role wrote it. The new file is checked with ``nginx -t``; if that or
the reload fails (or anything else goes wrong after the write) the previous file is put back,
so NGINX never runs, or later loads, an upstream nobody asked for.
"""

from __future__ import annotations

import os
import re

from ansible_collections.msa.platform.plugins.module_utils._atomic_file import write_atomic as _write_atomic

_SERVER_RE = re.compile(
    r"^(?P<indent>\s*)server\s+(?P<host>\[[^\]]+\]|[^\s:;]+):(?P<port>\d+)(?P<rest>[^;]*);(?P<tail>.*)$"
)


class NginxUpstreamError(Exception):
    """The upstream file is missing, unreadable, not in the expected shape, or NGINX refused it."""

    def __init__(self, msg, output=None):
        super().__init__(msg)
        self.msg = msg
        self.output = output


def upstream_name(service):
    return "msa_%s" % service


def upstream_path(directory, service):
    return os.path.join(directory, "%s.conf" % service)


def known_services(directory):
    """Service names that have an upstream file in ``directory``."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(name[: -len(".conf")] for name in names if name.endswith(".conf") and not name.startswith("."))


def parse_upstream(text, service):
    """Return ``{"name": ..., "servers": [{"host", "port", "line"}]}`` for ``upstream msa_<svc>``."""
    name = upstream_name(service)
    opener = re.compile(r"^\s*upstream\s+%s\s*\{" % re.escape(name))
    servers = []
    inside = False
    found = False
    for index, line in enumerate(text.splitlines()):
        stripped = line.split("#", 1)[0]
        if not inside:
            if opener.match(stripped):
                inside = True
                found = True
            continue
        if stripped.strip().startswith("}"):
            inside = False
            continue
        match = _SERVER_RE.match(stripped)
        if match:
            servers.append({"host": match.group("host"), "port": int(match.group("port")), "line": index})
    if not found:
        raise NginxUpstreamError("no 'upstream %s { ... }' block found" % name)
    if inside:
        raise NginxUpstreamError("'upstream %s' block is not closed" % name)
    return {"name": name, "servers": servers}


def render_upstream(service, servers, live=None, extra_lines=()):
    """Render a fresh upstream file (used when the file is created here and by the tests).

    ``servers`` is a list of ``(host, port)``; ``live`` only goes into a comment.
    """
    lines = ["# Managed by msa.platform: traffic for %s%s" % (service, " (live: %s)" % live if live else "")]
    lines.append("upstream %s {" % upstream_name(service))
    lines.extend("    server %s:%d;" % (host, int(port)) for host, port in servers)
    lines.extend("    %s" % line for line in extra_lines)
    lines.append("}")
    return "\n".join(lines) + "\n"


def color_of(servers, ports):
    """Which color the listed servers point at: "blue", "green", or None (e.g. through HAProxy)."""
    if not servers or not ports:
        return None
    found = {server["port"] for server in servers}
    for color in ("blue", "green"):
        if found == {int(ports[color])}:
            return color
    return None


def retarget(text, service, from_port, to_port):
    """Return ``text`` with every server of ``upstream msa_<svc>`` moved from ``from_port`` to ``to_port``."""
    parsed = parse_upstream(text, service)
    lines = text.splitlines(True)
    changed = 0
    for server in parsed["servers"]:
        index = server["line"]
        line = lines[index]
        if server["port"] != int(from_port):
            raise NginxUpstreamError(
                "server %s:%s in %s is on neither port %s nor %s; refusing to rewrite it"
                % (server["host"], server["port"], parsed["name"], from_port, to_port)
            )
        lines[index] = re.sub(
            r"(server\s+%s):%d\b" % (re.escape(server["host"]), server["port"]),
            lambda m: "%s:%d" % (m.group(1), int(to_port)),
            line,
            count=1,
        )
        changed += 1
    if not changed:
        raise NginxUpstreamError("upstream %s lists no servers" % parsed["name"])
    return "".join(lines)


def write_atomic(path, content, mode=None):
    """Replace ``path`` with ``content`` atomically, keeping its mode and owner (``mode`` for a new file)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return _write_atomic(path, content, 0o644 if mode is None else mode)
    return _write_atomic(path, content, current.st_mode & 0o7777, owner=(current.st_uid, current.st_gid))


class NginxController:
    """Runs ``nginx -t`` and reloads NGINX.

    ``run`` is a callable ``run(argv) -> (rc, stdout, stderr)`` (``AnsibleModule.run_command`` in
    modules, ``subprocess`` in tests). ``reload`` is ``systemd`` (``systemctl reload nginx``) or
    ``signal`` (``nginx -s reload`` with the same ``-c``).
    """

    def __init__(self, run, binary="nginx", config=None, reload="signal", systemctl="systemctl"):
        self.run = run
        self.binary = binary
        self.config = config
        self.reload_mode = reload
        self.systemctl = systemctl

    def _base(self):
        argv = [self.binary]
        if self.config:
            argv += ["-c", self.config]
        return argv

    def _call(self, argv):
        try:
            return self.run(argv)
        except OSError as exc:  # the program is missing or cannot be executed
            raise NginxUpstreamError("cannot run %s: %s" % (argv[0], exc.strerror or exc)) from exc

    def test(self):
        rc, out, err = self._call([*self._base(), "-t", "-q"])
        if rc != 0:
            raise NginxUpstreamError("nginx -t failed: %s" % ((err or out or "").strip() or "rc=%s" % rc), output=err)

    def reload(self):
        argv = [self.systemctl, "reload", "nginx"] if self.reload_mode == "systemd" else [*self._base(), "-s", "reload"]
        rc, out, err = self._call(argv)
        if rc != 0:
            raise NginxUpstreamError(
                "'%s' failed: %s" % (" ".join(argv), (err or out or "").strip() or "rc=%s" % rc), output=err
            )


def _pid_namespace(proc_entry):
    try:
        return os.readlink(os.path.join(proc_entry, "ns", "pid"))
    except OSError:
        return None


def shutting_down_workers(proc="/proc"):
    """Pids of NGINX workers still finishing requests after a reload (old configuration).

    Only processes in this PID namespace count: NGINX in containers on the same host is not ours.
    """
    pids = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return pids
    own_ns = _pid_namespace(os.path.join(proc, "self"))
    for entry in entries:
        if not entry.isdigit():
            continue
        if own_ns is not None and _pid_namespace(os.path.join(proc, entry)) not in (own_ns, None):
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                title = handle.read()
        except OSError:
            continue
        if title.startswith(b"nginx: worker process is shutting down"):
            pids.append(int(entry))
    return sorted(pids)


def switch_file(path, new_text, controller):
    """Install ``new_text`` at ``path``, validate and reload.

    On any failure, expected (``nginx -t`` refused it, the reload failed) or not (the program is
    missing, a bug, an exit), the previous content is put back with its mode and owner before the
    error goes on; an unexpected ``Exception`` becomes :class:`NginxUpstreamError`.
    """
    with open(path) as handle:
        old_text = handle.read()
    write_atomic(path, new_text)
    try:
        controller.test()
    except BaseException as exc:
        _put_back(path, old_text, exc, "nginx -t", "and NGINX was not reloaded")
    try:
        controller.reload()
    except BaseException as exc:
        _put_back(path, old_text, exc, "reloading NGINX", "(NGINX keeps running its old configuration)")
    return old_text


def _put_back(path, old_text, exc, step, outcome):
    """Restore ``path`` after ``exc`` interrupted ``step``, then raise the error to report."""
    what = exc.msg if isinstance(exc, NginxUpstreamError) else "%s failed: %s: %s" % (step, type(exc).__name__, exc)
    try:
        write_atomic(path, old_text)
    except OSError as restore_exc:
        raise NginxUpstreamError(
            "%s; restoring the previous %s FAILED too (%s): NGINX would load the new file at its next reload, "
            "put the old one back by hand" % (what, path, restore_exc),
            output=getattr(exc, "output", None),
        ) from exc
    if not isinstance(exc, Exception):
        raise exc  # SystemExit, KeyboardInterrupt: restored, and on its way
    raise NginxUpstreamError(
        "%s; the previous %s was restored %s" % (what, path, outcome), output=getattr(exc, "output", None)
    ) from exc
