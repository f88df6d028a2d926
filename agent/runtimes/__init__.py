"""Where leases run: one interface, a runtime per kind of host."""

from agent.runtimes.base import Deployment, LeaseManifest, Runtime, RuntimeError_

__all__ = ["Deployment", "LeaseManifest", "Runtime", "RuntimeError_"]
