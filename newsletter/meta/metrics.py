"""``/metrics``: Prometheus text, with the ledger's gauges read from the database."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..admin.auth import require_admin
from ..delivery.ledger import backlog
from ..extensions import db
from ..metrics import process_registry
from ..models import Delivery, DeliveryStatus

bp = Blueprint("metrics", __name__)


class LedgerCollector:
    """Deliveries by state, queue depth and the oldest due delivery's age: two indexed queries."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[Metric]:
        """Read the ledger now; every state appears, with 0 when it has no row."""
        by_state = GaugeMetricFamily(
            "newsletter_deliveries", "Deliveries in the ledger, by state.", labels=["state"]
        )
        counts = dict(
            self.session.execute(
                select(Delivery.status, func.count()).group_by(Delivery.status)
            ).all()
        )
        for state in DeliveryStatus:
            by_state.add_metric([state.value], counts.get(state, 0))
        yield by_state
        waiting = backlog(self.session)
        yield GaugeMetricFamily(
            "newsletter_delivery_queue_depth",
            "Deliveries queued or being sent (due now or later).",
            value=waiting["waiting"],
        )
        yield GaugeMetricFamily(
            "newsletter_delivery_oldest_due_seconds",
            "How long the oldest due delivery has waited; 0 when none is due.",
            value=waiting["oldest_due_seconds"],
        )


@bp.get("/metrics")
def metrics() -> Response:
    """Every metric in Prometheus text format; admin token unless ``METRICS_PUBLIC``."""
    if not current_app.config["METRICS_PUBLIC"]:
        require_admin()
    ledger = CollectorRegistry()
    ledger.register(LedgerCollector(db.session))
    try:
        body = generate_latest(process_registry()) + generate_latest(ledger)
    finally:
        db.session.remove()
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)
