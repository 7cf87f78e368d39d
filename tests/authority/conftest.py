"""The Graph emulator fixtures serve these tests too (imported by tests/conftest.py)."""
