"""CLI: the daemon, the API server, the demo, health and API tokens."""
