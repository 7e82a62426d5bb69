"""The README's promises that code can check: the settings table matches the declarations."""

from __future__ import annotations

from pathlib import Path

from reactor.ops.config import render_settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_settings_table_is_the_rendered_declarations() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:")
    start = text.index("\n", start) + 1
    end = text.index("<!-- /settings-table -->")
    assert text[start:end] == render_settings_table(), (
        "README settings table is stale: regenerate with "
        "`python -m reactor.ops.config settings-table`")


def test_readme_quick_start_is_make_run_and_make_test() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
