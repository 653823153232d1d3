/* ogc.js — the OGC API's HTML pages (tiles/templates/ogc_*.html).
 *
 * Map pages (a page of items, one item) carry their features in
 * <script type="application/json" id="ogc-data">: {geojson, extent, itemHref}. The map is
 * Leaflet with the configured base map (GG.createMap); features are drawn from that JSON
 * (CRS84), each linking its own page. Every page sets body[data-ready="1"] when done.
 */
(function () {
  "use strict";
  function ready() { document.body.dataset.ready = "1"; }
  var el = document.getElementById("ogc-data");
  var data = null;
  try { data = el ? JSON.parse(el.textContent) : null; } catch (e) { data = null; }
  var mapEl = document.getElementById("map");
  if (!mapEl || !data || !data.geojson || !window.GG) { ready(); return; }

  var STROKE = GG.GRID_STROKE;
  var AREA = { color: STROKE, weight: 2, fillColor: GG.GRID_FILL, fillOpacity: 0.35 };
  var POINT = { radius: 6, color: STROKE, weight: 2, fillColor: "#f28e2b", fillOpacity: 0.9 };
  var map = GG.createMap("map", {});
  var layer = GG.geojson(data.geojson, {
    // L.GeoJSON styles point markers too: points get the marker's style
    style: function (f) { return /Point$/.test((f.geometry || {}).type || "") ? POINT : AREA; },
    pointToLayer: function (feature, latlng) { return L.circleMarker(latlng, POINT); },
    onEachFeature: function (feature, lyr) {
      var id = String(feature.id);
      var href = data.itemHref ? data.itemHref.replace("{id}", encodeURIComponent(id)) : null;
      var label = GG.esc(id);
      lyr.bindPopup(href ? '<a href="' + GG.esc(href) + '">' + label + "</a>" : label);
      lyr.bindTooltip(label);
    }
  }).addTo(map);
  document.body.dataset.drawn = String(layer.getLayers().length);
  var bounds = layer.getBounds();
  var box = data.extent;
  if (bounds.isValid()) {
    map.fitBounds(bounds.pad(0.1), { maxZoom: 17 });
  } else if (box && box.length === 4) {
    map.fitBounds(L.latLngBounds(GG.toLatLng(box[0], box[1]), GG.toLatLng(box[2], box[3])));
  }
  ready();
})();
