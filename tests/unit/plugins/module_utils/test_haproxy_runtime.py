"""HAProxy runtime client: parsing and error detection offline, then against a real HAProxy."""

from __future__ import annotations

import os
import socket
import socketserver
import threading

import pytest
from ansible_collections.msa.platform.plugins.module_utils._haproxy_runtime import (
    HAProxyRuntime,
    HAProxyRuntimeError,
    backends,
    detect_error,
    parse_servers_state,
    parse_show_stat,
    parse_weight,
    stat_rows_for_backend,
)

SHOW_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,"
    "status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,"
    "type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,check_desc,\n"
    "fe_orders,FRONTEND,,,0,1,262120,1,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,0,0,1,,,,,\n"
    "be_orders,app1-blue,0,0,3,4,,10,0,0,,0,,0,0,0,0,UP,100,1,0,0,0,5,0,,1,3,1,,10,,2,0,,1,L7OK,200,1,0,"
    "Layer7 check passed,\n"
    'be_orders,app1-green,0,0,0,0,,0,0,0,,0,,0,0,0,0,"DOWN 1/2",0,1,0,1,1,5,5,,1,3,2,,0,,2,0,,0,L4CON,,0,0,'
    '"Layer4 connection problem, info: ""Connection refused""",\n'
    "be_orders,BACKEND,0,0,3,4,26212,10,0,0,0,0,,0,0,0,0,UP,100,1,0,,0,5,0,,1,3,0,,10,,1,0,,1,,,,0,,\n"
    "be_payments,BACKEND,0,0,0,0,26212,0,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,1,5,5,,1,4,0,,0,,1,0,,0,,,,0,,\n"
)

SERVERS_STATE = (
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord\n"
    "3 be_orders 1 app1-blue 127.0.0.1 2 0 100 100 12 6 3 4 6 0 0 0 - 8101 -\n"
    "3 be_orders 2 app1-green 127.0.0.1 0 0 0 0 12 6 3 0 6 0 0 0 - 8102 -\n"
    "\n"
)


def test_parse_show_stat_reads_quoted_fields_and_numbers():
    rows = parse_show_stat(SHOW_STAT)
    servers = stat_rows_for_backend(rows, "be_orders")
    assert [row["svname"] for row in servers] == ["app1-blue", "app1-green"]
    blue, green = servers
    assert blue["status"] == "UP" and blue["scur"] == 3 and blue["weight"] == 100
    assert green["status"] == "DOWN 1/2" and green["scur"] == 0
    assert green["check_desc"] == 'Layer4 connection problem, info: "Connection refused"'
    assert backends(rows) == ["be_orders", "be_payments"]


@pytest.mark.parametrize("answer", ["", "No such backend.\n", "Unknown command, but maybe...\n"])
def test_parse_show_stat_rejects_non_csv(answer):
    with pytest.raises(HAProxyRuntimeError, match="unexpected answer to 'show stat'"):
        parse_show_stat(answer)


def test_parse_servers_state():
    rows = parse_servers_state(SERVERS_STATE)
    assert [(r["srv_name"], r["srv_uweight"], r["srv_iweight"]) for r in rows] == [
        ("app1-blue", 100, 100),
        ("app1-green", 0, 0),
    ]


def test_parse_servers_state_names_missing_backend():
    with pytest.raises(HAProxyRuntimeError) as info:
        parse_servers_state("Can't find backend.\n\n")
    assert info.value.kind == "backend"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("No such backend.\n\n", "No such backend."),
        ("No such server.\n\n", "No such server."),
        ("Can't find backend.\n", "Can't find backend."),
        ("Permission denied\n", "Permission denied"),
        (
            "Absolute weight can only be between 0 and 256 inclusive.\n",
            "Absolute weight can only be between 0 and 256 inclusive.",
        ),
        (
            "Unknown command, but maybe one of the following ones is a better match:\n  help\n",
            "Unknown command, but maybe one of the following ones is a better match:",
        ),
        ("", None),
        ("\n", None),
        ("100 (initial 100)\n", None),
    ],
)
def test_detect_error(answer, expected):
    assert detect_error(answer) == expected


