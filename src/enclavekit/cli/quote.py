"""``enclavekit quote``: decode and verify DCAP quotes (``sample`` lives in ``quote_sample``).

* ``quote show FILE [--json] [--allow-trailing]`` decodes every field of an SGX (or TDX) quote;
  an Open Enclave report's 16-byte header is detected and stripped; a file of hex text is
  accepted too.
* ``quote verify QUOTE (--collateral FILE | --pccs URL) [--at TIME] [--trust-root PEM]...
  [--crl-grace-days N] [--pck-cert PEM] [--json] [--allow-trailing]`` runs the DCAP verifier
  (``--pck-cert``: the PCK chain of a quote whose certification data is type 1-4).
* Both refuse bytes after the signature data unless ``--allow-trailing`` (one rule:
  docs/attestation.md, "Bytes after the quote"). Exit 0 only when every signature and
  chain check passes (the TCB status is printed either way); otherwise exit 1 naming the
  failed check (``--json``: one object with ``error``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from cryptography import x509

from ..dcap.certdata import certificate_view
from ..dcap.collateral import Collateral, fetch, fetch_for_quote, pck_ca_kind
from ..dcap.pckext import PckExtension
from ..dcap.quote import OE_REPORT_HEADER_SIZE, Quote, unwrap_oe_report
from ..dcap.roots import load_roots
from ..dcap.verify import Verifier, check_pck_chain_source, parse_quote
from ..errors import (
    AttestationError,
    CollateralFormatError,
    EnclaveKitError,
    QuoteFormatError,
    VerificationFailed,
)

_HEX_TEXT = re.compile(rb"\s*(?:[0-9a-fA-F]{2}\s*)+")


@click.group(name="quote")
def group() -> None:
    """Decode, produce and verify DCAP quotes."""


def read_quote(path: str) -> tuple[bytes, bool]:
    """The quote bytes in ``path`` (binary or hex text) and whether an OE header was stripped."""
    data = Path(path).read_bytes()
    if _HEX_TEXT.fullmatch(data):
        data = bytes.fromhex(data.decode("ascii"))
    quote = unwrap_oe_report(data)
    return quote, len(quote) == len(data) - OE_REPORT_HEADER_SIZE


def _pck_view(quote: Quote) -> dict[str, Any] | None:
    if quote.certification_data.type != 5:
        return None
    chain = quote.certification_data.pck_chain()
    view: dict[str, Any] = {"certificates": [certificate_view(c) for c in chain]}
    try:
        view["sgx_extension"] = PckExtension.from_certificate(chain[0]).to_dict()
    except CollateralFormatError as exc:
        view["sgx_extension_error"] = str(exc)
    return view


def describe(quote: Quote, *, oe_header: bool, trailing: int) -> dict[str, Any]:
    """The ``quote show --json`` object: every field plus the decoded PCK chain."""
    view = quote.to_dict()
    view["oe_report_header_stripped"] = oe_header
    view["trailing_bytes"] = trailing
    view["size"] = len(quote.to_bytes())
    pck = _pck_view(quote)
    if pck is not None:
        view["pck"] = pck
    return view


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, rows)
    elif isinstance(value, list) and prefix.endswith("pem"):
        for i, inner in enumerate(value):
            rows.append((f"{prefix}[{i}]", f"PEM certificate, {len(inner)} characters"))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, inner in enumerate(value):
            _flatten(f"{prefix}[{i}]", inner, rows)
    elif isinstance(value, bool):
        rows.append((prefix, "yes" if value else "no"))
    elif value is None:
        rows.append((prefix, "-"))
    else:
        rows.append((prefix, ", ".join(map(str, value)) if isinstance(value, list)
                     else str(value)))


def _table(view: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []
    _flatten("", view, rows)
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


_ALLOW_TRAILING = click.option(
    "--allow-trailing", is_flag=True,
    help="Accept (and report) bytes after the signature data; refused by default.")


@group.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_ALLOW_TRAILING
def show(file: str, as_json: bool, allow_trailing: bool) -> None:
    """Decode every field of the quote in FILE (binary, hex text or an OE report)."""
    data, oe_header = read_quote(file)
    quote = Quote.parse(data, allow_trailing=allow_trailing)
    view = describe(quote, oe_header=oe_header, trailing=len(data) - len(quote.to_bytes()))
    click.echo(json.dumps(view, indent=2) if as_json else _table(view))


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``Z`` or offset; naive means UTC) or a Unix timestamp."""
    try:
        if re.fullmatch(r"\d+", text):
            return datetime.fromtimestamp(int(text), UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError) as exc:
        raise click.BadParameter(f"{text!r} is not an ISO-8601 time or Unix timestamp") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fail_json(error: str, detail: str) -> None:
    click.echo(json.dumps({"status": None, "error": error, "detail": detail}, indent=2))
    raise SystemExit(1)


