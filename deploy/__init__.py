"""Deployment: one compose project per organisation, and the harness that proves them in network namespaces."""
