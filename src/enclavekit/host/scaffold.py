"""A new enclave app: the ``enclave.toml`` and ``app.py`` that ``enclavekit new`` writes.

The example module declares real ecalls (``@ecall``) and one ``@ocall``, so the guide's path
(``new``, ``build``, ``keygen``, ``sign``, ``VM.default().load(...)``, ``ecalls.greet``) ends
in the enclave's answer; ``tests/test_docs.py`` runs that path from ``docs/guide.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ManifestError
from .manifest import MANIFEST_NAME, Manifest, default_python

__all__ = ["APP_SOURCE", "manifest_text", "scaffold"]

APP_SOURCE = '''"""The enclave's code: everything in this module runs inside the measured image."""

from enclavekit.enclave import ecall, identity, ocall


@ocall
def log(line: str) -> None:
    """Runs on the host, which implements it: vm.load(..., ocalls={"log": a function})."""


@ecall
def greet(name: str) -> str:
    """Say hello from inside the enclave, naming its MRENCLAVE."""
    log(f"greeting {name}")  # an ocall: its result is checked like any hostile input
    return f"hello, {name}, from {identity().mrenclave.hex()[:16]}"


@ecall
def add(a: int, b: int) -> int:
    """Add two numbers inside the enclave (arguments are checked against the hints)."""
    return a + b
'''
"""The scaffold's ``app.py``: ecalls ``greet`` and ``add``, ocall ``log``."""


def manifest_text(name: str) -> str:
    """The scaffold's ``enclave.toml`` for an enclave called ``name``."""
    return (f'name = {json.dumps(name)}\nentry = "app.py"\ntrusted = []\nproduct_id = 0\n'
            'security_version = 0\n'
            '# A debug enclave can be read through the debug API: set false before shipping.\n'
            'debug = true\nheap_size = "1M"\nstack_size = "256K"\n'
            f'threads = 1\n\n[runtime]\npython = "{default_python()}"\n')


def scaffold(directory: Path, name: str | None = None) -> Manifest:
    """Write a new enclave app into ``directory`` (created if missing) and return its manifest.

    Raises:
        ManifestError: ``directory`` is not empty, or ``name`` is not a valid enclave name.
    """
    if directory.exists() and any(directory.iterdir()):
        raise ManifestError(f"{directory}: directory is not empty; choose a new or empty one")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_NAME).write_text(manifest_text(name or directory.resolve().name))
    (directory / "app.py").write_text(APP_SOURCE)
    return Manifest.load(directory)  # the scaffold must load (e.g. the name is valid)
