"""A local, wire-compatible stand-in for the Azure tenant, for the demo and the tests.

See docs/sandbox.md for every endpoint, describe key, admin route and fault key.
"""

from sandbox.faults import Faults, Injection
from sandbox.server import Sandbox, SandboxThread

__all__ = ["Faults", "Injection", "Sandbox", "SandboxThread"]
