"""Bench diagnostic: the dispatcher as one process of its own beside gunicorn.

``python bench/dispatch_loop.py`` with ours' environment: a pass every
DISPATCH_COALESCE seconds (0.2) until SIGTERM, which it obeys after the pass
in flight. ``bench/signup.py --dispatch-in-process separate`` runs it, with
the workers' own dispatcher threads off, to measure what moving sending out
of the web processes would give. Not a production mode (yet): nothing here
restarts it or wakes it on a commit.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter import create_app
from newsletter.delivery.dispatcher import dispatch_pass
from newsletter.extensions import db


def main() -> None:
    """Dispatch until told to stop."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    app = create_app()
    pause = app.config["DISPATCH_COALESCE"] or 0.2
    while not stop.is_set():
        with app.app_context():
            try:
                dispatch_pass(should_stop=stop.is_set)
            finally:
                db.session.remove()
        stop.wait(pause)


if __name__ == "__main__":
    main()
