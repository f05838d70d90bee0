"""_http_failures: timeouts checked, and real transport failures on loopback told apart."""

from __future__ import annotations

import http.server
import threading

import pytest
from ansible.module_utils.urls import open_url
from ansible_collections.msa.platform.plugins.module_utils import _http_failures
from ansible_collections.msa.platform.tests.unit.plugins.lab_servers import LOOPBACK, free_port


@pytest.mark.parametrize(("timeout", "ok"), [(None, True), (1, True), (3600, True), (0, False), (3601, False)])
def test_timeout_problem(timeout, ok):
    assert (_http_failures.timeout_problem(timeout) is None) is ok


def failure_of(url, secrets=()):
    try:
        open_url(url, timeout=5, use_netrc=False)
    except Exception as exc:  # noqa: BLE001 - the failure is what the test looks at
        return _http_failures.transport_failure(exc, secrets)
    raise AssertionError("the call did not fail")


def test_a_closed_port_is_refused():
    assert failure_of("http://%s:%d/" % (LOOPBACK, free_port())) == ("unreachable", "connection refused")


@pytest.fixture
def plain_http_server():
    server = http.server.HTTPServer((LOOPBACK, 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_https_to_a_plain_http_port_says_it_does_not_speak_https(plain_http_server):
    kind, detail = failure_of("https://%s:%d/" % (LOOPBACK, plain_http_server))
    assert kind == "tls" and any(word in detail for word in _http_failures.NOT_HTTPS)


def test_an_error_that_is_not_about_transport_is_none():
    assert _http_failures.transport_failure(ValueError("a bug")) is None


def test_secrets_are_masked_in_the_detail():
    class Unreachable(OSError):
        pass

    assert _http_failures.transport_failure(Unreachable("no route to s3cr3t-host"), ["s3cr3t-host"]) == (
        "unreachable",
        "no route to ********",
    )
