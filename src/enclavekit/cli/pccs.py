"""``enclavekit pccs``: The collateral service for emulated platforms (Intel PCS v4 paths)."""

from __future__ import annotations

import click


@click.group(name="pccs")
def group() -> None:
    """The collateral service for emulated platforms (Intel PCS v4 paths)."""


def register(main: click.Group) -> None:
    """Add the ``pccs`` group to the top-level command."""
    main.add_command(group)
