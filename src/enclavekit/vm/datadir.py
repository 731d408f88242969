"""Where enclavekit keeps durable state: ``--data-dir``, ``ENCLAVEKIT_HOME``, then XDG."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``override``, else ``$ENCLAVEKIT_HOME``, else
    ``$XDG_DATA_HOME/enclavekit``, else ``~/.local/share/enclavekit``."""
    if override:
        return Path(override).expanduser()
    if env := os.environ.get("ENCLAVEKIT_HOME"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "enclavekit"
