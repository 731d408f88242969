"""The installation's emulated PKI: created once, persisted atomically, PCK per VM."""

from __future__ import annotations

import shutil
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from enclavekit.dcap import arch
from enclavekit.dcap.pckext import PckExtension
from enclavekit.errors import ProvisioningError, VMNotFound
from enclavekit.sgx.keys import egetkey
from enclavekit.vm import provisioning as prov
from enclavekit.vm.platform import PlatformStore
from enclavekit.vm.provisioning import Provisioning


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


Made = tuple[PlatformStore, Provisioning]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    root = tmp_path_factory.mktemp("prov")
    store = PlatformStore(root)
    store.create("a", "DC1s_v2")
    store.create("b", "DC1s_v2")
    return store, Provisioning.open(root)


def test_pki_is_created_with_the_first_vm_private_and_stable(made: Made) -> None:
    store, p = made
    pki_dir = store.root / "pki"
    assert _mode(pki_dir) == 0o700
    for name in ("root-key.pem", "pck-ca-key.pem", "tcb-signing-key.pem", "arch-signer-key.pem"):
        assert _mode(pki_dir / name) == 0o600
    again = Provisioning(store.root)
    assert again.root_certificate == p.root_certificate
    assert again.pck_ca_certificate == p.pck_ca_certificate
    assert again.arch_signer().mrsigner() == p.arch_signer().mrsigner()
    assert not list(store.root.glob(".pki-*"))


