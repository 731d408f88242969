"""The key hierarchy: fused secrets, EGETKEY derivation and the EREPORT MAC (sgx-spec.md §4).

INTERFACE STUB — to be implemented (issue 2, items 5–6). The processor model relies on:

* ``FusedSecrets``: frozen dataclass of per-platform secrets, ``generate()``,
  ``to_bytes()`` / ``from_bytes()``.
* ``EnclaveIdentity``: frozen dataclass of what SECS holds after EINIT (mrenclave, mrsigner,
  attributes, miscselect, isvprodid, isvsvn, configid, configsvn, isvfamilyid, isvextprodid,
  padding).
* ``egetkey(secrets, cpusvn, identity, request) -> bytes`` (16-byte key; SGXError / SGXFault).
* ``ereport(secrets, cpusvn, identity, target, reportdata, keyid) -> Report``.
* ``report_mac(key, body) -> bytes``: AES-128-CMAC over the 384-byte REPORTBODY.
"""
