// Live updates for the staff console: poll two fragments, no framework.
(function () {
  "use strict";
  var QUEUE_MS = 3000, THREAD_MS = 2000;

  function get(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response;
      });
  }

  function pollQueue(tbody) {
    var url = tbody.getAttribute("data-poll");
    var known = {};
    tbody.querySelectorAll("tr[data-escalation-id]").forEach(function (row) {
      known[row.getAttribute("data-escalation-id")] = true;
    });
    setInterval(function () {
      var version = null;
      get(url).then(function (r) {
        version = r.headers.get("X-Fragment-Version");
        return r.text();
      }).then(function (html) {
        // The server's version, not the browser's re-serialised HTML (which never matches).
        if (version && version === tbody.getAttribute("data-version")) { return; }
        tbody.innerHTML = html;
        if (version) { tbody.setAttribute("data-version", version); }
        tbody.querySelectorAll("tr[data-escalation-id]").forEach(function (row) {
          var id = row.getAttribute("data-escalation-id");
          if (!known[id]) { row.classList.add("new"); known[id] = true; }
        });
      }).catch(function () {});
    }, QUEUE_MS);
  }

  function pollThread(list) {
    var url = list.getAttribute("data-updates");
    var panel = document.getElementById("panel");
    var reply = document.getElementById("reply");
    var layout = document.querySelector(".thread-layout");
    setInterval(function () {
      var after = list.getAttribute("data-last-id") || "0";
      get(url + "?after=" + encodeURIComponent(after)).then(function (r) { return r.json(); })
        .then(function (update) {
          if (update.messages_html.trim()) {
            list.insertAdjacentHTML("beforeend", update.messages_html);
            list.lastElementChild.scrollIntoView({ block: "nearest" });
          }
          list.setAttribute("data-last-id", String(update.last_id));
          if (panel && panel.getAttribute("data-version") !== update.panel_version) {
            // Only a real change replaces the panel: a click on its buttons is never lost.
            panel.innerHTML = update.panel_html;
            panel.setAttribute("data-version", update.panel_version);
          }
          if (layout) { layout.setAttribute("data-state", update.state); }
          if (reply) { reply.hidden = update.state !== "handed_off"; }
        }).catch(function () {});
    }, THREAD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var tbody = document.getElementById("queue-rows");
    if (tbody) { pollQueue(tbody); }
    var list = document.getElementById("messages");
    if (list) {
      pollThread(list);
      if (list.lastElementChild) { list.lastElementChild.scrollIntoView({ block: "nearest" }); }
    }
  });
})();
