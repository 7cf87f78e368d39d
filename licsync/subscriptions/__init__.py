"""Subscriptions: signed keys (``keys``), the grace window (``grace``) and their storage (``registry``).

``keys`` and ``grace`` are pure; ``registry`` is the database adapter around them. Import the
registry explicitly (``from licsync.subscriptions import registry``) so that pure callers never
pull in the database layer through this package.
"""
