"""A requests adapter whose urllib3 connections carry a behaviour of ours.

urllib3 makes connections deep in its pools and hands them nothing of ours:
the way in is the pools' connection classes. The feed fetch's deadline
(``digests/feed_http.py``) and the providers' "request written" mark
(``providers/http.py``) each mix one class into both kinds of connection.
"""

from __future__ import annotations

from typing import Any

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


def pools_with(mixin: type) -> dict[str, type]:
    """Pool classes by scheme whose connections are ``mixin`` over urllib3's own."""
    http = type(f"{mixin.__name__}HTTPConnection", (mixin, HTTPConnection), {})
    https = type(f"{mixin.__name__}HTTPSConnection", (mixin, HTTPSConnection), {})
    return {
        "http": type(f"{mixin.__name__}HTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type(
            f"{mixin.__name__}HTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}
        ),
    }


class MixedInAdapter(HTTPAdapter):
    """requests' adapter, its pools (a proxy's too) making connections with ``pools``."""

    pools: dict[str, type]  # set by each subclass: pools_with(its mixin)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """urllib3's pool manager, with our connections."""
        super().init_poolmanager(*args, **kwargs)
        self._use_ours(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """A proxy's pool manager, with our connections."""
        return self._use_ours(super().proxy_manager_for(proxy, **proxy_kwargs))

    def _use_ours(self, manager: urllib3.PoolManager) -> urllib3.PoolManager:
        # A SOCKS proxy's pools have connection classes of their own: left as they are.
        if manager.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme:
            manager.pool_classes_by_scheme = self.pools
        return manager
