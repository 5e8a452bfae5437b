// Mailbox: copy buttons. Everything works without this file.
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var text = button.getAttribute("data-copy");
  if (!navigator.clipboard) return;
  navigator.clipboard.writeText(text).then(function () {
    var label = button.textContent;
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = label; }, 1500);
  });
});

// The password's strength as it is typed, judged by the server (the same
// check the form's submission makes).
(function () {
  var out = document.querySelector("[data-strength-for]");
  if (!out || !window.fetch) return;
  var field = document.getElementById(out.getAttribute("data-strength-for"));
  var form = field && field.form;
  if (!form) return;
  var timer = null;
  field.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      if (!field.value) { out.textContent = ""; out.className = "strength-live"; return; }
      var body = new URLSearchParams();
      ["csrf", "local", "domain"].forEach(function (name) {
        var input = form.elements[name];
        if (input) body.append(name, input.value);
      });
      body.append("password", field.value);
      fetch("/setup/strength", { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (text) {
          var score = text.charAt(0);
          out.textContent = text.slice(2);
          out.className = "strength-live strength s" + score;
        });
    }, 250);
  });
})();
