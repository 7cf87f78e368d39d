"""licsync keeps the license seats of a Microsoft 365 learning platform true to the tenant's directory."""

__version__ = "0.1.0"
