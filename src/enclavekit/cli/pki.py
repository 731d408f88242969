"""``enclavekit pki``: The emulated provisioning PKI (trust root, PCK certificates)."""

from __future__ import annotations

import click


@click.group(name="pki")
def group() -> None:
    """The emulated provisioning PKI (trust root, PCK certificates)."""


def register(main: click.Group) -> None:
    """Add the ``pki`` group to the top-level command."""
    main.add_command(group)
