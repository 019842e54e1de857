"""Cryptography every party agrees on.

Fast Paillier (:mod:`protocols.crypto.paillier`, with its wire codec), Ed25519 signing
(:mod:`~protocols.crypto.signing`), sealed envelopes (:mod:`~protocols.crypto.sealing`) and hash chains
(:mod:`~protocols.crypto.hashchain`). Pure: no I/O; imports :mod:`protocols.wire` only.
"""
