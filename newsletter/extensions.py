"""The Flask extensions as bare objects; ``create_app`` binds them with ``init_app``."""

from flask_cors import CORS
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from werkzeug.wrappers import Request


class Base(DeclarativeBase):
    """Declarative base of every model."""


def client_address(request: Request | None = None) -> str:
    """The client's address as the rate limiter and the consent ledger see it."""
    from flask import request as current

    return (request or current).remote_addr or "unknown"


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
limiter = Limiter(key_func=client_address)
cors = CORS()
