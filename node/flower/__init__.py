"""The node's piece of the training plane.

The pinned ClientApp shim, its warm runner, the fast-poll SuperNode wrapper and the supervisor that keeps
the node's SuperNode running. Modules are imported on demand; importing this package does not import Flower.
"""
