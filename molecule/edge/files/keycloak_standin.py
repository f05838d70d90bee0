"""A stand-in for Keycloak behind the gateway, and a service that shows what it was sent.

HTTPS on --https-port (certificate and key from --tls-dir: gateway-facing, platform CA):
  GET /realms/<realm>/protocol/openid-connect/certs  the file <--jwks-dir>/<realm>.json, read on
                                                    every request (replace it to rotate keys)
  anything else                                     JSON: who answered, the path and the
                                                    forwarding and X-Auth-* headers it got
HTTP on --echo-port: JSON of the path and every request header (a route's upstream).
Standard library only, so it runs on a fresh lab host.

    python3 keycloak_standin.py --tls-dir /etc/msa-standin --jwks-dir /srv/msa-standin \
        --https-port 8443 --echo-port 9301
"""

from __future__ import annotations

import argparse
import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CERTS = re.compile(r"^/realms/([A-Za-z0-9_-]+)/protocol/openid-connect/certs$")
SHOWN = (
    "Host",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Auth-Subject",
    "X-Auth-Username",
    "X-Auth-Roles",
    "Authorization",
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    jwks_dir = Path()

    def _json(self, code: int, data: dict) -> None:
        body = (json.dumps(data, sort_keys=True) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature from the base class
        pass


class KeycloakHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        match = CERTS.match(path)
        if match:
            try:
                keys = json.loads((self.jwks_dir / f"{match.group(1)}.json").read_text())
            except (OSError, ValueError):
                self._json(404, {"error": "Realm does not exist"})
                return
            self._json(200, keys)
            return
        self._json(
            200,
            {
                "answered_by": "keycloak-standin",
                "path": path,
                "headers": {name: self.headers.get(name) for name in SHOWN},
            },
        )


class EchoHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._json(200, {"answered_by": "echo", "path": self.path, "headers": dict(self.headers.items())})

    do_POST = do_GET  # noqa: N815


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tls-dir", type=Path, required=True)
    parser.add_argument("--jwks-dir", type=Path, required=True)
    parser.add_argument("--https-port", type=int, default=8443)
    parser.add_argument("--echo-port", type=int, default=9301)
    args = parser.parse_args()

    KeycloakHandler.jwks_dir = args.jwks_dir
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_dir / "standin.crt", args.tls_dir / "standin.key")
    keycloak = ThreadingHTTPServer(("0.0.0.0", args.https_port), KeycloakHandler)  # noqa: S104 - lab only
    keycloak.socket = context.wrap_socket(keycloak.socket, server_side=True)
    echo = ThreadingHTTPServer(("0.0.0.0", args.echo_port), EchoHandler)  # noqa: S104 - lab only
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    keycloak.serve_forever()


if __name__ == "__main__":
    main()
