/* Embed page: one layer for iframes in other portals, minimal chrome.
 * Data: /tiles/{layer}/{z}/{x}/{y}.mvt (heat: /tiles/heat/{z}/{x}/{y}.mvt). */
(function () {
  "use strict";
  var cfg = GG.config();
  var map = GG.createMap("map", { zoomControl: true });
  var layer = cfg.layer;
  var REDS = GG.REDS, BREAKS = [1, 3, 10, 30, 100, 300];
  var POINT = { cases: "#a50f15", key_units: "#6a3d9a", inspection_points: "#e66100" };

  function count(p) {
    var v = GG.prop(p, ["count", "n", "cases", "value"]);
    return typeof v === "number" ? v : parseFloat(v) || 0;
  }

  function style(props, z) {
    if (layer === "heat") {
      return { fill: true, fillColor: GG.binColour(count(props), BREAKS, REDS), fillOpacity: 0.7, stroke: false };
    }
    if (layer === "grids") { return { color: GG.GRID_STROKE, weight: 1.5, fill: true, fillColor: "#9ecae1", fillOpacity: 0.25 }; }
    if (layer === "villages") { return { color: "#35618f", weight: 2, fill: true, fillColor: "#c7e9c0", fillOpacity: 0.3 }; }
    var n = count(props);
    var r = n > 1 ? Math.min(4 + Math.sqrt(n) * 1.5, 18) : 4;
    return { radius: r, fill: true, fillColor: POINT[layer] || "#333", fillOpacity: 0.85, color: "#fff", weight: 1 };
  }

  var url = layer === "heat" ? "/tiles/heat/{z}/{x}/{y}.mvt" : "/tiles/" + layer + "/{z}/{x}/{y}.mvt";
  var vt = GG.vectorTiles(url, {
    vectorTileLayerStyles: new Proxy({}, { get: function () { return style; } }),
    interactive: layer !== "heat"
  }).addTo(map);
  vt.on("click", function (e) {
    var p = (e.layer && e.layer.properties) || {};
    var rows = Object.keys(p).filter(function (k) { return k !== "geom"; }).map(function (k) {
      return "<tr><th>" + GG.esc(k) + "</th><td>" + GG.esc(p[k]) + "</td></tr>";
    });
    L.popup().setLatLng(e.latlng).setContent('<table class="gg-kv">' + rows.join("") + "</table>").openOn(map);
  });
  if (layer === "heat") { GG.legend("事件数", BREAKS, REDS).addTo(map); }
  vt.on("load", function () { document.body.dataset.ready = "1"; });
  window.ggEmbed = { map: map, layer: vt };
})();
