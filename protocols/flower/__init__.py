"""Tandem's training plane on Flower 1.42: local federation, arbiter ServerApp, ClientApp shim.

- :mod:`protocols.flower.federation`: ``LocalFederation``, SuperLink + SuperNodes as processes.
- :mod:`protocols.flower.arbiter`: the ``Arbiter`` interface and the round loop.
- :mod:`protocols.flower.server_app` / :mod:`protocols.flower.client_app`: the Flower components,
  packaged by ``protocols/flower/app/pyproject.toml``.
- :mod:`protocols.flower.wire`: what a round message carries; the node service's URL.
- :mod:`protocols.flower.control`: in-process Control API client.
- :mod:`protocols.flower.fastpoll`, :mod:`protocols.flower.warm_clientapp`: latency tuning.
- :mod:`protocols.flower.certs`: CA, server certificate and SuperNode keys.
- :mod:`protocols.flower.toy`: toy arbiter and node service for tests and benchmarks.

Modules are imported on demand; importing this package does not import Flower.
"""
