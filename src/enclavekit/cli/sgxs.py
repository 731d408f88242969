"""`enclavekit sgxs ...`: SGXS measurement streams (measure, sign)."""

from __future__ import annotations

import click


@click.group("sgxs")
def sgxs_group() -> None:
    """Work with SGXS measurement streams (Fortanix's interchange format)."""


@sgxs_group.command("measure")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def measure(file: str) -> None:
    """Print the MRENCLAVE of the SGXS stream FILE as lowercase hex.

    Any stream the processor would measure is measured, its records in file order
    (EEXTEND chunks in any order or repeated); UNMEASRD records are skipped.
    """
    from pathlib import Path

    from ..sgx.sgxs import measure_sgxs

    click.echo(measure_sgxs(Path(file).read_bytes()).hex())


def _number(text: str) -> int:
    """An unsigned number as sgxs-sign takes it: decimal, or hex with a 0x prefix."""
    if text.isdigit():
        return int(text, 10)
    if text.lower().startswith("0x") and len(text) > 2:
        return int(text[2:], 16)
    raise ValueError(text)


def _check_u16(ctx: click.Context, param: click.Parameter, value: str | None) -> int:
    try:
        number = _number(value or "0")
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number (decimal or 0x-hex)") from None
    if number > 0xFFFF:
        raise click.BadParameter(f"{value} does not fit in 16 bits")
    return number


def _check_date(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    import datetime

    if value is None:
        return None
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError(value)
        return datetime.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYYMMDD") from None


def _check_xfrm(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    if value is None:
        return None
    value_text, _, mask_text = value.partition("/")
    try:
        xfrm = _number(value_text)
        inverse = _number(mask_text) if mask_text else xfrm
    except ValueError:
        raise click.BadParameter(f"{value!r} is not XFRM or XFRM/INVERSE-MASK") from None
    if max(xfrm, inverse) >> 64:
        raise click.BadParameter(f"{value} does not fit in 64 bits")
    return xfrm, ~inverse & 0xFFFF_FFFF_FFFF_FFFF


@sgxs_group.command("sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("-k", "--key", "key_path", required=True, type=click.Path(exists=True,
              dir_okay=False), help="PEM private key (RSA-3072, exponent 3).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the 1808-byte SIGSTRUCT.")
@click.option("-p", "--isvprodid", default=None, callback=_check_u16, metavar="N",
              help="ISVPRODID (default 0).")
@click.option("-v", "--isvsvn", default=None, callback=_check_u16, metavar="N",
              help="ISVSVN (default 0).")
@click.option("-d", "--debug", is_flag=True,
              help="Set ATTRIBUTES.DEBUG (DEBUG is never enforced by the mask).")
@click.option("--date", default=None, callback=_check_date, metavar="YYYYMMDD",
              help="DATE (default: today, UTC).")
@click.option("-x", "--xfrm", default=None, callback=_check_xfrm, metavar="XFRM[/INVMASK]",
              help="ATTRIBUTES.XFRM and the inverse of its mask, as sgxs-sign (default 3/0xe4).")
def sign(
    file: str,
    key_path: str,
    output: str,
    isvprodid: int,
    isvsvn: int,
    debug: bool,
    date: object,
    xfrm: tuple[int, int] | None,
) -> None:
    """Write the SIGSTRUCT for the SGXS stream FILE's MRENCLAVE, as Fortanix's sgxs-sign.

    Signs exactly what ``sgxs measure`` prints for FILE.
    """
    import datetime
    from pathlib import Path

    from .._fs import atomic_write
    from ..sgx.consts import AttributeFlags
    from ..sgx.sgxs import measure_sgxs
    from ..sgx.signing import SigningKey
    from ..sgx.sigstruct import DEFAULT_ATTRIBUTEMASK, DEFAULT_ATTRIBUTES, build_sigstruct
    from ..sgx.sigstruct import sign as sign_sigstruct

    key = SigningKey.load(key_path)
    mrenclave = measure_sgxs(Path(file).read_bytes())
    attributes, mask = DEFAULT_ATTRIBUTES, DEFAULT_ATTRIBUTEMASK
    if xfrm is not None:
        attributes = attributes.replace(xfrm=xfrm[0])
        mask = mask.replace(xfrm=xfrm[1])
    if debug:
        debug_bit = int(AttributeFlags.DEBUG)  # an int: ~IntFlag keeps only the named bits
        attributes = attributes.replace(flags=attributes.flags | debug_bit)
        mask = mask.replace(flags=mask.flags & ~debug_bit)
    unsigned = build_sigstruct(
        mrenclave,
        date=date if isinstance(date, datetime.date) else None,
        attributes=attributes,
        attributemask=mask,
        isvprodid=isvprodid,
        isvsvn=isvsvn,
    )
    signed = sign_sigstruct(unsigned, key)
    atomic_write(output, signed.to_bytes(), mode=0o644)
    click.echo(f"ENCLAVEHASH: {mrenclave.hex()}")
    click.echo(f"MRSIGNER: {key.mrsigner().hex()}")


def register(group: click.Group) -> None:
    """Add this module's commands to the top-level group."""
    group.add_command(sgxs_group)
