"""An attestation service wire-compatible with Microsoft Azure Attestation (MAA), for SGX.

Microsoft's ``azure-security-attestation`` client works against it unchanged: attest an SGX
quote or Open Enclave report and get a signed JWT with MAA's claims, read the signing keys
(``/certs``) and OpenID metadata, get / set / reset policies (the policy language of
:mod:`enclavekit.attest.policy`), manage policy-management certificates (isolated mode).

>>> from enclavekit.attest.maa import AttestationService, ServiceConfig, create_app
>>> # service = AttestationService(ServiceConfig(data_dir), appraise=dcap_appraiser(...))
>>> # app = create_app(service)   # an ASGI app; run with enclavekit.attest.maa.server
"""

from __future__ import annotations

from .app import create_app
from .claims import Appraisal, HeldData
from .service import Appraiser, AttestationService, ServiceConfig
from .state import ServiceState

__all__ = ["Appraisal", "Appraiser", "AttestationService", "HeldData", "ServiceConfig",
           "ServiceState", "create_app"]
