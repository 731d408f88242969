"""``enclavekit attest policy check|eval``, ``attest serve``, ``attest rotate-key`` and
``attest token verify``: attestation policies offline, the service, and its tokens."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..attest.policy import Claim, evaluate, parse_policy, policy_hash
from ..errors import PolicyError


@click.group(name="attest")
def group() -> None:
    """Attestation policies and the attestation service."""


@group.group(name="policy")
def policy_group() -> None:
    """Check and evaluate attestation policies (MAA policy language 1.0-1.2) offline."""


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: policy text is not UTF-8") from None


@policy_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Parse the policy in FILE; print its version, rule counts and hash, or where it is wrong."""
    policy = parse_policy(_read(file))
    click.echo(f"{file}: valid policy version {policy.version}: "
               f"{len(policy.configuration)} configuration, {len(policy.authorization)} "
               f"authorization, {len(policy.issuance)} issuance rule(s); "
               f"x-ms-policy-hash {policy_hash(policy.text)}")


def _claims(raw: str) -> list[Claim]:
    text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
    try:
        doc: Any = json.loads(text)
    except ValueError as exc:
        raise PolicyError(f"--claims is not JSON: {exc}") from None
    pairs: list[tuple[str, Any]]
    if isinstance(doc, dict):
        pairs = list(doc.items())
    elif isinstance(doc, list) and all(isinstance(c, dict) and "type" in c and "value" in c
                                       for c in doc):
        pairs = [(c["type"], c["value"]) for c in doc]
    else:
        raise PolicyError("--claims must be a JSON object {type: value} or a list of "
                          '{"type": ..., "value": ...}')
    claims = []
    for ctype, value in pairs:
        if not isinstance(value, bool | int | str):
            raise PolicyError(f"claim {ctype!r}: value must be a string, integer or Boolean")
        claims.append(Claim(str(ctype), value))
    return claims


@policy_group.command("eval")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--claims", "claims_json", required=True,
              help='Incoming claims: JSON {"type": value, ...} or @FILE.')
def eval_(file: str, claims_json: str) -> None:
    """Evaluate the policy in FILE over --claims; print the outcome and the issued claims.

    Exits 0 when authorization permits, 1 when it does not.
    """
    policy = parse_policy(_read(file))
    result = evaluate(policy, _claims(claims_json))
    permitted = result.permitted and not result.denied
    click.echo(json.dumps({
        "permitted": permitted, "deny_fired": result.denied,
        "issued": result.issued_claims(),
        "properties": {c.type: c.value for c in result.properties},
    }, indent=2))
    if not permitted:
        raise SystemExit(1)


# --- the attestation service ------------------------------------------------------------------


def _service_dir(data_dir: str | None) -> Path:
    from ..vm.datadir import data_dir as default_dir

    return Path(data_dir) if data_dir else default_dir() / "attest"


def _certs(paths: tuple[str, ...], what: str) -> list[Any]:
    from ..dcap.roots import load_pem_chain

    certs = []
    for path in paths:
        certs.extend(load_pem_chain(Path(path).read_bytes(), f"{what} {path}"))
    return certs


@group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port (0: a free one).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Serve HTTPS with this certificate (PEM) ...")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None,
              help="... and this private key (PEM).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Service state: signing keys, policies, management certificates "
                   "(default: <enclavekit data dir>/attest).")
@click.option("--pccs", "pccs_url", default=None,
              help="Fetch collateral from this PCS v4-compatible service (default, with no "
                   "--collateral either: the collateral service running from the enclavekit "
                   "data dir, whose emulation root is then trusted).")
@click.option("--collateral", "collateral_file", type=click.Path(dir_okay=False, exists=True),
              default=None, help="Use this collateral file (dcap-qvl JSON layout) for every quote.")
@click.option("--trust-root", "trust_roots", multiple=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Also trust this root CA (PEM), e.g. an enclavekit emulation root from "
                   "'enclavekit pki root'. Intel's production root is always trusted.")
@click.option("--isolated", is_flag=True,
              help="Isolated mode: policy changes must be signed by a management certificate.")
@click.option("--management-cert", "management_certs", multiple=True,
              type=click.Path(dir_okay=False, exists=True),
              help="A policy-management certificate (PEM); required with --isolated.")
@click.option("--issuer", default=None,
              help="Base URL for iss/jku (default: the URL each request was sent to).")
@click.option("--token-lifetime", type=click.IntRange(min=60), default=8 * 3600,
              show_default=True, help="Attestation token lifetime in seconds.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes serving the socket (they share the state directory).")
