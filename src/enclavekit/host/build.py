"""``build(app_dir)``: lay out and measure an enclave app into an (unsigned) enclave file."""

from __future__ import annotations

import os
from pathlib import Path

from .image import EnclaveFile
from .layout import Progress, build_layout
from .manifest import Manifest


def build(app_dir: str | os.PathLike[str], *, progress: Progress | None = None) -> EnclaveFile:
    """The unsigned enclave file of the app in ``app_dir`` (sign it with ``.sign(key)``).

    Raises:
        ManifestError: ``enclave.toml`` is missing or invalid, or a trusted file is unreadable.
    """
    manifest = Manifest.load(Path(app_dir))
    return EnclaveFile.from_layout(build_layout(manifest, progress=progress), manifest.to_dict())
