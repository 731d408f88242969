"""enclave.toml: defaults resolved in one place, and every way a manifest is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enclavekit.errors import ManifestError
from enclavekit.host.manifest import Manifest, default_python


def app(tmp_path: Path, toml: str, files: dict[str, str] | None = None) -> Path:
    (tmp_path / "enclave.toml").write_text(toml)
    (tmp_path / "app.py").write_text("def f() -> int:\n    return 1\n")
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_defaults(tmp_path: Path) -> None:
    m = Manifest.load(app(tmp_path, 'name = "demo"\n'))
    assert (m.name, m.entry, m.threads, m.debug) == ("demo", "app.py", 1, False)
    assert (m.product_id, m.security_version) == (0, 0)
    assert m.heap_size == 1 << 20 and m.stack_size == 256 << 10
    assert m.python == default_python()
    assert m.trusted == ("app.py", "enclave.toml")


def test_sizes_globs_and_runtime(tmp_path: Path) -> None:
    root = app(tmp_path, 'name = "d"\nheap_size = "4M"\nstack_size = 8192\nthreads = 3\n'
               'trusted = ["lib/*.py", "data"]\nproduct_id = 65535\n[runtime]\npython = "3.12"\n',
               {"lib/b.py": "", "lib/a.py": "", "data/x.bin": "1", "data/sub/y.bin": "2"})
    m = Manifest.load(root / "enclave.toml")
    assert m.heap_size == 4 << 20 and m.stack_size == 8192 and m.threads == 3
    assert m.trusted == ("app.py", "data/sub/y.bin", "data/x.bin", "enclave.toml",
                         "lib/a.py", "lib/b.py")
    assert m.python == "3.12" and m.product_id == 65535


@pytest.mark.parametrize(("toml", "words"), [
    ('name = "d"\nbogus = 1\n', "unknown key 'bogus'"),
    ('name = "d"\n[runtime]\njit = true\n', "runtime.jit"),
    ('name = "d"\nruntime = 3\n', "[runtime] must be a table"),
    ('entry = "app.py"\n', "missing key 'name'"),
    ('name = "a b"\n', "name must be"),
    ('name = "d"\nproduct_id = 65536\n', "product_id must be in 0..65535, found 65536"),
    ('name = "d"\nsecurity_version = -1\n', "security_version must be in"),
    ('name = "d"\nproduct_id = "1"\n', "product_id must be an integer, found str"),
    ('name = "d"\nthreads = 0\n', "threads must be in 1..256"),
    ('name = "d"\nthreads = true\n', "threads must be an integer"),
    ('name = "d"\ndebug = "yes"\n', "debug must be true or false"),
    ('name = "d"\nheap_size = "4X"\n', "is not a size"),
    ('name = "d"\nheap_size = 4097\n', "multiple of 4096"),
    ('name = "d"\nstack_size = 1.5\n', "found float"),
    ('name = "d"\n[runtime]\npython = "2.7.1"\n', "runtime.python"),
    ('name = "d"\nentry = "main.py"\n', "entry 'main.py' does not exist"),
    ('name = "d"\nentry = "app.txt"\n', ".py file"),
    ('name = "d"\nentry = "../app.py"\n', "no '..'"),
    ('name = "d"\ntrusted = ["/etc/passwd"]\n', "not absolute"),
    ('name = "d"\ntrusted = ["../*"]\n', "no '..'"),
    ('name = "d"\ntrusted = ["nothing*.py"]\n', "matches no file"),
    ('name = "d"\ntrusted = "app.py"\n', "trusted must be a list"),
    ('name = "d\n', "not valid TOML"),
])
def test_refusals(tmp_path: Path, toml: str, words: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.load(app(tmp_path, toml))
    message = str(info.value)
    assert words in message and "enclave.toml" in message and "\n" not in message


def test_toml_error_keeps_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"line 2, column"):
        Manifest.load(app(tmp_path, 'name = "d"\nthreads = = 2\n'))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found; create one with 'enclavekit new'"):
        Manifest.load(tmp_path)


def test_symlink_out_of_the_app_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("host file")
    root = tmp_path / "app"
    root.mkdir()
    os.symlink(outside, root / "link.txt")
    with pytest.raises(ManifestError, match="resolves outside the app directory"):
        Manifest.load(app(root, 'name = "d"\ntrusted = ["link.txt"]\n'))


def test_canonical_json_is_sorted_and_stable(tmp_path: Path) -> None:
    m = Manifest.load(app(tmp_path, 'threads = 2\nname = "d"\n'))
    assert m.canonical_json() == Manifest.load(tmp_path).canonical_json()
    assert m.canonical_json().startswith(b'{"debug":false,"entry":"app.py"')
