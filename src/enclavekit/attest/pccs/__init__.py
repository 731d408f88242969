"""The collateral service for emulated platforms, at Intel PCS v4 paths and in Intel's formats.

* :mod:`.state` — what the operator decided: TCB levels per FMSPC, QE identity levels, revoked
  PCK serials, tcbEvaluationDataNumber, CRL numbers, validity window (``<data dir>/pki/``).
* :mod:`.publish` — the signed artefacts made from a state: TCB info v3, QE identity v2, PCK CRL,
  root CA CRL, each with an issueDate/nextUpdate window; re-published, never extended.
* :mod:`.app` — the Starlette app serving them (``create_app``); :mod:`.serve` runs it.
* :mod:`.operator` — TCB recovery, PCK revocation and collateral export for one VM.
"""
