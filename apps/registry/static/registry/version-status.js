// The model page's version table refreshes itself while a version is on its way (pending,
// validating, converting): it asks the admin's JSON endpoint every 2 s and swaps in the rows
// whose status changed, and stops once no version is moving. No full page reload.
(function () {
  "use strict";
  var table = document.querySelector("table[data-poll-url]");
  if (!table) { return; }
  var url = table.getAttribute("data-poll-url");
  var interval = 2000;

  function moving() { return table.querySelector("tr[data-moving]") !== null; }

  function apply(rows) {
    rows.forEach(function (row) {
      var current = document.getElementById("version-" + row.id);
      if (current && current.getAttribute("data-status") !== row.status) {
        current.outerHTML = row.html;
      }
    });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (body) { apply(body.versions); }
        if (moving()) { window.setTimeout(poll, interval); }
      })
      .catch(function () { window.setTimeout(poll, interval * 5); });
  }

  if (moving()) { window.setTimeout(poll, interval); }
})();
