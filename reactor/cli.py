"""Command line: `reactor serve` and the operator commands."""


def main(argv: list[str] | None = None) -> int:
    return 0
