"""The HTTP API and dashboard (SPEC §5): ``create_app(settings, engine)``."""

from licsync.api.app import create_app

__all__ = ["create_app"]
