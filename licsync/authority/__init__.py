"""The vendor's activation authority (SPEC §2): one subscription, one tenant, across deployments.

``lease`` is pure (sign and verify leases with the vendor Ed25519 key); ``store`` holds the
authority's own tables; ``service`` is its logic over a connection; ``app`` is the HTTP face and
``client`` the deployment's side of the wire. Import the modules explicitly.
"""
