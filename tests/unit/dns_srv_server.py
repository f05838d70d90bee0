"""A small authoritative DNS server on loopback that answers SRV queries the way Consul DNS does.

Stdlib only, UDP only (what HAProxy's resolvers speak). For a service name it holds, e.g.
``_orders._blue.service.consul``, an SRV query gets one SRV record per instance, each naming its
node as ``<hex address>.addr.<dc>.consul`` (``7f000002.addr.dc1.consul``), and the A record of that
target in the additional section. A name with no instance (never registered, or all removed) gets
NXDOMAIN, as Consul answers for a service with no healthy instance. The target names answer A
queries too (AAAA: no data), so a resolver that ignores the additional section still gets there.

The instances can be changed while it runs (:meth:`DnsSrvServer.add`, :meth:`DnsSrvServer.remove`);
every query is logged in :attr:`DnsSrvServer.queries` as ``(name, type name, rcode, answers)``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

TYPE_A = 1
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
CLASS_IN = 1
TYPE_NAMES = {TYPE_A: "A", TYPE_AAAA: "AAAA", TYPE_SRV: "SRV", TYPE_OPT: "OPT"}

RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4

FLAG_QR = 0x8000
FLAG_AA = 0x0400
FLAG_TC = 0x0200
FLAG_RD = 0x0100
OPCODE_MASK = 0x7800

# Without EDNS a UDP answer is at most 512 bytes (RFC 1035 4.2.1).
CLASSIC_UDP_SIZE = 512
SERVER_UDP_SIZE = 4096


def encode_name(name):
    out = bytearray()
    for label in name.strip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError("bad DNS label in %r" % name)
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def read_name(data, offset):
    """``(name, offset after it)``; follows compression pointers."""
    labels = []
    end = None
    for _hop in range(128):
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        offset += 1
        if length == 0:
            return ".".join(labels), (end if end is not None else offset)
        labels.append(data[offset : offset + length].decode("ascii"))
        offset += length
    raise ValueError("DNS name compression loop")


def record(name, rtype, ttl, rdata):
    return encode_name(name) + struct.pack("!HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def target_name(address, datacenter="dc1"):
    """Consul's name for the node at ``address``: ``7f000001.addr.dc1.consul``."""
    return "%s.addr.%s.consul" % (socket.inet_aton(address).hex(), datacenter)


class DnsSrvServer:
    """Answers SRV queries for the names it holds on ``127.0.0.1:<port>`` (UDP), in a thread."""

    def __init__(self, address="127.0.0.1", ttl=0, datacenter="dc1"):
        self.ttl = ttl
        self.datacenter = datacenter
        self.services = {}  # lower-case SRV name -> [(address, port), ...]
        self.queries = []
        self._lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.address, self.port = self.sock.getsockname()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    # the records -----------------------------------------------------------------------------
    def add(self, name, address, port):
        """Register an instance ``address:port`` of the service ``name`` (an SRV name)."""
        with self._lock:
            instances = self.services.setdefault(name.lower().strip("."), [])
            if (address, port) not in instances:
                instances.append((address, port))

    def remove(self, name, address, port):
        """Deregister it; the last one gone, the name answers NXDOMAIN."""
        with self._lock:
            instances = self.services.get(name.lower().strip("."), [])
            if (address, port) in instances:
                instances.remove((address, port))

    def instances(self, name):
        with self._lock:
            return list(self.services.get(name.lower().strip("."), []))

    def asked(self, name, qtype="SRV"):
        """How many ``qtype`` queries for ``name`` came in."""
        name = name.lower().strip(".")
        with self._lock:
            return sum(1 for qname, qtname, _rcode, _count in self.queries if qname == name and qtname == qtype)

    # the protocol ----------------------------------------------------------------------------
    def _lookup(self, qname, qtype):
        """``(rcode, answers, additionals)`` for one question."""
        with self._lock:
            instances = list(self.services.get(qname, []))
            nodes = {
                target_name(address, self.datacenter): address for svc in self.services.values() for address, _p in svc
            }
        if instances:
            if qtype != TYPE_SRV:
                return RCODE_OK, [], []  # the name exists, with no data of that type
            answers, extra, seen = [], [], set()
            for address, port in instances:
                target = target_name(address, self.datacenter)
                # priority 1, weight 1 as Consul sends them.
                answers.append(record(qname, TYPE_SRV, self.ttl, struct.pack("!HHH", 1, 1, port) + encode_name(target)))
                if target not in seen:
                    seen.add(target)
                    extra.append(record(target, TYPE_A, self.ttl, socket.inet_aton(address)))
            return RCODE_OK, answers, extra
        if qname in nodes:
            if qtype == TYPE_A:
                return RCODE_OK, [record(qname, TYPE_A, self.ttl, socket.inet_aton(nodes[qname]))], []
            return RCODE_OK, [], []
        return RCODE_NXDOMAIN, [], []

    def answer(self, query):
        """The reply (bytes) to one query message, or None when it cannot even be parsed."""
        if len(query) < 12:
            return None
        qid, flags, qdcount, _an, _ns, arcount = struct.unpack("!6H", query[:12])
        if flags & FLAG_QR:
            return None  # a response, not a query
        reply_flags = FLAG_QR | FLAG_AA | (flags & (OPCODE_MASK | FLAG_RD))
        try:
            qname, offset = read_name(query, 12)
            qtype, qclass = struct.unpack("!HH", query[offset : offset + 4])
            question = query[12 : offset + 4]
            offset += 4
            edns_size = None
            for _record in range(arcount):  # an OPT record says how large an answer may be
                _name, offset = read_name(query, offset)
                rtype, rclass, _ttl, rdlen = struct.unpack("!HHIH", query[offset : offset + 10])
                offset += 10 + rdlen
                if rtype == TYPE_OPT:
                    edns_size = max(CLASSIC_UDP_SIZE, rclass)
        except (IndexError, ValueError, UnicodeDecodeError, struct.error):
            return struct.pack("!6H", qid, reply_flags | RCODE_FORMERR, 0, 0, 0, 0)
        if qdcount != 1 or flags & OPCODE_MASK:
            return struct.pack("!6H", qid, reply_flags | RCODE_NOTIMP, 0, 0, 0, 0)
        qname = qname.lower()
        if qclass != CLASS_IN:
            rcode, answers, extra = RCODE_NXDOMAIN, [], []
        else:
            rcode, answers, extra = self._lookup(qname, qtype)
        opt = []
        if edns_size is not None:  # RFC 6891: an EDNS query gets an OPT record back
            opt = [b"\x00" + struct.pack("!HHIH", TYPE_OPT, SERVER_UDP_SIZE, 0, 0)]
        with self._lock:
            self.queries.append((qname, TYPE_NAMES.get(qtype, str(qtype)), rcode, len(answers)))
        reply = (
            struct.pack("!6H", qid, reply_flags | rcode, 1, len(answers), 0, len(extra) + len(opt))
            + question
            + b"".join(answers + extra + opt)
        )
        limit = edns_size or CLASSIC_UDP_SIZE
        if len(reply) > limit:  # too large for the client: truncated, it should ask again over TCP
            reply = struct.pack("!6H", qid, reply_flags | FLAG_TC | rcode, 1, 0, 0, 0) + question
        return reply

    def _serve(self):
        while not self._stop.is_set():
            ready, _w, _x = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            try:
                query, peer = self.sock.recvfrom(65535)
            except OSError:
                continue
            reply = self.answer(query)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, peer)

    def stop(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()
