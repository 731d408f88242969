"""Layout, MRENCLAVE and the enclave file: determinism, one-byte sensitivity, tampering, signing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.errors import InvalidStructure
from enclavekit.host.image import EnclaveFile
from enclavekit.host.layout import FLAGS_TCS, build_layout
from enclavekit.host.manifest import Manifest
from enclavekit.sgx.consts import PAGE_SIZE, AttributeFlags
from enclavekit.sgx.sgxs import read_sgxs
from enclavekit.sgx.sigstruct import verify
from enclavekit.sgx.structs import TCS
from tests.sgx.conftest import session_signing_key

TOML = 'name = "t"\nheap_size = "64K"\nstack_size = "8K"\nthreads = 2\ntrusted = ["data"]\n'


def make_app(root: Path, toml: str = TOML, order: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {"enclave.toml": toml, "app.py": "def f() -> int:\n    return 1\n",
             "data/a.txt": "alpha", "data/b.txt": "beta" * 500}
    for name in order or list(files):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(files[name])
    return root


def mr(root: Path) -> bytes:
    return build_layout(Manifest.load(root)).mrenclave


def test_mrenclave_is_sha256_of_sgxs_and_reparses(tmp_path: Path) -> None:
    layout = build_layout(Manifest.load(make_app(tmp_path)))
    sgxs = layout.to_sgxs()
    assert hashlib.sha256(sgxs).digest() == layout.mrenclave
    assert read_sgxs(sgxs).mrenclave() == layout.mrenclave
    assert layout.stream().mrenclave() == layout.mrenclave
    assert layout.epc_pages == len(layout.pages) + 1
    assert layout.size >= max(p.offset for p in layout.pages) + PAGE_SIZE
    assert layout.size & (layout.size - 1) == 0


def test_regions_and_tcs(tmp_path: Path) -> None:
    layout = build_layout(Manifest.load(make_app(tmp_path)))
    names = [r.name for r in layout.regions]
    assert names == ["manifest", "bundle", "tcs0", "ssa0", "stack0", "tcs1", "ssa1", "stack1",
                     "heap"]
    by = {r.name: r for r in layout.regions}
    assert by["heap"].pages == 16 and not by["heap"].measured
    assert by["stack0"].pages == 2 and by["ssa0"].pages == 2
    assert by["stack0"].offset == by["ssa0"].offset + 3 * PAGE_SIZE  # one guard page gap
    tcs_page = next(p for p in layout.pages if p.offset == by["tcs1"].offset)
    assert tcs_page.flags == FLAGS_TCS
    tcs = TCS.from_bytes(tcs_page.data)
    assert (tcs.ossa, tcs.nssa, tcs.oentry) == (by["ssa1"].offset, 2, 0)
    assert (tcs.fslimit, tcs.gslimit) == (0xFFF, 0xFFF)
    heap_pages = [p for p in layout.pages if p.offset >= by["heap"].offset]
    assert all(p.measured == 0 for p in heap_pages)


def test_same_dir_same_mrenclave_regardless_of_file_order(tmp_path: Path) -> None:
    a = mr(make_app(tmp_path / "a"))
    b = mr(make_app(tmp_path / "b", order=["data/b.txt", "app.py", "data/a.txt",
                                            "enclave.toml"]))
    assert a == b == mr(tmp_path / "a")


@settings(max_examples=25, deadline=None)
@given(target=st.sampled_from(["enclave.toml", "app.py", "data/a.txt", "data/b.txt"]),
       position=st.integers(min_value=0), delta=st.integers(min_value=1, max_value=255))
def test_one_byte_change_anywhere_changes_mrenclave(
    tmp_path_factory: pytest.TempPathFactory, target: str, position: int, delta: int
) -> None:
    root = make_app(tmp_path_factory.mktemp("app"))
    before = mr(root)
    data = bytearray((root / target).read_bytes())
    i = position % len(data)
    data[i] = (data[i] + delta) % 256
    if target == "enclave.toml":  # keep the manifest loadable: change a value inside it
        data = bytearray(TOML.replace('"t"', f'"t{delta}"').encode())
    (root / target).write_bytes(bytes(data))
    assert mr(root) != before


def test_heap_size_changes_mrenclave(tmp_path: Path) -> None:
    a = mr(make_app(tmp_path / "a"))
    b = mr(make_app(tmp_path / "b", TOML.replace("64K", "68K")))
    assert a != b


def test_image_round_trip(tmp_path: Path) -> None:
    manifest = Manifest.load(make_app(tmp_path / "app"))
    image = EnclaveFile.from_layout(build_layout(manifest), manifest.to_dict())
    path = tmp_path / "t.enclave"
    image.save(path)
    loaded = EnclaveFile.load(path)
    assert loaded == image and not loaded.signed and loaded.mrsigner is None
    assert loaded.mrenclave == build_layout(manifest).mrenclave
    assert loaded.manifest == manifest.to_dict()
    assert loaded.epc_pages == build_layout(manifest).epc_pages


def _image(tmp_path: Path) -> bytes:
    manifest = Manifest.load(make_app(tmp_path / "app"))
    return EnclaveFile.from_layout(build_layout(manifest), manifest.to_dict()).to_bytes()


def test_tampered_sgxs_is_refused(tmp_path: Path) -> None:
    raw = bytearray(_image(tmp_path))
    needle = raw.index(b"alpha")  # trusted file content inside the SGXS part
    raw[needle] ^= 1
    with pytest.raises(InvalidStructure, match="MRENCLAVE mismatch"):
        EnclaveFile.from_bytes(bytes(raw))


def test_tampered_metadata_is_refused(tmp_path: Path) -> None:
    raw = _image(tmp_path)
    forged = raw.replace(b'"threads":2', b'"threads":9', 1)
    assert forged != raw
    with pytest.raises(InvalidStructure, match="differs from the measured manifest"):
        EnclaveFile.from_bytes(forged)
    mr_hex = EnclaveFile.from_bytes(raw).mrenclave.hex().encode()
    forged = raw.replace(mr_hex, b"0" * 64, 1)
    with pytest.raises(InvalidStructure, match="MRENCLAVE mismatch"):
        EnclaveFile.from_bytes(forged)


@pytest.mark.parametrize(("cut", "words"), [
    (lambda b: b"XXXXXXXX" + b[8:], "magic"),
    (lambda b: b[:-1], "do not end at the end"),
    (lambda b: b[:10], "too short"),
    (lambda b: b[:8] + b"\x02" + b[9:], "version 2"),
])
def test_malformed_files(tmp_path: Path, cut: object, words: str) -> None:
    assert callable(cut)
    with pytest.raises(InvalidStructure, match=words):
        EnclaveFile.from_bytes(cut(_image(tmp_path)))


def test_sign(tmp_path: Path) -> None:
    root = make_app(tmp_path / "app", TOML + "debug = true\nproduct_id = 7\nsecurity_version = 3\n")
    manifest = Manifest.load(root)
    key = session_signing_key()
    image = EnclaveFile.from_layout(build_layout(manifest), manifest.to_dict()).sign(key)
    sig = image.sigstruct
    assert sig is not None
    verify(sig)
    assert sig.enclavehash == image.mrenclave
    assert (sig.isvprodid, sig.isvsvn) == (7, 3)
    assert sig.attributes.flags & AttributeFlags.DEBUG
    assert image.mrsigner == key.mrsigner()
    again = EnclaveFile.from_bytes(image.to_bytes())
    assert again.sigstruct == sig


def test_signature_for_another_image_is_refused(tmp_path: Path) -> None:
    key = session_signing_key()
    signed = EnclaveFile.from_bytes(_image(tmp_path / "a")).sign(key).to_bytes()
    manifest = Manifest.load(make_app(tmp_path / "c", TOML.replace('"t"', '"u"')))
    other = EnclaveFile.from_layout(build_layout(manifest), manifest.to_dict()).to_bytes()
    graft = other[:-1808] + signed[-1808:]
    with pytest.raises(InvalidStructure, match="ENCLAVEHASH"):
        EnclaveFile.from_bytes(graft)


def test_production_signature_has_no_debug(tmp_path: Path) -> None:
    image = EnclaveFile.from_bytes(_image(tmp_path)).sign(session_signing_key())
    assert image.sigstruct is not None
    assert not image.sigstruct.attributes.flags & AttributeFlags.DEBUG
