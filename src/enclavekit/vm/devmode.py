"""Development platforms: what they are, how one is recognised, and the mark they carry.

A **development platform** is an emulated platform whose fused secrets a host user holds:
whoever can read its ``platform.json`` can derive every seal and report key of it, so none of
SGX's promises hold against that user. The rule, in one place:

* An identity created by :meth:`PlatformIdentity.new <enclavekit.vm.identity.PlatformIdentity.new>`
  — ``VM.create``, ``enclavekit vm create``, the embedded default VM — is a development platform
  **for good**. Its creator wrote ``platform.json`` and could read it; a secret once read cannot
  be taken back, so handing the device and the file to another user later
  (``enclavekit vm start NAME --user U``, started by root) does not make it another kind of
  platform.
* Only an identity made for a dedicated device user that no host user ever read (platform
  mode, ``development=False``) is not one. Such an identity has the FMSPC
  :data:`PLATFORM_FMSPC`; every other FMSPC (``EMULATED_FMSPC``, that of every identity made
  so far) is a development one (:func:`is_development`).

The FMSPC is the mark because it is in the PCK certificate of every quote the platform makes,
so a verifier learns it without trusting the host: the collateral service publishes the
development FMSPC's TCB levels as :data:`DEVELOPMENT_STATUS` with the advisory
:data:`DEVELOPMENT_ADVISORY` (``docs/attestation.md``, ``docs/threat-model.md``).
"""

from __future__ import annotations

__all__ = ["DEVELOPMENT_ADVISORY", "DEVELOPMENT_LABEL", "DEVELOPMENT_STATUS", "PLATFORM_FMSPC",
           "PLATFORM_LABEL", "development_level", "is_development", "label"]

PLATFORM_FMSPC = bytes.fromhex("00ee0b000000")
"""The FMSPC of an emulated platform whose secrets no host user has held (platform mode)."""

DEVELOPMENT_ADVISORY = "EK-DEV-0001"
"""The enclavekit advisory id a development platform's TCB levels carry."""
DEVELOPMENT_STATUS = "ConfigurationNeeded"
"""The Intel tcbStatus of a development platform's current TCB: the platform is patched, its
configuration (who holds the fused secrets) is what must change."""
DEVELOPMENT_LABEL = "development platform: the host user holds its secrets"
"""What ``vm show`` and the demo say about a development platform."""
PLATFORM_LABEL = "platform mode: the device user alone holds its secrets"
_CONFIGURATION = {"UpToDate": DEVELOPMENT_STATUS,
                  "SWHardeningNeeded": "ConfigurationAndSWHardeningNeeded",
                  "OutOfDate": "OutOfDateConfigurationNeeded"}
"""Intel's status with "configuration needed" added (statuses that have it, and Revoked, stay)."""


def is_development(fmspc: bytes) -> bool:
    """Whether a platform with this FMSPC (its identity's, its PCK certificate's) is a
    development platform: every FMSPC but :data:`PLATFORM_FMSPC`."""
    return bytes(fmspc) != PLATFORM_FMSPC


def label(development: bool) -> str:
    """The one line that says which kind of platform it is."""
    return DEVELOPMENT_LABEL if development else PLATFORM_LABEL


def development_level(status: str, advisory_ids: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The tcbStatus and advisory ids a development platform's TCB level is published with:
    ``status`` with "configuration needed" added and :data:`DEVELOPMENT_ADVISORY` first."""
    rest = tuple(a for a in advisory_ids if a != DEVELOPMENT_ADVISORY)
    return _CONFIGURATION.get(status, status), (DEVELOPMENT_ADVISORY, *rest)