def serve(host: str, port: int, tls_cert: str | None, tls_key: str | None,
          data_dir: str | None, pccs_url: str | None, collateral_file: str | None,
          trust_roots: tuple[str, ...], isolated: bool, management_certs: tuple[str, ...],
          issuer: str | None, token_lifetime: int, workers: int) -> None:
    """Run the Azure-Attestation-compatible attestation service until interrupted.

    Quotes are verified with enclavekit's DCAP verifier against Intel's root (plus any
    --trust-root) with collateral from --pccs or --collateral; with neither, from the
    collateral service running from the enclavekit data dir, trusting that data dir's
    emulation root too. Prints the service URL.
    """
    from ..attest.maa import AttestationService, ServiceConfig, create_app
    from ..attest.maa.dcap import DcapAppraiser, FileCollateral, PccsCollateral
    from ..attest.maa.server import run
    from ..dcap.roots import intel_sgx_root_ca
    from ..vm.datadir import data_dir as default_dir
    from ..vm.endpoints import local_collateral

    if pccs_url is not None and collateral_file is not None:
        raise click.UsageError("give at most one of --pccs URL or --collateral FILE")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if management_certs and not isolated:
        raise click.UsageError("--management-cert is only used with --isolated")
    home = default_dir()
    roots = [intel_sgx_root_ca(), *_certs(trust_roots, "--trust-root")]
    source: PccsCollateral | FileCollateral
    if pccs_url is None and collateral_file is None:
        local = local_collateral(home)
        click.echo(f"no --pccs or --collateral: collateral from the local collateral service "
                   f"at {local.url}, trusting the emulation root of {home}", err=True)
        source, roots = PccsCollateral(local.url), [*roots, local.root]
    elif pccs_url is not None:
        source = PccsCollateral(pccs_url)
    else:
        source = FileCollateral(str(collateral_file))
    config = ServiceConfig(_service_dir(data_dir), issuer=issuer, token_lifetime=token_lifetime,
                           mode="isolated" if isolated else None,
                           management_certs=tuple(_certs(management_certs,
                                                         "--management-cert")))
    service = AttestationService(config, DcapAppraiser(source, roots))

    def ready(url: str) -> None:
        click.echo(f"attestation service ({service.state.mode} mode) at {url}", err=False)
        click.echo(f"signing key kid {service.state.signing_key.kid}; state in "
                   f"{config.data_dir}", err=True)

    run(create_app(service), host, port, tls_cert=tls_cert, tls_key=tls_key, on_ready=ready,
        workers=workers, record_in=home, issuer=issuer)


@group.command("rotate-key")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Service state directory (default: <enclavekit data dir>/attest).")
def rotate_key(data_dir: str | None) -> None:
    """Make a new token-signing key; a running service signs with it from its next token, and
    the old key stays in /certs until every token it signed has expired."""
    from ..attest.maa import ServiceState
    from ..attest.maa.tokens import ATTESTATION_TOKEN_LIFETIME

    state = ServiceState.open(_service_dir(data_dir))
    old = state.signing_key.kid
    new = state.rotate(ATTESTATION_TOKEN_LIFETIME).kid
    click.echo(f"signing key {new} (was {old}, kept in /certs for "
               f"{ATTESTATION_TOKEN_LIFETIME // 3600} h)")


@group.group(name="token")
def token_group() -> None:
    """Verify attestation tokens from enclavekit's service or Azure Attestation."""


def _token_text(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value == "-":
        return sys.stdin.read().strip()
    if os.path.isfile(value):
        return Path(value).read_text().strip()
    return value.strip()


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected Unix seconds or an ISO 8601 time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _jwks(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    from ..attest import jwks_source

    return jwks_source(value)  # reads nothing yet: the token's form is checked first


def _utc(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return repr(value)


@token_group.command("verify")
@click.argument("token", callback=_token_text)
@click.option("--jwks", "jwks", required=True, metavar="URL|FILE", callback=_jwks,
              help="The issuer's signing keys: its JWKS URL (e.g. <issuer>/certs) or a file.")
@click.option("--issuer", default=None, help="Require this exact iss.")
@click.option("--at", "at", default=None, callback=_when, metavar="TIME",
              help="Check exp/nbf at this time (Unix seconds or ISO 8601; default now).")
@click.option("--json", "as_json", is_flag=True, help="Print the claims as JSON.")
def verify(token: str, jwks: Any, issuer: str | None, at: float | None, as_json: bool) -> None:
    """Verify TOKEN (the JWT, a file holding it, or - for stdin) with the keys at --jwks and
    print its claims."""
    from ..attest import verify_token

    claims = verify_token(token, jwks=jwks, issuer=issuer, at=at)
    if as_json:
        click.echo(json.dumps(claims, indent=2, sort_keys=True))
        return
    click.echo(f"token verifies: iss {claims.get('iss')!r}, valid {_utc(claims.get('nbf'))} "
               f"to {_utc(claims.get('exp'))}")
    for name in sorted(claims):
        click.echo(f"  {name}: {json.dumps(claims[name], sort_keys=True)}")


def register(main: click.Group) -> None:
    """Add the ``attest`` group to the top-level command."""
    main.add_command(group)
