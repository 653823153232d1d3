/* Error panel page: nothing to load; tells tests and embedding portals it has settled. */
(function () {
  "use strict";
  document.body.dataset.ready = "error";
})();
