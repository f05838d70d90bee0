# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform modules and may change in any release,
# even a bugfix release.

"""What went wrong on an HTTP call made with ``ansible.module_utils.urls.open_url``, for the
clients of the modules that talk to a server over HTTP (Consul, Keycloak). Each client words its
own message from these; none of them carries a secret.

Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import re
import socket
import ssl
from urllib.error import URLError

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError
from ansible_collections.msa.platform.plugins.module_utils._module_failures import redact

TIMEOUT_RANGE = (1, 3600)
TLS_DETAIL = re.compile(
    r"(certificate verify failed[^'\")]*|hostname mismatch[^'\")]*|IP address mismatch[^'\")]*|"
    r"wrong version number|unknown protocol|record layer failure)"
)
# TLS details that mean the port does not speak HTTPS at all.
NOT_HTTPS = ("wrong version number", "unknown protocol", "record layer")


def timeout_problem(timeout):
    """Why ``timeout`` (seconds) is not a usable timeout, or None."""
    if timeout is not None and not TIMEOUT_RANGE[0] <= timeout <= TIMEOUT_RANGE[1]:
        return "timeout must be between %d and %d (seconds), got %r" % (TIMEOUT_RANGE + (timeout,))
    return None


def answer_text(exc):
    """The body of an HTTP error answer, as text (empty when it cannot be read)."""
    try:
        body = exc.read()
    except Exception:  # noqa: BLE001 - only used to word the message
        body = b""
    return body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")


def transport_failure(exc, secrets=()):
    """``(kind, detail)`` for a failure to talk to the server at all, ``kind`` one of ``tls``
    (``detail``: what TLS said), ``timeout`` or ``unreachable`` (``detail``: connection refused,
    unknown host, or the error's text); None for anything else (a bug, for the caller to report)."""
    reason = getattr(exc, "reason", None)
    # URLError wraps the socket or TLS error.
    reason = reason if isinstance(reason, BaseException) else exc
    text = redact(str(reason), secrets)
    if isinstance(reason, (ssl.SSLError, SSLValidationError)) or isinstance(exc, SSLValidationError):
        match = TLS_DETAIL.search(text)
        return "tls", match.group(1).strip() if match else "TLS error"
    if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in text:
        return "timeout", text
    if isinstance(reason, OSError) or isinstance(exc, (URLError, UrlsConnectionError)):
        if isinstance(reason, ConnectionRefusedError) or "refused" in text.lower():
            return "unreachable", "connection refused"
        if isinstance(reason, socket.gaierror):
            return "unreachable", "unknown host"
        return "unreachable", text or type(reason).__name__
    return None
