"""`enclavekit new / build / sign / info`: scaffold, lay out, sign and inspect enclave apps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..host.image import EnclaveFile
from ..host.layout import build_layout
from ..host.manifest import Manifest
from ..host.scaffold import scaffold
from ..sgx.consts import PAGE_SIZE, AttributeFlags
from ..sgx.signing import SigningKey
from ..vm.sku import SKU

_PROGRESS_BYTES = 16 << 20


@click.command("new")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Enclave name (default: the directory's name).")
def new(directory: Path, name: str | None) -> None:
    """Scaffold an enclave app in DIRECTORY: enclave.toml and an example app.py with ecalls."""
    scaffold(directory, name)
    click.echo(f"created enclave app in {directory}; next: enclavekit build {directory}")


@click.command("build")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Enclave file to write (default: DIRECTORY/NAME.enclave).")
@click.option("--sgxs", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the canonical SGXS stream here.")
def build(directory: Path, output: Path | None, sgxs: Path | None) -> None:
    """Lay out, measure and write the enclave image of the app in DIRECTORY."""
    manifest = Manifest.load(directory)
    total = manifest.heap_size + manifest.threads * manifest.stack_size
    if total > _PROGRESS_BYTES:
        with Progress(transient=True) as bar:
            task = bar.add_task("measuring", total=1)
            layout = build_layout(manifest, progress=lambda done, n: bar.update(
                task, completed=done, total=n))
    else:
        layout = build_layout(manifest)
    image = EnclaveFile.from_layout(layout, manifest.to_dict())
    output = output or directory / f"{manifest.name}.enclave"
    image.save(output)
    if sgxs is not None:
        sgxs.write_bytes(image.sgxs)
    click.echo(f"wrote {output}")
    click.echo(f"MRENCLAVE {layout.mrenclave.hex()}")
    click.echo(f"EPC needed {layout.epc_pages} pages ({_mib(layout.epc_pages)} MiB)")


@click.command("sign")
@click.argument("image_path", metavar="IMAGE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False),
              help="RSA-3072 exponent-3 private key (PEM).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Signed file to write (default: overwrite IMAGE).")
def sign_cmd(image_path: Path, key_path: str, output: Path | None) -> None:
    """Attach a SIGSTRUCT signed with KEY to the enclave file IMAGE."""
    image = EnclaveFile.load(image_path)
    signed = image.sign(SigningKey.load(key_path))
    signed.save(output or image_path)
    click.echo(f"MRENCLAVE {signed.mrenclave.hex()}")
    click.echo(f"MRSIGNER  {(signed.mrsigner or b'').hex()}")


def _mib(pages: int) -> str:
    return f"{pages * PAGE_SIZE / (1 << 20):.2f}"


def describe(image: EnclaveFile) -> dict[str, Any]:
    """What ``info`` shows about an enclave file, as JSON values."""
    manifest = image.manifest
    sig = image.sigstruct
    if sig is not None:
        flags, xfrm = sig.attributes.flags, sig.attributes.xfrm
        debug = bool(flags & AttributeFlags.DEBUG)
        prodid, svn = sig.isvprodid, sig.isvsvn
    else:
        flags, xfrm, debug = None, None, bool(manifest["debug"])
        prodid, svn = manifest["product_id"], manifest["security_version"]
    epc_bytes = image.epc_pages * PAGE_SIZE
    return {
        "name": image.name,
        "mrenclave": image.mrenclave.hex(),
        "mrsigner": image.mrsigner.hex() if image.mrsigner is not None else None,
        "signed": image.signed,
        "attributes": {"flags": flags, "xfrm": xfrm, "debug": debug},
        "isvprodid": prodid,
        "isvsvn": svn,
        "threads": manifest["threads"],
        "epc_pages": image.epc_pages,
        "epc_mib": round(epc_bytes / (1 << 20), 2),
        "regions": [r.to_dict() for r in image.regions],
        "fits": [s.name for s in SKU.all() if s.fits(epc_bytes)],
    }


@click.command("info")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(path: Path, as_json: bool) -> None:
    """Show an enclave file's identity, attributes, EPC needs and the VM sizes it fits."""
    d = describe(EnclaveFile.load(path))
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    attrs = d["attributes"]
    flags = "(set when signed)" if attrs["flags"] is None else f"{attrs['flags']:#x}"
    click.echo(f"name       {d['name']}")
    click.echo(f"MRENCLAVE  {d['mrenclave']}")
    click.echo(f"MRSIGNER   {d['mrsigner'] or 'unsigned'}")
    click.echo(f"attributes flags {flags}, debug {'yes' if attrs['debug'] else 'no'}")
    click.echo(f"ISVPRODID  {d['isvprodid']}  ISVSVN {d['isvsvn']}  threads {d['threads']}")
    click.echo(f"EPC needed {d['epc_pages']} pages ({d['epc_mib']} MiB)")
    table = Table("region", "offset", "pages", "flags", "measured")
    for r in d["regions"]:
        table.add_row(r["name"], f"{r['offset']:#x}", str(r["pages"]), f"{r['flags']:#x}",
                      "yes" if r["measured"] else "no")
    Console().print(table)
    click.echo(f"fits       {', '.join(d['fits']) or 'no VM size without EPC paging'}")


def register(group: click.Group) -> None:
    """Add the enclave app commands to the ``enclavekit`` group."""
    for command in (new, build, sign_cmd, info):
        group.add_command(command)
