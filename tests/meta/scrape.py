"""Read one sample out of Prometheus text, for the metrics tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

_ABSENT = object()


def sample(text: str, name: str, default: float | object = _ABSENT, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels``.

    A missing sample raises ``KeyError`` (a renamed metric must fail the test,
    not read as 0), unless the caller says what absence means with ``default``.
    """
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    if default is _ABSENT:
        raise KeyError(f"no sample {name}{labels or ''}")
    return default  # type: ignore[return-value]
