"""Setting kinds of the load-balancer sections: CIDR lists, one optional address, URL paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reactor.app.proxy import check_cidrs
from reactor.ops.kinds import Invalid, Kind, Seconds, canonical_listen, show, toml_string


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"must be a list of {what}, got {show(value)}")
    return list(value)


@dataclass(frozen=True)
class Networks(Kind):
    """A list of addresses or CIDR networks ("10.0.0.0/8", "::1"); as text comma-separated."""

    def type_name(self) -> str:
        return 'list of "ADDRESS[/PREFIX]"'

    def check(self, value: object, base: Path) -> tuple[str, ...]:
        cidrs = [c.strip() for c in _str_list(value, '"ADDRESS[/PREFIX]"')]
        reason = check_cidrs(cidrs)
        if reason is not None:
            raise Invalid(reason)
        return tuple(cidrs)

    def from_text(self, text: str) -> object:
        return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class OptionalListen(Kind):
    """One "HOST:PORT" address, or unset ("")."""

    def type_name(self) -> str:
        return '"HOST:PORT", or unset'

    def check(self, value: object, base: Path) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise Invalid(f'must be "HOST:PORT", got {show(value)}')
        try:
            return canonical_listen(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None


@dataclass(frozen=True)
class UrlPath(Kind):
    """An absolute URL path ("/livez"), or "" for none."""

    def type_name(self) -> str:
        return 'URL path "/...", or "" for none'

    def check(self, value: object, base: Path) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a string, got {show(value)}")
        if value and (not value.startswith("/") or any(
                ch in value for ch in "?# ") or not value.isprintable()):
            raise Invalid(f'must be a path starting with "/", got {toml_string(value)}')
        return value


@dataclass(frozen=True)
class SecondsOrZero(Seconds):
    """A duration in seconds, >= 0 and finite (0 = none)."""

    def type_name(self) -> str:
        return "float seconds >= 0"

    def check(self, value: object, base: Path) -> float:
        if value == 0 and not isinstance(value, bool):
            return 0.0
        try:
            return super().check(value, base)
        except Invalid:  # the reason names this kind's range, which takes 0
            raise Invalid(f"must be a number of seconds >= 0, got {show(value)}") from None
