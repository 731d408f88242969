"""`enclavekit sgxs ...`: SGXS measurement streams (measure, sign)."""

from __future__ import annotations

import click


@click.group("sgxs")
def sgxs_group() -> None:
    """Work with SGXS measurement streams (Fortanix's interchange format)."""


@sgxs_group.command("measure")
def measure() -> None:
    """Print the MRENCLAVE of an SGXS file as lowercase hex (TO BE IMPLEMENTED)."""
    raise click.ClickException("not implemented yet")


@sgxs_group.command("sign")
def sign() -> None:
    """Write a SIGSTRUCT for an SGXS file's measurement (TO BE IMPLEMENTED)."""
    raise click.ClickException("not implemented yet")


def register(group: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    group.add_command(sgxs_group)
