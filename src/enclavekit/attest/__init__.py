"""Relying-party side of attestation: the collateral service for emulated platforms (PCCS),
verification policy and services built on DCAP quotes.

Rank 3: may use :mod:`enclavekit.dcap`, :mod:`enclavekit.vm` and the layers below.
"""
