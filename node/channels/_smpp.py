"""SMS through SMPP 3.4 with ``smpplib``: bind, submit_sm (long texts split, UCS-2 for Chinese), receipts.

The telco's own SMSC is the only endpoint: the subscriber's number goes there and nowhere else. A
transceiver bind also receives ``deliver_sm`` delivery receipts (``stat:DELIVRD`` and the like), which
are answered and queued for :meth:`SmppChannel.receipts`. A broken link is reconnected with doubling
back-off; when it stays down the channel raises :class:`ChannelDownError` naming the host setting, and
says whether the message in flight may have reached the SMSC (SMPP has no idempotency key, so such a
message is never submitted again). ``smpplib``'s own wire dump (numbers in hex) is kept out of the logs.
"""

from __future__ import annotations

import logging
import re
import select
import socket
from collections.abc import Callable
from typing import Any

from smpplib import consts, exceptions, gsm, smpp
from smpplib.client import Client

from ._core import ChannelDownError, OutboundMessage, Receipt, ReceiptState, SubmitResult

__all__ = ["SmppChannel"]

logger = logging.getLogger(__name__)
_WIRE_LOGGER = "node.channels.smpp.wire"
logging.getLogger(_WIRE_LOGGER).setLevel(logging.INFO)  # smpplib logs whole PDUs (numbers) at DEBUG

_SMSC_DELIVERY_RECEIPT = 0x04  # esm_class message type bits of an SMSC delivery receipt (SMPP 3.4 §5.2.12)
_RECEIPT = re.compile(rb"id:(\S+).*?stat:(\w+)", re.DOTALL)
_FINAL = {b"DELIVRD": ReceiptState.DELIVERED, b"UNDELIV": ReceiptState.FAILED, b"REJECTD": ReceiptState.FAILED,
          b"EXPIRED": ReceiptState.FAILED, b"DELETED": ReceiptState.FAILED}


def parse_receipt(pdu: Any) -> Receipt | None:
    """A final delivery receipt from a ``deliver_sm``, or None (a mobile-originated message, an interim state)."""
    if (int(pdu.esm_class or 0) & 0x3C) != _SMSC_DELIVERY_RECEIPT:
        return None
    body = pdu.short_message or b""
    match = _RECEIPT.search(body)
    if match is None or match.group(2) not in _FINAL:
        return None
    remote = pdu.receipted_message_id or match.group(1)
    remote_id = remote.decode() if isinstance(remote, bytes) else str(remote)
    return Receipt(remote_id, _FINAL[match.group(2)])


