"""``enclavekit pccs``: the collateral service for emulated platforms (Intel PCS v4 paths)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .._fs import atomic_write
from ..attest.pccs.app import create_app
from ..attest.pccs.operator import Operator
from ..attest.pccs.publish import Publisher
from ..attest.pccs.serve import DEFAULT_HOST, run
from ..attest.pccs.state import format_time
from ..errors import DeviceUnavailable
from ..host.vm import VM
from ..vm.datadir import data_dir


def _dir(ctx: click.Context) -> Path:
    return data_dir(ctx.obj.get("data_dir") if ctx.obj else None)


def _hex16(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not hex") from None
    if len(raw) != 16:
        raise click.BadParameter(f"CPUSVN is 16 bytes (32 hex digits), found {len(raw)}")
    return raw


@click.group(name="pccs")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where VMs and the PKI live (default: $ENCLAVEKIT_HOME or "
                   "$XDG_DATA_HOME/enclavekit).")
@click.pass_context
def group(ctx: click.Context, data_dir: str | None) -> None:
    """The collateral service for emulated platforms (Intel PCS v4 paths)."""
    ctx.ensure_object(dict)
    ctx.obj["data_dir"] = data_dir


@group.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=8081, show_default=True,
              help="TCP port; 0 picks a free one (the URL is printed).")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind.")
@click.option("--window-days", type=click.IntRange(1, 3650), default=None,
              help="issueDate -> nextUpdate of what is published from now on (kept in the "
                   "state; default 30, or what was set before).")
@click.pass_context
def serve(ctx: click.Context, port: int, host: str, window_days: int | None) -> None:
    """Serve TCB info, QE identity and CRLs at /sgx/certification/v4/... until interrupted."""
    publisher = Publisher.open(_dir(ctx))
    if window_days is not None:
        publisher.update(lambda s: s.with_window(timedelta(days=window_days)))
    publisher.current()  # sign (or load) before the first request; fails early on a bad PKI

    def ready(url: str) -> None:
        click.echo(f"collateral service at {url} (PCS v4 paths under /sgx/certification/v4; "
                   "Ctrl-C stops it)")

    run(create_app(publisher), host, port, on_ready=ready, record_in=_dir(ctx))


@group.command("collateral")
@click.option("--vm", "vm", required=True, help="The VM whose quotes the collateral is for.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Where to write the one-object collateral JSON.")
@click.pass_context
def collateral(ctx: click.Context, vm: str, output: str) -> None:
    """Export the collateral for VM's quotes (PCK CRL, root CA CRL, TCB info, QE identity)."""
    doc = Operator(_dir(ctx)).collateral(vm)
    atomic_write(output, json.dumps(doc, indent=2).encode() + b"\n", mode=0o644)
    click.echo(f"wrote collateral for VM {vm} to {os.fspath(output)}")


@group.command("recover")
@click.option("--vm", "vm", required=True, help="The VM whose TCB is raised.")
@click.option("--pcesvn", type=click.IntRange(0, 65535), default=None, help="The new PCESVN.")
@click.option("--cpusvn", default=None, help="The new CPUSVN, 32 hex digits (16 components).")
@click.option("--advisory", required=True,
              help="Advisory id the superseded levels get (e.g. ENCLAVEKIT-SA-0001).")
@click.pass_context
def recover(ctx: click.Context, vm: str, pcesvn: int | None, cpusvn: str | None,
            advisory: str) -> None:
    """TCB recovery: raise VM's CPUSVN and/or PCESVN, re-issue its PCK certificate, publish the
    new level UpToDate and the levels below it OutOfDate."""
    if pcesvn is None and cpusvn is None:
        raise click.UsageError("give --cpusvn and/or --pcesvn (the raised TCB)")
    done = Operator(_dir(ctx)).recover(vm, advisory=advisory, cpusvn=_hex16(cpusvn),
                                       pcesvn=pcesvn)
    click.echo(f"VM {vm}: CPUSVN {done.old_cpusvn.hex()} -> {done.new_cpusvn.hex()}, "
               f"PCESVN {done.old_pcesvn} -> {done.new_pcesvn}; new PCK certificate serial "
               f"{done.pck_serial:x}; tcbEvaluationDataNumber {done.tcb_evaluation_data_number}")
    if _device_running(ctx, vm):
        click.echo(f"VM {vm}'s device still runs at the old TCB and cannot quote until its "
                   f"next power cycle: enclavekit vm restart {vm}")
    else:
        click.echo(f"the next device started for VM {vm} quotes at the new TCB")


def _device_running(ctx: click.Context, vm: str) -> bool:
    try:
        VM.open(vm, _dir(ctx)).close()
    except DeviceUnavailable:
        return False
    return True


@group.command("revoke")
@click.option("--vm", "vm", required=True, help="The VM whose PCK certificates are revoked.")
@click.pass_context
def revoke(ctx: click.Context, vm: str) -> None:
    """Revoke VM's PCK certificate(s): their serials go into the PCK CRL."""
    serials = Operator(_dir(ctx)).revoke(vm)
    if not serials:
        click.echo(f"VM {vm}: its PCK certificates were already revoked")
        return
    click.echo(f"VM {vm}: revoked PCK serial(s) {', '.join(f'{s:x}' for s in serials)}")


@group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The published window, tcbEvaluationDataNumber, TCB levels and revoked PCK serials."""
    st = Operator(_dir(ctx)).status()
    state, pub = st.state, st.publication
    levels = [{"fmspc": fmspc, "components": list(lv.components), "pcesvn": lv.pcesvn,
               "tcbDate": lv.tcb_date, "tcbStatus": lv.status,
               "advisoryIDs": list(lv.advisory_ids)}
              for fmspc in state.tcb_levels for lv in state.published_levels(fmspc)]
    doc = {
        "issueDate": format_time(pub.issue_date), "nextUpdate": format_time(pub.next_update),
        "tcbEvaluationDataNumber": state.tcb_evaluation_data_number,
        "crlNumber": pub.crl_number, "tcbLevels": levels,
        "qeLevels": [{"isvsvn": q.isvsvn, "tcbStatus": q.status} for q in state.qe_levels],
        "revoked": [{"serial": f"{r.serial:x}", "vm": r.vm, "date": r.date}
                    for r in state.revoked],
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"published {doc['issueDate']} .. {doc['nextUpdate']}, "
               f"tcbEvaluationDataNumber {doc['tcbEvaluationDataNumber']}, "
               f"CRL number {doc['crlNumber']}")
    table = Table("FMSPC", "components", "PCESVN", "tcbDate", "status", "advisories")
    for fmspc in state.tcb_levels:
        for lv in state.published_levels(fmspc):
            table.add_row(fmspc, " ".join(str(c) for c in lv.components), str(lv.pcesvn),
                          lv.tcb_date, lv.status, ", ".join(lv.advisory_ids) or "-")
    Console(width=200).print(table)
    if state.revoked:
        rev = Table("revoked PCK serial", "VM", "date")
        for r in state.revoked:
            rev.add_row(f"{r.serial:x}", r.vm, r.date)
        Console(width=200).print(rev)
    else:
        click.echo("no revoked PCK certificates")


def register(main: click.Group) -> None:
    """Add the ``pccs`` group to the top-level command."""
    main.add_command(group)
