"""The Flask extensions as bare objects; ``create_app`` binds them with ``init_app``."""

import ipaddress

from flask_cors import CORS
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from werkzeug.wrappers import Request

# The client address of a request whose address cannot be read: one key to the limits.
UNKNOWN_IP = "unknown"


class Base(DeclarativeBase):
    """Declarative base of every model."""


def client_address(request: Request | None = None) -> str:
    """The client's address as the rate limiter and the consent ledger see it."""
    from flask import request as current

    return canonical_ip((request or current).remote_addr)


def canonical_ip(raw: str | None) -> str:
    """The IP address in ``raw``, in one spelling per address; ``unknown`` when there is none.

    A trusted proxy's ``X-Forwarded-For`` may carry a port (``1.2.3.4:5678``,
    ``[2001:db8::1]:443``: Azure's gateway and IIS send them), a zone
    (``fe80::1%eth0``) or an IPv4 address as IPv6 (``::ffff:1.2.3.4``). Taken
    as it came, each port was another client to the rate limits, and
    anything at all went into the consent ledger. Whatever is not an address
    is ``unknown``: one key, limited as one client.
    """
    text = (raw or "").strip()
    if text.startswith("[") and "]" in text:  # [v6] or [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return UNKNOWN_IP
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def client_network() -> str:
    """The client's network (a /24 or /64 by default): the key of the per-network limit."""
    from flask import current_app

    address = client_address()
    if address == UNKNOWN_IP:
        return f"net:{UNKNOWN_IP}"
    ip = ipaddress.ip_address(address)
    bits = current_app.config["RATELIMIT_NETWORK_V4" if ip.version == 4 else "RATELIMIT_NETWORK_V6"]
    return f"net:{ipaddress.ip_network(f'{ip}/{bits}', strict=False)}"


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
limiter = Limiter(key_func=client_address)
cors = CORS()
