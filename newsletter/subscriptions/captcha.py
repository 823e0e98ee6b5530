"""Server-side CAPTCHA checks for signups: Cloudflare Turnstile or hCaptcha.

Both providers take the same siteverify request (``secret``, ``response``,
``remoteip`` form-encoded) and answer ``{"success": bool, "error-codes": [...]}``,
so one verifier serves both. This module knows nothing of Flask's request:
the route hands it the token and the client's address.

A missing or refused token is ``False``. A verifier we cannot reach, that times
out, answers something that is not a verdict, or refuses *our* secret raises
:class:`CaptchaUnavailable`: the route answers 503 (fail closed, see SECURITY.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0  # seconds to open a connection to siteverify
MAX_TOKEN_LENGTH = 8192  # Turnstile documents 2,048; hCaptcha's are longer


@dataclass(frozen=True)
class Provider:
    """What differs between the two providers: names, URLs, CSP origins."""

    name: str
    field: str  # the form field the provider's widget fills with its token
    verify_url: str
    script_url: str
    widget_class: str
    csp: Mapping[str, tuple[str, ...]]  # directive -> origins the widget needs


PROVIDERS: dict[str, Provider] = {
    "turnstile": Provider(
        name="turnstile",
        field="cf-turnstile-response",
        verify_url="https://challenges.cloudflare.com/turnstile/v0/siteverify",
        script_url="https://challenges.cloudflare.com/turnstile/v0/api.js",
        widget_class="cf-turnstile",
        csp={
            "script-src": ("https://challenges.cloudflare.com",),
            "frame-src": ("https://challenges.cloudflare.com",),
        },
    ),
    "hcaptcha": Provider(
        name="hcaptcha",
        field="h-captcha-response",
        verify_url="https://api.hcaptcha.com/siteverify",
        script_url="https://js.hcaptcha.com/1/api.js",
        widget_class="h-captcha",
        csp={
            directive: ("https://hcaptcha.com", "https://*.hcaptcha.com")
            for directive in ("script-src", "frame-src", "style-src", "connect-src")
        },
    ),
}

# Error codes that mean *our* configuration is wrong or the provider failed,
# not that the visitor is a bot: never the visitor's fault, so never a 422.
_OUR_FAULT = {
    "missing-input-secret",
    "invalid-input-secret",
    "internal-error",
    "sitekey-secret-mismatch",
}


class CaptchaConfigError(ValueError):
    """CAPTCHA settings that cannot work; start-up stops with this message."""


class CaptchaUnavailable(RuntimeError):
    """The verifier could not give a verdict (down, slow, garbled, our secret refused)."""


class CaptchaVerifier:
    """Checks tokens against one provider's siteverify over a pooled session."""

    def __init__(
        self, provider: Provider, secret: str, site_key: str, verify_url: str, timeout: float
    ) -> None:
        self.provider = provider
        self.secret = secret
        self.site_key = site_key
        self.verify_url = verify_url or provider.verify_url
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=8)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    @property
    def field(self) -> str:
        """The request field that carries the token."""
        return self.provider.field

    def verify(self, token: str | None, remote_ip: str | None) -> bool:
        """True if the provider vouches for ``token``; CaptchaUnavailable if it cannot say."""
        if not token:
            return False
        form = {"secret": self.secret, "response": token}
        if remote_ip:
            form["remoteip"] = remote_ip
        if self.provider.name == "hcaptcha":
            form["sitekey"] = self.site_key  # hCaptcha checks the pair when given
        try:
            response = self.session.post(self.verify_url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise CaptchaUnavailable(f"{self.provider.name} siteverify failed: {exc}") from None
        if response.status_code != 200:
            raise CaptchaUnavailable(
                f"{self.provider.name} siteverify answered HTTP {response.status_code}"
            )
        try:
            verdict = response.json()
        except ValueError:
            raise CaptchaUnavailable(f"{self.provider.name} siteverify sent no JSON") from None
        if not isinstance(verdict, dict) or not isinstance(verdict.get("success"), bool):
            raise CaptchaUnavailable(f"{self.provider.name} siteverify sent no verdict")
        codes = verdict.get("error-codes") or []
        if isinstance(codes, list) and _OUR_FAULT.intersection(map(str, codes)):
            log.error("%s siteverify refused our settings: %s", self.provider.name, codes)
            raise CaptchaUnavailable(f"{self.provider.name} siteverify: {codes}")
        if not verdict["success"]:
            log.info("%s token refused: %s", self.provider.name, codes)
        return verdict["success"]


def build_verifier(config: Mapping[str, Any]) -> CaptchaVerifier | None:
    """The verifier the settings ask for, or None when CAPTCHA_PROVIDER is empty."""
    name = config.get("CAPTCHA_PROVIDER", "")
    if not name:
        return None
    provider = PROVIDERS.get(name)
    if provider is None:
        raise CaptchaConfigError(
            f"CAPTCHA_PROVIDER must be one of {', '.join(PROVIDERS)} or empty, not {name!r}"
        )
    for setting in ("CAPTCHA_SECRET", "CAPTCHA_SITE_KEY"):
        if not config.get(setting):
            raise CaptchaConfigError(f"CAPTCHA_PROVIDER={name} needs {setting}")
    return CaptchaVerifier(
        provider,
        config["CAPTCHA_SECRET"],
        config["CAPTCHA_SITE_KEY"],
        config.get("CAPTCHA_VERIFY_URL", ""),
        float(config.get("CAPTCHA_TIMEOUT", 5.0)),
    )
