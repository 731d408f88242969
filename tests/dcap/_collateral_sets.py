"""The vectors' quotes with their collateral, assembled once for the verifier tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from cryptography import x509

from enclavekit.dcap.collateral import Collateral
from enclavekit.dcap.roots import load_roots
from tests.vectors import vector


class Case(NamedTuple):
    quote: bytes
    collateral: Collateral
    at: datetime
    roots: list[x509.Certificate] | None
    status: str
    advisories: tuple[str, ...]
    crl_grace: timedelta = timedelta(0)


def _read(rel: str) -> bytes:
    return vector(rel).read_bytes()


def _ts(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


INTEL_ROOT_PEM = "intel_root_ca/Intel_SGX_Root_CA.pem"
MOBILECOIN_AT = datetime(2023, 7, 12, 20, 48, 25, tzinfo=UTC)
MOBILECOIN_GRACE = timedelta(days=90)
"""The mobilecoin PCK CRL expired 2023-05-21, 52 days before its asserted verification time;
the verifier refuses it by default and accepts it only with an explicit CRL grace period
(90 days also covers the upstream negative at the TCB info nextUpdate, 2023-08-11)."""


def mobilecoin_collateral(tcb_info: str = "fmspc_00906ED50000_2023_07_12.json") -> Collateral:
    m = "mobilecoin_attestation/"
    root = _read(m + "root_ca.pem")
    return Collateral.from_pcs(
        tcb_info=_read(m + tcb_info), qe_identity=_read(m + "qe_identity.json"),
        tcb_info_issuer_chain=_read(m + "tcb_signer.pem") + root,
        pck_crl=_read(m + "processor_crl.der"), root_ca_crl=_read(m + "root_crl.der"),
        pck_crl_issuer_chain=_read(m + "processor_ca.pem") + root)


def automata_collateral(folder: str, tcb: str, qe: str, signer: str, pck_crl: str,
                        root_crl: str) -> Collateral:
    return Collateral.from_pcs(
        tcb_info=_read(f"{folder}/{tcb}"), qe_identity=_read(f"{folder}/{qe}"),
        tcb_info_issuer_chain=_read(f"{folder}/{signer}") + _read(INTEL_ROOT_PEM),
        pck_crl=_read(f"{folder}/{pck_crl}"), root_ca_crl=_read(f"{folder}/{root_crl}"))


QVL = "intel_qvl_sample_testroot/"


def qvl_collateral() -> Collateral:
    return Collateral.from_pcs(
        tcb_info=_read(QVL + "tcbInfo.json"), qe_identity=_read(QVL + "qeIdentity.json"),
        tcb_info_issuer_chain=_read(QVL + "tcbSignChain.pem"),
        pck_crl=_read(QVL + "intermediateCaCrl.der"), root_ca_crl=_read(QVL + "rootCaCrl.der"),
        pck_certificate_chain=_read(QVL + "pckCert.pem") + _read(QVL + "pckSignChain.pem"))


def qvl_roots() -> list[x509.Certificate]:
    return load_roots(_read(QVL + "trustedRootCaCert.pem"))


def cases() -> dict[str, Case]:
    phala_q = _read("phala_dcap_qvl/sgx_quote")
    return {
        "phala_sgx_2025": Case(
            phala_q, Collateral.from_json(_read("phala_dcap_qvl/sgx_quote_collateral.json")),
            _ts(1752919277), None, "ConfigurationAndSWHardeningNeeded",
            ("INTEL-SA-00289", "INTEL-SA-00615")),
        "phala_sgx_2023": Case(
            phala_q,
            Collateral.from_json(_read("phala_dcap_qvl/sgx_quote_collateral_2023-11.json")),
            _ts(1700600000), None, "ConfigurationAndSWHardeningNeeded",
            ("INTEL-SA-00289", "INTEL-SA-00615")),
        "mobilecoin_sgx_2023": Case(
            _read("mobilecoin_attestation/hw_quote.dat"), mobilecoin_collateral(), MOBILECOIN_AT,
            None, "SWHardeningNeeded", ("INTEL-SA-00334", "INTEL-SA-00615"), MOBILECOIN_GRACE),
        "automata_onchain_sgx_2025": Case(
            _read("automata_onchain_v3/sgx_quote_v3.bin"),
            automata_collateral("automata_onchain_v3", "sgx_tcbinfov3_00606a000000.json",
                                "sgx_qeidentity_v4.json", "tcb_signing_cert.pem",
                                "platform_crl.der", "root_ca_crl.der"),
            _ts(1755236700), None, "SWHardeningNeeded", ("INTEL-SA-00615",)),
        "automata_dcap_rs_sgx_2025": Case(
            _read("automata_dcap_rs/sgx_quote_v3.bin"),
            automata_collateral("automata_dcap_rs", "tcbinfov2.json", "qeidentityv2.json",
                                "signing_cert.pem", "pck_platform_crl.der",
                                "intel_root_ca_crl.der"),
            _ts(1739419232), None, "OutOfDate", ()),
        "intel_qvl_sample_testroot": Case(
            _read(QVL + "quote.dat"), qvl_collateral(), datetime(2020, 1, 1, tzinfo=UTC),
            qvl_roots(), "UpToDate", ()),
    }
