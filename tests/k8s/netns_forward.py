"""TCP forwarders between network namespaces: the only way in or out of the test cluster.

A socket stays in the network namespace it was created in, so a forwarder creates its
listening socket in one namespace and each outgoing socket in the other; the relaying
itself runs on one background asyncio loop. Creating a socket in another namespace means
switching the calling thread there with setns(2) and straight back (network namespaces
are per thread; nothing else runs on that thread in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET): {os.strerror(errno)}")


def socket_in_netns(netns: Path | None, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket created in `netns` (a /proc/<pid>/ns/net path; None: our own)."""
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns, os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            _setns(own)  # never leave this thread in the cluster's namespace
    finally:
        os.close(own)
        os.close(target)


@dataclass(frozen=True)
class Endpoint:
    """host:port in a network namespace (None: this process's own)."""

    host: str
    port: int
    netns: Path | None = None


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close, as the client did: HTTP/1.0-style ends work
    except (ConnectionError, OSError):
        writer.close()


class Forwarders:
    """Any number of TCP forwarders on one background event loop; close() ends them all."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="netns-forwarders", daemon=True
        )
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    def add(self, listen: Endpoint, target: Endpoint) -> Endpoint:
        """Forward connections to `listen` (port 0: any free one) to `target`; returns the
        endpoint really listened on."""
        future = asyncio.run_coroutine_threadsafe(self._add(listen, target), self._loop)
        return future.result(timeout=10)

    async def _add(self, listen: Endpoint, target: Endpoint) -> Endpoint:
        sock = socket_in_netns(listen.netns)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((listen.host, listen.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._relay(reader, writer, target)

        self._servers.append(await asyncio.start_server(relay, sock=sock))
        return Endpoint(listen.host, sock.getsockname()[1], listen.netns)

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: Endpoint
    ) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            sock = socket_in_netns(target.netns)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(
                    self._loop.sock_connect(sock, (target.host, target.port)), timeout=10
                )
            except (OSError, TimeoutError):
                sock.close()
                return  # the client sees the connection closed, as with a refused port
            up_reader, upstream = await asyncio.open_connection(sock=sock)
            self._writers.add(upstream)
            await asyncio.gather(_copy(reader, upstream), _copy(up_reader, writer))
        finally:
            for end in (writer, upstream):
                if end is not None:
                    self._writers.discard(end)
                    end.close()

    def close(self) -> None:
        async def shutdown() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.close()
            for server in self._servers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), timeout=2)

        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
        self._servers.clear()
