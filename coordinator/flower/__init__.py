"""The coordinator's piece of the training plane on Flower 1.42.

- :mod:`coordinator.flower.superlink`: ``SuperLinkService``, the SuperLink as a child process, and its runs.
- :mod:`coordinator.flower.launcher`: one Flower run per training job attempt; reports decide the job.
- :mod:`coordinator.flower.arbiter`: the ``Arbiter`` interface and the round loop.
- :mod:`coordinator.flower.arbiters`: the arbiters of ``train_risk`` and ``train_propensity``.
- :mod:`coordinator.flower.server_app`: the ServerApp, packaged with the nodes' ClientApp shim
  (:mod:`node.flower.client_app`) by ``coordinator/flower/app/pyproject.toml``.
- :mod:`coordinator.flower.control_api`: in-process client of the SuperLink's Control API.
- :mod:`coordinator.flower.control_gate`: the SuperLink's launcher that closes its Control API to all but
  the coordinator's token and its Runtime API to all but this host.
- :mod:`coordinator.flower.certs`: CA, server certificate and SuperNode keys.

What travels in a round is :mod:`protocols.wire.flower_round` and :mod:`protocols.vfl.rounds`; the nodes'
side is :mod:`node.flower`; :mod:`demo.federation` runs both on one machine. Modules are imported on
demand; importing this package does not import Flower.
"""
