"""`enclavekit vm ...`: the VM size catalogue and the VMs in a data directory."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..errors import DeviceUnavailable
from ..host.vm import VM, VMStatus
from ..vm.datadir import data_dir
from ..vm.devmode import label
from ..vm.platform import PlatformStore
from ..vm.sku import DEFAULT_SIZE, SKU


def _store(ctx: click.Context) -> PlatformStore:
    return PlatformStore(data_dir(ctx.obj.get("data_dir") if ctx.obj else None))


def _epc(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib} MiB"


@click.group("vm")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where VMs live (default: $ENCLAVEKIT_HOME or $XDG_DATA_HOME/enclavekit).")
@click.pass_context
def vm_group(ctx: click.Context, data_dir: str | None) -> None:
    """Create and inspect confidential VMs (SGX platforms of a given Azure size)."""
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


@vm_group.command("sizes")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def sizes(as_json: bool) -> None:
    """List the VM sizes: name, vCPUs, memory and EPC."""
    if as_json:
        click.echo(json.dumps([
            {"name": s.name, "family": s.family, "vcpus": s.vcpus,
             "memory_gib": s.memory_gib, "epc_mib": s.epc_mib} for s in SKU.all()
        ], indent=2))
        return
    table = Table("size", "family", "vCPUs", "memory", "EPC")
    for s in SKU.all():
        table.add_row(s.name, s.family, str(s.vcpus), f"{s.memory_gib} GiB", _epc(s.epc_mib))
    Console().print(table)


@vm_group.command("create")
@click.argument("name")
@click.option("--size", default=DEFAULT_SIZE, show_default=True, help="A size from 'vm sizes'.")
@click.pass_context
def create(ctx: click.Context, name: str, size: str) -> None:
    """Create VM NAME: a new platform with its own fused secrets and identity."""
    identity = _store(ctx).create(name, size)
    sku = identity.sku
    click.echo(f"created VM {identity.name}: {sku.name}, {sku.vcpus} vCPU, "
               f"{sku.memory_gib} GiB, EPC {_epc(sku.epc_mib)}")


@vm_group.command("list")
@click.pass_context
def list_vms(ctx: click.Context) -> None:
    """List the VMs in the data directory."""
    store = _store(ctx)
    names = store.names()
    if not names:
        click.echo(f"no VMs in {store.root}; create one with 'enclavekit vm create NAME'")
        return
    table = Table("name", "size", "EPC", "created", "kind")
    for name in names:
        ident = store.load(name)
        table.add_row(ident.name, ident.size, _epc(ident.sku.epc_mib), ident.created,
                      "development" if ident.development else "platform")
    Console().print(table)


@vm_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show VM NAME: size, EPC total/used/free, platform identity (never its secrets), whether
    it is a development platform and, when its device runs, each enclave with MRENCLAVE, pages
    used and state."""
    ident = _store(ctx).load(name)
    sku = ident.sku
    status = _status(ctx, name)
    doc: dict[str, object] = {
        "name": ident.name, "size": sku.name, "vcpus": sku.vcpus, "memory_gib": sku.memory_gib,
        "epc_total_pages": sku.epc_pages, "epc_total_mib": sku.epc_mib,
        "running": status is not None,
        "epc_used_pages": status.epc_used_pages if status else 0,
        "epc_free_pages": status.epc_free_pages if status else sku.epc_pages,
        "cpusvn": ident.cpusvn.hex(), "pcesvn": ident.pcesvn, "ppid": ident.ppid.hex(),
        "fmspc": ident.fmspc.hex(), "pceid": ident.pceid.hex(), "created": ident.created,
        "development": ident.development, "platform": label(ident.development),
    }
    enclaves = [{"enclave_id": e.enclave_id, "name": e.name, "mrenclave": e.mrenclave.hex(),
                 "mrsigner": e.mrsigner.hex(), "debug": e.debug, "pages": e.pages,
                 "pages_resident": e.pages_resident, "state": e.state, "pid": e.pid}
                for e in (status.enclaves if status else [])]
    if as_json:
        click.echo(json.dumps({**doc, "enclaves": enclaves}, indent=2))
        return
    for key, value in doc.items():
        click.echo(f"{key:<16} {value}")
    if enclaves:
        table = Table("id", "name", "MRENCLAVE", "pages", "resident", "state")
        for e in enclaves:
            table.add_row(str(e["enclave_id"]), str(e["name"]), str(e["mrenclave"]),
                          str(e["pages"]), str(e["pages_resident"]), str(e["state"]))
        Console(width=200).print(table)


def _status(ctx: click.Context, name: str) -> VMStatus | None:
    try:
        with VM.open(name, _store(ctx).root) as vm:
            return vm.status()
    except DeviceUnavailable:
        return None


@vm_group.command("start")
@click.argument("name")
@click.option("--foreground", is_flag=True, help="Serve in this process until stopped.")
@click.option("--allow-signer", multiple=True, metavar="HEX",
              help="Launch allow-list: only this MRSIGNER may EINIT (repeatable).")
@click.option("--user", "user", default=None, metavar="NAME",
              help="Run the device as this unprivileged user (when started by root): the "
                   "VM's secrets become readable by that user only.")
@click.pass_context
def start(ctx: click.Context, name: str, foreground: bool, allow_signer: tuple[str, ...],
          user: str | None) -> None:
    """Start VM NAME's device service (in the background unless --foreground)."""
    store = _store(ctx)
    store.load(name)
    extra = [a for h in allow_signer for a in ("--allow-signer", h)]
    if user:
        from ..vm.users import resolve

        resolve(user)  # refuse before starting anything
        extra += ["--user", user]
    if foreground:
        from ..vm.device import main as device_main

        sock = str(store.path(name).parent / "device.sock")
        raise SystemExit(device_main(["--data-dir", str(store.root), "--vm", name,
                                      "--socket", sock, "--publish", *extra]))
    vm = VM.start(name, store.root, extra_args=extra)
    click.echo(f"started VM {name}: device pid {vm.pid}, socket {vm.socket_path}")
    vm.close()


@vm_group.command("stop")
@click.argument("name")
@click.pass_context
def stop(ctx: click.Context, name: str) -> None:
    """Stop VM NAME's device service (its enclaves are unloaded)."""
    vm = VM.open(name, _store(ctx).root)
    vm.stop()
    click.echo(f"stopped VM {name}")


@vm_group.command("restart")
@click.argument("name")
@click.pass_context
def restart(ctx: click.Context, name: str) -> None:
    """Power-cycle VM NAME: running enclaves are lost (load them again), new per-boot
    keys; sealed data still unseals. A VM whose device is not running is started."""
    store = _store(ctx)
    try:
        vm = VM.open(name, store.root)
    except DeviceUnavailable:
        vm = VM.start(name, store.root)
        click.echo(f"started VM {name}: device pid {vm.pid} (it was not running)")
        vm.close()
        return
    with vm:
        lost = vm.restart()
    click.echo(f"restarted VM {name}: {lost} running enclave(s) lost power; load them again")


@vm_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete VM NAME and its fused secrets (data sealed on it can never be unsealed again)."""
    store = _store(ctx)
    store.load(name)
    if not yes:
        click.confirm(f"delete VM {name!r} and its secrets for good?", abort=True)
    store.delete(name)
    click.echo(f"deleted VM {name}")


def register(group: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    group.add_command(vm_group)
