"""A chat server on reactor: the page from ./static, rooms at ws://HOST:PORT/chat/{room}.

    .venv/bin/python examples/chat/chat.py --port 8000
    open http://127.0.0.1:8000/?room=lobby in two browser tabs

Each message a member sends is broadcast to everyone in the room, encoded once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
from pathlib import Path

from reactor.app.websocket import WebSocket, WebSocketHandler, broadcast
from reactor.ops.server import Server
from reactor.ops.settings import Config

STATIC = Path(__file__).resolve().parent / "static"


class ChatRoom(WebSocketHandler):
    """One member of a room; the rooms are shared by all sessions."""

    rooms: dict[str, set[WebSocket]] = {}
    lock = threading.Lock()  # callbacks run on pool threads

    def on_open(self) -> None:
        self.room = self.ws.params["room"].decode()
        with self.lock:
            members = self.rooms.setdefault(self.room, set())
            members.add(self.ws)
            count = len(members)
        self.announce({"kind": "joined", "members": count})

    def on_message(self, data: str | bytes) -> None:
        if isinstance(data, str) and data.strip():
            self.announce({"kind": "message", "text": data[:2000]})

    def on_close(self, code: int, reason: str) -> None:
        with self.lock:
            members = self.rooms.get(self.room, set())
            members.discard(self.ws)
            count = len(members)
        self.announce({"kind": "left", "members": count})

    def announce(self, event: dict[str, object]) -> None:
        with self.lock:
            members = list(self.rooms.get(self.room, ()))
        broadcast(members, json.dumps({"room": self.room, **event}))


def make_server(listen: str = "127.0.0.1:8000", **log: str) -> Server:
    """A reactor Server with the page as its document root and the chat route added."""
    config = Config()
    config = dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, listen=(listen,)),
        static=dataclasses.replace(config.static, root=STATIC),
        log=dataclasses.replace(config.log, **log))
    server = Server(config)
    server.app.websocket("/chat/{room}")(ChatRoom)
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = make_server(f"{args.host}:{args.port}")
    host, port = server.addresses[0]
    print(f"chat: http://{host}:{port}/?room=lobby", flush=True)
    server.run()


if __name__ == "__main__":
    main()
