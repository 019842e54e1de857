"""Routers of the coordinator API (mounted under /api/v1)."""
