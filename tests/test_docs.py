"""The docs tell the truth: every ``python`` code block in docs/ runs as written.

Most pages' blocks run alone. A walkthrough page (the guide) is a path a reader follows in
one shell: its ``sh`` and ``python`` blocks run in order in one fresh directory with a
private data directory, each ``python`` block as its own program, and a ``python`` block
whose first line is ``# PATH`` naming a file the commands before it wrote is that file's
text, compared instead of run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
WALKTHROUGHS = ("guide.md",)
_FENCE = re.compile(r"```(python|sh)\n(.*?)```", re.S)

BLOCKS = [
    pytest.param(code, id=f"{path.relative_to(DOCS)}#{i}")
    for path in sorted(DOCS.rglob("*.md")) if str(path.relative_to(DOCS)) not in WALKTHROUGHS
    for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))
]


@pytest.mark.parametrize("code", BLOCKS)
def test_doc_example_runs(code: str) -> None:
    exec(compile(code, "<doc>", "exec"), {})


def test_docs_have_examples() -> None:
    assert BLOCKS


def walkthrough(page: str, cwd: Path, env: dict[str, str]) -> str:
    """Run the ``sh`` and ``python`` blocks of ``page`` in order in ``cwd``; their output.

    Fails on the first block that exits non-zero or file block that differs from the file.
    """
    out = []
    for i, (kind, code) in enumerate(_FENCE.findall((DOCS / page).read_text()), 1):
        first = code.splitlines()[0]
        named = cwd / first[2:].strip() if first.startswith("# ") else None
        if kind == "python" and named is not None and named.is_file():
            body = code.split("\n", 1)[1]
            assert named.read_text() == body, f"{page} block {i} is not {named.name} as written"
            continue
        argv = ["bash", "-e", "-c", code] if kind == "sh" else [sys.executable, "-c", code]
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{page} block {i} ({kind}) failed:\n{code}\n{done.stderr}"
        out.append(done.stdout)
    return "".join(out)


def test_guide_walks_from_new_to_the_first_ecalls_answer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "ENCLAVEKIT_HOME": str(home),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        out = walkthrough("guide.md", work, env)
    finally:  # a failed block must not leave a started VM behind
        from enclavekit.errors import DeviceUnavailable
        from enclavekit.host.vm import VM
        from enclavekit.vm.platform import PlatformStore

        for name in PlatformStore(home).names():
            with contextlib.suppress(DeviceUnavailable):
                VM.open(name, home).stop()
    assert "created enclave app in hello" in out
    assert (work / "hello" / "hello.enclave").is_file() and (work / "signer.pem").is_file()
    assert "enclave: greeting world\n" in out          # the ocall reached the host's function
    assert re.search(r"^hello, world, from [0-9a-f]{16}$", out, re.M)  # the ecall's answer
    assert re.search(r"^5$", out, re.M)