class SmppChannel:
    """A :class:`~node.channels.Channel` over one SMPP session (bound lazily, rebound when it breaks).

    Args:
        host, port: The SMSC (``TANDEM_CHANNEL_SMPP_HOST``/``_PORT``).
        system_id, password, system_type: Bind credentials.
        source_addr: The sender id shown to subscribers.
        bind: ``transceiver`` (receipts come back on the same session) or ``transmitter``.
        timeout_s: Socket timeout.
        attempts: Connection attempts before the channel is declared down.
        backoff_s: First delay between attempts (doubled each time).
        sleep: How to wait between attempts (injected in tests).
    """

    kind = "smpp"
    setting = "TANDEM_CHANNEL_SMPP_HOST and TANDEM_CHANNEL_SMPP_PORT"
    resend_safe = False

    def __init__(self, *, host: str, port: int, system_id: str, password: str, system_type: str = "",
                 source_addr: str = "", bind: str = "transceiver", timeout_s: float = 10.0, attempts: int = 3,
                 backoff_s: float = 1.0, sleep: Callable[[float], None]) -> None:
        self._host, self._port, self._timeout = host, port, timeout_s
        self._creds = {"system_id": system_id, "password": password, "system_type": system_type}
        self._source, self._bind, self._attempts, self._backoff = source_addr, bind, attempts, backoff_s
        self._sleep = sleep
        self._client: Client | None = None
        self._receipts: list[Receipt] = []

    # -- session -------------------------------------------------------------------------------------------
    def _open(self) -> Client:
        if self._client is not None:
            return self._client
        delay, last = self._backoff, "no attempt"
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(delay)
                delay *= 2
            client = Client(self._host, self._port, timeout=self._timeout, logger_name=_WIRE_LOGGER,
                            allow_unknown_opt_params=True)
            try:
                client.connect()
                # no Nagle: a small PDU must not wait for the ACK of the previous one (it skews the send rate)
                client._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._bind == "transceiver":
                    client.bind_transceiver(**self._creds)
                else:
                    client.bind_transmitter(**self._creds)
            except exceptions.PDUError as exc:
                client.disconnect()
                raise ChannelDownError(f"the SMSC refused the bind ({exc.args[0]})",
                                       setting="TANDEM_CHANNEL_SMPP_SYSTEM_ID and TANDEM_CHANNEL_SMPP_PASSWORD_FILE"
                                       ) from None
            except (exceptions.ConnectionError, OSError) as exc:
                last = str(exc) or type(exc).__name__
                client.disconnect()
                logger.warning("smpp connect attempt %d/%d failed: %s", attempt + 1, self._attempts, last)
                continue
            logger.info("smpp bound as %s to %s:%d", self._bind, self._host, self._port)
            self._client = client
            return client
        raise ChannelDownError(f"SMSC {self._host}:{self._port} unreachable after {self._attempts} attempts "
                               f"({last})", setting=self.setting)

    def _drop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def _handle(self, client: Client, pdu: Any) -> None:
        """Answer and record a PDU that is not the response we wait for."""
        if pdu.command == "deliver_sm":
            receipt = parse_receipt(pdu)
            if receipt is not None:
                self._receipts.append(receipt)
            resp = smpp.make_pdu("deliver_sm_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
        elif pdu.command == "enquire_link":
            resp = smpp.make_pdu("enquire_link_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
        elif pdu.command == "unbind":
            resp = smpp.make_pdu("unbind_resp", client=client)
            resp.sequence = pdu.sequence
            client.send_pdu(resp)
            self._drop()

    def _pending(self, client: Client, wait_s: float) -> None:
        """Read whatever the SMSC sent (receipts, enquire_link) within ``wait_s``; EOF drops the session."""
        session: Any = client
        while self._client is not None:  # _handle drops the session on unbind
            ready, _, _ = select.select([session._socket], [], [], wait_s)
            if not ready:
                return
            self._handle(session, session.read_pdu())
            wait_s = 0.0

    def _alive(self) -> Client:
        """A bound session whose peer has not hung up since the last call."""
        client = self._client
        if client is not None:
            try:
                self._pending(client, 0.0)
            except (exceptions.ConnectionError, exceptions.PDUError, OSError, ValueError):
                logger.warning("smpp session lost; reconnecting")
                self._drop()
        return self._open()

    # -- channel -------------------------------------------------------------------------------------------
    def submit(self, message: OutboundMessage) -> SubmitResult:
        """One ``submit_sm`` per part (UDH-concatenated; UCS-2 when the text is not GSM 7-bit)."""
        client = self._alive()
        parts, coding, esm_class = gsm.make_parts(message.text)
        remote: list[str] = []
        for index, part in enumerate(parts):
            try:
                sent = client.send_message(
                    source_addr_ton=consts.SMPP_TON_ALNUM if not self._source.isdigit() else consts.SMPP_TON_INTL,
                    source_addr_npi=consts.SMPP_NPI_ISDN, source_addr=self._source,
                    dest_addr_ton=consts.SMPP_TON_INTL, dest_addr_npi=consts.SMPP_NPI_ISDN,
                    destination_addr=message.recipient, short_message=part, data_coding=coding,
                    esm_class=esm_class, registered_delivery=True)
                resp = self._await(client, sent.sequence)
            except (exceptions.ConnectionError, exceptions.PDUError, OSError) as exc:
                self._drop()
                raise ChannelDownError(f"SMSC link broke during submit_sm ({exc or type(exc).__name__})",
                                       setting=self.setting, handed_over=True) from None
            if resp.is_error():
                if index == 0:
                    return SubmitResult(message.message_id, (), error=f"submit_sm status 0x{resp.status:x}")
                break  # a later part refused: the first went out, so the message counts as submitted
            remote.append(resp.message_id.decode() if isinstance(resp.message_id, bytes) else str(resp.message_id))
        return SubmitResult(message.message_id, tuple(remote))

    def _await(self, client: Client, sequence: int) -> Any:
        while True:
            pdu = client.read_pdu()
            if pdu.command == "submit_sm_resp" and pdu.sequence == sequence:
                return pdu
            self._handle(client, pdu)
            if self._client is not client:
                raise exceptions.ConnectionError("unbound by the SMSC")

    def receipts(self, wait_s: float) -> list[Receipt]:
        """Receipts received so far, after reading the session for up to ``wait_s``."""
        client = self._client
        if client is not None:
            try:
                self._pending(client, wait_s)
            except (exceptions.ConnectionError, exceptions.PDUError, OSError, ValueError):
                self._drop()
        found, self._receipts = self._receipts, []
        return found

    def close(self) -> None:
        """Unbind politely (ignoring a dead link) and disconnect."""
        client = self._client
        if client is None:
            return
        try:
            client.unbind()
        except (exceptions.ConnectionError, exceptions.PDUError, OSError):
            pass
        self._drop()
