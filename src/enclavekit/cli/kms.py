"""``enclavekit kms``: the Key-Vault-compatible key-release service and its state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.group(name="kms")
def group() -> None:
    """Key release to attested enclaves (Azure Key Vault SKR-compatible)."""


def _dir(data_dir: str | None) -> Path:
    from ..vm.datadir import data_dir as default_dir

    return Path(data_dir) if data_dir else default_dir() / "kms"


def _existing(data_dir: str | None) -> Path:
    root = _dir(data_dir)
    if not (root / "master.key").is_file():
        raise click.ClickException(f"no key-release service state in {root} (start "
                                   "'enclavekit kms serve' with this --data-dir first)")
    return root


_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                         help="Keys, master key, TLS certificate and release log "
                              "(default: <enclavekit data dir>/kms).")


@group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8443, show_default=True, help="Port (0: a free one).")
@_DATA_DIR
@click.option("--trust-authority", "authorities", multiple=True, metavar="URL",
              help="An attestation service whose tokens are trusted (its keys are fetched from "
                   "URL/certs). Repeat for several. Default: the attestation service running "
                   "from the enclavekit data dir.")
@click.option("--allow-unpinned-debug", is_flag=True,
              help="Accept release policies that do not require x-ms-sgx-is-debuggable == "
                   "false (for non-SGX policies); a warning is printed for each.")
def serve(host: str, port: int, data_dir: str | None, authorities: tuple[str, ...],
          allow_unpinned_debug: bool) -> None:
    """Run the key-release service over HTTPS until interrupted.

    Prints the service URL and the self-signed certificate clients must trust
    (azure-keyvault-keys: connection_verify=PATH, verify_challenge_resource=False).
    """
    from ..kms.serve import build_service, run
    from ..kms.tokens import TrustedAuthority
    from ..vm.datadir import data_dir as default_dir
    from ..vm.endpoints import local_authority

    home = default_dir()
    trusted: list[str | TrustedAuthority] = list(authorities)
    if not authorities:
        local = local_authority(home)
        trusted = [TrustedAuthority(local.issuer, jwks_url=f"{local.url}/certs")
                   if local.issuer else local.url]
        click.echo(f"no --trust-authority: trusting the local attestation service at "
                   f"{local.url} (data dir {home})", err=True)
    service = build_service(_dir(data_dir), trusted, require_debug_pin=not allow_unpinned_debug)
    names = ", ".join(a.url if isinstance(a, TrustedAuthority) else a for a in trusted)

    def ready(url: str) -> None:
        click.echo(f"key-release service at {url}")
        click.echo(f"certificate {service.cert_path}")
        click.echo(f"trusted authorities: {names}; release log {service.audit.path}", err=True)

    run(service, host, port, on_ready=ready, record_in=home)


@group.group("keys")
def keys_group() -> None:
    """Inspect the keys in a service's data directory."""


@keys_group.command("list")
@_DATA_DIR
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_list(data_dir: str | None, as_json: bool) -> None:
    """List keys: name, latest version, type, exportable, enabled, versions (never material)."""
    from ..errors import EnclaveKitError
    from ..kms.store import KeyStore

    store = KeyStore(_existing(data_dir))
    rows: list[dict[str, Any]] = []
    for name in store.names():
        try:
            versions = store.versions(name)
        except EnclaveKitError as exc:
            rows.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        key = versions[-1]
        rows.append({"name": name, "version": key.version, "kty": key.kty,
                     "exportable": key.exportable, "enabled": key.enabled,
                     "versions": len(versions),
                     "immutable_policy": bool(key.release_policy and
                                              key.release_policy.immutable)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        if "error" in row:
            click.echo(f"{row['name']}  UNREADABLE  {row['error']}")
        else:
            click.echo(f"{row['name']}  {row['version']}  {row['kty']}  "
                       f"{'exportable' if row['exportable'] else 'not-exportable'}  "
                       f"{'enabled' if row['enabled'] else 'disabled'}  "
                       f"{row['versions']} version(s)")


@group.command("log")
@_DATA_DIR
@click.option("--json", "as_json", is_flag=True, help="Print the JSON lines as stored.")
@click.option("--tail", type=click.IntRange(min=1), default=None, help="Only the last N.")
def log(data_dir: str | None, as_json: bool, tail: int | None) -> None:
    """Show the release log: who asked for which key, with which enclave, and the decision."""
    from ..kms.audit import AuditLog

    records = list(AuditLog(_existing(data_dir) / "release-log.jsonl").records())
    if tail is not None:
        records = records[-tail:]
    for r in records:
        if as_json:
            click.echo(json.dumps(r, separators=(",", ":")))
            continue
        enclave = r.get("enclave") or {}
        who = r.get("client", "?") + (f" ({r['subject']})" if r.get("subject") else "")
        ident = (f"mrsigner={str(enclave.get('x-ms-sgx-mrsigner', '-'))[:16]}… "
                 f"svn={enclave.get('x-ms-sgx-svn', '-')} "
                 f"debug={enclave.get('x-ms-sgx-is-debuggable', '-')}")
        click.echo(f"{r.get('time')}  {r.get('decision', '?'):7}  {r.get('key')}"
                   f"/{r.get('version') or 'latest'}  {who}  {ident}  {r.get('reason')}")


def register(main: click.Group) -> None:
    """Add the ``kms`` group to the top-level command."""
    main.add_command(group)
