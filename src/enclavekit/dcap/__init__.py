"""DCAP remote attestation formats (hazmat): quotes, PCK certificates, collateral, verifier.

Rank 0: depends only on ``cryptography`` and :mod:`enclavekit.errors`.
"""
