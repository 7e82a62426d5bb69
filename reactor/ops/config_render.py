"""Config renderings: conf/reactor.toml, the README settings table and `print-config` output.

All three are derived from the declarations in reactor.ops.settings, so they cannot drift from
what the loader (reactor.ops.config) accepts; a test compares conf/reactor.toml with
`render_default_toml()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reactor.ops.kinds import toml_string
from reactor.ops.settings import (
    DEFAULT_CONFIG_PATH,
    SECTION_CLASSES,
    SECTION_DOCS,
    SETTINGS,
    Config,
    Setting,
)


def _value_of(config: Config, setting: Setting) -> Any:
    return getattr(getattr(config, setting.section), setting.key)


def format_effective(config: Config, origins: Mapping[str, str]) -> str:
    """`config` as TOML, each value followed by a comment naming its origin."""
    lines = ["# reactor: effective configuration; each value's comment names where it came from",
             "# (default, file:PATH, env:VARIABLE or cli:--flag)."]
    for section in SECTION_CLASSES:
        lines += ["", f"[{section}]"]
        for setting in (s for s in SETTINGS if s.section == section):
            rendered = setting.kind.to_toml(_value_of(config, setting))
            origin = origins.get(setting.name, "default")
            if rendered is None:
                lines.append(f"# {setting.key}: unset  # {origin}")
            else:
                lines.append(f"{setting.key} = {rendered}  # {origin}")
    return "\n".join(lines) + "\n"


_TOML_HEADER = f"""\
# reactor configuration: every setting, at its built-in default.
#
# Precedence: built-in defaults < this file < environment variables (REACTOR_<SECTION>_<KEY>,
# e.g. REACTOR_LIMITS_MAX_BODY_BYTES=1000) < command-line flags of `reactor serve`.
# `reactor serve` reads {DEFAULT_CONFIG_PATH} when it exists, or --config FILE.
# `reactor check-config --config FILE` validates a file; `reactor print-config` shows the
# effective settings and where each one comes from. Relative paths in this file are relative
# to the directory of this file. In the environment, lists are comma-separated
# (REACTOR_SERVER_LISTEN="127.0.0.1:80,[::1]:80"), booleans are true/false (or yes/no, on/off,
# 1/0), an empty value unsets a path, user or group, and tables are JSON
# (REACTOR_STATIC_MIME_OVERRIDES='{{".log": "text/plain"}}').
#
# Generated from reactor/ops/settings.py: python -m reactor.ops.config default-toml
"""


def _describe(setting: Setting) -> str:
    """ "int 1..65535; env REACTOR_SERVER_BACKLOG; flag --backlog" """
    parts = [setting.kind.type_name(), f"env {setting.env}"]
    if setting.flags:
        parts.append(("flags " if len(setting.flags) > 1 else "flag ") + ", ".join(setting.flags))
    return "; ".join(parts)


def render_default_toml() -> str:
    """conf/reactor.toml: every setting at its default, each with its description and type."""
    lines = [_TOML_HEADER.rstrip("\n")]
    for section, doc in SECTION_DOCS.items():
        lines += ["", f"[{section}]", f"# {doc}"]
        for setting in (s for s in SETTINGS if s.section == section):
            lines += ["", f"# {setting.doc}", f"# {_describe(setting)}"]
            rendered = setting.kind.to_toml(setting.default)
            if rendered is None:
                example = toml_string(setting.example or "")
                lines += ["# Unset by default; for example:", f"# {setting.key} = {example}"]
            else:
                lines.append(f"{setting.key} = {rendered}")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_settings_table() -> str:
    """The README "Settings" table in Markdown, one row per setting."""
    rows = ["| setting | type | default | env var | flag | description |",
            "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        rendered = setting.kind.to_toml(setting.default)
        cells = [
            f"`{setting.name}`",
            setting.kind.type_name(),
            "unset" if rendered is None else f"`{rendered}`",
            f"`{setting.env}`",
            ", ".join(f"`{flag}`" for flag in setting.flags),
            setting.doc,
        ]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows) + "\n"
