"""enclavekit: an Intel-SGX-style confidential-computing platform in software."""

from ._version import __version__

__all__ = ["__version__"]
