"""Quote generation (report → QE → quote), against baselines measured in the same run (issue 5).

* ``Quoter.quote``: a REPORT made for the QE, carried to it, checked (MAC), signed with the
  attestation key and serialised with the PCK chain — quotes per second, goal ≥ 500/s.
  Beside it: an ordinary empty ecall round trip (the QE call costs one of those plus its
  work) and the raw ECDSA-P256 sign rate (the one signature every quote needs).
* For context, ``get_quote`` inside an app enclave (one ecall; in it two ocalls and an
  EREPORT): the whole path an enclave meets.

The device runs in a temporary data directory (a VM of size DC1s_v2), never the user's.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

import _common
from enclavekit.dcap.ecdsa import sign_raw
from enclavekit.dcap.quote import Quote
from enclavekit.host import VM, build
from enclavekit.host.quoting import quoter_for
from enclavekit.sgx.signing import SigningKey
from enclavekit.vm.platform import PlatformStore

APP = '''
from enclavekit.enclave import ecall, get_quote, report


@ecall
def nop() -> None:
    return None


@ecall
def make_report(target: bytes, data: bytes) -> bytes:
    return report(target, data)


@ecall
def quote(data: bytes) -> bytes:
    return get_quote(data)
'''
GOAL = 500.0


def main(argv: list[str]) -> int:
    short = "--short" in argv
    repeat, number = (5, 20) if short else (15, 200)
    with tempfile.TemporaryDirectory(prefix="ek-bench-") as tmp:
        root = Path(tmp)
        app = root / "app"
        app.mkdir()
        (app / "enclave.toml").write_text('name = "bench_quote"\nentry = "app.py"\n'
                                          'heap_size = "1M"\nthreads = 1\n')
        (app / "app.py").write_text(APP)
        image = build(app).sign(SigningKey.generate())
        PlatformStore(root / "data").create("bench", "DC1s_v2")
        vm = VM.start("bench", root / "data")
        try:
            quoter = quoter_for(vm)
            with vm.load(image) as enclave:
                report = enclave.ecalls.make_report(quoter.target_info(), b"bench nonce")
                Quote.parse(quoter.quote(report))  # loads the PCE and QE, checks the output
                quote = _common.median(_common.per_call(lambda: quoter.quote(report),
                                                        repeat=repeat, number=number))
                nop = enclave.ecalls.nop
                ecall = _common.median(_common.per_call(nop, repeat=repeat, number=number))
                inside = _common.median(_common.per_call(
                    lambda: enclave.ecalls.quote(b"n"), repeat=repeat, number=number))
        finally:
            vm.stop()
    key = ec.generate_private_key(ec.SECP256R1())
    body = bytes(432)
    sign = _common.median(_common.per_call(lambda: sign_raw(key, body), repeat=repeat,
                                           number=number * 5))
    rate = 1 / quote
    _common.report("quote generation, Quoter.quote (report -> QE -> quote), median",
                   quote * 1e6, "us", "empty ecall round trip", ecall * 1e6, quote / ecall,
                   f">= {GOAL:.0f} quotes/s, here {rate:,.0f}/s", rate >= GOAL)
    print(f"raw ECDSA-P256 sign (sign_raw over 432 bytes): {sign * 1e6:,.2f} us = "
          f"{1 / sign:,.0f}/s | quote / sign ratio {quote / sign:.2f}", flush=True)
    print(f"for context, get_quote inside an enclave (ecall + 2 ocalls + EREPORT + QE): "
          f"{inside * 1e6:,.2f} us = {1 / inside:,.0f}/s | ratio to the empty ecall "
          f"{inside / ecall:.2f} (no goal)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
