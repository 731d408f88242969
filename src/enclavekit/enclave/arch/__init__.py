"""The architectural enclaves: the provisioning certification enclave and the quoting enclave.

Each is an ordinary enclave app (``pce/``, ``qe/``: ``enclave.toml`` and one entry module),
built, measured and loaded like any other, but signed by the installation's architectural
signer (:meth:`enclavekit.vm.provisioning.Provisioning.arch_signer`) with the
PROVISIONKEY attribute and never DEBUG; :mod:`enclavekit.host.quoting` builds and loads
them. The flow mirrors Intel DCAP's (sgx-spec.md §6.1):

* the **PCE** derives the platform's PCK private key from EGETKEY(PROVISION) at its own
  CPUSVN and ISVSVN (= the platform's PCESVN) exactly as :mod:`enclavekit.dcap.arch`
  says, and signs the REPORT body of a quoting enclave it has checked by local
  attestation (same MRSIGNER, QE ISVPRODID, not DEBUG);
* the **QE** makes a P-256 attestation key when it starts, binds it in its REPORT for the
  PCE (REPORTDATA = SHA-256(key ‖ QE auth data) ‖ 32 zero bytes) and, once certified,
  turns application REPORTs targeted at it (checked by MAC) into DCAP quotes.

The host only carries bytes between them: it can refuse service, never forge a quote.
"""
