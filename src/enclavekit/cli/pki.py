"""``enclavekit pki``: The emulated provisioning PKI (trust root, PCK certificates)."""

from __future__ import annotations

import hashlib

import click
from cryptography.hazmat.primitives import serialization

from .._fs import atomic_write
from ..errors import VMNotFound
from ..vm.datadir import data_dir
from ..vm.platform import PlatformStore
from ..vm.provisioning import Provisioning


def _store(ctx: click.Context) -> PlatformStore:
    return PlatformStore(data_dir(ctx.obj.get("data_dir") if ctx.obj else None))


@click.group(name="pki")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where VMs live (default: $ENCLAVEKIT_HOME or $XDG_DATA_HOME/enclavekit).")
@click.pass_context
def group(ctx: click.Context, data_dir: str | None) -> None:
    """The emulated provisioning PKI (trust root, PCK certificates)."""
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


@group.command("root")
@click.option("--vm", "vm_name", required=True, metavar="NAME",
              help="A VM whose PKI (that of its data directory) to export.")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE.pem",
              help="Where to write the PEM certificate ('-': standard output).")
@click.pass_context
def root(ctx: click.Context, vm_name: str, output: str) -> None:
    """Export the emulated SGX Root CA that VM NAME's PCK certificate chains to.

    Give it to a verifier as its trust root (``quote verify --trust-root``); it is an
    enclavekit emulation root, never Intel's, so only verifiers told to trust it accept
    the VM's quotes.
    """
    store = _store(ctx)
    if not store.path(vm_name).exists():
        raise VMNotFound(f"no VM named {vm_name!r} in {store.root}; create it with "
                         f"'enclavekit vm create {vm_name}'")
    cert = Provisioning.open(store.root).root_certificate
    pem = cert.public_bytes(serialization.Encoding.PEM)
    if output == "-":
        click.echo(pem.decode(), nl=False)
        return
    atomic_write(output, pem, mode=0o644)
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    click.echo(f"wrote the emulated SGX Root CA of VM {vm_name} to {output} "
               f"(SHA-256 of DER {digest})", err=True)


def register(main: click.Group) -> None:
    """Add the ``pki`` group to the top-level command."""
    main.add_command(group)
