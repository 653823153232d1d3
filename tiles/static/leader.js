/* Leader page: incident heat map (pre-aggregated heat tiles), time range and category filters,
 * cases per grid (choropleth from /api/stats/cases-by-grid), raw case points at street zoom.
 * Data: /tiles/heat/{z}/{x}/{y}.mvt?from&to&category, /tiles/cases/{z}/{x}/{y}.mvt (z >= 16),
 * /api/stats/cases-by-grid?from&to&category (grids of the active plan with their case counts;
 * &geometry=false when only the counts change). */
(function () {
  "use strict";
  var cfg = GG.config();
  var map = GG.createMap("map");
  var STREET_ZOOM = 16;
  var fromEl = document.getElementById("gg-from");
  var toEl = document.getElementById("gg-to");
  var catEl = document.getElementById("gg-category");
  var HEAT_BREAKS = [1, 3, 10, 30, 100, 300];
  var COUNT_BREAKS = [0, 1, 5, 10, 25, 50];
  var layers = { heat: null, points: null, grids: null };
  var replace = GG.overlaySwitcher(map, layers);

  (cfg.categories || []).forEach(function (c) {
    var o = document.createElement("option");
    o.value = c; o.textContent = c;
    catEl.appendChild(o);
  });
  var today = new Date();
  var from = new Date(today.getTime() - 365 * 864e5);
  toEl.value = cfg.to || today.toISOString().slice(0, 10);
  fromEl.value = cfg.from || from.toISOString().slice(0, 10);

  function filters() {
    return { from: fromEl.value, to: toEl.value, category: catEl.value };
  }

  function count(props) {
    var v = GG.prop(props, ["n", "cases", "count", "value"]);
    return typeof v === "number" ? v : parseFloat(v) || 0;
  }

  function heatStyle(props) {
    return { fill: true, fillColor: GG.binColour(count(props), HEAT_BREAKS, GG.REDS), fillOpacity: 0.7,
             stroke: false, radius: 6 };
  }

  function anyLayer(styleFn) {
    // Style every MVT layer name the same way, whatever the server calls it.
    return new Proxy({}, { get: function () { return styleFn; } });
  }

  function loadTiles() {
    var f = filters();
    replace("heat", GG.vectorTiles(GG.url("/tiles/heat/{z}/{x}/{y}.mvt", f), {
      vectorTileLayerStyles: anyLayer(heatStyle), interactive: false, maxNativeZoom: 16
    }), "事件热力 Heat");
    replace("points", GG.vectorTiles(GG.url("/tiles/cases/{z}/{x}/{y}.mvt", f), {
      vectorTileLayerStyles: anyLayer(function () {
        return { radius: 4, fill: true, fillColor: "#a50f15", fillOpacity: 0.9, color: "#fff", weight: 1 };
      }),
      minZoom: STREET_ZOOM, interactive: true
    }).on("click", function (e) {
      var p = e.layer && e.layer.properties || {};
      L.popup().setLatLng(e.latlng).setContent(
        "<b>" + GG.esc(p.category || "事件") + "</b><br>" + GG.esc(p.case_no || "") + "<br>" +
        GG.esc(p.status || "") + " " + GG.esc(p.reported_at || "") + "<br>" + GG.esc(p.description || "")
      ).openOn(map);
    }), "事件点位 Points (≥16级)");
  }

  // The grids are drawn once; a new time range or category only restyles them from counts
  // fetched with geometry=false (a county's 2,000 grid polygons are ~5 MB, the counts 0.3 MB).
  var drawn = null;  // grid code -> Leaflet layer of the drawn choropleth

  function restyle(fc) {
    var total = 0, ranked = [];
    fc.features.forEach(function (f) {
      var l = drawn[f.properties.code], n = count(f.properties);
      var name = f.properties.name || f.properties.code;
      total += n;
      ranked.push([name, n]);
      l.setStyle({ fillColor: GG.binColour(n, COUNT_BREAKS, GG.REDS) });
      l.setTooltipContent(GG.esc(name) + "：" + n + " 件 / " + GG.esc(f.properties.households) + " 户");
    });
    ranked.sort(function (a, b) { return b[1] - a[1]; });
    document.getElementById("gg-total").textContent = String(total);
    document.getElementById("gg-top").innerHTML = ranked.slice(0, 15).map(function (r) {
      return "<li>" + GG.esc(r[0]) + "：<b>" + r[1] + "</b></li>";
    }).join("");
    if (!fc.features.length) { GG.status("暂无现行方案 No active plan", "error"); }
  }

  function sameGrids(fc) {
    return fc.features.length === Object.keys(drawn).length &&
      fc.features.every(function (f) { return drawn[f.properties.code]; });
  }

  function draw(fc) {
    drawn = {};
    var layer = GG.geojson(fc, {
      style: function () {
        return { color: GG.GRID_STROKE, weight: 1.5, fillColor: "#fff", fillOpacity: 0.45 };
      },
      onEachFeature: function (f, l) {
        drawn[f.properties.code] = l;
        l.bindTooltip("", { sticky: true });
      }
    });
    replace("grids", layer, "各网格事件数 Cases per grid");
    if (layers.heat) { layers.heat.bringToFront(); }
    restyle(fc);
  }

  function loadCounts() {
    var q = filters();
    if (!drawn) {
      return GG.fetchJSON(GG.url("/api/stats/cases-by-grid", q)).then(function (res) { draw(res.data); });
    }
    q.geometry = "false";
    return GG.fetchJSON(GG.url("/api/stats/cases-by-grid", q)).then(function (res) {
      if (sameGrids(res.data)) { restyle(res.data); return null; }
      drawn = null;  // another plan became active meanwhile: draw its grids
      return loadCounts();
    });
  }

  GG.legend("事件数 Cases", HEAT_BREAKS, GG.REDS).addTo(map);
  loadTiles();
  loadCounts().then(function () {
    document.body.dataset.ready = "1";
  }).catch(function (err) {
    GG.status("加载失败 Load failed: " + err.message, "error");
    document.body.dataset.ready = "error";
  });

  document.getElementById("gg-filters").addEventListener("submit", function (e) {
    e.preventDefault();
    loadTiles();
    loadCounts().catch(function (err) { GG.status("加载失败: " + err.message, "error"); });
  });
  window.ggLeader = { map: map, layers: layers };
})();
