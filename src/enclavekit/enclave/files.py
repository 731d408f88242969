"""Protected files: encrypted, integrity-checked files kept on untrusted host storage.

Layout (little-endian)::

    header  128 bytes   magic "EKPF", format 1, key policy (0 = app key, else SEAL KEYPOLICY),
                        FILE ID, logical size, chunk size, chunk count, version, KEYID, ISVSVN,
                        CPUSVN, root nonce, path length, root tag
    path    UTF-8 bytes the path (or name) the file is bound to
    chunks  chunk i = AES-GCM ciphertext of plaintext[i*cs:(i+1)*cs] at data_off + i*cs
    table   chunk count x (nonce 12 || tag 16)

The root tag is AES-GCM (no plaintext, a fresh nonce) over header[:112] || path || table:
it authenticates every chunk's tag, so a chunk from another file, position or version, a
moved file, a changed size and an added or removed chunk are all refused. Chunk AAD is
"EKPF" || FILE ID || SHA-256(path) || index; every chunk write takes a fresh random nonce.
Writes go to a temporary copy that replaces the file atomically on close (temp, fsync,
rename, fsync of the directory); the copy (``.<name>.<random>.ektmp``) is flocked while open,
and one that a killed writer left is removed when the file is next opened. The process
remembers the last version and root it wrote or read per path and refuses older or forked
copies (SE-6, in-run only; see the threat model).
Runs of whole chunks move in batches of about 1 MiB: one ``pwritev`` of their ciphertexts,
or one ``preadv`` into private memory (never decrypted where the host can still change
them) followed by decryption straight into the caller's buffer; a chunk that does not
authenticate is wiped from that buffer before the error is raised.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import struct
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from .._fs import locked_temp, remove_stale_temps
from ..errors import (
    ProtectedFileMoved,
    ProtectedFileRollback,
    ProtectedFileTampered,
    ProtectedFileUsage,
)
from ..sgx.consts import KeyName, KeyPolicy

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DEFAULT_CHUNK_SIZE", "ProtectedFile", "open"]

DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_PATH = 4096
MAGIC = b"EKPF"
FORMAT = 1
_HDR = struct.Struct("<4sHH16sQIIQ32sH16s12sH16s")
_ENTRY = 28  # nonce 12 || tag 16
_DIRTY_LIMIT = 64  # dirty full chunks kept in memory before they are encrypted to the temp file
_BATCH = 1 << 20  # whole chunks read or written with one preadv/pwritev: about this many bytes
Mode = Literal["rb", "wb", "r+b", "w+b"]
_MODES = {"rb": (True, False, False), "wb": (False, True, True), "w+b": (True, True, True),
          "r+b": (True, True, False)}  # readable, writable, create


@dataclass(frozen=True)
class _KeyRef:
    """What derives a file's key: the app's key (policy 0) or EGETKEY(SEAL) inputs."""

    policy: int
    keyid: bytes
    isvsvn: int
    cpusvn: bytes


@dataclass(frozen=True)
class _Header:
    policy: int
    file_id: bytes
    size: int
    chunk_size: int
    count: int
    version: int
    keyid: bytes
    isvsvn: int
    cpusvn: bytes
    root_nonce: bytes
    path_len: int
    root: bytes

    @property
    def key_ref(self) -> _KeyRef:
        return _KeyRef(self.policy, self.keyid, self.isvsvn, self.cpusvn)


class _AppKey:
    """A key the app provides (16, 24 or 32 bytes)."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
            raise ProtectedFileUsage("protected file key: expected 16, 24 or 32 bytes, found "
                                     + (f"{len(key)}" if isinstance(key, bytes) else "no bytes"))
        self.key = key

    def new(self) -> tuple[_KeyRef, bytes]:
        return _KeyRef(0, os.urandom(32), 0, bytes(16)), self.key

    def derive(self, ref: _KeyRef, where: str) -> bytes:
        if ref.policy != 0:
            raise ProtectedFileTampered(f"{where}: the header names the sealing key (policy "
                                        f"{ref.policy:#x}), not an app key: it was modified, "
                                        "or open it with key=None inside the enclave")
        return self.key


