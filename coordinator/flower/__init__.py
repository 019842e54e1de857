"""Tandem's training plane on Flower 1.42: local federation, arbiter ServerApp, ClientApp shim.

- :mod:`demo.federation`: ``LocalFederation``, SuperLink + SuperNodes as processes.
- :mod:`coordinator.flower.arbiter`: the ``Arbiter`` interface and the round loop.
- :mod:`coordinator.flower.server_app` / :mod:`node.flower.client_app`: the Flower components,
  packaged by ``coordinator/flower/app/pyproject.toml``.
- :mod:`protocols.wire.flower_round`: what a round message carries; the node service's URL.
- :mod:`coordinator.flower.control`: in-process Control API client.
- :mod:`node.flower.fastpoll`, :mod:`node.flower.warm_clientapp`: latency tuning.
- :mod:`coordinator.flower.certs`: CA, server certificate and SuperNode keys.
- :mod:`demo.flower_toy`: toy arbiter and node service for tests and benchmarks.

Modules are imported on demand; importing this package does not import Flower.
"""
