"""NGINX upstream file: parse/render/retarget offline, switch with a fake nginx, then a real NGINX."""

from __future__ import annotations

import os

import pytest
from ansible_collections.msa.platform.plugins.module_utils._nginx_upstreams import (
    NginxController,
    NginxUpstreamError,
    color_of,
    known_services,
    parse_upstream,
    render_upstream,
    retarget,
    shutting_down_workers,
    switch_file,
)

PORTS = {"blue": 8101, "green": 8102}

ROLE_STYLE = """\
#
# Ansible managed
#
upstream msa_orders {
    # live: blue
    server app1:8101 max_fails=2 fail_timeout=5s;
    server app2:8101;  # second host
    keepalive 16;
}
"""


def test_parse_role_style_file():
    parsed = parse_upstream(ROLE_STYLE, "orders")
    assert parsed["name"] == "msa_orders"
    assert [(s["host"], s["port"]) for s in parsed["servers"]] == [("app1", 8101), ("app2", 8101)]
    assert color_of(parsed["servers"], PORTS) == "blue"


def test_render_parse_round_trip():
    text = render_upstream("orders", [("app1", 8102), ("app2", 8102)], live="green", extra_lines=["keepalive 8;"])
    parsed = parse_upstream(text, "orders")
    assert color_of(parsed["servers"], PORTS) == "green"
    assert "keepalive 8;" in text


def test_parse_errors():
    with pytest.raises(NginxUpstreamError, match="no 'upstream msa_orders"):
        parse_upstream("upstream msa_payments { server a:1; }\n", "orders")
    with pytest.raises(NginxUpstreamError, match="not closed"):
        parse_upstream("upstream msa_orders {\n server a:1;\n", "orders")


def test_through_haproxy_is_neither_color():
    parsed = parse_upstream(render_upstream("orders", [("lb1", 9101), ("lb2", 9101)]), "orders")
    assert color_of(parsed["servers"], PORTS) is None


def test_retarget_keeps_everything_but_the_port():
    new = retarget(ROLE_STYLE, "orders", 8101, 8102)
    assert new == ROLE_STYLE.replace("app1:8101", "app1:8102").replace("app2:8101", "app2:8102")
    assert color_of(parse_upstream(new, "orders")["servers"], PORTS) == "green"


def test_retarget_refuses_a_foreign_port():
    text = ROLE_STYLE.replace("app2:8101", "app2:9999")
    with pytest.raises(NginxUpstreamError, match="app2:9999"):
        retarget(text, "orders", 8101, 8102)


def test_known_services(tmp_path):
    (tmp_path / "orders.conf").write_text(ROLE_STYLE)
    (tmp_path / ".orders.conf.tmp").write_text("")
    (tmp_path / "README").write_text("")
    assert known_services(str(tmp_path)) == ["orders"]
    assert known_services(str(tmp_path / "missing")) == []


def test_shutting_down_workers(tmp_path):
    titles = {
        "10": b"nginx: worker process is shutting down\x00",
        "11": b"nginx: worker process\x00",
        "12": b"/usr/bin/python3\x00",
    }
    for pid, title in titles.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(title)
    (tmp_path / "14").mkdir()  # the same title in another PID namespace (a container): not ours
    (tmp_path / "14" / "cmdline").write_bytes(titles["10"])
    for entry, ns in (("self", "pid:[1]"), ("10", "pid:[1]"), ("14", "pid:[2]")):
        (tmp_path / entry / "ns").mkdir(parents=True)
        (tmp_path / entry / "ns" / "pid").symlink_to(ns)
    (tmp_path / "13").mkdir()  # a process that exited: no cmdline
    assert shutting_down_workers(str(tmp_path)) == [10]
    assert shutting_down_workers(str(tmp_path / "missing")) == []


class FakeNginx:
    def __init__(self, test_rc=0, reload_rc=0):
        self.calls = []
        self.test_rc = test_rc
        self.reload_rc = reload_rc

    def __call__(self, argv):
        self.calls.append(argv)
        if "-t" in argv:
            return self.test_rc, "", "" if self.test_rc == 0 else "nginx: [emerg] host not found in upstream"
        return self.reload_rc, "", "" if self.reload_rc == 0 else "nginx: [error] invalid PID number"


