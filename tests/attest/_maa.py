"""Shared pieces of the attestation-service tests.

The quotes come from the vectors (real Azure SDK / Azure sample quotes). Those vectors carry no
collateral, so these tests use :func:`parse_only_appraiser`: an appraiser that parses the quote
and trusts it — it stands in for the DCAP verifier and is named for what it does. Tests that
exercise real verification say so in their names.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import warnings
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.exceptions import StarletteDeprecationWarning

from enclavekit.attest.maa import Appraisal, AttestationService, ServiceConfig, create_app
from enclavekit.dcap.quote import Quote
from tests.vectors import vector

with warnings.catch_warnings():
    # starlette 1.x prefers httpx2 for its test client; httpx 0.28 is what is pinned
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SDK_QUOTE = "azure_sdk_python_maa/sgx_quote.bin"
SDK_RUNTIME = "azure_sdk_python_maa/runtime_data.bin"


def parse_only_appraiser(quote: bytes) -> Appraisal:
    """Parse the quote and trust it (no signature, chain or TCB check): a test stand-in."""
    parsed = Quote.parse(quote)
    return Appraisal(quote, parsed.body, tcb_status="UpToDate", advisory_ids=(),
                     collateral_hashes={"tcbinfohash": "00" * 32})


def sdk_quote() -> bytes:
    return vector(SDK_QUOTE).read_bytes()


def sdk_runtime() -> bytes:
    return vector(SDK_RUNTIME).read_bytes()


def sample(kind: str, name: str) -> dict[str, Any]:
    """An Azure-Samples enclave.info JSON (``kind`` intel_sdk_quotes / oe_sdk_quotes)."""
    doc: dict[str, Any] = json.loads(
        vector(f"azure_samples_maa/{kind}/enclave.info.{name}.json").read_text())
    return doc


def asgi_client(service: AttestationService, base_url: str = "http://maa.test") -> TestClient:
    """An in-process HTTP client for the service's app (server errors come back as 500s)."""
    return TestClient(create_app(service), base_url=base_url, raise_server_exceptions=False)


def make_service(data_dir: Path, **config: Any) -> AttestationService:
    return AttestationService(ServiceConfig(data_dir, **config), parse_only_appraiser)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))),
            json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def signer(cn: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An RSA-2048 key and self-signed certificate (a policy-management signer)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def pem(obj: rsa.RSAPrivateKey | x509.Certificate) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
