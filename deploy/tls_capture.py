"""What crossed the organisations' links: every TCP stream in a capture, checked to be TLS 1.3 end to end.

:func:`analyse` reads the ``tcpdump`` files of the veth links (:meth:`deploy.netns_harness.Topology.capture`)
with ``tshark`` and, for every TCP stream that carried bytes:

- reassembles each direction's payload (ordered by sequence number, retransmissions dropped) and walks it
  as TLS records: every byte must belong to a record of type 20-23 (change_cipher_spec, alert, handshake,
  application_data) with a TLS record version; a stream that starts with anything else (``GET /``, a
  PostgreSQL startup message) is plaintext. A record cut off by the end of the capture is allowed;
- asks ``tshark`` (the server ports decoded as TLS) for the ServerHello's ``supported_versions`` extension:
  a TLS 1.3 handshake names 0x0304 there;
- counts the plaintext HTTP requests ``tshark`` recognises by itself (must be 0; on the services' own ports
  the record walk above is what catches plaintext).

A stream is *between organisations* when both ends are organisation addresses; a stream with the bridge
address at one end is the harness itself (the operator's and analyst's HTTPS calls from the root namespace,
the coordinator's PostgreSQL through the proxy) and is reported on its own line. The capture starts before
the first service, so every stream's handshake is in it.

What each party learns: nothing; this module reads capture files on the test machine.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CaptureSummary", "Stream", "analyse", "walk_tls_records"]

TLS13 = "0x0304"
_RECORD_TYPES = {20, 21, 22, 23}
_FIELDS = ["ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.seq", "tcp.len", "tcp.flags.syn",
           "tcp.flags.ack", "tcp.analysis.retransmission", "http.request.method", "tcp.payload"]


def walk_tls_records(data: bytes) -> tuple[bool, int]:
    """Whether ``data`` is a sequence of TLS records (the last may be cut off), and how many whole ones.

    Returns:
        ``(ok, records)``; ``ok`` is False as soon as a header is not a TLS record header.
    """
    pos = records = 0
    while pos + 5 <= len(data):
        kind, major, minor = data[pos], data[pos + 1], data[pos + 2]
        if kind not in _RECORD_TYPES or major != 3 or minor > 4:
            return False, records
        pos += 5 + int.from_bytes(data[pos + 3:pos + 5], "big")
        records += pos <= len(data)
    return True, records


@dataclass
class Stream:
    """One TCP connection: client and server ``(address, port)``, bytes each way, TLS findings."""

    client: tuple[str, int]
    server: tuple[str, int]
    segments: dict[str, dict[int, bytes]] = field(default_factory=lambda: {"up": {}, "down": {}})
    versions: set[str] = field(default_factory=set)
    tls_ok: bool = True
    records: int = 0

    @property
    def bytes(self) -> int:
        """Payload bytes both ways."""
        return sum(len(b) for d in self.segments.values() for b in d.values())

    def check(self) -> None:
        """Walk both directions as TLS records."""
        for segs in self.segments.values():
            data = b"".join(segs[s] for s in sorted(segs))
            ok, n = walk_tls_records(data)
            self.tls_ok &= ok
            self.records += n


@dataclass
class CaptureSummary:
    """Streams by kind (``between organisations`` or ``harness``), with their versions and bytes."""

    names: Mapping[str, str]
    streams: list[Stream]
    http_requests: int

    def between_orgs(self) -> list[Stream]:
        """Streams whose both ends are organisations."""
        return [s for s in self.streams if s.client[0] in self.names and s.server[0] in self.names]

    def problems(self) -> list[str]:
        """Why the capture is not "only TLS 1.3 between organisations" (empty when it is)."""
        found = [f"{self._label(s)}: not TLS ({s.bytes} bytes)" for s in self.between_orgs() if not s.tls_ok]
        found += [f"{self._label(s)}: handshake versions {sorted(s.versions) or 'none seen'}, not only TLS 1.3"
                  for s in self.between_orgs() if s.versions != {TLS13}]
        if self.http_requests:
            found.append(f"{self.http_requests} plaintext HTTP request(s)")
        if not self.between_orgs():
            found.append("no stream between organisations was captured")
        return found

    def _label(self, s: Stream) -> str:
        def end(a: tuple[str, int]) -> str:
            return f"{self.names.get(a[0], 'harness')}({a[0]}):{a[1]}"

        return f"{end(s.client)} -> {end(s.server)}"

    def table(self) -> str:
        """One line per (client org, server org, server port): streams, bytes, TLS, versions."""
        rows: dict[tuple[str, str, int], list[Stream]] = defaultdict(list)
        for s in self.streams:
            ends = (self.names.get(s.client[0], "harness"), self.names.get(s.server[0], "harness"))
            rows[(*ends, s.server[1])].append(s)
        lines = [f"{'client':<12}{'server':<13}{'port':>6}{'streams':>9}{'bytes':>12}  {'all TLS records':<16}"
                 "ServerHello supported_versions"]
        for (c, srv, port), group in sorted(rows.items()):
            versions = sorted({v for s in group for v in s.versions}) or ["-"]
            lines.append(f"{c:<12}{srv:<13}{port:>6}{len(group):>9}{sum(s.bytes for s in group):>12}  "
                         f"{'yes' if all(s.tls_ok for s in group) else 'NO':<16}{', '.join(versions)}")
        between = self.between_orgs()
        lines.append(f"between organisations: {len(between)} TCP streams, {sum(s.bytes for s in between)} bytes, "
                     f"plaintext HTTP requests {self.http_requests}; "
                     + ("only TLS 1.3" if not self.problems() else "PROBLEMS: " + "; ".join(self.problems())))
        return "\n".join(lines)


def _tshark(path: Path, *args: str) -> list[list[str]]:
    proc = subprocess.run(["tshark", "-r", str(path), "-n", *args], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"tshark -r {path} {' '.join(args)}: {proc.stderr.strip()}")
    return [line.split("\t") for line in proc.stdout.splitlines() if line]


def analyse(pcaps: Sequence[Path], names: Mapping[str, str]) -> CaptureSummary:
    """Read the capture files; ``names`` maps each organisation's address to its name."""
    streams: dict[tuple[tuple[str, int], tuple[str, int]], Stream] = {}
    http = 0
    for pcap in pcaps:
        fields = [a for f in _FIELDS for a in ("-e", f)]
        rows = _tshark(pcap, "-Y", "tcp", "-T", "fields", "-E", "separator=/t", "-o",
                       "tcp.relative_sequence_numbers:TRUE", "-o", "tcp.desegment_tcp_streams:FALSE", *fields)
        seen: dict[tuple[tuple[str, int], tuple[str, int]], tuple[str, int]] = {}
        for row in rows:
            row += [""] * (len(_FIELDS) - len(row))
            src, sport, dst, dport, seq, length, syn, ack, retrans, method, payload = row
            http += bool(method)
            a, b = (src, int(sport)), (dst, int(dport))
            pair = (min(a, b), max(a, b))
            if syn in ("1", "True") and ack not in ("1", "True"):
                seen[pair] = b  # the SYN's destination is the server
            server = seen.get(pair)
            if server is None:
                continue  # a stream that started before the capture (none do: it starts first)
            client = a if b == server else b
            stream = streams.setdefault((client, server), Stream(client, server))
            if int(length or 0) and payload and not retrans:
                stream.segments["up" if a == client else "down"][int(seq)] = bytes.fromhex(payload.replace(":", ""))
        ports = sorted({str(s.server[1]) for s in streams.values()})
        decode = [a for p in ports for a in ("-d", f"tcp.port=={p},tls")]
        for src, sport, dst, dport, versions in _tshark(
                pcap, *decode, "-Y", "tls.handshake.type == 2", "-T", "fields", "-E", "separator=/t",
                "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
                "-e", "tls.handshake.extensions.supported_version"):
            s = streams.get(((dst, int(dport)), (src, int(sport))))
            if s is not None:
                s.versions.update(v for v in versions.split(",") if v)
    for s in streams.values():
        s.check()
    # every stream between two organisations appears in both organisations' veth captures: counted once
    return CaptureSummary(names, [s for s in streams.values() if s.bytes], http)
