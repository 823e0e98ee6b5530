"""The WSGI entry point: ``gunicorn wsgi:app``, ``flask --app wsgi ...``."""

import sys

from config import ConfigError
from newsletter import create_app

# gunicorn's master stops when a worker exits with this code ("App failed to load");
# any other code, and it starts another worker, which fails alike, twice a second.
GUNICORN_APP_LOAD_ERROR = 4

try:
    app = create_app()
except ConfigError as exc:
    message = f"newsletter: cannot start: {exc}"
    if "gunicorn.arbiter" in sys.modules:  # in a gunicorn worker
        print(message, file=sys.stderr, flush=True)
        sys.exit(GUNICORN_APP_LOAD_ERROR)
    sys.exit(message)
