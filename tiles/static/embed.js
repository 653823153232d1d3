/* Embed page: one layer for iframes in other portals, minimal chrome, driven by its URL and
 * by postMessage. Data: /tiles/{layer}/{z}/{x}/{y}.mvt (heat: /tiles/heat/{z}/{x}/{y}.mvt).
 *
 * URL options: lang (server), plan (grids), center=lng,lat + zoom, or bbox=w,s,e,n (WGS84),
 * from, to, category (heat), village (12-digit code prefix), legend=0|1, basemap=0|1.
 * Events sent to the parent: {source: "geogrid", type: "ready" | "click" | "selection", ...}.
 * Commands accepted from the parent: {type: "setView", center, zoom | bbox},
 * {type: "setFilter", from, to, category, village}. Both directions only with the origins of
 * the embed token (cfg.origins; without a token, this site only). See /embed. */
(function () {
  "use strict";
  var cfg = GG.config();
  var t = gg.t;
  var q = new URLSearchParams(window.location.search);
  var layer = cfg.layer;
  var allowed = (cfg.origins || []).concat([window.location.origin]);
  var map = GG.createMap("map", { basemap: q.get("basemap") !== "0" });
  var BREAKS = [1, 3, 10, 30, 100, 300];
  var POINT = { key_units: "#6a3d9a", inspection_points: "#e66100" };
  var FILL = { grids: GG.GRID_FILL, villages: "#c7e9c0" };
  var filter = { from: q.get("from") || "", to: q.get("to") || "", category: q.get("category") || "", village: q.get("village") || "" };
  var selectedId = null, featureEvent = null, vt = null, readySent = false;

  function numbers(text, n) {
    if (!text) { return null; }
    var v = String(text).split(",").map(Number);
    return v.length === n && v.every(isFinite) ? v : null;
  }

  /* -- messages ------------------------------------------------------------------------- */

  function send(msg) {
    if (window.parent === window) { return; }
    msg.source = "geogrid";
    allowed.forEach(function (origin) {
      try { window.parent.postMessage(msg, origin); } catch (e) { /* not that origin */ }
    });
  }

  function view() {
    var c = map.getCenter(), b = map.getBounds();
    return {
      center: [+c.lng.toFixed(6), +c.lat.toFixed(6)], zoom: map.getZoom(),
      bbox: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map(function (v) { return +v.toFixed(6); })
    };
  }

  function setView(d) {
    var bbox = Array.isArray(d.bbox) && d.bbox.length === 4 && d.bbox.every(isFinite) ? d.bbox : null;
    var centre = Array.isArray(d.center) && d.center.length === 2 && d.center.every(isFinite) ? d.center : null;
    if (bbox) {
      map.fitBounds(L.latLngBounds(GG.toLatLng(bbox[0], bbox[1]), GG.toLatLng(bbox[2], bbox[3])), { animate: false });
    } else if (centre) {
      var z = isFinite(d.zoom) ? Math.max(3, Math.min(20, +d.zoom)) : map.getZoom();
      map.setView(GG.toLatLng(centre[0], centre[1]), z, { animate: false });
    }
  }

  /* -- the layer ------------------------------------------------------------------------ */

  function count(p) {
    var v = GG.prop(p, ["count", "n", "cases", "value"]);
    return typeof v === "number" ? v : parseFloat(v) || 0;
  }

  function villageOf(p) { return String(layer === "villages" ? p.code : p.village_code || ""); }

  function style(props) {
    if (filter.village && villageOf(props).indexOf(filter.village) !== 0) { return []; }
    if (layer === "heat") {
      return { fill: true, fillColor: GG.binColour(count(props), BREAKS, GG.RAMPS.heat), fillOpacity: 0.75, stroke: false };
    }
    if (layer === "grids") { return { color: GG.GRID_STROKE, weight: 1.5, fill: true, fillColor: FILL.grids, fillOpacity: 0.3 }; }
    if (layer === "villages") { return { color: "#35618f", weight: 2, fill: true, fillColor: FILL.villages, fillOpacity: 0.3 }; }
    var n = count(props);
    var r = n > 1 ? Math.min(4 + Math.sqrt(n) * 1.5, 18) : 5;
    return { radius: r, fill: true, fillColor: POINT[layer] || "#333", fillOpacity: 0.9, color: "#fff", weight: 1 };
  }

  function featureId(f) {
    var p = f.properties || {};
    return p.code || p.unit_no || p.point_no || p.id || null;
  }

  function tileUrl() {
    var base = layer === "heat" ? "/tiles/heat/{z}/{x}/{y}.mvt" : "/tiles/" + layer + "/{z}/{x}/{y}.mvt";
    var params = {};
    if (layer === "grids" && /^\d+$/.test(q.get("plan") || "")) { params.plan = q.get("plan"); }
    if (layer === "heat") { params.from = filter.from; params.to = filter.to; params.category = filter.category; }
    return GG.url(base, params);
  }

  function publicProps(p) {
    var out = {};
    Object.keys(p || {}).forEach(function (k) { if (k !== "geom") { out[k] = p[k]; } });
    return out;
  }

  function build() {
    if (vt) { map.removeLayer(vt); }
    selectedId = null;
    vt = GG.vectorTiles(tileUrl(), {
      vectorTileLayerStyles: new Proxy({}, { get: function () { return style; } }),
      interactive: layer !== "heat",
      getFeatureId: featureId
    }).addTo(map);
    vt.on("click", function (e) {
      // VectorGrid stops a feature's click from reaching the map: report it here
      featureEvent = e.originalEvent;
      var feature = publicProps(e.layer && e.layer.properties);
      var id = e.layer && e.layer.properties ? featureId(e.layer) : null;
      if (selectedId !== null) { vt.resetFeatureStyle(selectedId); }
      selectedId = id;
      if (id !== null && layer !== "heat") {
        var s = style(e.layer.properties);
        vt.setFeatureStyle(id, L.extend({}, s, { weight: 4, color: "#0d2b5e", fillOpacity: 0.55 }));
      }
      var rows = Object.keys(feature).map(function (k) {
        return "<tr><th>" + GG.esc(k) + "</th><td>" + GG.esc(feature[k]) + "</td></tr>";
      });
      L.popup().setLatLng(e.latlng).setContent('<table class="gg-kv">' + rows.join("") + "</table>").openOn(map);
      send({ type: "selection", feature: feature });
      send({ type: "click", lngLat: lngLat(e.latlng), feature: feature });
    });
    vt.on("load", function () {
      document.body.dataset.ready = "1";
      if (!readySent) {
        readySent = true;
        send(L.extend({ type: "ready", layer: layer, lang: gg.lang, filter: filter }, view()));
      }
    });
    return vt;
  }

  function lngLat(ll) { return [+ll.lng.toFixed(6), +ll.lat.toFixed(6)]; }

  /* A click on no feature: clears the selection, and says where it was. */
  map.on("click", function (e) {
    if (e.originalEvent === featureEvent) { return; }  // reported by the feature already
    if (selectedId !== null) {
      vt.resetFeatureStyle(selectedId);
      selectedId = null;
      send({ type: "selection", feature: null });
    }
    send({ type: "click", lngLat: lngLat(e.latlng), feature: null });
  });

  function setFilter(d) {
    var next = {
      from: /^\d{4}-\d{2}-\d{2}$/.test(d.from || "") ? d.from : "",
      to: /^\d{4}-\d{2}-\d{2}$/.test(d.to || "") ? d.to : "",
      category: typeof d.category === "string" ? d.category.slice(0, 100) : "",
      village: /^\d{1,12}$/.test(d.village || "") ? d.village : ""
    };
    var urlChanged = layer === "heat" && (next.from !== filter.from || next.to !== filter.to || next.category !== filter.category);
    filter = next;
    if (urlChanged) { build(); } else { vt.redraw(); }
  }

  window.addEventListener("message", function (e) {
    if (e.source !== window.parent || allowed.indexOf(e.origin) < 0) { return; }
    var d = e.data;
    if (!d || typeof d !== "object") { return; }
    if (d.type === "setView") { setView(d); }
    if (d.type === "setFilter") { setFilter(d); }
  });

  /* -- start ---------------------------------------------------------------------------- */

  var bbox = numbers(q.get("bbox"), 4), centre = numbers(q.get("center"), 2);
  if (bbox || centre) { setView({ bbox: bbox, center: centre, zoom: q.get("zoom") === null ? undefined : +q.get("zoom") }); }
  build();
  if (q.get("legend") !== "0") {
    var items = layer === "heat" ? GG.binItems(BREAKS, GG.RAMPS.heat)
      : [{ colour: FILL[layer] || POINT[layer], label: t("common.layer." + layer), shape: POINT[layer] ? "dot" : "" }];
    GG.legends(map).set(layer, { title: cfg.label, items: items });
  }
  window.ggEmbed = {
    map: map, layer: function () { return vt; },
    state: function () { return { filter: filter, selected: selectedId, view: view() }; }
  };
})();
