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
      get(url).then(function (r) { return r.text(); }).then(function (html) {
        if (html.trim() === tbody.innerHTML.trim()) { return; }
        tbody.innerHTML = html;
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
          if (panel && panel.innerHTML.trim() !== update.panel_html.trim()) {
            // Keep whatever is expanded/typed elsewhere; the panel holds only buttons.
            panel.innerHTML = update.panel_html;
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
