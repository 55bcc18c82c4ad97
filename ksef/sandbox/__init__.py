"""Local KSeF 2.0 sandbox (docstring completed below)."""
from .app import Sandbox, SandboxConfig
from .server import SandboxServer

__all__ = ["Sandbox", "SandboxConfig", "SandboxServer"]
