# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release. Nothing here knows about blue/green: it speaks the HAProxy runtime API.

"""A small client for the HAProxy runtime API (the ``stats socket``, UNIX socket, level admin).

The API answers one command per connection and closes it. Successful ``set`` commands answer
nothing; errors come back as plain text ("No such backend.", "No such server.", ...), so every
answer is checked here and turned into :class:`HAProxyRuntimeError` naming what was asked for.
"""

from __future__ import annotations

import csv
import errno
import os
import socket
import stat

from ansible_collections.msa.platform.plugins.module_utils._atomic_file import write_atomic

# Answers HAProxy gives as text instead of an error code. Matched on the start of the answer,
# case-insensitively; any other non-empty answer to a "set" command is an error as well.
ERROR_PREFIXES = (
    "no such backend",
    "no such server",
    "can't find backend",
    "can't find server",
    "unknown command",
    "permission denied",
    "require ",
    "weight must be",
    "absolute weight",
    "relative weight",
    "backend is using a static lb algorithm",
    "invalid ",
    "unexpected ",
)

SERVER_STATE_VERSION = "1"


class HAProxyRuntimeError(Exception):
    """The runtime API could not be reached or refused a command."""

    def __init__(self, msg, command=None, answer=None, kind="error"):
        super().__init__(msg)
        self.msg = msg
        self.command = command
        self.answer = answer
        # kind: "socket" (cannot talk to HAProxy), "backend" / "server" (no such object), "error"
        self.kind = kind


def detect_error(answer):
    """Return the error text if ``answer`` is one of HAProxy's textual errors, else None."""
    text = (answer or "").strip()
    if not text:
        return None
    first = text.splitlines()[0].strip()
    lowered = first.lower()
    for prefix in ERROR_PREFIXES:
        if lowered.startswith(prefix):
            return first
    return None


def _error_kind(text):
    lowered = text.lower()
    if "backend" in lowered and ("no such" in lowered or "can't find" in lowered):
        return "backend"
    if "server" in lowered and ("no such" in lowered or "can't find" in lowered):
        return "server"
    return "error"


def parse_show_stat(text):
    """Parse the CSV of ``show stat`` into a list of dicts (one per proxy/server line).

    Numeric columns stay strings except the few the blue/green code reads (``scur``, ``weight``),
    which become int (empty -> 0).
    """
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        err = detect_error(text)
        raise HAProxyRuntimeError(
            "unexpected answer to 'show stat': %s" % (err or (text or "").strip()[:200] or "(empty)"),
            command="show stat",
            answer=text,
        )
    header = next(csv.reader([lines[0][2:]]))
    # The header ends with a trailing comma: drop the empty last column name.
    while header and header[-1] == "":
        header.pop()
    rows = []
    for values in csv.reader(lines[1:]):
        row = dict(zip(header, values))  # noqa: B905 - no strict= before Python 3.10; the floor is 3.9
        for key in ("scur", "weight"):
            value = row.get(key, "")
            row[key] = int(value) if value.isdigit() else 0
        rows.append(row)
    return rows


