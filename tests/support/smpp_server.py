"""A minimal SMPP 3.4 SMSC for tests, built on ``smpplib``'s PDU classes (no maintained Python SMSC works offline).

It speaks what a client needs: ``bind_transceiver``/``bind_transmitter`` (checking system_id and
password), ``submit_sm`` (answered with a fresh message id, a UDH-concatenated long message
reassembled, UCS-2 and GSM 7-bit decoded), an SMSC delivery receipt as ``deliver_sm`` to a transceiver
(``stat:DELIVRD``, or ``stat:UNDELIV`` for numbers in ``undeliverable``), ``enquire_link`` and
``unbind``. ``down_after=n`` makes it hang up on everyone and stop listening after the n-th
``submit_sm``, as an SMSC that goes down; :meth:`SmppServer.start` brings it back on the same port.
Each received part is recorded with its arrival time (``time.monotonic``).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass

from smpplib import consts, smpp

__all__ = ["Received", "SmppServer"]

_GSM = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>"
        "?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ`¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXT = {0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}


def _gsm_decode(data: bytes) -> str:
    out, escape = [], False
    for byte in data:
        if escape:
            out.append(_GSM_EXT.get(byte, "?"))
            escape = False
        elif byte == 0x1B:
            escape = True
        else:
            out.append(_GSM[byte])
    return "".join(out)


@dataclass(frozen=True)
class Received:
    """One whole message as the SMSC assembled it."""

    destination: str
    source: str
    text: str
    data_coding: int
    parts: int
    at: float


class _Seq:
    def __init__(self) -> None:
        self.sequence = 0
        self._lock = threading.Lock()

    def next_sequence(self) -> int:
        with self._lock:
            self.sequence += 1
            return self.sequence


class SmppServer:
    """A threaded SMSC on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, *, system_id: str = "tandem", password: str = "secret1", down_after: int | None = None,
                 undeliverable: frozenset[str] = frozenset(), port: int = 0) -> None:
        self.system_id, self.password, self.down_after = system_id, password, down_after
        self.undeliverable = undeliverable
        self.port = port
        self.received: list[Received] = []
        self.submits = 0
        self.binds = 0
        self._partial: dict[tuple[str, int], dict[int, bytes]] = {}
        self._lock = threading.Lock()
        self._seq = _Seq()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> SmppServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Listen (again) on ``self.port`` (a free port the first time)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Hang up on every client and stop listening."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> bytes | None:
        head = self._exact(conn, 4)
        if head is None:
            return None
        rest = self._exact(conn, struct.unpack(">L", head)[0] - 4)
        return None if rest is None else head + rest

    @staticmethod
    def _exact(conn: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = conn.recv(size - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def _reply(self, conn: socket.socket, command: str, request: object, **fields: object) -> None:
        pdu = smpp.make_pdu(command, client=self._seq, **fields)
        pdu.sequence = request.sequence  # type: ignore[attr-defined]
        conn.sendall(pdu.generate())

    def _serve(self, conn: socket.socket) -> None:
        bound: str | None = None
        while True:
            raw = self._read(conn)
            if raw is None:
                return
            pdu = smpp.parse_pdu(raw, client=self._seq, allow_unknown_opt_params=True)
            command = pdu.command
            try:
                if command in ("bind_transceiver", "bind_transmitter"):
                    ok = (_s(pdu.system_id), _s(pdu.password)) == (self.system_id, self.password)
                    self._reply(conn, command + "_resp", pdu, system_id="smsc",
                                status=consts.SMPP_ESME_ROK if ok else consts.SMPP_ESME_RINVPASWD)
                    if ok:
                        bound = command
                        self.binds += 1
                elif command == "submit_sm":
                    if bound is None:
                        self._reply(conn, "submit_sm_resp", pdu, status=consts.SMPP_ESME_RINVBNDSTS)
                        continue
                    self._submit(conn, pdu, receipts=bound == "bind_transceiver")
                elif command == "enquire_link":
                    self._reply(conn, "enquire_link_resp", pdu)
                elif command == "unbind":
                    self._reply(conn, "unbind_resp", pdu)
                    conn.close()
                    return
            except OSError:
                return

    def _submit(self, conn: socket.socket, pdu: object, *, receipts: bool) -> None:
        now = time.monotonic()
        dest, body = _s(pdu.destination_addr), bytes(pdu.short_message or b"")  # type: ignore[attr-defined]
        with self._lock:
            self.submits += 1
            number = self.submits
            message_id = f"m{number:06d}"
            self._assemble(dest, _s(pdu.source_addr), body, int(pdu.esm_class or 0),  # type: ignore[attr-defined]
                                      int(pdu.data_coding or 0), now)  # type: ignore[attr-defined]
        self._reply(conn, "submit_sm_resp", pdu, message_id=message_id)
        if receipts and pdu.registered_delivery:  # one receipt per part, as SMSCs do  # type: ignore[attr-defined]
            stat = "UNDELIV" if dest in self.undeliverable else "DELIVRD"
            text = f"id:{message_id} sub:001 dlvrd:001 submit date:2612050900 done date:2612050900 stat:{stat} err:000"
            receipt = smpp.make_pdu("deliver_sm", client=self._seq, source_addr=dest, destination_addr="",
                                    esm_class=0x04, short_message=text.encode(), receipted_message_id=message_id)
            conn.sendall(receipt.generate())
        if self.down_after is not None and number >= self.down_after:
            self.down_after = None
            self.stop()

    def _assemble(self, dest: str, source: str, body: bytes, esm_class: int, coding: int, now: float) -> bool:
        total, key, part = 1, (dest, -1), body
        if esm_class & consts.SMPP_GSMFEAT_UDHI:
            udhl = body[0]
            ie = body[1:1 + udhl]
            assert ie[0] == consts.SMPP_UDHIEIE_CONCATENATED, "only 8-bit concatenation is understood"
            ref, total, seq = ie[2], ie[3], ie[4]
            key, part = (dest, ref), body[1 + udhl:]
            self._partial.setdefault(key, {})[seq] = part
            if len(self._partial[key]) < total:
                return False
            pieces = self._partial.pop(key)
            part = b"".join(pieces[i] for i in range(1, total + 1))
        text = part.decode("utf-16-be") if coding == consts.SMPP_ENCODING_ISO10646 else _gsm_decode(part)
        self.received.append(Received(dest, source, text, coding, total, now))
        return True


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
