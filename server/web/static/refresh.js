// EdgeFarm dashboard: refresh the element #live[data-refresh-seconds] in place
// (fetch this page again, swap the element), and ask before submitting a form
// that carries data-confirm. No library, no request to any other host.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  var live = document.getElementById("live");
  if (!live) return;
  var seconds = Number(live.getAttribute("data-refresh-seconds")) || 5;
  function busy() {
    var active = document.activeElement;
    return document.hidden || (active && live.contains(active) && active.tagName === "INPUT");
  }
  function refresh() {
    if (busy()) return schedule();
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) window.location.reload();  // signed out: show the sign-in page
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (fresh && !busy()) live.innerHTML = fresh.innerHTML;
      })
      .catch(function () { /* the server may be restarting: try again next time */ })
      .then(schedule);
  }
  function schedule() { window.setTimeout(refresh, seconds * 1000); }
  schedule();
})();
