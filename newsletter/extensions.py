"""The Flask extensions as bare objects; ``create_app`` binds them with ``init_app``."""

import ipaddress

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


def client_network() -> str:
    """The client's network (a /24 or /64 by default): the key of the per-network limit."""
    from flask import current_app

    address = client_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"net:{address}"
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    bits = current_app.config["RATELIMIT_NETWORK_V4" if ip.version == 4 else "RATELIMIT_NETWORK_V6"]
    return f"net:{ipaddress.ip_network(f'{ip}/{bits}', strict=False)}"


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
limiter = Limiter(key_func=client_address)
cors = CORS()