class _SealKey:
    """EGETKEY(SEAL) with a fresh KEYID per file (needs a running enclave)."""

    def __init__(self, policy: int) -> None:
        if policy not in (KeyPolicy.MRSIGNER, KeyPolicy.MRENCLAVE):
            raise ProtectedFileUsage(f"protected file policy: expected MRSIGNER or MRENCLAVE, "
                                     f"found {policy!r}")
        self.policy = int(policy)

    def new(self) -> tuple[_KeyRef, bytes]:
        from .api import _own_cpusvn, identity

        ref = _KeyRef(self.policy, os.urandom(32), identity().isvsvn, _own_cpusvn())
        return ref, self._get(ref)

    def derive(self, ref: _KeyRef, where: str) -> bytes:
        if ref.policy not in (KeyPolicy.MRSIGNER, KeyPolicy.MRENCLAVE):
            raise ProtectedFileTampered(f"{where}: the header names an app key, not the "
                                        "sealing key: it was modified, or pass key= to open it")
        return self._get(ref)

    @staticmethod
    def _get(ref: _KeyRef) -> bytes:
        from .api import get_key

        return get_key(KeyName.SEAL, ref.policy, keyid=ref.keyid, isvsvn=ref.isvsvn,
                       cpusvn=ref.cpusvn)


_Keys = _AppKey | _SealKey


# ---------------------------------------------------------------- freshness (SE-6, in-run)

_seen: dict[str, tuple[int, bytes]] = {}
_seen_lock = threading.Lock()


def _check_fresh(binding: str, version: int, root: bytes) -> None:
    with _seen_lock:
        last = _seen.get(binding)
    if last is None:
        return
    if version < last[0]:
        raise ProtectedFileRollback(
            f"{binding}: version {version} is older than version {last[0]} this enclave "
            "already wrote or read: an old copy was restored (rollback)")
    if version == last[0] and root != last[1]:
        raise ProtectedFileRollback(
            f"{binding}: version {version} differs from the version {version} this enclave "
            "already saw: a forked or substituted copy")


def _remember(binding: str, version: int, root: bytes) -> None:
    with _seen_lock:
        last = _seen.get(binding)
        if last is None or version >= last[0]:
            _seen[binding] = (version, root)


def _last_version(binding: str) -> int:
    with _seen_lock:
        last = _seen.get(binding)
    return 0 if last is None else last[0]


# ---------------------------------------------------------------- format


