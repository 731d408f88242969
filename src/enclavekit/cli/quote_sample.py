"""``enclavekit quote sample``: a built-in sample enclave on a VM produces a quote.

For trying the verifier and other DCAP tools: the sample enclave (built on the fly, signed
with a sample key kept in ``<data dir>/pki/sample-signer-key.pem``) calls
:func:`enclavekit.enclave.get_quote` over the given REPORTDATA on the VM's device — the
running one if ``enclavekit vm start NAME`` started it, else one started for the command.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from .._fs import atomic_write
from ..errors import DeviceUnavailable, VMNotFound
from ..host.build import build
from ..host.vm import VM
from ..sgx.signing import SigningKey
from ..vm.datadir import data_dir
from ..vm.platform import PlatformStore
from ..vm.provisioning import Provisioning
from .quote import group

SAMPLE_TOML = """\
name = "enclavekit-quote-sample"
entry = "sample.py"
debug = false
product_id = 0
security_version = 0
heap_size = "256K"
stack_size = "64K"
threads = 1
"""
SAMPLE_APP = '''\
"""enclavekit's quote sample: quotes itself with the caller's REPORTDATA."""

from enclavekit.enclave import ecall, get_quote


@ecall
def quote(report_data: bytes, version: int) -> bytes:
    return get_quote(report_data, version=version)
'''
SAMPLE_KEY = "sample-signer-key.pem"


def _sample_key(prov: Provisioning) -> SigningKey:
    path = prov.dir / SAMPLE_KEY
    if not path.exists():
        atomic_write(path, SigningKey.generate().to_pem(), mode=0o600)
    return SigningKey.load(path)


def sample_quote(store: PlatformStore, name: str, report_data: bytes, version: int = 3,
                 ) -> bytes:
    """A quote of the sample enclave on VM ``name`` with ``report_data`` (≤ 64 bytes)."""
    if not store.path(name).exists():
        raise VMNotFound(f"no VM named {name!r} in {store.root}; create it with "
                         f"'enclavekit vm create {name}'")
    key = _sample_key(Provisioning.open(store.root))
    with tempfile.TemporaryDirectory(prefix="enclavekit-sample-") as tmp:
        (Path(tmp) / "enclave.toml").write_text(SAMPLE_TOML)
        (Path(tmp) / "sample.py").write_text(SAMPLE_APP)
        image = build(tmp).sign(key)
    started = False
    try:
        vm = VM.open(name, store.root)
    except DeviceUnavailable:
        vm = VM.start(name, store.root)
        started = True
    try:
        with vm.load(image) as enclave:
            return bytes(enclave.ecalls.quote(report_data, version))
    finally:
        vm.stop() if started else vm.close()


@group.command("sample")
@click.option("--vm", "vm_name", required=True, metavar="NAME", help="The VM to quote on.")
@click.option("--report-data", "report_data", default=None, metavar="HEX",
              help="REPORTDATA, up to 64 bytes as hex (default: a fresh random 32-byte nonce).")
@click.option("--version", "version", type=click.Choice(["3", "4"]), default="3",
              show_default=True, help="Quote format version.")
@click.option("--data-dir", "data_dir_opt", type=click.Path(file_okay=False), default=None,
              help="Where VMs live (default: $ENCLAVEKIT_HOME or $XDG_DATA_HOME/enclavekit).")
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to write the quote.")
def sample(vm_name: str, report_data: str | None, version: str, data_dir_opt: str | None,
           output: str) -> None:
    """Have a built-in sample enclave on VM NAME produce a quote (for trying verifiers)."""
    if report_data is None:
        data = os.urandom(32)
    else:
        try:
            data = bytes.fromhex(report_data)
        except ValueError:
            raise click.BadParameter("not hexadecimal", param_hint="--report-data") from None
        if len(data) > 64:
            raise click.BadParameter(f"{len(data)} bytes; at most 64",
                                     param_hint="--report-data")
    store = PlatformStore(data_dir(data_dir_opt))
    quote = sample_quote(store, vm_name, data, int(version))
    atomic_write(output, quote, mode=0o644)
    click.echo(f"wrote a v{version} quote ({len(quote)} bytes) of the sample enclave on VM "
               f"{vm_name} to {output}; REPORTDATA {data.hex()}", err=True)


def register(main: click.Group) -> None:
    """The ``sample`` command joins the ``quote`` group (registered by ``cli.quote``)."""
    del main
