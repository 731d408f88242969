"""``enclavekit pki``: The emulated provisioning PKI (trust root, PCK certificates)."""

from __future__ import annotations

import hashlib
import json

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .._fs import atomic_write
from ..dcap.pckext import PckExtension
from ..errors import VMNotFound
from ..vm.datadir import data_dir
from ..vm.devmode import is_development, label
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


@group.command("show")
@click.option("--vm", "vm_name", required=True, metavar="NAME", help="The VM whose PCK to show.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def show(ctx: click.Context, vm_name: str, as_json: bool) -> None:
    """Show VM NAME's PCK certificate (the TCB and identity it certifies) and its chain."""
    store = _store(ctx)
    if not store.path(vm_name).exists():
        raise VMNotFound(f"no VM named {vm_name!r} in {store.root}; create it with "
                         f"'enclavekit vm create {vm_name}'")
    prov = Provisioning.open(store.root)
    leaf = prov.pck_certificate(vm_name)
    ext = PckExtension.from_certificate(leaf)

    def sha256(cert: x509.Certificate) -> str:
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    doc = {
        "vm": vm_name, "subject": leaf.subject.rfc4514_string(),
        "issuer": leaf.issuer.rfc4514_string(), "serial": f"{leaf.serial_number:x}",
        "not_before": leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ppid": ext.ppid.hex(), "tcb_components": list(ext.tcb_components),
        "pcesvn": ext.pcesvn, "cpusvn": ext.cpusvn.hex(), "pceid": ext.pceid.hex(),
        "fmspc": ext.fmspc.hex(), "sgx_type": ext.sgx_type,
        "development": is_development(ext.fmspc), "platform": label(is_development(ext.fmspc)),
        "root_subject": prov.root_certificate.subject.rfc4514_string(),
        "root_sha256": sha256(prov.root_certificate),
        "arch_mrsigner": prov.arch_signer().mrsigner().hex(),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        shown = " ".join(str(v) for v in value) if isinstance(value, list) else value
        click.echo(f"{key:<15} {shown}")


def register(main: click.Group) -> None:
    """Add the ``pki`` group to the top-level command."""
    main.add_command(group)
