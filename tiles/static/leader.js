/* Leader page: incident heat map (pre-aggregated heat tiles), time range and category filters,
 * cases per grid (choropleth from /api/stats/cases-by-grid), raw case points at street zoom.
 * Three layers, three colour schemes, one legend section each (shown with its layer):
 * heat bins in purples, cases per grid in blues, case points by status (CSS --gg-status-*).
 * Data: /tiles/heat/{z}/{x}/{y}.mvt?from&to&category, /tiles/cases/{z}/{x}/{y}.mvt (z >= 16),
 * /api/stats/cases-by-grid?from&to&category (&geometry=false when only the counts change). */
(function () {
  "use strict";
  var cfg = GG.config();
  var t = gg.t;
  var map = GG.createMap("map");
  var STREET_ZOOM = 16;
  var fromEl = document.getElementById("gg-from");
  var toEl = document.getElementById("gg-to");
  var catEl = document.getElementById("gg-category");
  var totalEl = document.getElementById("gg-total");
  var topEl = document.getElementById("gg-top");
  var emptyEl = document.getElementById("gg-empty");
  var countsEl = document.getElementById("gg-counts");
  var HEAT_BREAKS = [1, 3, 10, 30, 100, 300];
  var COUNT_BREAKS = [0, 1, 5, 10, 25, 50];
  var STATUS_GROUPS = [["reported", "reported"], ["open", "dispatched"], ["closed", "closed"]];
  var layers = { heat: null, points: null, grids: null };
  var replace = GG.overlaySwitcher(map, layers);
  var legends = GG.legends(map);

  function label(prefix, value) {
    return gg.has(prefix + value) ? t(prefix + value) : value;
  }

  (cfg.categories || []).forEach(function (c) {
    var o = document.createElement("option");
    o.value = c; o.textContent = label("cases.category.", c);
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
    return { fill: true, fillColor: GG.binColour(count(props), HEAT_BREAKS, GG.RAMPS.heat), fillOpacity: 0.75,
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
    }), t("common.layer.heat"));
    replace("points", GG.vectorTiles(GG.url("/tiles/cases/{z}/{x}/{y}.mvt", f), {
      vectorTileLayerStyles: anyLayer(function (p) {
        return { radius: 5, fill: true, fillColor: GG.caseColour(p.overdue ? "overdue" : p.status), fillOpacity: 0.95, color: "#fff", weight: 1 };
      }),
      minZoom: STREET_ZOOM, interactive: true
    }).on("click", function (e) {
      var p = e.layer && e.layer.properties || {};
      L.popup().setLatLng(e.latlng).setContent(
        "<b>" + GG.esc(label("cases.category.", p.category || "") || t("leader.popup_case")) + "</b><br>" +
        GG.esc(p.case_no || "") + "<br>" + GG.esc(label("cases.status.", p.status || "")) + " " +
        GG.esc(String(p.reported_at || "").slice(0, 10))
      ).openOn(map);
    }), t("common.layer.cases"));
    legends.set("heat", { title: t("leader.legend.heat"), items: GG.binItems(HEAT_BREAKS, GG.RAMPS.heat) }, layers.heat);
    legends.set("points", {
      title: t("leader.legend.points"),
      items: STATUS_GROUPS.map(function (g) { return { colour: GG.caseColour(g[1]), label: t("leader.status." + g[0]), shape: "dot" }; })
        .concat([{ colour: GG.caseColour("overdue"), label: t("leader.status.overdue"), shape: "dot" }])
    }, layers.points);
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
      l.setStyle({ fillColor: GG.binColour(n, COUNT_BREAKS, GG.RAMPS.counts) });
      l.setTooltipContent(GG.esc(t("leader.tooltip", {
        name: name, cases: t("common.cases_n", { n: n }), households: t("common.households", { n: f.properties.households })
      })));
    });
    ranked.sort(function (a, b) { return b[1] - a[1]; });
    totalEl.textContent = String(total);
    topEl.innerHTML = ranked.filter(function (r) { return r[1] > 0; }).slice(0, 15).map(function (r) {
      return "<li>" + GG.esc(r[0]) + "：<b>" + r[1] + "</b></li>";
    }).join("");
    // empty states: no plan in force, or nothing in the chosen period and category
    var empty = !fc.features.length ? "leader.no_plan" : (total === 0 ? "leader.empty" : null);
    emptyEl.textContent = empty ? t(empty) : "";
    emptyEl.hidden = !empty;
    document.body.dataset.empty = empty ? "1" : "";
  }

  function sameGrids(fc) {
    return fc.features.length === Object.keys(drawn).length &&
      fc.features.every(function (f) { return drawn[f.properties.code]; });
  }

  function draw(fc) {
    drawn = {};
    var layer = GG.geojson(fc, {
      style: function () {
        return { color: GG.GRID_STROKE, weight: 1.5, fillColor: "#fff", fillOpacity: 0.55 };
      },
      onEachFeature: function (f, l) {
        drawn[f.properties.code] = l;
        l.bindTooltip("", { sticky: true });
      }
    });
    replace("grids", layer, t("common.layer.case_counts"));
    legends.set("counts", { title: t("leader.legend.counts"), items: GG.binItems(COUNT_BREAKS, GG.RAMPS.counts) }, layer);
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

  /** Load tiles and counts; a failure shows an error until the next success clears it. */
  function refresh() {
    if (fromEl.value && toEl.value && fromEl.value > toEl.value) {
      GG.status(t("leader.bad_range"), "error");
      return Promise.resolve(false);
    }
    GG.busy(countsEl, true);
    GG.status(t("common.loading"));
    loadTiles();
    return loadCounts().then(function () {
      GG.status("");
      return true;
    }).catch(function (err) {
      GG.status(t("common.load_failed", { reason: err.message }), "error");
      return false;
    }).then(function (ok) { GG.busy(countsEl, false); return ok; });
  }

  // Fire inspection points by due state and key units flagged when a filing is overdue
  // (layers without personal data): two toggles in the layer control, off at first.
  var DUE_COLOURS = { overdue: "#c62828", due: "#ef6c00", ok: "#2e7d32", unknown: "#757575" };
  layers.inspections = L.layerGroup();  // placeholders off the map: replace() keeps them off
  layers.units = L.layerGroup();
  replace("inspections", GG.vectorTiles("/tiles/inspection_points/{z}/{x}/{y}.mvt", {
    vectorTileLayerStyles: anyLayer(function (p) {
      return { radius: 5, fill: true, fillColor: DUE_COLOURS[p.due_state] || DUE_COLOURS.unknown,
               fillOpacity: 0.95, color: "#fff", weight: 1 };
    }), interactive: false
  }), t("leader.layer.inspections"));
  replace("units", GG.vectorTiles("/tiles/key_units/{z}/{x}/{y}.mvt", {
    vectorTileLayerStyles: anyLayer(function (p) {
      var late = p.overdue_filings > 0;
      return { radius: 6, fill: true, fillColor: late ? DUE_COLOURS.overdue : "#1565c0",
               fillOpacity: 0.9, color: late ? "#000" : "#fff", weight: late ? 2 : 1 };
    }), interactive: false
  }), t("leader.layer.units"));
  legends.set("inspections", {
    title: t("leader.legend.inspections"),
    items: ["overdue", "due", "ok", "unknown"].map(function (k) {
      return { colour: DUE_COLOURS[k], label: t("leader.due." + k), shape: "dot" };
    })
  }, layers.inspections);

  // Visit coverage per grid (民情走访覆盖率, this quarter; numbers only): a toggle, off at
  // first, fetched when switched on. Colours and classes come with the data (its legend).
  var COVERAGE_LABELS = ["c90", "c60", "c30", "c0", "none"];
  var coverageGroup = L.layerGroup();
  replace("coverage", coverageGroup, t("leader.layer.coverage"));
  map.removeLayer(coverageGroup);
  map.on("layeradd", function (e) {
    if (e.layer !== coverageGroup || coverageGroup.getLayers().length) { return; }
    GG.fetchJSON("/api/visits/coverage/layer").then(function (res) {
      var fc = res.data;
      coverageGroup.addLayer(GG.geojson(fc, {
        style: function (f) {
          return { color: GG.GRID_STROKE, weight: 1, fillColor: f.properties.colour, fillOpacity: 0.6 };
        },
        onEachFeature: function (f, l) {
          var p = f.properties;
          l.bindTooltip(GG.esc(t("leader.coverage.tooltip", {
            name: p.name || p.code, visited: p.visited, households: p.households,
            share: p.coverage === null ? "—" : Math.round(p.coverage * 100) + "%"
          })), { sticky: true });
        }
      }));
      legends.set("coverage", {
        title: t("leader.legend.coverage"),
        items: fc.legend.map(function (item, i) {
          return { colour: item.colour, label: t("leader.coverage." + COVERAGE_LABELS[i]) };
        })
      }, coverageGroup);
    }).catch(function (err) {
      GG.status(t("common.load_failed", { reason: err.message }), "error");
    });
  });

  refresh().then(function (ok) { document.body.dataset.ready = ok ? "1" : "error"; });

  document.getElementById("gg-filters").addEventListener("submit", function (e) {
    e.preventDefault();
    refresh();
  });
  window.ggLeader = { map: map, layers: layers, refresh: refresh, legends: legends };
})();
