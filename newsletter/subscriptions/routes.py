"""The subscriber's pages and endpoints: signup, confirm, unsubscribe."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import idna
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from sqlalchemy.exc import OperationalError, ProgrammingError

from ..errors import AppError, Misconfigured, wants_json
from ..extensions import UNKNOWN_IP, client_address, client_network, db, limiter
from ..group_commit import GroupCommit
from ..models import NAME_MAX, Status, Subscriber
from ..security import page_csp
from ..tokens import TEST_COPY_READER, TokenError, current_tokens
from ..web import answer, header_text, request_fields, text_field
from . import service
from .addresses import InvalidAddress, normalize_email
from .captcha import MAX_TOKEN_LENGTH, CaptchaUnavailable, CaptchaVerifier

log = logging.getLogger(__name__)
bp = Blueprint("subscriptions", __name__)
SIGNUPS = "newsletter.signups"


@bp.record_once
def _group_signups(state: BlueprintSetupState) -> None:
    """Concurrent signups share one transaction, new and known addresses alike (group_commit.py)."""
    state.app.extensions[SIGNUPS] = GroupCommit(
        lambda batch: service.admit(db.engine, batch),
        # A database that refused one signup's write: the others are written without it.
        # Not when it is unreachable, its schema behind, or this host misconfigured: each
        # would meet the same failure in turn.
        retry_alone=lambda error: (
            not isinstance(error, OperationalError | ProgrammingError | Misconfigured)
        ),
    )


def _sign_up(email: str, name: str | None, client: service.ClientInfo) -> None:
    """The signup joins those being written: one path, whatever state its address is in."""
    signups: GroupCommit[service.Signup, bool] = current_app.extensions[SIGNUPS]
    signups.submit(service.Signup(email, name, client))


def _client(source: str | None = None) -> service.ClientInfo:
    user_agent = header_text("User-Agent", 512)
    referrer = header_text("Referer", 2048)
    return service.ClientInfo(
        ip=client_address(),
        user_agent=user_agent,
        source=source or referrer,
        wording=current_app.config["CONSENT_WORDING"],
    )


def _captcha() -> CaptchaVerifier | None:
    return current_app.extensions["newsletter.captcha"]


def _signup_page(status: int = 200, **context: object) -> Response:
    """The hosted signup page; with a CAPTCHA on, its policy lets the provider's widget in."""
    html = render_template("pages/subscribe.html", **context)
    response = Response(html, status=status, mimetype="text/html")
    verifier = _captcha()
    if verifier is not None:
        response.headers["Content-Security-Policy"] = page_csp(verifier.provider.csp)
    return response


@bp.get("/subscribe")
def subscribe_page() -> Response:
    """The hosted signup page; asked for JSON, what a signup posts and where."""
    if wants_json():
        verifier = _captcha()
        captcha = [verifier.field] if verifier is not None else []
        return jsonify(
            subscribe_url=url_for("subscriptions.subscribe"),
            fields=["email", "name", "source", *captcha],
            required=["email", *captcha],
            captcha=verifier is not None,
        )
    return _signup_page(source=request.args.get("source", "")[:2048])


def _check_captcha(data: dict) -> None:
    """Raise 422 ``captcha_failed`` or 503 ``captcha_unavailable`` unless the token passes."""
    verifier = _captcha()
    if verifier is None:
        return
    failed = AppError(
        "captcha_failed",
        "Please complete the check that you are not a robot, then try again.",
        422,
        field=verifier.field,
    )
    try:
        token = text_field(data, verifier.field, max_length=MAX_TOKEN_LENGTH)
    except AppError:
        raise failed from None
    try:
        address = client_address()
        passed = verifier.verify(token, None if address == UNKNOWN_IP else address)
    except CaptchaUnavailable as exc:
        log.warning("CAPTCHA check unavailable, signup refused: %s", exc)
        raise AppError(
            "captcha_unavailable",
            "We cannot check signups right now. Please try again in a few minutes.",
            503,
            # Else Flask-Limiter's own (the limit's reset, often 0) told clients to retry now.
            headers=[("Retry-After", "60")],
        ) from None
    if not passed:
        raise failed


def _subscribe_limit() -> str:
    return current_app.config["RATELIMIT_SUBSCRIBE"]


def _network_limit() -> str:
    return current_app.config["RATELIMIT_SUBSCRIBE_NETWORK"]


def _no_network_limit() -> bool:
    return not current_app.config["RATELIMIT_SUBSCRIBE_NETWORK"]


