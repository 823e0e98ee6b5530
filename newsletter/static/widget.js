/*
 * Newsletter signup widget: enhances <form data-newsletter action=".../subscribe">.
 *
 * Without JavaScript the form posts to /subscribe and the reader lands on our
 * hosted "check your inbox" page. With it, the form posts in the background,
 * says "Processing..." and then what happened, in an aria-live region, and
 * keeps what was typed when something needs fixing. No inline script or style
 * (strict CSP), no framework, no cookies. Texts can be replaced per form with
 * data-msg-success, data-msg-invalid, data-msg-empty, data-msg-name,
 * data-msg-limited, data-msg-captcha, data-msg-failed and data-msg-busy
 * attributes. With a
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
    name: "Please check your name: one line of at most 200 characters.",
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

  /* What the answer means: "success", "invalid", "name", "limited", "captcha" or "failed". */
  function outcome(response, body) {
    if (response.ok) return "success";
    if (response.status === 429) return "limited";
    var error = body && body.error;
    if (error && error.code === "captcha_failed") return "captcha";
    if ((response.status === 400 || response.status === 422) && error) {
      if (error.field === "email" || error.code === "invalid_email") return "invalid";
      if (error.field === "name") return "name";
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
    // The service keeps 2,048 characters of it and refuses more: a long slug must not fail.
    if (!data.get("source")) data.set("source", (location.origin + location.pathname).slice(0, 2048));
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
    // Marks a field at fault for the live region's message; its own description is kept.
    function marker(field) {
      var own = field && field.getAttribute("aria-describedby");
      return function (bad) {
        if (!field) return;
        if (bad) {
          field.setAttribute("aria-invalid", "true");
          field.setAttribute("aria-describedby", (own ? own + " " : "") + status.id);
        } else {
          field.removeAttribute("aria-invalid");
          if (own) field.setAttribute("aria-describedby", own);
          else field.removeAttribute("aria-describedby");
        }
      };
    }
    var nameField = form.querySelector("input[name=name]");
    var markEmail = marker(email), markName = marker(nameField);
    var FIELD_AT_FAULT = { invalid: email, empty: email, name: nameField };

    function show(state) {
      var field = FIELD_AT_FAULT[state];
      form.setAttribute("data-state", state);
      status.textContent = text(form, state);
      markEmail(field === email);
      markName(field === nameField && !!field);
      if (field) field.focus();
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      var value = email.value.trim();
      if (!value) return show("empty");
      if (email.validity && email.validity.typeMismatch) return show("invalid");
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
        var fix = FIELD_AT_FAULT[result];
        show(result);
        if (!fix) resetCaptcha(); // a field at fault is found before the token is spent
        // A disabled button drops focus; give it back where the reader was.
        if (!fix && lost && hadFocus && hadFocus.focus) hadFocus.focus();
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
