"""A TCP forwarder: ``python -m deploy.tcp_proxy LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT``.

The namespace harness runs it in the root namespace on the bridge address, so that the coordinator's
namespace reaches the machine's PostgreSQL (which listens on loopback only) across its veth, as it would
reach a PostgreSQL container on its compose network. It copies bytes both ways and never reads them.

What each party learns: nothing; it only forwards bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

__all__ = ["main", "serve"]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen_host: str, listen_port: int, target_host: str, target_port: int) -> None:
    """Accept on ``listen_host:listen_port`` and forward each connection to ``target_host:target_port``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, listen_host, listen_port, reuse_address=True)
    print(f"forwarding {listen_host}:{listen_port} -> {target_host}:{target_port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 4:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args[0], int(args[1]), args[2], int(args[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
