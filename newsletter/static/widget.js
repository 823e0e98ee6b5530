/*
 * Newsletter signup widget: enhances <form data-newsletter action=".../subscribe">.
 *
 * Without JavaScript the form posts to /subscribe and the reader lands on our
 * hosted "check your inbox" page. With it, the form posts in the background,
 * says "Processing..." and then what happened, in an aria-live region, and
 * keeps what was typed when something needs fixing. No inline script or style
 * (strict CSP), no framework, no cookies. Texts can be replaced per form with
 * data-msg-success, data-msg-invalid, data-msg-empty, data-msg-limited,
 * data-msg-captcha, data-msg-failed and data-msg-busy attributes. With a
 * Turnstile or hCaptcha widget in the form, its token is posted with the rest
 * and the widget is reset after each answer (a token is good once).
 */
(function () {
  "use strict";

  var TEXTS = {
    busy: "Processing...",
    success: "Thank you! Check your inbox to confirm.",
    empty: "Please enter your email address.",
    invalid: "That doesn't look like an email address. Please check it and try again.",
    limited: "Too many attempts, please try again later.",
    captcha: "Please complete the check that you are not a robot, then try again.",
    failed: "Something went wrong, please try again."
  };
  var TIMEOUT_MS = 15000;

  function text(form, key) {
    return form.getAttribute("data-msg-" + key) || TEXTS[key];
  }

  /* The live region: the snippet's [data-newsletter-status], or one we add. */
  function statusOf(form) {
    var status = form.querySelector("[data-newsletter-status]");
    if (!status) {
      status = document.createElement("p");
      status.setAttribute("data-newsletter-status", "");
      form.appendChild(status);
    }
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    status.setAttribute("aria-atomic", "true");
    if (!status.id) {
      status.id = "nl-status-" + Math.random().toString(36).slice(2, 9);
    }
    return status;
  }

  /* What the answer means: "success", "invalid", "limited", "captcha" or "failed". */
  function outcome(response, body) {
    if (response.ok) return "success";
    if (response.status === 429) return "limited";
    var error = body && body.error;
    if (error && error.code === "captcha_failed") return "captcha";
    if ((response.status === 400 || response.status === 422) && error &&
        (error.field === "email" || error.code === "invalid_email")) {
      return "invalid";
    }
    return "failed";
  }

  /* A CAPTCHA token is spent by the check: ask the provider's widget for a new one. */
  function resetCaptcha() {
    var widgets = [window.turnstile, window.hcaptcha];
    for (var i = 0; i < widgets.length; i++) {
      try { if (widgets[i] && widgets[i].reset) widgets[i].reset(); } catch (e) { /* none rendered */ }
    }
  }

  function post(form) {
    var data = new URLSearchParams(new FormData(form));
    if (!data.get("source")) data.set("source", location.origin + location.pathname);
    var controller = window.AbortController ? new AbortController() : null;
    var timer = controller && setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    return fetch(form.action, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { Accept: "application/json" },
      body: data,
      signal: controller && controller.signal
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        return outcome(response, body);
      });
    }, function () {
      return "failed";
    }).then(function (result) {
      clearTimeout(timer);
      return result;
    });
  }

  function enhance(form) {
    var email = form.querySelector("input[name=email]");
    var button = form.querySelector("button[type=submit], button:not([type]), input[type=submit]");
    var status = statusOf(form);
    var busy = false;
    if (!email || !button || form.hasAttribute("data-newsletter-ready")) return;
    form.noValidate = true; // our messages replace the browser's bubbles
    form.setAttribute("data-newsletter-ready", "");

    function label(value) {
      if (button.tagName === "INPUT") button.value = value;
      else button.textContent = value;
    }
    var idle = button.tagName === "INPUT" ? button.value : button.textContent;
    // The page's own description of the field, kept: the error is added to it, then gone.
    var describedBy = email.getAttribute("aria-describedby");

    function show(state, focusEmail) {
      form.setAttribute("data-state", state);
      status.textContent = text(form, state);
      var bad = state === "invalid" || state === "empty";
      if (bad) {
        email.setAttribute("aria-invalid", "true");
        email.setAttribute("aria-describedby", (describedBy ? describedBy + " " : "") + status.id);
      } else {
        email.removeAttribute("aria-invalid");
        if (describedBy) email.setAttribute("aria-describedby", describedBy);
        else email.removeAttribute("aria-describedby");
      }
      if (focusEmail) email.focus();
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      var value = email.value.trim();
      if (!value) return show("empty", true);
      if (email.validity && email.validity.typeMismatch) return show("invalid", true);
      var hadFocus = document.activeElement;
      busy = true;
      button.disabled = true;
      form.setAttribute("aria-busy", "true");
      form.setAttribute("data-state", "busy");
      label(text(form, "busy"));
      status.textContent = "";
      post(form).then(function (result) {
        busy = false;
        button.disabled = false;
        form.removeAttribute("aria-busy");
        label(idle);
        var lost = document.activeElement === document.body || document.activeElement === button;
        show(result, result === "invalid");
        if (result !== "invalid") resetCaptcha(); // an invalid address spent no token
        // A disabled button drops focus; give it back where the reader was.
        if (result !== "invalid" && lost && hadFocus && hadFocus.focus) hadFocus.focus();
      });
    });
  }

  function start() {
    // Without these the plain form keeps working as it does without JavaScript.
    if (!window.fetch || !window.FormData || !window.URLSearchParams) return;
    var forms = document.querySelectorAll("form[data-newsletter]");
    for (var i = 0; i < forms.length; i++) enhance(forms[i]);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
