"""The ``enclavekit`` command: one group, one library call per command, one way to fail.

Any :class:`~enclavekit.errors.EnclaveKitError` (and an unreadable file) becomes one
line on stderr, ``TypeName: message``, and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

from typing import Any

import click

from .._version import __version__
from ..errors import EnclaveKitError


class _Group(click.Group):
    """A click group that turns our typed errors into a one-line message and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EnclaveKitError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{type(exc).__name__}:{where}: {exc.strerror}") from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="enclavekit")
def main() -> None:
    """enclavekit: SGX-style enclaves, sealing and attestation in software."""


def _register() -> None:
    from . import (
        attest,
        demo,
        enclave,
        keys,
        kms,
        pccs,
        pki,
        quote,
        quote_sample,
        ray,
        sgxs,
        sigstruct,
        vm,
    )

    for module in (keys, sgxs, sigstruct, vm, enclave, quote, quote_sample, pki, pccs, attest,
                   kms, demo, ray):
        module.register(main)


_register()
