"""``enclavekit quote``: Decode, produce and verify DCAP quotes."""

from __future__ import annotations

import click


@click.group(name="quote")
def group() -> None:
    """Decode, produce and verify DCAP quotes."""


def register(main: click.Group) -> None:
    """Add the ``quote`` group to the top-level command."""
    main.add_command(group)
