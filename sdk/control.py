"""The command line's way into a running server: a Unix socket in ``data_dir``.

The embedded DuckDB file can be opened by one process only, so while the server runs,
a plugin's command (``llmmultichat users ...``, ``llmmultichat plugins enable ...``) sends
its request to the plugin's socket instead of opening the store. Only the
account that runs the server can use it: the socket is created with mode 0600 (under
umask 0177, so there is no moment when it is open to others), and each connection's peer
credentials (SO_PEERCRED) must show the server's own uid. One JSON request per
connection, one JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MAX_MESSAGE = 1 << 16
# AF_UNIX paths are limited to 107 bytes on Linux.
MAX_PATH = 107

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class NoServer(Exception):
    """No server answers on the socket."""


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    def __init__(self, path: Path, handler: Handler, logger: logging.Logger) -> None:
        self.path = path
        self.handler = handler
        self.log = logger
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self.detail = "not started"

    async def start(self) -> None:
        if len(str(self.path).encode()) > MAX_PATH:
            self.detail = f"{self.path}: path too long for a Unix socket; CLI needs the server down"
            self.log.warning("admin socket: %s", self.detail)
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            try:
                await request(self.path, {"op": "ping", "params": {}}, timeout=2)
            except NoServer:
                self.path.unlink()  # left by a server that is gone
            else:
                self.detail = f"{self.path} is served by another process"
                self.log.warning("admin socket: %s; not opening it here", self.detail)
                return
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_MESSAGE
            )
        except OSError as exc:  # another worker of `serve --workers` bound it first
            self.detail = f"{self.path}: {exc}"
            self.log.info("admin socket not opened here: %s", self.detail)
            return
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._inode = self.path.stat().st_ino
        self.detail = f"listening on {self.path}"

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:  # still ours
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if _peer_uid(writer) not in (os.geteuid(), None):
                self.log.warning("admin socket: refused a connection from another user")
                return
            try:
                line = await asyncio.wait_for(reader.readline(), timeout=30)
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except (ValueError, asyncio.LimitOverrunError, TimeoutError) as exc:
                answer: dict[str, Any] = {"code": 2, "err": f"bad request: {exc}\n"}
            else:
                try:
                    answer = await self.handler(message)
                except Exception as exc:  # said to the command line, which exits non-zero
                    self.log.exception("admin socket: the command failed")
                    answer = {"code": 1, "err": f"the server failed: {exc!r}\n"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except Exception as exc:  # one bad client never takes the socket down
            self.log.warning("admin socket: %r", exc)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def request(path: Path, message: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Send one request to the server at ``path``; raise NoServer if none answers there."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_MESSAGE), timeout=5
        )
    except (OSError, TimeoutError) as exc:
        raise NoServer(str(exc)) from exc
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not line:
        raise NoServer("the server closed the connection without answering")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError("the server's answer is not an object")
    return answer