@group.command("verify")
@click.argument("quote_file", metavar="QUOTE", type=click.Path(exists=True, dir_okay=False))
@click.option("--collateral", "collateral_file", type=click.Path(exists=True, dir_okay=False),
              help="Collateral JSON (the one-object layout: dcap-qvl QuoteCollateralV3).")
@click.option("--pccs", "pccs_url", metavar="URL",
              help="Fetch collateral from a PCS v4-compatible service at URL.")
@click.option("--at", "at_text", metavar="TIME",
              help="Verification time (ISO-8601 or Unix seconds; default: now).")
@click.option("--trust-root", "trust_roots", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Trusted root CA (PEM/DER); repeatable. Default: Intel's SGX Root CA only.")
@click.option("--crl-grace-days", type=click.IntRange(min=0), default=0, show_default=True,
              help="Accept CRLs this many days past their nextUpdate.")
@click.option("--pck-cert", "pck_cert", type=click.Path(exists=True, dir_okay=False),
              help="PEM PCK chain (leaf, CA, root; for type 4 the CA and root suffice) for a "
                   "quote whose certification data is type 1-4.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_ALLOW_TRAILING
def verify(quote_file: str, collateral_file: str | None, pccs_url: str | None,
           at_text: str | None, trust_roots: tuple[str, ...], crl_grace_days: int,
           pck_cert: str | None, as_json: bool, allow_trailing: bool) -> None:
    """Verify a DCAP quote; exit 0 only if every signature and chain check passes."""
    if (collateral_file is None) == (pccs_url is None):
        raise click.UsageError("give exactly one of --collateral FILE or --pccs URL")
    at = parse_time(at_text) if at_text else None
    try:
        data, _ = read_quote(quote_file)
        quote = parse_quote(data, allow_trailing=allow_trailing)
        roots: list[x509.Certificate] | None = None
        if trust_roots:
            roots = [r for path in trust_roots for r in load_roots(Path(path).read_bytes())]
        pck_chain = Path(pck_cert).read_bytes() if pck_cert else None
        if collateral_file is not None:
            collateral = Collateral.load(collateral_file)
        else:
            assert pccs_url is not None
            check_pck_chain_source(quote, pck_chain)  # before asking the service
            collateral = (fetch(pccs_url, *pck_ca_kind(quote, pck_chain)) if pck_chain
                          else fetch_for_quote(pccs_url, quote))
        if pck_chain is not None:
            collateral = dataclasses.replace(collateral, pck_certificate_chain=pck_chain)
        verifier = Verifier(roots, crl_grace=timedelta(days=crl_grace_days), cache_size=0)
        result = verifier.verify(quote, collateral, at=at)
    except EnclaveKitError as exc:
        if not as_json:
            raise
        if isinstance(exc, VerificationFailed):
            _fail_json(exc.check, exc.detail)
        name: dict[type, str] = {QuoteFormatError: "quote_format",
                                 CollateralFormatError: "collateral_format"}
        _fail_json(name.get(type(exc), "attestation" if isinstance(exc, AttestationError)
                            else type(exc).__name__), str(exc))
        return
    view = result.to_json()
    view["trailing_bytes"] = len(data) - len(quote.to_bytes())
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(_table({key: view[key] for key in (
        "status", "advisory_ids", "platform_status", "qe_status", "mrenclave", "mrsigner",
        "isvprodid", "isvsvn", "attributes", "debug", "report_data", "fmspc", "pceid",
        "tcb_components", "pcesvn", "tcb_date", "pck_serial", "verified_at",
        "collateral_next_update", "trailing_bytes")}))


def register(main: click.Group) -> None:
    """Add the ``quote`` group to the top-level command."""
    main.add_command(group)
