"""The protocol layer's exceptions: the peer's fault (Remote) versus ours (Local).

Both derive from ``ProtocolError`` so the connection layer can catch the layer's errors at one
boundary. A ``RemoteProtocolError`` carries the status code to answer with before closing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reactor.proto.events import RequestHead

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of every error raised by ``reactor.proto``."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we refuse; answer ``status_hint`` and close the connection.

    ``reason`` is a short kebab-case rule name ("obs-fold", "missing-host", ...) meant for
    logs and tests. ``head`` is set when the head parsed fine but the body is refused (413),
    so the caller can still log the method and target.
    """

    def __init__(
        self, reason: str, status_hint: int = 400, head: RequestHead | None = None
    ) -> None:
        super().__init__(reason, status_hint)
        self.reason = reason
        self.status_hint = status_hint
        self.head = head

    def __str__(self) -> str:
        return f"{self.reason} ({self.status_hint})"

    def __repr__(self) -> str:
        return f"RemoteProtocolError({self.reason!r}, {self.status_hint})"


class LocalProtocolError(ProtocolError):
    """We misused the API (a bug on our side), e.g. a CR/LF in a response header value."""
