"""Attestation-token verification: tokens/s through ``enclavekit.jose`` against a bare RSA verify.

One RS256 token of the attestation service's shape (MAA claims, ~1.3 KB) is verified over and
over in this process by :func:`enclavekit.attest.verify_token` (a parsed JWKS) and by the key
service's ``TokenVerifier`` (static authority key). The baseline, measured in the same run, is
the signature check alone: ``RSAPublicKey.verify`` (PKCS#1 v1.5, SHA-256) over the same
signing input. The ratio is tokens/s over that; what is left is the JOSE layer (strict
base64url and JSON, PyJWT's own decode, claims and time checks).

Goals (set from the first measurements, 0.31-0.38 and 0.24-0.29 on a loaded machine, to catch
a regression such as PyJWT's ``decode_complete`` on the path, which measured about 0.1): the
key service's verifier at ratio >= 0.25 (its checks cost at most three RSA verifications);
``verify_token``, which also parses the JWKS on every call, at >= 0.15. The figures are taken
interleaved, so load on the machine hits each alike. Usage:
``python bench/bench_token.py [--short]``.
"""

from __future__ import annotations

import base64
import sys
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import _common
from enclavekit import jose
from enclavekit.attest import verify_token
from enclavekit.kms.tokens import TokenVerifier, TrustedAuthority

ISSUER = "https://attest.bench"


def _token(key: rsa.RSAPrivateKey) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "iat": now, "nbf": now, "exp": now + 3600, "jti": "ab" * 32,
              "x-ms-ver": "1.0", "x-ms-attestation-type": "sgx",
              "x-ms-sgx-mrenclave": "a1" * 32, "x-ms-sgx-mrsigner": "c2" * 32,
              "x-ms-sgx-product-id": 3, "x-ms-sgx-svn": 2, "x-ms-sgx-is-debuggable": False,
              "x-ms-sgx-report-data": "00" * 64,
              "x-ms-sgx-collateral": {n: "00" * 32 for n in (
                  "quotehash", "tcbinfohash", "tcbinfocertshash", "tcbinfocrlhash",
                  "qeidhash", "qeidcertshash", "qeidcrlhash")},
              "x-ms-policy-hash": "A" * 43}
    return jose.sign(claims, key, headers={"kid": "k1", "jku": f"{ISSUER}/certs",
                                           "typ": "JWT"})


def main(argv: list[str]) -> int:
    short = "--short" in argv
    repeat, number = (3, 20) if short else (15, 200)
    key = rsa.generate_private_key(65537, 2048)
    public = key.public_key()
    token = _token(key)
    head, body, sig = token.split(".")
    signing_input = f"{head}.{body}".encode()
    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    nums = public.public_numbers()
    jwks = {"keys": [{"kid": "k1", "kty": "RSA", "n": jose.b64url(nums.n.to_bytes(256, "big")),
                      "e": "AQAB"}]}
    verifier = TokenVerifier([TrustedAuthority(ISSUER, keys={"k1": public})])

    def bare() -> None:
        public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())

    def relying_party() -> None:
        verify_token(token, jwks=jwks, issuer=ISSUER)

    def key_service() -> None:
        verifier.verify(token)

    print(f"token of {len(token)} characters, RSA-2048", flush=True)
    runs = {"bare": bare, "kms": key_service, "rp": relying_party}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):  # interleaved, so load on the machine hits every figure alike
        for name, fn in runs.items():
            samples[name] += _common.per_call(fn, repeat=1, number=number)
    rates = {name: 1 / _common.median(values) for name, values in samples.items()}
    failed = 0
    for name, key_name, goal in (("kms TokenVerifier.verify", "kms", 0.25),
                                 ("verify_token (JWKS parsed per call)", "rp", 0.15)):
        ratio = rates[key_name] / rates["bare"]
        failed += ratio < goal
        _common.report(name, rates[key_name], "tokens/s", "RSA verify alone", rates["bare"],
                       ratio, f">= {goal}", ratio >= goal)
    return 1 if failed and not short else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