def test_parse_weight():
    assert parse_weight("100 (initial 0)\n\n") == (100, 0)
    with pytest.raises(HAProxyRuntimeError) as info:
        parse_weight("No such server.\n")
    assert info.value.kind == "server"


def test_missing_socket_is_a_clear_error(tmp_path):
    runtime = HAProxyRuntime(str(tmp_path / "admin.sock"))
    with pytest.raises(HAProxyRuntimeError, match="does not exist: is haproxy running") as info:
        runtime.show_stat()
    assert info.value.kind == "socket"


def test_stale_socket_is_a_clear_error(tmp_path):
    path = str(tmp_path / "admin.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.close()  # the file stays, nobody listens: what a crashed haproxy leaves behind
    with pytest.raises(HAProxyRuntimeError, match="stale socket"):
        HAProxyRuntime(path).command("show stat")


def test_not_a_socket(tmp_path):
    path = tmp_path / "admin.sock"
    path.write_text("")
    with pytest.raises(HAProxyRuntimeError, match="not a UNIX socket"):
        HAProxyRuntime(str(path)).command("show stat")


class _FakeHAProxy:
    """A one-command-per-connection UNIX socket server answering from ``answers`` (command -> text).

    The serving thread is stopped and joined before the socket is closed: a thread still blocked
    in accept() on a closed fd would later accept on whatever socket reuses that fd number.
    """

    def __init__(self, path, answers):
        self.answers = answers
        self.seen = []
        self.stop_event = threading.Event()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(8)
        self.server.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop_event.is_set():
            try:
                conn, _addr = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                command = data.decode().strip()
                self.seen.append(command)
                conn.sendall(self.answers.get(command, "Unknown command\n").encode())

    def close(self):
        self.stop_event.set()
        self.thread.join(5)
        self.server.close()


def test_set_weight_errors_name_backend_and_server(tmp_path):
    path = str(tmp_path / "admin.sock")
    fake = _FakeHAProxy(
        path,
        {
            "set weight be_orders/app1-green 100": "\n",
            "set weight be_orders/app9-green 100": "No such server.\n\n",
            "set weight be_ordrs/app1-green 100": "No such backend.\n\n",
        },
    )
    try:
        runtime = HAProxyRuntime(path, timeout=2)
        runtime.set_weight("be_orders", "app1-green", 100)
        with pytest.raises(
            HAProxyRuntimeError, match=r"be_orders/app9-green 100 refused by HAProxy: No such server\."
        ) as info:
            runtime.set_weight("be_orders", "app9-green", 100)
        assert info.value.kind == "server"
        with pytest.raises(HAProxyRuntimeError, match=r"be_ordrs/app1-green.*No such backend\.") as info:
            runtime.set_weight("be_ordrs", "app1-green", 100)
        assert info.value.kind == "backend"
        with pytest.raises(HAProxyRuntimeError, match="outside 0..256"):
            runtime.set_weight("be_orders", "app1-green", 300)
        assert fake.seen == [
            "set weight be_orders/app1-green 100",
            "set weight be_orders/app9-green 100",
            "set weight be_ordrs/app1-green 100",
        ]
    finally:
        fake.close()


def test_dump_refuses_to_write_error_text(tmp_path):
    path = str(tmp_path / "admin.sock")
    fake = _FakeHAProxy(path, {"show servers state": "Permission denied\n"})
    try:
        target = tmp_path / "server-state"
        with pytest.raises(HAProxyRuntimeError):
            HAProxyRuntime(path).dump_server_state(str(target))
        assert not target.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    finally:
        fake.close()


# ---- against a real HAProxy -------------------------------------------------------------


def _wait_status(wait, runtime, wanted, timeout=10):
    def ok():
        rows = {r["svname"]: r["status"] for r in stat_rows_for_backend(runtime.show_stat(), "be_orders")}
        return all(rows.get(name) == status for name, status in wanted.items())

    wait(ok, timeout=timeout, what="servers %s" % wanted)


def test_real_haproxy_show_stat_and_weights(haproxy_lab, wait):
    runtime = HAProxyRuntime(haproxy_lab.socket)
    _wait_status(wait, runtime, {"app1-blue": "UP", "app1-green": "UP", "app2-blue": "UP", "app2-green": "UP"})
    servers = {r["svname"]: r for r in stat_rows_for_backend(runtime.show_stat(), "be_orders")}
    assert {n: s["weight"] for n, s in servers.items()} == {
        "app1-blue": 100,
        "app1-green": 0,
        "app2-blue": 100,
        "app2-green": 0,
    }
    assert {haproxy_lab.request() for _attempt in range(4)} == {"blue"}

    for name in ("app1-green", "app2-green"):
        runtime.set_weight("be_orders", name, 100)
    for name in ("app1-blue", "app2-blue"):
        runtime.set_weight("be_orders", name, 0)
    assert runtime.get_weight("be_orders", "app1-green") == (100, 0)
    weights = {r["svname"]: r["weight"] for r in stat_rows_for_backend(runtime.show_stat(), "be_orders")}
    assert weights == {"app1-blue": 0, "app1-green": 100, "app2-blue": 0, "app2-green": 100}
    assert {haproxy_lab.request() for _attempt in range(4)} == {"green"}


def test_real_haproxy_errors(haproxy_lab):
    runtime = HAProxyRuntime(haproxy_lab.socket)
    with pytest.raises(HAProxyRuntimeError, match="No such server") as info:
        runtime.set_weight("be_orders", "app3-green", 100)
    assert info.value.kind == "server"
    with pytest.raises(HAProxyRuntimeError, match="No such backend") as info:
        runtime.set_weight("be_ordrs", "app1-green", 100)
    assert info.value.kind == "backend"
    with pytest.raises(HAProxyRuntimeError, match="no backend be_nope") as info:
        runtime.show_servers_state("be_nope")
    assert info.value.kind == "backend"


def test_real_haproxy_server_state_survives_restart(haproxy_lab):
    runtime = HAProxyRuntime(haproxy_lab.socket)
    runtime.set_weight("be_orders", "app1-green", 100)
    runtime.set_weight("be_orders", "app1-blue", 0)
    runtime.dump_server_state(haproxy_lab.state_file)
    assert oct(os.stat(haproxy_lab.state_file).st_mode & 0o777) == "0o640"
    haproxy_lab.restart()
    runtime = HAProxyRuntime(haproxy_lab.socket)
    weights = {r["srv_name"]: r["srv_uweight"] for r in runtime.show_servers_state("be_orders")}
    assert weights["app1-green"] == 100
    assert weights["app1-blue"] == 0


class _HttpOnUnixSocket:
    """Something else on a UNIX socket: answers every request with ``HTTP/1.0 400 Bad Request``."""

    def __init__(self, path):
        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.rfile.readline()
                self.wfile.write(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_socket_that_is_not_haproxy_is_named(tmp_path):
    path = str(tmp_path / "other.sock")
    other = _HttpOnUnixSocket(path)
    try:
        with pytest.raises(HAProxyRuntimeError) as info:
            HAProxyRuntime(path, timeout=2).show_stat()
    finally:
        other.close()
    msg = info.value.msg
    assert path in msg
    assert "is not an HAProxy admin (stats) socket" in msg
    assert "HTTP/1.0 400" in msg  # what it did answer
    assert "haproxy_socket" in msg and "stats socket" in msg  # what to check
    assert info.value.kind == "socket"


def test_haproxy_refusal_is_not_called_a_foreign_socket(tmp_path):
    path = str(tmp_path / "admin.sock")
    fake = _FakeHAProxy(path, {"show stat": "Permission denied\n"})
    try:
        with pytest.raises(HAProxyRuntimeError) as info:
            HAProxyRuntime(path, timeout=2).show_stat()
    finally:
        fake.close()
    assert "Permission denied" in info.value.msg and path in info.value.msg
    assert "not an HAProxy" not in info.value.msg
