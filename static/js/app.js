// Small behaviours that need no framework. The pages work without them.
(function () {
  "use strict";

  // A submit button disables itself so a double click sends one request (the form's
  // idempotency token makes a second one harmless anyway).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-disable-on-submit")) return;
    if (!tooLarge(form) && form.checkValidity()) {
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        if (button.dataset.busyLabel) button.textContent = button.dataset.busyLabel;
        // Disable after the submit has collected the form's values.
        setTimeout(function () { button.disabled = true; }, 0);
      });
      form.setAttribute("aria-busy", "true");
    } else {
      // A form checked here (novalidate: the server's messages stay in the page) still
      // says what is missing: the browser's own message at the first field to fix.
      event.preventDefault();
      if (!form.checkValidity()) form.reportValidity();
    }
  });

  // The upload form asks for the app key of a file of signals, or the Attentive account
  // of a file of events (CSS shows the chosen kind's fields): only those are required.
  function syncKind(form) {
    var chosen = form.querySelector("input[name=kind]:checked");
    if (!chosen) return;
    var events = chosen.value === "events";
    form.querySelectorAll(".for-signals select").forEach(function (el) { el.required = !events; });
    form.querySelectorAll(".for-events select").forEach(function (el) { el.required = events; });
  }
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input instanceof HTMLInputElement && input.name === "kind" && input.form) syncKind(input.form);
  });
  document.querySelectorAll("form").forEach(syncKind);

  // Refuse a file over the cap before it is sent: kinder than a reset connection.
  function tooLarge(form) {
    var max = Number(form.dataset.maxBytes || 0);
    var input = form.querySelector("input[type=file]");
    var message = form.querySelector("[data-size-error]");
    if (!max || !input || !input.files || !input.files[0] || !message) return false;
    var over = input.files[0].size > max;
    message.hidden = !over;
    message.textContent = over ? form.dataset.tooLarge : "";
    if (over) input.focus();
    return over;
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input instanceof HTMLInputElement && input.type === "file" && input.form) tooLarge(input.form);
  });

  // "Select all" of a group of checkboxes (export form: signal types per group). The box
  // shows the group's state; a change of a member lets htmx re-check the form as usual.
  function syncGroup(group) {
    var all = group.querySelector("[data-select-all]");
    var boxes = group.querySelectorAll("input[type=checkbox]:not([data-select-all])");
    var checked = Array.prototype.filter.call(boxes, function (b) { return b.checked; }).length;
    if (!all) return;
    all.checked = checked === boxes.length && boxes.length > 0;
    all.indeterminate = checked > 0 && checked < boxes.length;
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement)) return;
    var group = input.closest("[data-group]");
    if (!group) return;
    if (input.hasAttribute("data-select-all")) {
      group.querySelectorAll("input[type=checkbox]:not([data-select-all])").forEach(function (b) {
        b.checked = input.checked;
      });
    }
    syncGroup(group);
  });

  function syncAll(root) {
    (root || document).querySelectorAll("[data-group]").forEach(syncGroup);
  }
  document.addEventListener("DOMContentLoaded", function () { syncAll(); });
  document.addEventListener("htmx:afterSwap", function (event) { syncAll(event.target); });
})();
