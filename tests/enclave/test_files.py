"""Protected files: round trips, random access against a bytearray model, usage errors, atomic
commit, and the sealing-key default inside a real enclave."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclavekit.enclave import files
from enclavekit.errors import EnclaveKitError, ProtectedFileTampered, ProtectedFileUsage
from enclavekit.host import VM, build
from enclavekit.sgx.signing import SigningKey
from tests.sgx.conftest import session_signing_key
from tests.vm._device import device_server

KEY = bytes(range(16))


def test_round_trip_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "a.pf"
    data = os.urandom(10_000)
    with files.open(path, "wb", key=KEY, chunk_size=1024) as f:
        assert f.write(data) == len(data)
    assert data not in path.read_bytes() and data[:64] not in path.read_bytes()
    with files.open(path, "rb", key=KEY) as f:
        assert f.version == 1
        assert f.read() == data
        assert f.read() == b""
    with files.open(path, "r+b", key=KEY) as f:
        f.seek(5000)
        f.write(b"xyz")
    with files.open(path, "rb", key=KEY) as f:
        assert f.version == 2
        assert f.read() == data[:5000] + b"xyz" + data[5003:]
    with files.open(path, "wb", key=KEY) as f:  # a rewrite supersedes the existing version
        f.write(b"new")
    with files.open(path, "rb", key=KEY) as f:
        assert (f.version, f.read()) == (3, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["a.pf"]  # no temporary left behind


def test_empty_file(tmp_path: Path) -> None:
    with files.open(tmp_path / "e", "wb", key=KEY):
        pass
    with files.open(tmp_path / "e", "rb", key=KEY) as f:
        assert f.read() == b""


@settings(max_examples=300)
@given(chunk=st.sampled_from([16, 17, 64]),
       initial=st.binary(max_size=300),
       ops=st.lists(st.one_of(
           st.tuples(st.just("write"), st.integers(0, 400), st.binary(max_size=150)),
           st.tuples(st.just("read"), st.integers(0, 400), st.integers(-1, 200)),
           st.tuples(st.just("truncate"), st.integers(0, 400), st.just(0)),
       ), max_size=12))
def test_random_access_matches_a_bytearray_model(
        tmp_path_factory: pytest.TempPathFactory, chunk: int, initial: bytes,
        ops: list[tuple[str, int, object]]) -> None:
    path = tmp_path_factory.mktemp("ra") / "f.pf"
    with files.open(path, "wb", key=KEY, chunk_size=chunk) as f:
        f.write(initial)
    model = bytearray(initial)
    with files.open(path, "r+b", key=KEY) as f:
        for op, pos, arg in ops:
            assert f.seek(pos) == pos
            if op == "write":
                assert isinstance(arg, bytes)
                if pos > len(model):
                    model.extend(bytes(pos - len(model)))
                model[pos:pos + len(arg)] = arg
                f.write(arg)
                assert f.tell() == pos + len(arg)
            elif op == "read":
                assert isinstance(arg, int)
                want = bytes(model[pos:] if arg < 0 else model[pos:pos + arg])
                assert f.read(arg) == want
            else:
                del model[pos:]
                if pos > len(model):
                    model.extend(bytes(pos - len(model)))
                f.truncate(pos)
        f.seek(0)
        assert f.read() == bytes(model)
    with files.open(path, "rb", key=KEY) as f:
        assert f.read() == bytes(model)
        assert f.seek(0, os.SEEK_END) == len(model)


def test_large_sequential_write_spills_to_storage_and_reads_back(tmp_path: Path) -> None:
    data = os.urandom(300 * 1024 + 7)
    with files.open(tmp_path / "big", "wb", key=KEY, chunk_size=1024) as f:
        for off in range(0, len(data), 777):  # unaligned writes: partial chunks get spilled
            f.write(data[off:off + 777])
    with files.open(tmp_path / "big", "rb", key=KEY) as f:
        buf = bytearray(len(data) + 10)
        assert f.readinto(buf) == len(data)
        assert bytes(buf[:len(data)]) == data


def test_an_exception_in_the_with_block_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.pf"
    with files.open(path, "wb", key=KEY) as f:
        f.write(b"old")
    before = path.read_bytes()
    with pytest.raises(RuntimeError), files.open(path, "r+b", key=KEY) as f:
        f.write(b"NEW")
        raise RuntimeError("crash before close")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.pf"]


def test_usage_errors_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "a.pf"
    with pytest.raises(ProtectedFileUsage, match="16, 24 or 32"):
        files.open(path, "wb", key=b"short")
    with pytest.raises(ProtectedFileUsage, match="mode"):
        files.open(path, "ab", key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ProtectedFileUsage, match="chunk size"):
        files.open(path, "wb", key=KEY, chunk_size=8)
    with files.open(path, "wb", key=KEY) as f:
        f.write(b"x")
        with pytest.raises(ProtectedFileUsage, match="not for reading"):
            f.read()
        with pytest.raises(ProtectedFileUsage, match="negative"):
            f.seek(-1)
    with files.open(path, "rb", key=KEY) as f, \
            pytest.raises(ProtectedFileUsage, match="not for writing"):
        f.write(b"y")
    with pytest.raises(ProtectedFileUsage, match="closed"):
        f.read()
    with pytest.raises(FileNotFoundError):
        files.open(tmp_path / "missing", "rb", key=KEY)


def test_wrong_key_is_refused(tmp_path: Path) -> None:
    with files.open(tmp_path / "a", "wb", key=KEY) as f:
        f.write(b"secret")
    with pytest.raises(ProtectedFileTampered, match="another key"):
        files.open(tmp_path / "a", "rb", key=bytes(16))


def test_sealing_key_needs_an_enclave(tmp_path: Path) -> None:
    with pytest.raises(EnclaveKitError, match="not inside an enclave"):
        files.open(tmp_path / "a", "wb")


# ---------------------------------------------------------------- inside a real enclave

APP = '''
from enclavekit.enclave import ecall, files


@ecall
def put(path: str, data: bytes) -> int:
    with files.open(path, "wb") as f:
        f.write(data)
    return f.version


@ecall
def get(path: str) -> bytes:
    with files.open(path, "rb") as f:
        return f.read()
'''


def _image(root: Path, key: SigningKey) -> Path:
    root.mkdir()
    (root / "enclave.toml").write_text('name = "pf"\nentry = "app.py"\ndebug = false\n'
                                       'heap_size = "256K"\nstack_size = "64K"\nthreads = 1\n')
    (root / "app.py").write_text(APP)
    out = root / "pf.enclave"
    build(root).sign(key).save(out)
    return out


def test_sealed_protected_file_in_a_real_enclave_and_another_signer_cannot_open_it(
        tmp_path: Path) -> None:
    ours = _image(tmp_path / "ours", session_signing_key())
    theirs = _image(tmp_path / "theirs", SigningKey.generate())
    data = os.urandom(200_000)
    path = str(tmp_path / "store" / "state.pf")
    os.makedirs(os.path.dirname(path))
    with device_server(tmp_path, fake=False) as (_, sock, store), \
            VM("testvm", sock, store=store) as vm:
        with vm.load(ours) as enc:
            assert enc.ecalls.put(path, data) == 1
            assert enc.ecalls.get(path) == data
        assert data[:32] not in Path(path).read_bytes()
        with vm.load(ours) as enc:  # a new instance of the same signer: same seal key
            assert enc.ecalls.get(path) == data
        with vm.load(theirs) as enc, \
                pytest.raises(ProtectedFileTampered, match="another key"):  # another MRSIGNER
            enc.ecalls.get(path)


def test_batched_reads_and_writes_beyond_one_syscalls_iovec_limit(tmp_path: Path) -> None:
    # 16-byte chunks: one write or read call covers thousands of chunks, more than the 1,024
    # iovecs one preadv/pwritev takes, and more than one batch
    data = os.urandom(16 * 70_000 + 5)
    path = tmp_path / "many.pf"
    with files.open(path, "wb", key=KEY, chunk_size=16) as f:
        assert f.write(data) == len(data)
    with files.open(path, "rb", key=KEY) as f:
        assert f.read(3) == data[:3]  # unaligned start, then whole chunks in batches
        assert f.read() == data[3:]
        f.seek(0)
        buf = bytearray(len(data))
        assert f.readinto(buf) == len(data) and bytes(buf) == data


def test_a_file_cut_short_while_open_names_the_first_short_chunk(tmp_path: Path) -> None:
    path = tmp_path / "cut.pf"
    data = os.urandom(10 * 1024)
    with files.open(path, "wb", key=KEY, chunk_size=1024) as f:
        f.write(data)
    with files.open(path, "rb", key=KEY) as f:  # authentic at open; the host then cuts it
        data_off = files._HDR.size + len(os.path.abspath(path).encode())
        os.truncate(path, data_off + 5 * 1024 + 100)
        assert f.read(2048) == data[:2048]
        with pytest.raises(ProtectedFileTampered, match=r"chunk 5 is 100 bytes, expected "
                           r"1024: the file was truncated"):
            f.read()



# ---------------------------------------------------------------- reads of several batches

def _three_batches(path: Path) -> tuple[bytes, int, int]:
    """A file of three whole-chunk batches and a partial chunk: (data, chunk size, chunks per
    batch)."""
    cs = 16 * 1024
    per = files._BATCH // cs
    data = os.urandom(3 * per * cs + 100)
    with files.open(path, "wb", key=KEY, chunk_size=cs) as f:
        f.write(data)
    return data, cs, per


@pytest.mark.parametrize("where", [0, 5])
def test_a_chunk_tampered_in_the_second_batch_leaves_no_plaintext_of_that_batch(
        tmp_path: Path, where: int) -> None:
    path = tmp_path / "f.pf"
    data, cs, per = _three_batches(path)
    bad = per + where  # a chunk of the second batch of one read
    data_off = files._HDR.size + len(os.path.abspath(path).encode())
    with path.open("r+b") as raw:
        raw.seek(data_off + bad * cs + 7)
        byte = raw.read(1)
        raw.seek(data_off + bad * cs + 7)
        raw.write(bytes([byte[0] ^ 0x80]))
    buf = bytearray(b"\xee" * len(data))
    with files.open(path, "rb", key=KEY) as f, \
            pytest.raises(ProtectedFileTampered, match=rf"^{path}: chunk {bad} does not "
                          "authenticate: it was modified, moved, or taken from another file "
                          "or version$"):
        f.readinto(buf)
    assert buf[:bad * cs] == data[:bad * cs]  # the chunks before it were authentic
    assert buf[bad * cs:(bad + 1) * cs] == bytes(cs)  # the bad chunk's decryption was wiped
    assert buf[(bad + 1) * cs:] == b"\xee" * (len(data) - (bad + 1) * cs)  # nothing after it


def test_a_truncation_in_a_later_batch_raises_the_usual_error(tmp_path: Path) -> None:
    path = tmp_path / "f.pf"
    data, cs, per = _three_batches(path)
    with files.open(path, "rb", key=KEY) as f:  # authentic at open; the host then cuts it
        data_off = files._HDR.size + len(os.path.abspath(path).encode())
        short = 2 * per + 3  # in the third batch of one read
        os.truncate(path, data_off + short * cs + 100)
        buf = bytearray(b"\xee" * len(data))
        with pytest.raises(ProtectedFileTampered, match=rf"^{path}: chunk {short} is 100 bytes, "
                           rf"expected {cs}: the file was truncated$"):
            f.readinto(buf)
        assert buf[:2 * per * cs] == data[:2 * per * cs]  # two whole authentic batches
        assert buf[2 * per * cs:] == b"\xee" * (len(data) - 2 * per * cs)  # nothing of the third
        f.seek(0)
        assert f.read(cs) == data[:cs]  # the handle still works


def test_an_os_error_in_a_later_batch_is_raised_and_the_handle_still_works(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.pf"
    data, _, _ = _three_batches(path)
    preadv, calls = os.preadv, []

    def failing(fd: int, views: list[memoryview], offset: int) -> int:
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.EIO, "injected I/O error")
        return preadv(fd, views, offset)

    monkeypatch.setattr(os, "preadv", failing)
    with files.open(path, "rb", key=KEY) as f:
        with pytest.raises(OSError, match="injected I/O error"):
            f.read()
        f.seek(0)
        assert f.read() == data