def test_create_issues_a_pck_certificate_that_matches_the_platform(made: Made) -> None:
    store, p = made
    ident = store.load("a")
    pem = (store.path("a").parent / "pck.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    assert cert == p.pck_certificate("a")
    ext = PckExtension.from_certificate(cert)
    assert ext == PckExtension(ppid=ident.ppid, tcb_components=tuple(ident.cpusvn),
                               pcesvn=ident.pcesvn, cpusvn=ident.cpusvn, pceid=ident.pceid,
                               fmspc=ident.fmspc, sgx_type=0)
    cert.verify_directly_issued_by(p.pck_ca_certificate)


def test_pck_public_key_is_what_the_pce_derives(made: Made) -> None:
    """The PCE's EGETKEY(PROVISION) at the platform's TCB gives the certified key."""
    store, p = made
    for name in ("a", "b"):
        ident = store.load(name)
        pce = arch.pce_identity(p.arch_signer().mrsigner(), ident.pcesvn)
        key = egetkey(ident.secrets, ident.cpusvn, pce,
                      arch.pck_key_request(ident.cpusvn, ident.pcesvn))
        derived = arch.pck_private_key(key).public_key()
        assert p.pck_certificate(name).public_key() == derived
    assert p.pck_certificate("a").public_key() != p.pck_certificate("b").public_key()


def test_chain_pem_is_leaf_ca_root_and_verifies(made: Made) -> None:
    _, p = made
    certs = x509.load_pem_x509_certificates(p.pck_chain_pem("a"))
    assert [c.subject for c in certs] == [p.pck_certificate("a").subject,
                                          p.pck_ca_certificate.subject,
                                          p.root_certificate.subject]
    certs[0].verify_directly_issued_by(certs[1])
    certs[1].verify_directly_issued_by(certs[2])
    certs[2].verify_directly_issued_by(certs[2])
    # VM b's chain carries VM b's leaf, not VM a's
    assert x509.load_pem_x509_certificates(p.pck_chain_pem("b"))[0] != certs[0]


def test_reissue_after_tcb_recovery_replaces_the_certificate(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    ident = store.create("dev", "DC1s_v2")
    p = Provisioning.open(tmp_path)
    old = p.pck_certificate("dev")
    raised = replace(ident, cpusvn=bytes([8]) + ident.cpusvn[1:], pcesvn=ident.pcesvn + 1)
    store.save(raised)
    new = p.issue_pck(raised)
    assert p.pck_certificate("dev") == new != old
    ext = PckExtension.from_certificate(new)
    assert ext.tcb_components[0] == 8 and ext.pcesvn == ident.pcesvn + 1
    assert new.public_key() != old.public_key()  # the PCK key is per TCB
    assert new.public_key() == prov.derive_pck_key(raised, p.arch_signer().mrsigner()).public_key()


def test_missing_pck_is_issued_and_unknown_vm_refused(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    store.create("dev", "DC1s_v2")
    (store.path("dev").parent / "pck.pem").unlink()
    p = Provisioning.open(tmp_path)
    cert = p.pck_certificate("dev")
    on_disk = x509.load_pem_x509_certificate((store.path("dev").parent / "pck.pem").read_bytes())
    assert on_disk == cert == x509.load_pem_x509_certificates(p.pck_chain_pem("dev"))[0]
    with pytest.raises(VMNotFound):
        p.pck_certificate("ghost")


def test_a_recreated_pki_reissues_old_pck_certificates(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    store.create("dev", "DC1s_v2")
    old = Provisioning.open(tmp_path).pck_certificate("dev")
    shutil.rmtree(tmp_path / "pki")
    p = Provisioning.open(tmp_path)
    new = p.pck_certificate("dev")
    assert new != old
    new.verify_directly_issued_by(p.pck_ca_certificate)


@pytest.mark.parametrize("name, garbage, message", [
    ("root.pem", b"not pem", "root.pem: not a PEM certificate"),
    ("pck-ca-key.pem", b"-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----\n",
     "pck-ca-key.pem: not an unencrypted PEM private key"),
    ("tcb-signing.pem", None, "tcb-signing.pem: missing"),
    ("arch-signer-key.pem", b"junk", "arch-signer-key.pem"),
])
def test_corrupt_pki_files_are_refused_in_one_line(tmp_path: Path, name: str,
                                                   garbage: bytes | None, message: str) -> None:
    Provisioning.open(tmp_path)
    path = tmp_path / "pki" / name
    if garbage is None:
        path.unlink()
    else:
        path.write_bytes(garbage)
    with pytest.raises(ProvisioningError, match=message) as info:
        Provisioning.open(tmp_path).arch_signer()
    assert "\n" not in str(info.value) and "corrupt" in str(info.value)


def test_swapped_keys_and_foreign_certificates_are_refused(tmp_path: Path) -> None:
    Provisioning.open(tmp_path)
    pki = tmp_path / "pki"
    pki.joinpath("root-key.pem").write_bytes(pki.joinpath("pck-ca-key.pem").read_bytes())
    with pytest.raises(ProvisioningError, match=r"does not match the public key of root\.pem"):
        Provisioning.open(tmp_path)
    other = tmp_path / "other"
    Provisioning.open(other)
    shutil.copy(other / "pki" / "root-key.pem", pki / "root-key.pem")
    shutil.copy(other / "pki" / "root.pem", pki / "root.pem")
    with pytest.raises(ProvisioningError, match=r"pck-ca\.pem: not issued by root\.pem"):
        Provisioning.open(tmp_path)


def test_corrupt_pck_file_is_refused(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    store.create("dev", "DC1s_v2")
    (store.path("dev").parent / "pck.pem").write_bytes(b"garbage")
    with pytest.raises(ProvisioningError, match=r"pck\.pem: not a PEM certificate"):
        Provisioning.open(tmp_path).pck_certificate("dev")


def test_a_crash_while_minting_leaves_no_pki(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def dying_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        path.write_bytes(data)

    monkeypatch.setattr(prov, "atomic_write", dying_write)
    with pytest.raises(OSError, match="disk full"):
        Provisioning.open(tmp_path)
    assert not (tmp_path / "pki").exists()
    assert not list(tmp_path.glob(".pki-*"))
    monkeypatch.undo()
    assert Provisioning.open(tmp_path).root_certificate is not None


def test_concurrent_first_use_creates_one_pki(tmp_path: Path) -> None:
    roots: list[x509.Certificate] = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            roots.append(Provisioning.open(tmp_path).root_certificate)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(roots) == 4 and all(r == roots[0] for r in roots)


def test_vm_creation_fails_cleanly_when_the_pki_is_corrupt(tmp_path: Path) -> None:
    store = PlatformStore(tmp_path)
    store.create("a", "DC1s_v2")
    (tmp_path / "pki" / "pck-ca.pem").write_bytes(b"junk")
    with pytest.raises(ProvisioningError):
        store.create("b", "DC1s_v2")
    assert store.names() == ["a"]
