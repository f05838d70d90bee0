"""Compare a balancer's discovery slots with the instances its Consul agent has in service.

For each service and color: the addresses HAProxy's filled slots <color>-<n> of be_<service>
hold, and the passing instances Consul lists with that color's tag; for a service that flips
through Consul (third argument), what the color's live query answers: the live color's passing
instances, none of the idle color's. Polls until both agree or
the time is up; prints both either way and exits 1 when they never agreed. Reads the runtime
socket (root) and the agent's HTTP API with the token in CONSUL_HTTP_TOKEN.
"""

import csv
import json
import os
import re
import socket
import sys
import time
import urllib.request

SOCKET = "/run/haproxy/admin.sock"
AGENT = "http://127.0.0.1:8500"
SLOT = re.compile(r"^(blue|green)-[0-9]+$")


def haproxy_slots():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(SOCKET)
    sock.sendall(b"show stat\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    lines = data.decode().splitlines()
    rows = csv.DictReader([lines[0][2:]] + lines[1:])
    found = set()
    for row in rows:
        if not row["pxname"].startswith("be_") or not SLOT.match(row["svname"]):
            continue
        if row["status"].startswith("MAINT (resolution)"):
            continue
        found.add("%s %s %s" % (row["pxname"][3:], row["svname"].split("-")[0], row["addr"]))
    return found


def consul_instances(services, flipped):
    token = os.environ["CONSUL_HTTP_TOKEN"]
    found = set()
    for service in services:
        for color in ("blue", "green"):
            if service in flipped:
                path = "query/%s-live-%s/execute" % (service, color)
            else:
                path = "health/service/%s?passing=true&tag=%s" % (service, color)
            request = urllib.request.Request(  # noqa: S310 - the loopback agent
                "%s/v1/%s" % (AGENT, path), headers={"X-Consul-Token": token}
            )
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - the loopback agent
                entries = json.load(answer)
            for entry in entries["Nodes"] if service in flipped else entries:
                found.add("%s %s %s:%d" % (service, color, entry["Service"]["Address"], entry["Service"]["Port"]))
    return found


def main():
    services = sys.argv[1].split(",")
    deadline = time.monotonic() + float(sys.argv[2] if len(sys.argv) > 2 else 15)
    flipped = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else set()
    while True:
        expected, slots = consul_instances(services, flipped), haproxy_slots()
        if (expected == slots and expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print(json.dumps({"consul": sorted(expected), "haproxy": sorted(slots)}))
    return 0 if expected == slots and expected else 1


if __name__ == "__main__":
    sys.exit(main())