def parse_servers_state(text):
    """Parse ``show servers state`` (format version 1) into a list of dicts."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if len(lines) < 2 or lines[0].strip() != SERVER_STATE_VERSION or not lines[1].startswith("# "):
        err = detect_error(text)
        raise HAProxyRuntimeError(
            "unexpected answer to 'show servers state': %s" % (err or (text or "").strip()[:200] or "(empty)"),
            command="show servers state",
            answer=text,
            kind=_error_kind(err) if err else "error",
        )
    header = lines[1][2:].split()
    rows = []
    for line in lines[2:]:
        values = line.split()
        row = dict(zip(header, values))  # noqa: B905 - no strict= before Python 3.10; the floor is 3.9
        for key in ("srv_uweight", "srv_iweight", "srv_op_state", "srv_admin_state"):
            if key in row and row[key].isdigit():
                row[key] = int(row[key])
        rows.append(row)
    return rows


def parse_weight(text):
    """Parse the answer to ``get weight`` ("100 (initial 100)") into (current, initial)."""
    err = detect_error(text)
    parts = (text or "").replace("(", " ").replace(")", " ").split()
    if err or len(parts) < 3 or not parts[0].isdigit() or not parts[-1].isdigit():
        raise HAProxyRuntimeError(
            "unexpected answer to 'get weight': %s" % (err or (text or "").strip() or "(empty)"),
            command="get weight",
            answer=text,
            kind=_error_kind(err) if err else "error",
        )
    return int(parts[0]), int(parts[-1])


class HAProxyRuntime:
    """Talks to one HAProxy runtime socket. One connection per command, bounded by ``timeout``."""

    def __init__(self, socket_path, timeout=5.0):
        self.socket_path = socket_path
        self.timeout = timeout

    def command(self, command):
        """Send one command and return the full text answer."""
        path = self.socket_path
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise HAProxyRuntimeError(
                    "HAProxy runtime socket %s does not exist: is haproxy running on this host with "
                    "'stats socket %s level admin'?" % (path, path),
                    command=command,
                    kind="socket",
                ) from exc
            raise HAProxyRuntimeError(
                "cannot stat HAProxy runtime socket %s: %s" % (path, exc), command=command, kind="socket"
            ) from exc
        if not stat.S_ISSOCK(mode):
            raise HAProxyRuntimeError(
                "%s is not a UNIX socket (check haproxy_socket)" % path, command=command, kind="socket"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        chunks = []
        try:
            sock.connect(path)
            sock.sendall(command.encode("ascii") + b"\n")
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except socket.timeout as exc:  # TimeoutError from Python 3.10 on; 3.9 (the floor) has its own class
            raise HAProxyRuntimeError(
                "HAProxy did not answer '%s' on %s within %ss" % (command, path, self.timeout),
                command=command,
                kind="socket",
            ) from exc
        except OSError as exc:
            hint = ""
            if exc.errno == errno.ECONNREFUSED:
                hint = " (stale socket: haproxy is not running)"
            elif exc.errno in (errno.EACCES, errno.EPERM):
                hint = " (run as root: the socket is mode 0600)"
            raise HAProxyRuntimeError(
                "cannot talk to HAProxy on %s: %s%s" % (path, exc, hint), command=command, kind="socket"
            ) from exc
        finally:
            sock.close()
        return b"".join(chunks).decode("utf-8", "replace")

    def _not_understood(self, command, answer):
        """The error for an answer that is not what HAProxy gives to ``command``."""
        err = detect_error(answer)
        if err:
            return HAProxyRuntimeError(
                "HAProxy on %s refused '%s': %s" % (self.socket_path, command, err),
                command=command,
                answer=answer,
                kind=_error_kind(err),
            )
        text = (answer or "").strip()
        return HAProxyRuntimeError(
            "%s is not an HAProxy admin (stats) socket: it answered '%s' with %s. Check haproxy_socket: it must be "
            "the path of 'stats socket <path> ... level admin' in haproxy.cfg, and that path must not be reused by "
            "another program" % (self.socket_path, command, repr(text.splitlines()[0][:200]) if text else "nothing"),
            command=command,
            answer=answer,
            kind="socket",
        )

    def show_stat(self):
        answer = self.command("show stat")
        try:
            return parse_show_stat(answer)
        except HAProxyRuntimeError as exc:
            raise self._not_understood("show stat", answer) from exc

    def show_servers_state(self, backend=None):
        cmd = "show servers state" + (" %s" % backend if backend else "")
        answer = self.command(cmd)
        try:
            return parse_servers_state(answer)
        except HAProxyRuntimeError as exc:
            if backend and exc.kind == "backend":
                raise HAProxyRuntimeError(
                    "HAProxy has no backend %s" % backend, command=cmd, answer=answer, kind="backend"
                ) from exc
            raise self._not_understood(cmd, answer) from exc

    def get_weight(self, backend, server):
        cmd = "get weight %s/%s" % (backend, server)
        answer = self.command(cmd)
        try:
            return parse_weight(answer)
        except HAProxyRuntimeError as exc:
            raise HAProxyRuntimeError(
                "get weight %s/%s failed: %s" % (backend, server, detect_error(answer) or answer.strip()),
                command=cmd,
                answer=answer,
                kind=exc.kind,
            ) from exc

    def set_weight(self, backend, server, weight):
        weight = int(weight)
        if not 0 <= weight <= 256:
            raise HAProxyRuntimeError("weight %s for %s/%s is outside 0..256" % (weight, backend, server))
        cmd = "set weight %s/%s %d" % (backend, server, weight)
        answer = self.command(cmd)
        text = answer.strip()
        if text:
            # "set weight" answers nothing on success; anything else is an error.
            err = detect_error(text) or text.splitlines()[0]
            raise HAProxyRuntimeError(
                "set weight %s/%s %d refused by HAProxy: %s" % (backend, server, weight, err),
                command=cmd,
                answer=answer,
                kind=_error_kind(err),
            )

    def dump_server_state(self, path, mode=0o640):
        """Write ``show servers state`` to ``path`` atomically (for ``load-server-state-from-file``).

        HAProxy reads this file when it starts or reloads, so runtime weights survive a reload.
        """
        answer = self.command("show servers state")
        parse_servers_state(answer)  # refuse to write an error text where HAProxy expects state
        return write_atomic(path, answer if answer.endswith("\n") else answer + "\n", mode)


def stat_rows_for_backend(rows, backend):
    """Server rows (not FRONTEND/BACKEND aggregates) of one backend from parsed ``show stat``."""
    return [row for row in rows if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")]


def backends(rows):
    """Names of all backends in parsed ``show stat``."""
    return sorted({row["pxname"] for row in rows if row.get("svname") == "BACKEND"})


__all__ = [
    "HAProxyRuntime",
    "HAProxyRuntimeError",
    "backends",
    "detect_error",
    "parse_servers_state",
    "parse_show_stat",
    "parse_weight",
    "stat_rows_for_backend",
]
