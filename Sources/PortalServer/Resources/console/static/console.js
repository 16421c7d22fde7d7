// Asks before a destructive form is sent (a form with class "confirm", or a button, with a data-confirm text). The
// server does not depend on it: the action is checked there, with its CSRF token.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = (event.submitter && event.submitter.dataset.confirm) || (form.classList.contains("confirm") && form.dataset.confirm);
  if (question && !window.confirm(question)) event.preventDefault();
});

// A section marked data-live (a running sync's jobs) is refreshed from the same page every data-live
// milliseconds until the server renders it without the mark (nothing left running).
const refresh = (section) => {
  const every = Number(section.dataset.live) || 2000;
  setTimeout(async () => {
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok || response.redirected) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById(section.id);
      if (!fresh) return;
      section.replaceWith(fresh);
      if (fresh.dataset.live) refresh(fresh);
    } catch (e) {
      refresh(section);
    }
  }, every);
};
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live][id]").forEach(refresh);
});
