"""The device service in-process: LOAD builds and EINITs from the image, BOOT comes from the
EPC pages, tampered images and foreign signers are refused, the EPC is over-committed."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from enclavekit.errors import (
    DeviceError,
    InvalidEInitToken,
    InvalidMeasurement,
    InvalidStructure,
    PageNotDebuggable,
    ProtocolError,
)
from enclavekit.host.enclave import Enclave
from enclavekit.host.image import EnclaveFile
from enclavekit.host.layout import bundle, manifest_blob
from enclavekit.host.manifest import Manifest
from enclavekit.host.vm import VM
from enclavekit.sgx.signing import SigningKey
from enclavekit.sgx.sigstruct import mrsigner
from enclavekit.vm import protocol as p
from enclavekit.wire import decode_value, encode_value
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server, make_app, signed_image


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return session_signing_key()


def boot_of(enclave: Enclave) -> p.Boot:
    """The BOOT the fake enclave process echoed back on its ecall socket."""
    sock: socket.socket = enclave._sock
    head = sock.recv(4, socket.MSG_WAITALL)
    data = sock.recv(struct.unpack("<I", head)[0], socket.MSG_WAITALL)
    return decode_value(data, p.Boot)


def test_boot_is_read_from_the_enclave_pages(tmp_path: Path, key: SigningKey) -> None:
    image = signed_image(tmp_path, key)
    manifest = Manifest.load(tmp_path / "app")
    with device_server(tmp_path) as (_, path, store), VM("testvm", path, store=store) as vm:
        with vm.load(image) as enclave:
            boot = boot_of(enclave)
            assert boot.manifest == manifest_blob(manifest)
            assert boot.bundle == bundle(manifest)
            assert boot.mrenclave == image.mrenclave == enclave.mrenclave
            assert boot.mrsigner == mrsigner(image.sigstruct) == enclave.mrsigner  # type: ignore[arg-type]
            assert (boot.threads, boot.heap_size, boot.debug) == (2, 64 << 10, True)
            assert boot.enclave_id == enclave.enclave_id
            status = vm.status()
            assert [e.mrenclave for e in status.enclaves] == [image.mrenclave]
            assert status.enclaves[0].pages == image.epc_pages
            assert status.epc_used_pages >= image.epc_pages
            # EDBGRD through the device reads the same measured manifest bytes
            assert enclave.debug_read(0, 8) == b"EKMANIF1"
        assert vm.status().enclaves == []


def test_a_changed_measured_byte_fails_einit(tmp_path: Path, key: SigningKey) -> None:
    raw = bytearray(signed_image(tmp_path, key).to_bytes())
    at = raw.index(b"return a + b")
    raw[at + 7] ^= 0x01  # "a" -> "`" inside the measured bundle page
    with pytest.raises(InvalidStructure):
        EnclaveFile.from_bytes(bytes(raw))  # the host's own check also sees it
    with device_server(tmp_path) as (device, path, store), \
            VM("testvm", path, store=store) as vm:
        free = device.epc.cpu.free_pages()
        with pytest.raises(InvalidMeasurement, match="SGX_INVALID_MEASUREMENT"):
            vm.load_bytes(bytes(raw))
        assert device.epc.cpu.free_pages() == free  # every page of the attempt was removed
        assert vm.status().enclaves == []


def test_unsigned_and_malformed_images_are_typed(tmp_path: Path, key: SigningKey) -> None:
    unsigned = signed_image(tmp_path, key).__class__(
        signed_image(tmp_path, key).metadata, signed_image(tmp_path, key).sgxs)
    with device_server(tmp_path) as (_, path, store), VM("testvm", path, store=store) as vm:
        with pytest.raises(InvalidStructure, match="not signed"):
            vm.load_bytes(unsigned.to_bytes())
        with pytest.raises(InvalidStructure, match="magic"):
            vm.load_bytes(b"not an enclave file at all")
        assert vm.status().name == "testvm"  # the device keeps serving


def test_launch_allow_list_refuses_a_foreign_signer(tmp_path: Path, key: SigningKey) -> None:
    image = signed_image(tmp_path, key)
    allowed = frozenset({bytes(32)})
    with device_server(tmp_path, allow_signers=allowed) as (_, path, store), \
            VM("testvm", path, store=store) as vm, \
            pytest.raises(InvalidEInitToken, match="SGX_INVALID_EINITTOKEN"):
        vm.load(image)
    ours = frozenset({mrsigner(image.sigstruct)})  # type: ignore[arg-type]
    with device_server(tmp_path, allow_signers=ours) as (_, path, store), \
            VM("testvm", path, store=store) as vm, vm.load(image) as enclave:
        assert enclave.mrenclave == image.mrenclave


def test_three_enclaves_overcommit_a_small_epc(tmp_path: Path, key: SigningKey) -> None:
    images = [signed_image(tmp_path, key, f"app{i}", heap="256K") for i in range(3)]
    per = images[0].epc_pages
    epc = per * 2  # room for two: the third forces EWB of the others' pages
    with device_server(tmp_path, epc_pages=epc) as (device, path, store), \
            VM("testvm", path, store=store) as vm:
        loaded = [vm.load(img) for img in images]
        for img, enclave in zip(images, loaded, strict=True):
            boot = boot_of(enclave)
            assert boot.mrenclave == img.mrenclave
            assert boot.manifest == manifest_blob(Manifest.load(tmp_path / img.name))
            # the manifest page may have been evicted: EDBGRD reloads it (ELDU)
            assert enclave.debug_read(0, 8) == b"EKMANIF1"
        status = vm.status()
        assert status.epc_total_pages == epc
        assert status.epc_used_pages + status.epc_free_pages == epc
        assert sum(e.pages for e in status.enclaves) == 3 * per > epc
        assert any(e.pages_resident < e.pages for e in status.enclaves)
        assert all(e.state == "running" for e in status.enclaves)
        for enclave in loaded:
            enclave.close()
        assert vm.status().enclaves == []
        assert device.epc.cpu.free_pages() > epc - 4  # only VA pages remain


def test_enclaves_belong_to_their_connection(tmp_path: Path, key: SigningKey) -> None:
    image = signed_image(tmp_path, key)
    with device_server(tmp_path) as (device, path, store), \
            VM("testvm", path, store=store) as a, VM("testvm", path, store=store) as b:
        enclave = a.load(image)
        with pytest.raises(DeviceError, match="no enclave"):
            b._debug_read(enclave.enclave_id, 0, 8)
        b._unload(enclave.enclave_id)  # refused: still there
        assert len(a.status().enclaves) == 1
        a.close()  # the loading connection closes: its enclave is unloaded
        for _ in range(200):
            if not device.enclaves:
                break
            __import__("time").sleep(0.01)
        assert b.status().enclaves == []


def test_production_enclave_refuses_debug_read(tmp_path: Path, key: SigningKey) -> None:
    app = make_app(tmp_path)
    toml = app / "enclave.toml"
    toml.write_text(toml.read_text().replace("debug = true", "debug = false"))
    from enclavekit.host.build import build

    image = build(app).sign(key)
    with device_server(tmp_path) as (_, path, store), VM("testvm", path, store=store) as vm, \
            vm.load(image) as enclave:
        assert boot_of(enclave).debug is False
        with pytest.raises(PageNotDebuggable):
            enclave.debug_read(0, 8)


def test_the_private_channel_reports_its_own_identity(tmp_path: Path, key: SigningKey) -> None:
    from enclavekit.sgx.structs import Report, TargetInfo

    image = signed_image(tmp_path, key)
    with device_server(tmp_path) as (device, path, store), VM("testvm", path, store=store) as vm, \
            vm.load(image) as enclave:
        enc = device.enclaves[enclave.enclave_id]
        ident = device.epc.cpu.identity(enc.built.secs_page)
        target = TargetInfo(measurement=image.mrenclave, attributes=ident.attributes)
        req = p.EReportRequest(target.to_bytes(), b"\x07" * 64)
        raw = device._enclave_request(enc, p.Msg.EREPORT, encode_value(req, p.EReportRequest))
        report = Report.from_bytes(raw)
        assert report.body.mrenclave == image.mrenclave
        assert report.body.reportdata == b"\x07" * 64
        device.epc.cpu.verify_report(enc.built.secs_page, report)
        with pytest.raises(ProtocolError, match="not served on an enclave's channel"):
            device._enclave_request(enc, p.Msg.LOAD, b"\x80")


def test_restart_applies_a_recovered_tcb_from_the_platform_file(tmp_path: Path) -> None:
    from dataclasses import replace

    from enclavekit.vm.device import Device
    from enclavekit.vm.platform import PlatformStore

    store = PlatformStore(tmp_path)
    identity = store.create("tcbvm", "Standard_DC1s_v2")
    device = Device(identity, warm=False, reload_identity=lambda: store.load("tcbvm"))
    raised = bytes([identity.cpusvn[0] + 1]) + identity.cpusvn[1:]
    store.save(replace(identity, cpusvn=raised, pcesvn=identity.pcesvn + 1))
    assert device.epc.cpu.cpusvn == identity.cpusvn  # a running platform keeps its TCB
    device.restart()
    assert device.epc.cpu.cpusvn == raised
    assert device.identity.pcesvn == identity.pcesvn + 1


def test_restart_keeps_the_platform_when_the_file_names_other_secrets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from enclavekit.vm.device import Device
    from enclavekit.vm.platform import PlatformIdentity, PlatformStore

    store = PlatformStore(tmp_path)
    identity = store.create("tcbvm", "Standard_DC1s_v2")
    other = PlatformIdentity.new("tcbvm", "Standard_DC1s_v2")
    device = Device(identity, warm=False, reload_identity=lambda: other)
    device.restart()
    assert device.identity is identity
    assert "other fused secrets" in capsys.readouterr().err
