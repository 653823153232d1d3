/* Embed snippet page: the live example logs the events the embedded map sends. */
(function () {
  "use strict";
  var frame = document.getElementById("gg-example");
  var log = document.getElementById("gg-example-log");
  var lines = [];
  window.addEventListener("message", function (e) {
    if (e.origin !== window.location.origin || e.source !== frame.contentWindow) { return; }
    if (!e.data || e.data.source !== "geogrid") { return; }
    lines.unshift(JSON.stringify(e.data));
    log.textContent = lines.slice(0, 8).join("\n");
  });
  document.body.dataset.ready = "1";
})();
