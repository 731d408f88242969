"""`enclavekit keygen OUT.pem`: a new SIGSTRUCT signing key (RSA-3072, exponent 3)."""

from __future__ import annotations

from pathlib import Path

import click

from ..sgx.signing import SigningKey


@click.command("keygen")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option(
    "--pkcs8", is_flag=True, help='Write "BEGIN PRIVATE KEY" (as Gramine) instead of PKCS#1.'
)
def keygen(out: Path, force: bool, pkcs8: bool) -> None:
    """Generate an enclave signing key into OUT (PEM, mode 0600) and print its MRSIGNER."""
    if out.exists() and not force:
        raise click.ClickException(f"{out} already exists; pass --force to overwrite it")
    key = SigningKey.generate()
    key.save(out, pkcs8=pkcs8)
    click.echo(f"MRSIGNER: {key.mrsigner().hex()}")


def register(group: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    group.add_command(keygen)
