"""The coordinator's audit log.

The hash chain (:mod:`~coordinator.audit.chain`), the audited store writes (:mod:`~coordinator.audit.log`)
and the compliance review of an export (:mod:`~coordinator.audit.review`).
"""