@bp.post("/subscribe")
@limiter.limit(_subscribe_limit, methods=["POST"])
@limiter.limit(
    _network_limit,
    key_func=client_network,
    methods=["POST"],
    scope="subscribe-network",
    exempt_when=_no_network_limit,
)
def subscribe() -> Response:
    """Take a signup; the same answer whatever state the address was in."""
    _warn_of_an_unlisted_origin()
    data = request_fields()
    try:
        raw_email = text_field(data, "email", max_length=320, required=True)
        email = normalize_email(raw_email or "")
        name = text_field(data, "name", max_length=NAME_MAX)
        # The page's own address (the widget sends it): a long query string is cut, as a
        # Referer is, rather than refusing a signup the visitor cannot mend.
        source = text_field(data, "source", max_length=2048, cut=True)
    except InvalidAddress as exc:
        return _form_error(AppError("invalid_email", str(exc), 422, field="email"), data)
    except AppError as exc:
        if exc.code == "missing_email":
            exc = AppError("invalid_email", "Please enter your email address.", 422, field="email")
        return _form_error(exc, data)
    try:
        _check_captcha(data)
    except AppError as exc:
        return _form_error(exc, data)
    if _honeypot_filled(data.get("website")):
        log.info("honeypot filled on /subscribe; signup ignored")
    else:
        _sign_up(email, name, _client(source))
    status = 202 if wants_json() else 200
    return answer("pages/check_inbox.html", {"status": "pending"}, status, back=_way_back(source))


def _honeypot_filled(value: object) -> bool:
    """Whether the hidden ``website`` field holds anything; white space alone is empty.

    An autofill tool or a browser extension may leave a space in it: that reader
    was dropped without a word, with the same answer as a kept signup.
    """
    return bool(value.strip()) if isinstance(value, str) else bool(value)


def _way_back(source: str | None) -> tuple[str, str] | None:
    """The page a form was posted from, and its host, when it is on a site of ``CORS_ORIGINS``.

    A reader without JavaScript lands on our "check your inbox" page; this
    is the link back to the blog. Only the publisher's listed sites: a
    forged form could name any page, and our page would vouch for it.
    """
    return _on_a_listed_site(source or header_text("Referer", 2048))


def _site_of(subscriber: Subscriber | None) -> tuple[str, str] | None:
    """The home page of the listed site a reader signed up on, and its host, if any.

    The link back from the confirmed and unsubscribed pages, which a reader
    reaches from an email, days after the page they signed up on.
    """
    page = _on_a_listed_site(subscriber.source if subscriber is not None else None)
    if page is None:
        return None
    parts = urlsplit(page[0])
    return f"{parts.scheme}://{parts.netloc}/", page[1]


def _on_a_listed_site(page: str | None) -> tuple[str, str] | None:
    try:
        parts = urlsplit(page or "")
        parts.port  # noqa: B018 (raises on a port that is no number)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if f"{parts.scheme}://{parts.netloc}".lower() not in current_app.config["CORS_ORIGINS"]:
        return None
    return parts.geturl(), shown_host(parts.hostname)


def shown_host(host: str) -> str:
    """A host as a reader types it: ``xn--bckerei-5wa.example`` is ``bäckerei.example``."""
    try:
        return idna.decode(host)
    except idna.IDNAError:
        return host


_WARNED_ORIGINS: set[str] = set()


def _warn_of_an_unlisted_origin() -> None:
    """Log, once per origin and process, a page's script posting from an origin not listed.

    The signup is taken (a form would be too), but the browser hides the
    answer from that script: the widget says "Something went wrong" while the
    confirmation is on its way. The operator reads why here.
    """
    origin = (request.headers.get("Origin") or "").lower()
    allowed = current_app.config["CORS_ORIGINS"]  # lower case (config._origins)
    if not origin or origin in _WARNED_ORIGINS or "*" in allowed or origin in allowed:
        return
    if not wants_json() or origin == request.host_url.rstrip("/").lower():
        return  # a form's own page, or our own pages: they read the answer
    if len(_WARNED_ORIGINS) < 100:
        _WARNED_ORIGINS.add(origin)
        log.warning(
            "a script on %s posted a signup, but CORS_ORIGINS does not list that origin: "
            "the page cannot read the answer (add it to CORS_ORIGINS)",
            origin,
        )


