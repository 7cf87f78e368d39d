"""CLI: notifications (being written)."""
