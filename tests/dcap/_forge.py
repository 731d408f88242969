"""A test PKI whose keys the tests hold, and quotes + collateral forged with it.

Real vectors cannot show a revoked PCK, a CRL from the wrong CA or a QE identity mismatch that
still carries valid signatures: only a PKI we control can. Names follow Intel's (the verifier's
CN checks pass), the root says plainly that it is a test root.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from enclavekit.dcap.collateral import Collateral
from enclavekit.dcap.ecdsa import public_key_to_raw, sign_raw
from enclavekit.dcap.pckext import SGX_EXTENSION_OID, PckExtension
from enclavekit.dcap.quote import INTEL_QE_VENDOR_ID, CertificationData, Quote, QuoteHeader
from enclavekit.sgx.structs import Attributes, ReportBody

ISSUE = datetime(2024, 1, 1, tzinfo=UTC)
NEXT = datetime(2024, 2, 1, tzinfo=UTC)
AT = datetime(2024, 1, 15, tzinfo=UTC)
FMSPC = bytes.fromhex("00906ED50000")
QE_MRSIGNER = hashlib.sha256(b"test QE signer").digest()
ISV_MRSIGNER = hashlib.sha256(b"test ISV signer").digest()
COMPS = (5, 5, 2, 4, 1, 128, 14) + (0,) * 9


def _key(n: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(n, ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "enclavekit tests")])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, serial: int,
          extensions: tuple[x509.ExtensionType, ...] = (),
          not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
          not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC)) -> x509.Certificate:
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject))
               .issuer_name(issuer.subject if issuer else _name(subject))
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _crl(issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey, revoked: tuple[int, ...],
         this_update: datetime = ISSUE, next_update: datetime = NEXT,
         aki: bool = True) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(this_update).next_update(next_update)
               .add_extension(x509.CRLNumber(1), critical=False))
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(ISSUE).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass(frozen=True)
class Pki:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey
    signer: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey


@functools.cache
def pki(seed: int = 1) -> Pki:
    root_key, ca_key, signer_key = _key(seed * 100 + 1), _key(seed * 100 + 2), _key(seed * 100 + 3)
    root = _cert("enclavekit Test SGX Root CA", root_key, None, root_key, ca=True, serial=1)
    ca = _cert("enclavekit Test SGX PCK Processor CA", ca_key, root, root_key, ca=True, serial=2)
    signer = _cert("enclavekit Test SGX TCB Signing", signer_key, root, root_key, ca=False,
                   serial=3)
    return Pki(root_key, root, ca_key, ca, signer_key, signer, _key(seed * 100 + 4))


def default_levels() -> list[dict[str, Any]]:
    return [
        {"tcb": {"sgxtcbcomponents": [{"svn": c} for c in COMPS], "pcesvn": 13},
         "tcbDate": "2023-08-09T00:00:00Z", "tcbStatus": "UpToDate"},
        {"tcb": {"sgxtcbcomponents": [{"svn": 0}] * 16, "pcesvn": 5},
         "tcbDate": "2018-01-04T00:00:00Z", "tcbStatus": "OutOfDate",
         "advisoryIDs": ["INTEL-SA-00161"]},
    ]


def default_qe_levels() -> list[dict[str, Any]]:
    return [{"tcb": {"isvsvn": 8}, "tcbDate": "2023-02-15T00:00:00Z", "tcbStatus": "UpToDate"},
            {"tcb": {"isvsvn": 6}, "tcbDate": "2021-11-10T00:00:00Z", "tcbStatus": "OutOfDate",
             "advisoryIDs": ["INTEL-SA-00615"]},
            {"tcb": {"isvsvn": 2}, "tcbDate": "2019-05-15T00:00:00Z", "tcbStatus": "Revoked"}]


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Spec:
    """What to forge; every field defaults to a valid, UpToDate quote."""

    pck_components: tuple[int, ...] = COMPS
    pck_pcesvn: int = 13
    pck_fmspc: bytes = FMSPC
    tcb_fmspc: bytes = FMSPC
    tcb_pceid: str = "0000"
    tcb_id: str = "SGX"
    tcb_version: int = 3
    levels: list[dict[str, Any]] = field(default_factory=default_levels)
    qe_levels: list[dict[str, Any]] = field(default_factory=default_qe_levels)
    qe_isvsvn: int = 8
    qe_isvprodid: int = 1
    qe_mrsigner: bytes = QE_MRSIGNER
    qe_attributes: int = 0x11
    qe_miscselect: int = 0
    qe_identity_id: str = "QE"
    isv_flags: int = 0x05  # INIT | MODE64BIT
    isv_mrsigner: bytes = ISV_MRSIGNER
    isv_mrenclave: bytes = hashlib.sha256(b"test enclave").digest()
    isvprodid: int = 3
    isvsvn: int = 2
    report_data: bytes = b"nonce".ljust(64, b"\x00")
    vendor_id: bytes = INTEL_QE_VENDOR_ID
    qe_report_data_upper: bytes = bytes(32)
    attestation_key: bytes | None = None
    quote_signature: bytes | None = None
    revoke_pck: bool = False
    revoke_ca: bool = False
    revoke_signer: bool = False
    pck_crl_by_root: bool = False
    crl_aki: bool = True
    ca_is_ca: bool = True
    pck_not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC)
    pck_crl_next: datetime = NEXT
    tcb_issue: datetime = ISSUE
    tcb_next: datetime = NEXT
    version: int = 3
    seed: int = 1
    tcb_chain_seed: int | None = None  # another PKI's root for the TCB info chain


@dataclass(frozen=True)
class Forged:
    quote: bytes
    collateral: Collateral
    root: x509.Certificate
    at: datetime = AT

    @property
    def roots(self) -> list[x509.Certificate]:
        return [self.root]


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def forge(spec: Spec | None = None, **changes: Any) -> Forged:
    s = dataclasses.replace(spec or Spec(), **changes)
    p = pki(s.seed)
    ext = PckExtension(ppid=bytes(range(16)), tcb_components=s.pck_components,
                       pcesvn=s.pck_pcesvn, cpusvn=bytes(s.pck_components), pceid=b"\x00\x00",
                       fmspc=s.pck_fmspc)
    ca = p.ca
    if not s.ca_is_ca:
        ca = _cert("enclavekit Test SGX PCK Processor CA", p.ca_key, p.root, p.root_key,
                   ca=False, serial=2)
    leaf = _cert("enclavekit Test SGX PCK Certificate", p.pck_key, ca, p.ca_key, ca=False,
                 serial=0x1234, not_after=s.pck_not_after,
                 extensions=(x509.UnrecognizedExtension(SGX_EXTENSION_OID, ext.to_der()),))
    att = _key(7 + s.seed)
    att_raw = s.attestation_key if s.attestation_key is not None else \
        public_key_to_raw(att.public_key())
    auth = bytes(range(32))
    qe_body = ReportBody(
        cpusvn=bytes(16), miscselect=s.qe_miscselect,
        attributes=Attributes(flags=s.qe_attributes, xfrm=0xE7),
        mrenclave=hashlib.sha256(b"QE").digest(), mrsigner=s.qe_mrsigner,
        isvprodid=s.qe_isvprodid, isvsvn=s.qe_isvsvn,
        reportdata=hashlib.sha256(att_raw + auth).digest() + s.qe_report_data_upper)
    qe_report = qe_body.to_bytes()
    body = ReportBody(cpusvn=bytes(16), attributes=Attributes(flags=s.isv_flags, xfrm=0x3),
                      mrenclave=s.isv_mrenclave, mrsigner=s.isv_mrsigner, isvprodid=s.isvprodid,
                      isvsvn=s.isvsvn, reportdata=s.report_data).to_bytes()
    chain = pem(leaf, ca, p.root) + b"\x00"
    quote = Quote(header=QuoteHeader(version=s.version, qe_svn=s.qe_isvsvn, pce_svn=s.pck_pcesvn,
                                     qe_vendor_id=s.vendor_id, user_data=bytes(20)),
                  report_body=body, signature=bytes(64), attestation_key=att_raw,
                  qe_report=qe_report, qe_report_signature=sign_raw(p.pck_key, qe_report),
                  qe_auth_data=auth, certification_data=CertificationData(5, chain))
    signature = s.quote_signature if s.quote_signature is not None else \
        sign_raw(att, quote.signed_bytes())
    quote = dataclasses.replace(quote, signature=signature)

    tcb_obj: dict[str, Any] = {"id": s.tcb_id, "version": s.tcb_version,
                               "issueDate": _iso(s.tcb_issue), "nextUpdate": _iso(s.tcb_next),
                               "fmspc": s.tcb_fmspc.hex().upper(), "pceId": s.tcb_pceid,
                               "tcbType": 0, "tcbEvaluationDataNumber": 17,
                               "tcbLevels": s.levels}
    if s.tcb_version == 2:
        del tcb_obj["id"]
        for level in tcb_obj["tcbLevels"]:
            comps = level["tcb"].pop("sgxtcbcomponents")
            level["tcb"] = {**{f"sgxtcbcomp{i + 1:02d}svn": c["svn"] for i, c in
                               enumerate(comps)}, "pcesvn": level["tcb"]["pcesvn"]}
    qe_obj = {"id": s.qe_identity_id, "version": 2, "issueDate": _iso(ISSUE),
              "nextUpdate": _iso(NEXT), "tcbEvaluationDataNumber": 17,
              "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
              "attributes": "11000000000000000000000000000000",
              "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
              "mrsigner": QE_MRSIGNER.hex().upper(), "isvprodid": 1, "tcbLevels": s.qe_levels}
    tcb_raw, qe_raw = _compact(tcb_obj), _compact(qe_obj)
    tp = pki(s.tcb_chain_seed) if s.tcb_chain_seed is not None else p
    revoked_root = tuple(x for x, on in ((2, s.revoke_ca), (3, s.revoke_signer)) if on)
    pck_crl = (_crl(p.root, p.root_key, (0x1234,) if s.revoke_pck else ())
               if s.pck_crl_by_root else
               _crl(ca, p.ca_key, (0x1234,) if s.revoke_pck else (), next_update=s.pck_crl_next,
                    aki=s.crl_aki))
    coll = Collateral(
        pck_crl_issuer_chain=pem(ca, p.root),
        root_ca_crl=_crl(p.root, p.root_key, revoked_root),
        pck_crl=pck_crl,
        tcb_info_issuer_chain=pem(tp.signer, tp.root),
        tcb_info=tcb_raw, tcb_info_signature=sign_raw(tp.signer_key, tcb_raw),
        qe_identity_issuer_chain=pem(tp.signer, tp.root),
        qe_identity=qe_raw, qe_identity_signature=sign_raw(tp.signer_key, qe_raw))
    return Forged(quote=quote.to_bytes(), collateral=coll, root=p.root)