def _form_error(error: AppError, data: dict) -> Response:
    """A JSON error, or the signup page again with the message and what was typed."""
    if wants_json():
        raise error
    values = {
        k: v for k, v in data.items() if k in ("email", "name", "source") and isinstance(v, str)
    }
    # The page the form was on: the retry from our page sends no referrer of it (our pages
    # send none), so it travels in the form, as the proof of consent's source.
    source = values.get("source") or header_text("Referer", 2048) or ""
    return _signup_page(error.status, error=error, values=values, source=source)


def _token_error(exc: TokenError, token: str) -> AppError:
    if exc.expired:
        return AppError(
            "token_expired",
            "This confirmation link has expired. We can send you a new one.",
            410,
            renew_url=url_for("subscriptions.renew", token=token),
        )
    return AppError("invalid_token", "This link is not valid. It may be incomplete or outdated.")


def _unsubscribe_link_error() -> AppError:
    """A broken unsubscribe link: how to leave anyway (signing up again is no help here)."""
    return AppError(
        "invalid_token",
        "This unsubscribe link is not valid: your mail program may have cut it short. "
        "Open the unsubscribe link at the bottom of our latest email again, or copy the "
        "whole link into your browser.",
    )


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> Response:
    """One button that POSTs: a link scanner's GET must not confirm.

    An already confirmed reader sees so at once, even on an expired link;
    a link that died (unsubscribed, bounced or erased since) says so, with
    no button and no offer of a new link that would never come.
    """
    try:
        reader = service.confirm_link_state(db.session, token)
        confirmed, back = reader.status is Status.CONFIRMED, _site_of(reader)
    except TokenError as exc:
        raise _token_error(exc, token) from None
    finally:
        db.session.rollback()  # read only
    if confirmed:
        return answer("pages/confirmed.html", {"status": "confirmed"}, back=back)
    return answer(
        "pages/confirm.html",
        {"status": "pending", "confirm_url": url_for("subscriptions.confirm", token=token)},
        token=token,
    )


@bp.post("/confirm/<token>")
def confirm(token: str) -> Response:
    """Confirm the subscription; clicking again gives the same answer."""
    try:
        reader = service.confirm(db.session, token, _client())
    except TokenError as exc:
        raise _token_error(exc, token) from None
    return answer("pages/confirmed.html", {"status": "confirmed"}, back=_site_of(reader))


@bp.get("/confirm/<token>/renew")
def renew_page(token: str) -> Response:
    """The link's own page (its button asks for the new link): opened, no email is sent.

    The address of the "Send me a new link" form, opened by hand or by a link
    scanner, showed the framework's "method not allowed". A script asking for
    JSON gets the URL to POST, as the confirm and unsubscribe pages give theirs
    (it got the redirect's HTML body).
    """
    if wants_json():
        return jsonify(renew_url=url_for("subscriptions.renew", token=token))
    return redirect(url_for("subscriptions.confirm_page", token=token), 303)


@bp.post("/confirm/<token>/renew")
def renew(token: str) -> Response:
    """Email a fresh link in place of an expired one."""
    try:
        renewal = service.renew_confirmation(db.session, token)
    except TokenError as exc:
        raise _token_error(exc, token) from None
    if renewal is service.Renewal.STILL_VALID:
        return redirect(url_for("subscriptions.confirm_page", token=token), 303)
    if renewal is service.Renewal.CONFIRMED:
        return answer("pages/confirmed.html", {"status": "confirmed"})
    return answer(
        "pages/check_inbox.html",
        {"status": "pending", "new_link": renewal.value},
        202 if wants_json() else 200,
        renewal=renewal.value,
    )


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> Response:
    """One button that POSTs the unsubscribe (JSON: the URL to POST)."""
    try:
        reader = current_tokens().read_unsubscribe(token)
    except TokenError:
        raise _unsubscribe_link_error() from None
    return answer(
        "pages/unsubscribe.html",
        {"unsubscribe_url": url_for("subscriptions.unsubscribe", token=token)},
        token=token,
        test_copy=reader == TEST_COPY_READER,
    )


@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str) -> Response:
    """Unsubscribe, from our page or a mail client's RFC 8058 one-click POST."""
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    try:
        reader = current_tokens().read_unsubscribe(token)
    except TokenError:
        raise _unsubscribe_link_error() from None
    subscriber = service.unsubscribe(db.session, reader, _client(), one_click=one_click)
    test_copy = reader == TEST_COPY_READER
    return answer(
        "pages/unsubscribed.html",
        # A test copy's link unsubscribes nobody, and says so to a script too.
        {"status": "test_copy" if test_copy else "unsubscribed"},
        email=subscriber.email if subscriber is not None else None,
        test_copy=test_copy,
        back=_site_of(subscriber),
    )
