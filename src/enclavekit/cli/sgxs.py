"""`enclavekit sgxs ...`: SGXS measurement streams (measure, sign)."""

from __future__ import annotations

import click


@click.group("sgxs")
def sgxs_group() -> None:
    """Work with SGXS measurement streams (Fortanix's interchange format)."""


@sgxs_group.command("measure")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def measure(file: str) -> None:
    """Print the MRENCLAVE of the SGXS stream FILE as lowercase hex."""
    from pathlib import Path

    from ..sgx.sgxs import measure_sgxs

    click.echo(measure_sgxs(Path(file).read_bytes()).hex())


@sgxs_group.command("sign")
def sign() -> None:
    """Write a SIGSTRUCT for an SGXS file's measurement (TO BE IMPLEMENTED)."""
    raise click.ClickException("not implemented yet")


def register(group: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    group.add_command(sgxs_group)
