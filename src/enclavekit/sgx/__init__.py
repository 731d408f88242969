"""The processor model ("hazmat"): bit-exact SGX structures, measurement, SIGSTRUCT, EPC.

This layer is a pure library: no files, sockets or processes. Upper layers
(``enclavekit.vm``, ``enclavekit.host``) wrap it in a safe surface; use it
directly only if you know the SGX architecture.
"""