def test_switch_file_success(tmp_path):
    path = tmp_path / "orders.conf"
    path.write_text(ROLE_STYLE)
    path.chmod(0o640)
    fake = FakeNginx()
    switch_file(str(path), retarget(ROLE_STYLE, "orders", 8101, 8102), NginxController(fake, config="/x.conf"))
    assert "app1:8102" in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert fake.calls == [["nginx", "-c", "/x.conf", "-t", "-q"], ["nginx", "-c", "/x.conf", "-s", "reload"]]


@pytest.mark.parametrize(("test_rc", "reload_rc", "match"), [(1, 0, "nginx -t failed"), (0, 1, "-s reload' failed")])
def test_switch_file_restores_on_failure(tmp_path, test_rc, reload_rc, match):
    path = tmp_path / "orders.conf"
    path.write_text(ROLE_STYLE)
    fake = FakeNginx(test_rc=test_rc, reload_rc=reload_rc)
    with pytest.raises(NginxUpstreamError, match=match) as info:
        switch_file(str(path), retarget(ROLE_STYLE, "orders", 8101, 8102), NginxController(fake))
    assert "previous" in info.value.msg and "restored" in info.value.msg
    assert path.read_text() == ROLE_STYLE
    if test_rc:
        assert len(fake.calls) == 1  # never reloaded a config that failed nginx -t


class _Explodes:
    """A runner that fails in an unexpected way (not a non-zero exit) at the given step."""

    def __init__(self, at, exc):
        self.at = at
        self.exc = exc
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if (self.at == "test") == ("-t" in argv):
            raise self.exc
        return 0, "", ""


@pytest.mark.parametrize("at", ["test", "reload"])
@pytest.mark.parametrize(
    "exc",
    [FileNotFoundError(2, "No such file or directory", "/opt/nginx"), RuntimeError("boom"), KeyError("x")],
    ids=["oserror", "runtimeerror", "keyerror"],
)
def test_switch_file_restores_content_and_mode_on_any_error(tmp_path, at, exc):
    path = tmp_path / "orders.conf"
    path.write_text(ROLE_STYLE)
    path.chmod(0o604)
    os.chown(path, os.getuid(), 1 if os.geteuid() == 0 else os.getgid())
    before = path.stat()
    runner = _Explodes(at, exc)
    with pytest.raises(NginxUpstreamError) as info:
        switch_file(str(path), retarget(ROLE_STYLE, "orders", 8101, 8102), NginxController(runner))
    assert "the previous %s was restored" % path in info.value.msg
    assert path.read_text() == ROLE_STYLE
    after = path.stat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    assert [p.name for p in tmp_path.iterdir()] == ["orders.conf"]


def test_switch_file_restores_on_exit_and_reraises(tmp_path):
    """fail_json inside a runner exits (SystemExit): the file is still put back first."""
    path = tmp_path / "orders.conf"
    path.write_text(ROLE_STYLE)
    with pytest.raises(SystemExit):
        switch_file(
            str(path), retarget(ROLE_STYLE, "orders", 8101, 8102), NginxController(_Explodes("reload", SystemExit(1)))
        )
    assert path.read_text() == ROLE_STYLE


def test_systemd_reload_command():
    fake = FakeNginx()
    NginxController(fake, reload="systemd").reload()
    assert fake.calls == [["systemctl", "reload", "nginx"]]


# ---- against a real NGINX ----------------------------------------------------------------


def test_real_nginx_switch_and_restore(nginx_lab, wait, runner):
    path = nginx_lab.upstream_dir / "orders.conf"
    controller = NginxController(runner, binary=nginx_lab.binary, config=str(nginx_lab.conf))
    assert nginx_lab.request() == "blue"
    text = path.read_text()
    new = retarget(text, "orders", nginx_lab.ports["blue"], nginx_lab.ports["green"])
    switch_file(str(path), new, controller)
    wait(lambda: nginx_lab.serves("green"), what="nginx to send traffic to green")

    # A broken file is refused by nginx -t, the working one comes back, traffic stays.
    broken = new.replace("keepalive 4;", "keepalive;")
    with pytest.raises(NginxUpstreamError, match="nginx -t failed"):
        switch_file(str(path), broken, controller)
    assert path.read_text() == new
    # Polled, not asserted once: the toy upstream closes idle keepalive connections, and a request
    # racing such a close gets a 502 from NGINX (seen once in CI) that says nothing of the switch.
    wait(lambda: nginx_lab.serves("green"), what="nginx to keep sending traffic to green")