def _aead(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _parse_header(raw: bytes, where: str, file_len: int) -> _Header:
    """The header's fields, refused before any allocation if they lie about the lengths."""
    if len(raw) < _HDR.size:
        raise ProtectedFileTampered(f"{where}: header is {len(raw)} bytes, expected "
                                    f"{_HDR.size}: the file was truncated")
    (magic, fmt, policy, file_id, size, cs, count, version, keyid, isvsvn, cpusvn, rnonce,
     plen, root) = _HDR.unpack(raw[:_HDR.size])
    if magic != MAGIC:
        raise ProtectedFileTampered(f"{where}: magic {magic!r}, expected {MAGIC!r}: not a "
                                    "protected file")
    if fmt != FORMAT:
        raise ProtectedFileTampered(f"{where}: format {fmt}, expected {FORMAT}")
    if policy not in (0, KeyPolicy.MRENCLAVE, KeyPolicy.MRSIGNER):
        raise ProtectedFileTampered(f"{where}: key policy {policy:#x} is not 0, MRENCLAVE or "
                                    "MRSIGNER")
    if not MIN_CHUNK_SIZE <= cs <= MAX_CHUNK_SIZE:
        raise ProtectedFileTampered(f"{where}: chunk size {cs} outside "
                                    f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    if count != -(-size // cs):
        raise ProtectedFileTampered(f"{where}: chunk count {count} does not match size {size} "
                                    f"in chunks of {cs}")
    if plen > MAX_PATH:
        raise ProtectedFileTampered(f"{where}: path length {plen} exceeds {MAX_PATH}")
    expected = _HDR.size + plen + size + count * _ENTRY
    if file_len != expected:
        raise ProtectedFileTampered(f"{where}: file is {file_len} bytes, the header says "
                                    f"{expected}: truncated, extended or a size field edited")
    return _Header(policy, file_id, size, cs, count, version, keyid, isvsvn, cpusvn, rnonce,
                   plen, root)


def _pack_header(h: _Header) -> bytes:
    return _HDR.pack(MAGIC, FORMAT, h.policy, h.file_id, h.size, h.chunk_size, h.count,
                     h.version, h.keyid, h.isvsvn, h.cpusvn, h.root_nonce, h.path_len, h.root)


def _read_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    while len(data) < n:
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def _preadv_exact(fd: int, views: list[memoryview], offset: int) -> int:
    """Fill ``views`` from ``offset`` (short reads continued); the bytes read (less at EOF)."""
    total, first = 0, 0
    while first < len(views):
        got = os.preadv(fd, views[first:first + 1024], offset + total)
        if got == 0:
            break
        total += got
        while first < len(views) and got >= len(views[first]):
            got -= len(views[first])
            first += 1
        if got:
            views[first] = views[first][got:]
    return total


def _pwritev_all(fd: int, views: list[memoryview], offset: int) -> None:
    """Write all of ``views`` at ``offset`` (short writes continued)."""
    first = 0
    while first < len(views):
        done = os.pwritev(fd, views[first:first + 1024], offset)
        offset += done
        while first < len(views) and done >= len(views[first]):
            done -= len(views[first])
            first += 1
        if done:
            views[first] = views[first][done:]


def _binding(path: str | os.PathLike[str], name: str | None) -> str:
    if name is not None:
        if not isinstance(name, str) or not name:
            raise ProtectedFileUsage("protected file name: expected a non-empty string")
        return name
    return os.path.abspath(os.fspath(path))


# ---------------------------------------------------------------- the file object


class ProtectedFile:
    """An open protected file: read, write, seek, tell, truncate; committed on close."""

    def __init__(self, path: str | os.PathLike[str], mode: Mode, keys: _Keys, binding: str,
                 chunk_size: int) -> None:
        if mode not in _MODES:
            raise ProtectedFileUsage(f"protected file mode {mode!r}: expected one of "
                                     f"{', '.join(_MODES)}")
        self._readable, self._writable, create = _MODES[mode]
        self.name = os.fspath(path)
        self.mode = mode
        self._binding = binding
        self._pbytes = binding.encode("utf-8", "surrogateescape")
        if len(self._pbytes) > MAX_PATH:
            raise ProtectedFileUsage(f"protected file path: {len(self._pbytes)} bytes, at most "
                                     f"{MAX_PATH}")
        self._aad_prefix = b""
        self._data_off = _HDR.size + len(self._pbytes)
        self._fd = -1
        self._tmp: str | None = None
        self._closed = False
        self._pos = 0
        self._dirty: dict[int, bytearray] = {}
        self._cache: tuple[int, bytes | bytearray] | None = None
        self._table: list[bytes] = []
        self._lens: list[int] = []
        self._iobuf = bytearray()
        target = os.path.abspath(self.name)
        # the temp copies of this file that a killed writer left (never a live writer's)
        remove_stale_temps(os.path.dirname(target), os.path.basename(target))
        if create:
            self._create(keys, chunk_size)
        else:
            self._open_existing(keys)

    # -- opening

    def _create(self, keys: _Keys, chunk_size: int) -> None:
        if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ProtectedFileUsage(f"chunk size {chunk_size!r}: expected "
                                     f"{MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        self._base_version = max(self._existing_version(keys), _last_version(self._binding))
        self._ref, key = keys.new()
        self._set_key(key, os.urandom(16))
        self._cs = chunk_size
        self._size = 0
        self._changed = True
        self._fd = self._make_temp(None)

    def _existing_version(self, keys: _Keys) -> int:
        """The authentic version now at the path (0 if none), so a rewrite supersedes it."""
        try:
            fd = os.open(self.name, os.O_RDONLY)
        except OSError:
            return 0
        try:
            return self._verify(fd, keys)[0].version
        except Exception:  # tampered, moved, older, or another key/signer/platform: replaced
            return 0
        finally:
            os.close(fd)

    def _open_existing(self, keys: _Keys) -> None:
        fd = os.open(self.name, os.O_RDONLY)
        try:
            h, key, table = self._verify(fd, keys)
            if self._writable:
                tmp_fd = self._make_temp(fd)
                os.close(fd)
                fd = tmp_fd
        except BaseException:
            os.close(fd)
            self._drop_temp()
            raise
        self._fd = fd
        self._changed = False
        self._ref = h.key_ref
        self._set_key(key, h.file_id)
        self._cs = h.chunk_size
        self._size = h.size
        self._base_version = h.version
        self._table = [table[i:i + _ENTRY] for i in range(0, len(table), _ENTRY)]
        self._lens = [min(h.chunk_size, h.size - i * h.chunk_size) for i in range(h.count)]
        _remember(self._binding, h.version, h.root)

    def _verify(self, fd: int, keys: _Keys) -> tuple[_Header, bytes, bytes]:
        """Parse and authenticate the header and chunk table; check path and freshness."""
        from cryptography.exceptions import InvalidTag

        where = self._binding
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ProtectedFileTampered(f"{where}: not a regular file")
        raw = _read_exact(fd, _HDR.size, 0)
        h = _parse_header(raw, where, st.st_size)
        stored_path = _read_exact(fd, h.path_len, _HDR.size)
        table = _read_exact(fd, h.count * _ENTRY, _HDR.size + h.path_len + h.size)
        key = keys.derive(h.key_ref, where)
        try:
            _aead(key).decrypt(h.root_nonce, h.root, raw[:_HDR.size - 16] + stored_path + table)
        except InvalidTag:
            raise ProtectedFileTampered(
                f"{where}: header and chunk table do not authenticate: the file was modified, "
                "or protected with another key (signer, enclave or platform)") from None
        if stored_path != self._pbytes:
            shown = stored_path.decode("utf-8", "replace")
            raise ProtectedFileMoved(f"{where}: the file is bound to {shown!r}: it was moved "
                                     "or swapped with another protected file")
        _check_fresh(self._binding, h.version, h.root)
        return h, key, table

    def _set_key(self, key: bytes, file_id: bytes) -> None:
        self._aead_obj = _aead(key)
        self._file_id = file_id
        self._aad_prefix = MAGIC + file_id + hashlib.sha256(self._pbytes).digest()

    def _make_temp(self, src: int | None) -> int:
        """A temporary file beside the target (a copy of ``src`` when given)."""
        fd, tmp = locked_temp(self.name)  # locked while open: no clean-up removes it
        self._tmp = tmp
        try:
            os.fchmod(fd, 0o600)
            if src is not None:
                size = os.fstat(src).st_size
                done = 0
                while done < size:
                    n = os.copy_file_range(src, fd, size - done, done, done)
                    if n == 0:
                        break
                    done += n
        except BaseException:
            os.close(fd)
            self._drop_temp()
            raise
        return fd

    def _drop_temp(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None

    # -- chunks

    def _aad(self, index: int) -> bytes:
        return self._aad_prefix + index.to_bytes(8, "little")

    def _iobuf_view(self, size: int) -> memoryview:
        if len(self._iobuf) < size:
            self._iobuf = bytearray(size)
        return memoryview(self._iobuf)[:size]

    def _decrypt(self, index: int) -> bytearray:
        """Chunk ``index``'s plaintext."""
        out = bytearray(self._lens[index])
        self._decrypt_run(index, 1, memoryview(out))
        return out

    def _decrypt_run(self, first: int, count: int, out: memoryview) -> None:
        """Chunks ``first`` .. ``first + count - 1`` decrypted into ``out`` (exactly their size).

        One preadv copies their ciphertexts from storage into private memory (never decrypted
        where the host can still change them), each followed by a gap that takes its tag from
        the authenticated table; each chunk is then decrypted straight into ``out``.
        """
        from cryptography.exceptions import InvalidTag

        lens = self._lens[first:first + count]
        buf = self._iobuf_view(sum(lens) + 16 * count)
        slots, pos = [], 0
        for n in lens:
            slots.append(buf[pos:pos + n])
            pos += n + 16
        want = pos - 16 * count
        got = _preadv_exact(self._fd, list(slots), self._data_off + first * self._cs)
        if got != want:
            short = first + next(i for i in range(count) if got < sum(lens[:i + 1]))
            have = max(0, got - sum(lens[:short - first]))
            raise ProtectedFileTampered(f"{self._binding}: chunk {short} is {have} bytes, "
                                        f"expected {self._lens[short]}: the file was truncated")
        aead, aad, table = self._aead_obj, self._aad_prefix, self._table
        pos = done = 0
        for i, n in enumerate(lens, first):
            entry = table[i]
            buf[pos + n:pos + n + 16] = entry[12:]
            try:
                aead.decrypt_into(entry[:12], buf[pos:pos + n + 16],
                                  aad + i.to_bytes(8, "little"), out[done:done + n])
            except InvalidTag:
                out[done:done + n] = bytes(n)  # no unauthenticated plaintext left behind
                raise ProtectedFileTampered(
                    f"{self._binding}: chunk {i} does not authenticate: it was modified, "
                    "moved, or taken from another file or version") from None
            pos += n + 16
            done += n

    def _plain(self, index: int) -> bytes | bytearray:
        buf = self._dirty.get(index)
        if buf is not None:
            return buf
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        data = self._decrypt(index)
        self._cache = (index, data)
        return data

    def _encrypt(self, index: int, data: bytes | bytearray | memoryview) -> None:
        self._encrypt_run(index, [memoryview(data).cast("B")])

    def _encrypt_run(self, first: int, pieces: list[memoryview]) -> None:
        """Chunks ``first`` .. on from ``pieces`` (all but the last whole): each encrypted with
        a fresh nonce, the ciphertexts written with one pwritev, the tags kept for the table."""
        total = sum(len(p) for p in pieces)
        buf = self._iobuf_view(total + 16 * len(pieces))
        aead, aad = self._aead_obj, self._aad_prefix
        slots, entries, pos = [], [], 0
        for i, piece in enumerate(pieces, first):
            n = len(piece)
            nonce = os.urandom(12)
            aead.encrypt_into(nonce, piece, aad + i.to_bytes(8, "little"),
                              buf[pos:pos + n + 16])
            slots.append(buf[pos:pos + n])
            entries.append(nonce + bytes(buf[pos + n:pos + n + 16]))
            pos += n + 16
        _pwritev_all(self._fd, slots, self._data_off + first * self._cs)
        last = first + len(pieces)
        while len(self._table) < last:
            self._table.append(b"")
            self._lens.append(0)
        self._table[first:last] = entries
        self._lens[first:last] = [len(p) for p in pieces]
        if self._cache is not None and first <= self._cache[0] < last:
            self._cache = None

    def _flush_full(self) -> None:
        for index in [i for i, b in self._dirty.items() if len(b) == self._cs]:
            self._encrypt(index, self._dirty.pop(index))

    def _chunk_len(self, index: int, size: int) -> int:
        return max(0, min(self._cs, size - index * self._cs))

    # -- file API

    def _check(self, write: bool = False) -> None:
        if self._closed:
            raise ProtectedFileUsage(f"{self._binding}: the protected file is closed")
        if write and not self._writable:
            raise ProtectedFileUsage(f"{self._binding}: opened {self.mode!r}, not for writing")
        if not write and not self._readable:
            raise ProtectedFileUsage(f"{self._binding}: opened {self.mode!r}, not for reading")

    @property
    def closed(self) -> bool:
        """Whether the file is closed."""
        return self._closed

    @property
    def version(self) -> int:
        """The version this handle read (or, after close of a write, committed)."""
        return self._base_version

    def readable(self) -> bool:
        """Whether the mode allows reading."""
        return self._readable

    def writable(self) -> bool:
        """Whether the mode allows writing."""
        return self._writable

    def seekable(self) -> bool:
        """Always true: chunks give random access."""
        return True

    def tell(self) -> int:
        """The current position."""
        if self._closed:
            raise ProtectedFileUsage(f"{self._binding}: the protected file is closed")
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position (SEEK_SET, SEEK_CUR, SEEK_END); beyond the end is allowed."""
        if self._closed:
            raise ProtectedFileUsage(f"{self._binding}: the protected file is closed")
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ProtectedFileUsage(f"seek whence {whence!r}: expected 0, 1 or 2")
        if base + offset < 0:
            raise ProtectedFileUsage(f"seek to {base + offset}: negative position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the position (all to the end if negative)."""
        self._check()
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        # decrypted straight into a BytesIO's own buffer, which getvalue() returns uncopied
        out = io.BytesIO()
        out.seek(end - self._pos - 1)
        out.write(b"\0")
        with out.getbuffer() as view:
            self._read_into(view)
        return out.getvalue()

    def _read_into(self, out: memoryview) -> int:
        pos, end = self._pos, min(self._size, self._pos + len(out))
        done = 0
        lens, dirty, stored = self._lens, self._dirty, len(self._lens)
        per_batch = max(1, _BATCH // self._cs)
        while pos < end:
            index, off = divmod(pos, self._cs)
            # a run of whole, stored, clean chunks inside the read: decrypted in place
            run = take = 0
            while (off == 0 and run < per_batch and index + run < stored
                   and pos + take + lens[index + run] <= end
                   and index + run not in dirty
                   and (self._cache is None or self._cache[0] != index + run)):
                take += lens[index + run]
                run += 1
            if run:
                self._decrypt_run(index, run, out[done:done + take])
            else:
                take = min(self._cs - off, end - pos)
                out[done:done + take] = self._plain(index)[off:off + take]
            pos += take
            done += take
        self._pos = max(self._pos, pos)
        return done

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into ``buffer``; the number of bytes read."""
        self._check()
        return self._read_into(memoryview(buffer).cast("B"))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data`` at the position (a gap past the end reads as zeros)."""
        self._check(write=True)
        view = memoryview(data).cast("B")
        if self._pos > self._size:
            self._resize(self._pos)
        pos, done, total = self._pos, 0, len(view)
        per_batch = max(1, _BATCH // self._cs)
        while done < total:
            index, off = divmod(pos, self._cs)
            take = min(self._cs - off, total - done)
            if off == 0 and take == self._cs:
                # whole chunks, up to a batch: encrypted and written together
                run = min(per_batch, (total - done) // self._cs)
                take = run * self._cs
                for i in range(index, index + run):
                    self._dirty.pop(i, None)
                self._encrypt_run(index, [view[o:o + self._cs]
                                          for o in range(done, done + take, self._cs)])
            else:
                buf = self._dirty.get(index)
                if buf is None:
                    buf = bytearray(self._plain(index)) if index < self._count() else bytearray()
                    self._dirty[index] = buf
                if len(buf) < off + take:
                    buf.extend(bytes(off + take - len(buf)))
                buf[off:off + take] = view[done:done + take]
                if self._cache is not None and self._cache[0] == index:
                    self._cache = None
            pos += take
            done += take
            self._size = max(self._size, pos)
        self._pos = pos
        self._changed = True
        if len(self._dirty) > _DIRTY_LIMIT:
            self._flush_full()
        return total

    def truncate(self, size: int | None = None) -> int:
        """Cut or zero-extend the file to ``size`` (default: the position)."""
        self._check(write=True)
        new = self._pos if size is None else size
        if new < 0:
            raise ProtectedFileUsage(f"truncate to {new}: negative size")
        self._resize(new)
        self._changed = True
        return new

    def _count(self) -> int:
        return -(-self._size // self._cs)

    def _resize(self, new: int) -> None:
        old = self._size
        if new == old:
            return
        if new < old:
            count = -(-new // self._cs)
            for index in [i for i in self._dirty if i >= count]:
                del self._dirty[index]
            del self._table[count:]
            del self._lens[count:]
            if new % self._cs:
                last = new // self._cs
                self._dirty[last] = bytearray(self._plain(last))[:new % self._cs]
        else:
            if old % self._cs:
                last = old // self._cs
                buf = self._dirty.get(last) or bytearray(self._plain(last))
                buf.extend(bytes(self._chunk_len(last, new) - len(buf)))
                self._dirty[last] = buf
            for index in range(-(-old // self._cs), -(-new // self._cs)):
                self._dirty[index] = bytearray(self._chunk_len(index, new))
                if len(self._dirty) > _DIRTY_LIMIT:
                    self._flush_full()
        self._cache = None
        self._size = new

    def flush(self) -> None:
        """Nothing to do: changes become durable, atomically, on close."""

    def close(self) -> None:
        """Commit a written file atomically (temp, fsync, rename); release the handle."""
        if self._closed:
            return
        try:
            if self._writable and self._changed:
                self._commit()
        finally:
            self._closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._drop_temp()
            self._dirty.clear()
            self._cache = None

    def discard(self) -> None:
        """Close without committing: the file on storage stays as it was."""
        if self._closed:
            return
        self._changed = False
        self.close()

    def _commit(self) -> None:
        for index in sorted(self._dirty):
            self._encrypt(index, self._dirty.pop(index))
        count = self._count()
        del self._table[count:]
        del self._lens[count:]
        table = b"".join(self._table)
        assert len(table) == count * _ENTRY
        version = max(self._base_version, _last_version(self._binding)) + 1
        nonce = os.urandom(12)
        h = _Header(self._ref.policy, self._file_id, self._size, self._cs, count, version,
                    self._ref.keyid, self._ref.isvsvn, self._ref.cpusvn, nonce,
                    len(self._pbytes), bytes(16))
        signed = _pack_header(h)[:_HDR.size - 16] + self._pbytes
        root = self._aead_obj.encrypt(nonce, b"", signed + table)
        os.pwrite(self._fd, signed[:_HDR.size - 16] + root + self._pbytes, 0)
        end = self._data_off + self._size
        os.pwrite(self._fd, table, end)
        os.ftruncate(self._fd, end + len(table))
        os.fsync(self._fd)
        assert self._tmp is not None
        target = os.path.abspath(self.name)
        os.replace(self._tmp, target)
        self._tmp = None
        dir_fd = os.open(os.path.dirname(target), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._base_version = version
        _remember(self._binding, version, root)

    def __enter__(self) -> ProtectedFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.discard()


def open(path: str | os.PathLike[str], mode: Mode = "rb", *, key: bytes | None = None,
         policy: KeyPolicy | int = KeyPolicy.MRSIGNER, name: str | None = None,
         chunk_size: int = DEFAULT_CHUNK_SIZE) -> ProtectedFile:
    """Open a protected file on host storage, like the built-in ``open`` in binary mode.

    ``key`` (16/24/32 bytes) protects the file with the app's key; without it the key is
    EGETKEY(SEAL, ``policy``, a fresh KEYID kept in the file's header), which works only
    inside an enclave. The file is bound to ``name`` or else to its absolute path.

    Raises:
        ProtectedFileTampered: a header, table, chunk or length does not authenticate.
        ProtectedFileMoved: the file is bound to another path.
        ProtectedFileRollback: an older or forked copy of a version this process saw.
    """
    keys: _Keys = _AppKey(key) if key is not None else _SealKey(int(policy))
    return ProtectedFile(path, mode, keys, _binding(path, name), chunk_size)
