// Posts the one-time code from the URL's fragment (which no server sees)
// and drops it from the address bar and history first.
"use strict";
(function () {
  const m = /(?:^#|&)code=([A-Za-z0-9_-]+)/.exec(location.hash);
  history.replaceState(null, "", location.pathname);
  if (!m) {
    document.getElementById("msg").textContent = "This login link has no code: run `gantry dashboard` for a fresh one.";
    return;
  }
  document.getElementById("code").value = m[1];
  document.getElementById("login").submit();
})();
