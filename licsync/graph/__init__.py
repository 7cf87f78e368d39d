"""Microsoft Graph adapter: MSAL tokens, a raw-page Graph client, and a Graph emulator for tests.

Nothing is imported here on purpose: ``licsync.graph.client`` pulls in msgraph-sdk (~1 s) and
the emulator pulls in uvicorn; callers import the module they need.
"""
