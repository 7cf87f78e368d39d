"""``/metrics`` text, read back by prometheus_client's own parser (shared by the tests that scrape)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _key(name: str, labels: dict[str, str]) -> str:
    lab = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return name + (f"{{{lab}}}" if lab else "")


class Samples(dict[str, float]):
    """``'name{labels}' → value``; a key's labels may be written in any order."""

    def __getitem__(self, key: str) -> float:
        name, _, rest = key.partition("{")
        return super().__getitem__(_key(name, dict(_LABEL.findall(rest))))

    def get(self, key: str, default: float | None = None) -> float | None:  # type: ignore[override]
        try:
            return self[key]
        except KeyError:
            return default


def parse_metrics(text: str, replica: str | None = None) -> Samples:
    """Parsed by prometheus_client's own reader; each sample's ``replica`` label checked (every
    sample has one) and left out of the key."""
    samples = Samples()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            got = labels.pop("replica", None)
            assert got and (replica is None or got == replica), sample
            dict.__setitem__(samples, _key(sample.name, labels), sample.value)
    return samples
