"""The shape docs/architecture.md promises: no import cycle in licsync/, and the seat models
registered by policy (the layers themselves are lint-imports' contract in pyproject.toml)."""

from __future__ import annotations

import grimp

from licsync.seat_models import base
from licsync.seat_models.models import model_of
from licsync.subscriptions.policies import policies


def test_the_import_graph_of_licsync_has_no_cycle() -> None:
    graph = grimp.build_graph("licsync", include_external_packages=False)
    cycles = []
    for module in sorted(graph.modules):
        for other in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=other, imported=module):
                cycles.append((module, other))
    assert cycles == []


def test_every_policy_a_key_may_carry_has_a_model() -> None:
    assert set(policies()) == set(base.registered())
    assert {model_of(p).policy for p in policies()} == set(policies())
