"""A plain byte-forwarding TCP relay on uvloop and asyncio.Protocol: the ceiling for any Python proxy.

It parses nothing: every chunk read from one side is written to the other, in both directions. The
benchmarks put it beside dbmesh so that dbmesh's cost is measured against the least a Python proxy on
the same event loop can cost, not only against a direct connection.

Backpressure: when one side's transport buffer passes its high-water mark, asyncio calls
``pause_writing()`` on that side's protocol, and we pause *reading* from the other side until
``resume_writing()``. Memory per connection stays bounded by the transports' write limits.

Half-close: an EOF from one side is passed on as ``write_eof()`` so request/response protocols that
close their sending side still get their answer; the pair closes when both directions are done.

    python benchmarks/relay.py --listen 127.0.0.1:3390 --target 127.0.0.1:3306
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import cast


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class _Half(asyncio.Protocol):
    """One side of a relayed pair; forwards what it reads to its peer's transport."""

    def __init__(self, peer: _Half | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has the same interface.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Invariant: a side reads only once its peer is connected (the client side starts paused),
        # so the peer's transport exists here.
        assert self.peer is not None and self.peer.transport is not None
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            if peer.transport.can_write_eof():
                peer.transport.write_eof()
            else:
                peer.transport.close()
        if peer is not None and peer.eof:
            self._close_both()
        return True  # keep our transport open: the other direction may still be talking

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            peer.transport.close()  # close() flushes what is buffered first

    # asyncio calls pause_writing() on the protocol whose own transport's write buffer is full; what
    # fills it comes from the peer, so the peer stops reading until the buffer drains.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.peer.transport.resume_reading()

    def _close_both(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.transport is not None:
                side.transport.close()


class _UpstreamSide(_Half):
    """The connection to the target; links itself to the client side as soon as it is made.

    Linking in connection_made (not after ``create_connection`` returns) matters: the server may
    send its greeting in the same loop iteration, before the awaiting coroutine resumes.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        client = self.peer
        assert client is not None and client.transport is not None
        if client.closed:  # the client went away while we were connecting
            if self.transport is not None:
                self.transport.close()
            return
        client.peer = self
        client.transport.resume_reading()


class _ClientSide(_Half):
    """The accepted connection; opens the upstream connection when it arrives."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__()
        self.target = target

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()  # nothing to forward to until upstream is connected
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: _UpstreamSide(peer=self), *self.target)
        except OSError:
            if self.transport is not None:
                self.transport.close()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> asyncio.Server:
    """Start relaying connections on ``listen`` to ``target``; returns the listening server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _ClientSide(target), *listen, reuse_address=True, backlog=1024)


async def _main(listen: tuple[str, int], target: tuple[str, int]) -> None:
    server = await serve(listen, target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"relay {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="byte-forwarding TCP relay (uvloop + asyncio.Protocol)")
    parser.add_argument("--listen", type=_hostport, required=True, metavar="HOST:PORT")
    parser.add_argument("--target", type=_hostport, required=True, metavar="HOST:PORT")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_main(args.listen, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
