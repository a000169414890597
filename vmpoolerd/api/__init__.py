"""vmpoolerd's HTTP API: the original vmpooler's API v1, on Starlette."""

from .app import create_app

__all__ = ["create_app"]
