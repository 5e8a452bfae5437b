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

// The update upload: a progress bar, and the appliance's answer shown in
// place. Once a bundle is accepted the appliance restarts; the page
// reloads itself when it answers again. Without this, the form posts
// and the browser shows its own progress.
(function () {
  var form = document.querySelector("form[data-upload]");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  var bar = form.querySelector("progress");
  var out = form.querySelector("[data-upload-result]");
  var button = form.querySelector("button[type=submit]");
  function say(kind, text) {
    out.textContent = text;
    out.className = "notice " + kind;
  }
  function reloadWhenBack() {
    var wentDown = false;
    setInterval(function () {
      fetch(form.action, { credentials: "same-origin", cache: "no-store" })
        .then(function () { if (wentDown) location.reload(); })
        .catch(function () { wentDown = true; });
    }, 3000);
  }
  form.addEventListener("submit", function (event) {
    var file = form.elements["bundle"].files[0];
    if (!file) return;
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "text/plain");
    bar.hidden = false;
    bar.max = file.size;
    bar.value = 0;
    button.disabled = true;
    say("", "Sending " + file.name + " …");
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      bar.max = e.total;
      bar.value = e.loaded;
      var percent = Math.floor(100 * e.loaded / e.total);
      say("", percent < 100 ? "Sent " + percent + "% of " + file.name
        : "Sent; the appliance checks the signature and every file …");
    });
    xhr.addEventListener("load", function () {
      var text = xhr.responseText.trim();
      text = text.charAt(0).toUpperCase() + text.slice(1) + ".";
      if (xhr.status === 200) {
        say("ok", text + " This page reloads itself when the appliance is back.");
        reloadWhenBack();
      } else {
        say("bad", text);
        bar.hidden = true;
        button.disabled = false;
      }
    });
    xhr.addEventListener("error", function () {
      say("bad", "The upload broke off: the connection to the appliance was lost. Nothing was installed.");
      bar.hidden = true;
      button.disabled = false;
    });
    xhr.send(new FormData(form));
  });
})();
