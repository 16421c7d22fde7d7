// Asks before a destructive form is sent (forms with class "confirm" and a data-confirm text). The
// server does not depend on it: the action is checked there, with its CSRF token.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.classList.contains("confirm")) {
    if (!window.confirm(form.dataset.confirm || "Are you sure?")) event.preventDefault();
  }
});
