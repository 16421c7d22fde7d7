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

// The configuration form: only the chosen authentication method's fields are shown (without script all
// are, and the server reads only the chosen method's), and "Test" runs the unsaved test in place, so what
// was typed, secrets included, stays in the form.
document.addEventListener("DOMContentLoaded", () => {
  const method = document.getElementById("f-authMethod");
  if (method) {
    const show = () => document.querySelectorAll("fieldset.method").forEach((f) => { f.hidden = f.dataset.method !== method.value; });
    method.addEventListener("change", show);
    show();
  }
  const test = document.querySelector("button[data-test]");
  const out = document.getElementById("test-result");
  if (test && out) {
    test.addEventListener("click", async (event) => {
      event.preventDefault();
      const body = new URLSearchParams(new FormData(test.form));
      body.set("intent", "test");
      out.className = "result";
      out.textContent = "Testing…";
      try {
        const response = await fetch(test.dataset.test, { method: "POST", body, credentials: "same-origin", headers: { Accept: "application/json" } });
        const result = await response.json();
        out.className = "result " + (result.success ? "pass" : "fail");
        out.dataset.success = String(result.success === true);
        out.replaceChildren();
        const line = document.createElement("p");
        const strong = document.createElement("strong");
        strong.textContent = result.success ? "Test passed: " : "Test failed: ";
        line.append(strong, document.createTextNode(result.message || ""));
        out.append(line);
        if (result.details) {
          const pre = document.createElement("pre");
          pre.className = "wrap";
          pre.textContent = JSON.stringify(result.details, null, 2);
          out.append(pre);
        }
      } catch (e) {
        out.className = "result fail";
        out.textContent = "The test could not run: " + e;
      }
    });
  }
});
