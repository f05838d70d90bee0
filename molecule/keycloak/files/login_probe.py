"""Logs in through the gateway until told to stop, and counts what failed.

Every round: a client-credentials token (of a service client), a password login (of a user
through another client), and a refresh of the session the probe opened at its start (so a
session must survive whatever happens to the nodes). Writes a JSON summary to the result file
when the stop file appears (or after 15 minutes).
Arguments: base URL, CA file, stop file, result file, and a 0600 JSON file with the realm and the
credentials (on the command line, ps would show them).
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


def token(url: str, context: ssl.SSLContext, form: dict[str, str]) -> dict:
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(url, data, timeout=10, context=context) as answer:  # noqa: S310 - the lab gateway
        return json.load(answer)


def main() -> None:
    base, ca, stop_file, result_file, secrets_file = sys.argv[1:6]
    secrets = json.loads(Path(secrets_file).read_text())
    context = ssl.create_default_context(cafile=ca)
    url = f"{base}/realms/{secrets['realm']}/protocol/openid-connect/token"
    service = {"client_id": secrets["service_client_id"], "client_secret": secrets["service_client_secret"]}
    client = {"client_id": secrets["client_id"], "client_secret": secrets["client_secret"]}
    login = {**client, "grant_type": "password", "username": secrets["username"], "password": secrets["password"]}
    session = token(url, context, login)
    counts = {"rounds": 0, "failed": 0}
    errors: list[str] = []
    started = time.monotonic()
    while not Path(stop_file).exists() and time.monotonic() - started < 900:
        for name, form in (
            ("client_credentials", {**service, "grant_type": "client_credentials"}),
            ("password", login),
            ("refresh", {**client, "grant_type": "refresh_token", "refresh_token": session.get("refresh_token", "")}),
        ):
            try:
                answer = token(url, context, form)
                if name == "refresh":
                    session = answer
            except (urllib.error.URLError, OSError, ValueError) as exc:
                counts["failed"] += 1
                if len(errors) < 5:
                    errors.append(f"{name}: {exc}")
        counts["rounds"] += 1
        time.sleep(0.2)
    Path(result_file).write_text(json.dumps({**counts, "errors": errors, "seconds": round(time.monotonic() - started)}))


if __name__ == "__main__":
    main()
