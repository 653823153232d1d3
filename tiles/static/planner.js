/* planner.js — finish a grid plan in the page (needs i18n.js and geogrid-map.js).
 *
 * Draft and active plan overlaid or side by side, grids coloured by the plan's band (the
 * colours of every page), grid labels, groups changed since the active plan outlined; a
 * sortable table of all grids with live totals and each village's achievable bound; the
 * metrics panel, the edit history (undo/redo), moves checked first (band warnings need an
 * explicit confirmation, refusals say why), rename, lock, re-run of one village, staff
 * with photos, exports, print links, and activation after a dialog showing the diff.
 *
 * Data: /api/plans, /api/plans/{id} (ETag), /api/plans/{id}/grids, /api/plans/{id}/history,
 * /api/plans/{a}/diff/{b}, /planner/plans/{id}/groups.geojson; every edit sends If-Match.
 */
(function () {
  "use strict";
  var t = gg.t;
  var cfg = GG.config();
  var $ = function (id) { return document.getElementById(id); };
  var map = GG.createMap("map");
  var map2 = null;  // the active plan, side by side
  var legend = GG.legends(map);
  var layers = { draft: null, active: null, groups: null };
  var replace = GG.overlaySwitcher(map, layers);
  var state = {
    plans: [], draft: null, info: null, active: null, etag: null, editable: false,
    grids: {}, features: [], groups: [], villages: {}, band: { min: 100, max: 200, target: 150 },
    diff: null, changed: {}, history: null, picked: null, moving: false, selected: null,
    pending: null, sort: { key: "code", dir: 1 }
  };

  /* -- small helpers ------------------------------------------------------------------- */

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }

  function say(node, msg, ok) {
    node.hidden = !msg;
    node.textContent = msg || "";
    node.className = "gg-result " + (ok ? "ok" : "err");
  }

  function pct(x) { return x === null || x === undefined ? "—" : t("planner.percent", { value: (100 * x).toFixed(0) }); }

  function bandOf(n) { return GG.bandClass(n, state.band); }

  /** The text of a failed request: the reason code of a refused edit, else errors.<code>. */
  function why(err) {
    var reason = err && err.data && err.data.reason;
    if (reason && gg.has("planner.reason." + reason)) { return t("planner.reason." + reason); }
    return err && err.message ? err.message : gg.errorText(err);
  }

  function flagWords(flags) {
    return (flags || []).map(function (f) {
      return gg.has("planner.flag." + f) ? t("planner.flag." + f) : f;
    }).join("、");
  }

  function villageName(code) {
    var v = state.villages[code];
    return v && v.name ? v.name : code;
  }

  function shortName(p) {
    var name = p.name || p.code, vn = villageName(p.village_code);
    return name.indexOf(vn) === 0 && name.length > vn.length ? name.slice(vn.length) : name;
  }

  function groupName(g) {
    return g.name ? villageName(g.village_code) + g.name : t("planner.group_ref", { village: villageName(g.village_code), group: g.group_no });
  }

  /** A grid by name: its own name in the draft, else the village and the grid number. */
  function gridLabel(code) {
    var p = state.grids[code];
    if (p && p.name) { return villageName(p.village_code) === p.name.slice(0, villageName(p.village_code).length) ? p.name : villageName(p.village_code) + p.name; }
    return t("planner.grid_no", { village: villageName(String(code).slice(0, 12)), n: parseInt(String(code).slice(12), 10) });
  }

  /** "VILLAGE/UNIT" of the edit log → the village's name and the group. */
  function unitLabel(ref) {
    var parts = String(ref || "").split("/");
    return t("planner.group_ref", { village: villageName(parts[0]), group: parts[1] || "" });
  }

  /* -- requests -------------------------------------------------------------------------- */

  function jsonOpts(method, body, extra) {
    var headers = { "Content-Type": "application/json" };
    if (state.etag) { headers["If-Match"] = state.etag; }
    return { method: method, headers: Object.assign(headers, extra || {}), body: body === undefined ? undefined : JSON.stringify(body) };
  }

  /** An edit of the draft: If-Match, the new ETag kept, everything reloaded after it. */
  function edit(url, method, body) {
    return GG.fetchJSON(url, jsonOpts(method, body)).then(function (res) {
      state.etag = res.response.headers.get("ETag") || state.etag;
      return loadDraft().then(function () { return res.data; });
    }, function (err) {
      if (err.status === 412) { loadDraft(); }
      throw err;
    });
  }

  /* -- map layers ------------------------------------------------------------------------- */

  function gridStyle(f) {
    var p = f.properties, sel = p.code === state.selected;
    if (p.locked) {
      return { color: sel ? "#000" : GG.GRID_STROKE, weight: sel ? 4 : 2, dashArray: "4 3",
               fillColor: GG.BAND.locked, fillOpacity: 0.55 };
    }
    return { color: sel ? "#000" : GG.GRID_STROKE, weight: sel ? 4 : 2,
             fillColor: GG.BAND[bandOf(p.households)], fillOpacity: 0.45 };
  }

  function groupStyle(f) {
    var p = f.properties;
    var picked = state.picked && p.id === state.picked.id;
    var changed = state.changed[p.village_code + "/" + p.group_no];
    if (picked) { return { color: "#ff6f00", weight: 3, fillColor: "#ff6f00", fillOpacity: 0.3 }; }
    if (changed) { return { color: "#8e24aa", weight: 1, dashArray: null, fillColor: "#8e24aa", fillOpacity: 0.28, fill: true }; }
    return { color: "#7a7a7a", weight: 0.6, dashArray: "2 3", fillOpacity: 0, fill: true };
  }

  function label(p) {
    return GG.esc(shortName(p)) + "<br>" + GG.esc(t("common.households", { n: p.households }));
  }

  /* Grid outlines in a pane above the groups (which take the clicks), so that grid borders
   * stay visible over highlighted groups; the pane lets every click through. */
  map.createPane("gg-outlines").style.zIndex = 450;
  map.getPane("gg-outlines").style.pointerEvents = "none";

  function outlineStyle(f) {
    var sel = f.properties.code === state.selected;
    return { color: sel ? "#000" : GG.GRID_STROKE, weight: sel ? 4 : 2, fill: false,
             dashArray: f.properties.locked ? "4 3" : null };
  }

  function fillStyle(f) {
    return L.extend(gridStyle(f), { stroke: false });
  }

  /** The draft: band-coloured fills (clickable, labelled) and their outlines above. */
  function draftLayer(data) {
    state.fills = GG.geojson(data, {
      style: fillStyle,
      onEachFeature: function (f, layer) {
        layer.bindTooltip(label(f.properties), { permanent: true, direction: "center", className: "gg-grid-label", interactive: false });
        layer.on("click", function () { onPick(null, f.properties); });
      }
    });
    state.outlines = GG.geojson(data, { style: outlineStyle, pane: "gg-outlines", interactive: false });
    return L.featureGroup([state.fills, state.outlines]);
  }

  function activeLayer(data, filled) {
    return GG.geojson(data, {
      style: function (f) {
        return filled
          ? { color: GG.GRID_STROKE, weight: 2, fillColor: GG.BAND[bandOf(f.properties.households)], fillOpacity: 0.45 }
          : { color: "#e66100", weight: 2.5, dashArray: "6 4", fill: false, interactive: false };
      },
      onEachFeature: filled ? function (f, layer) {
        layer.bindTooltip(label(f.properties), { permanent: true, direction: "center", className: "gg-grid-label", interactive: false });
      } : undefined
    });
  }

  function labelsByZoom(m) {
    m.getContainer().classList.toggle("gg-labels-off", m.getZoom() < 13);
  }
  map.on("zoomend", function () { labelsByZoom(map); });

  function setLegend() {
    var items = GG.bandItems(state.band).concat([
      { colour: GG.BAND.locked, label: t("planner.band.locked") },
      { colour: "#e66100", label: t("planner.map.active"), shape: "line" },
      { colour: "#8e24aa", label: t("planner.map.changed") }
    ]);
    legend.set("band", { title: t("planner.col.households"), items: items });
  }

  /* -- the view: overlay or side by side ---------------------------------------------- */

  var syncing = false;
  function sync(from, to) {
    from.on("moveend", function () {
      if (syncing || !to || $("map-active").hidden) { return; }
      syncing = true;
      to.setView(from.getCenter(), from.getZoom(), { animate: false });
      syncing = false;
    });
  }

  function setView(view) {
    $("gg-maps").dataset.view = view;
    var side = view === "side";
    $("map-active").hidden = !side;
    if (side && !map2) {
      map2 = GG.createMap("map-active", { zoomControl: true });
      sync(map, map2);
      sync(map2, map);
      map2.on("zoomend", function () { labelsByZoom(map2); });
    }
    map.invalidateSize();
    if (map2) { map2.invalidateSize(); map2.setView(map.getCenter(), map.getZoom(), { animate: false }); }
    return loadActive();
  }

  /* -- loading ------------------------------------------------------------------------------ */

  function loadActive() {
    if (!state.active || state.active.id === state.draft) {
      if (layers.active) { map.removeLayer(layers.active); }
      return Promise.resolve();
    }
    return GG.fetchJSON("/api/plans/" + state.active.id + "/grids").then(function (res) {
      replace("active", activeLayer(res.data, false), t("planner.map.active"));
      if ($("map-active").hidden) {
        if (!map.hasLayer(layers.active)) { layers.active.addTo(map); }
      } else {
        map.removeLayer(layers.active);
        if (map2) {
          map2.eachLayer(function (l) { if (l.feature) { map2.removeLayer(l); } });
          activeLayer(res.data, true).addTo(map2);
          labelsByZoom(map2);
        }
      }
      if (map.hasLayer(layers.active)) { layers.active.bringToFront(); }
    });
  }

  function loadDraft() {
    if (!state.draft) { return Promise.resolve(); }
    var id = state.draft;
    GG.busy($("map"), true);
    var diffUrl = state.active && state.active.id !== id ? "/api/plans/" + state.active.id + "/diff/" + id : null;
    return Promise.all([
      GG.fetchJSON("/api/plans/" + id),
      GG.fetchJSON("/api/plans/" + id + "/grids"),
      GG.fetchJSON("/planner/plans/" + id + "/groups.geojson"),
      GG.fetchJSON("/api/plans/" + id + "/history"),
      diffUrl ? GG.fetchJSON(diffUrl) : Promise.resolve(null)
    ]).then(function (res) {
      if (id !== state.draft) { return; }
      var info = res[0].data;
      state.info = info;
      state.etag = res[0].response.headers.get("ETag");
      state.editable = info.status === "draft";
      state.band = { min: info.params.min || 100, max: info.params.max || 200, target: info.params.target || 150 };
      state.villages = {};
      (info.metrics.villages || []).forEach(function (v) { state.villages[v.code] = v; });
      state.features = res[1].data.features || [];
      state.grids = {};
      state.features.forEach(function (f) { state.grids[f.properties.code] = f.properties; });
      state.groups = res[2].data.features || [];
      state.history = res[3].data;
      state.diff = res[4] ? res[4].data : null;
      state.changed = {};
      (state.diff ? state.diff.changes : []).forEach(function (c) { state.changed[c.village_code + "/" + c.unit] = c; });
      if (state.selected && !state.grids[state.selected]) { state.selected = null; }
      replace("draft", draftLayer(res[1].data), t("planner.map.draft"));
      replace("groups", GG.geojson(res[2].data, {
        style: groupStyle,
        onEachFeature: function (f, layer) {
          layer.on("click", function (e) { L.DomEvent.stopPropagation(e); onPick(f.properties, null); });
        }
      }), t("planner.map.groups"));
      if (layers.active && map.hasLayer(layers.active)) { layers.active.bringToFront(); }
      labelsByZoom(map);
      setLegend();
      renderSummary();
      renderTable();
      renderHistory();
      renderDiff();
      renderSelected();
      renderExports();
      GG.status("");
    }).then(function () { GG.busy($("map"), false); }, function (err) { GG.busy($("map"), false); throw err; });
  }

  function fitDraft() {
    if (layers.draft && layers.draft.getBounds().isValid()) { map.fitBounds(layers.draft.getBounds(), { padding: [10, 10] }); }
  }

  /* -- panels --------------------------------------------------------------------------- */

  function renderSummary() {
    var box = clear($("gg-summary"));
    box.classList.add("gg-summary");
    box.appendChild(el("h2", "", t("planner.metrics.title")));
    var tot = (state.info && state.info.metrics.totals) || {};
    var out = state.features.filter(function (f) { return bandOf(f.properties.households) === "outside"; }).length;
    var hh = state.features.reduce(function (s, f) { return s + f.properties.households; }, 0);
    var rows = [
      ["planner.metrics.grids", state.features.length],
      ["planner.metrics.households", hh],
      ["planner.metrics.in_band", t("planner.metrics.in_band_value", { share: pct(tot.share_in_band), bound: pct(tot.bound_share_in_band) })],
      ["planner.metrics.mean_dev", tot.mean_abs_deviation === undefined || tot.mean_abs_deviation === null ? "—" : tot.mean_abs_deviation.toFixed(1)],
      ["planner.metrics.out", out]
    ];
    if (state.diff) {
      rows.push(["planner.metrics.moved", state.diff.households_moved]);
      rows.push(["planner.metrics.changed", state.diff.changes.length]);
    }
    rows.push(["planner.metrics.version", state.info ? state.info.version : "—"]);
    var dl = el("dl");
    rows.forEach(function (r) {
      dl.appendChild(el("dt", "", t(r[0])));
      var dd = el("dd", "", String(r[1]));
      dd.dataset.key = r[0].split(".").pop();
      dl.appendChild(dd);
    });
    box.appendChild(dl);
  }

  function rowValues(p) {
    var v = state.villages[p.village_code] || {};
    return {
      code: p.code, name: p.name || p.code, village: villageName(p.village_code),
      households: p.households, deviation: p.deviation, band: ["within", "near", "outside"].indexOf(bandOf(p.households)),
      bound: v.bound_in_band_share === undefined ? null : v.bound_in_band_share, flags: flagWords(p.flags)
    };
  }

  function renderTable() {
    var body = clear($("gg-table").tBodies[0]);
    var key = state.sort.key, dir = state.sort.dir;
    var rows = state.features.map(function (f) { return { p: f.properties, v: rowValues(f.properties) }; });
    rows.sort(function (a, b) {
      var x = a.v[key], y = b.v[key];
      if (x === y) { return a.v.code < b.v.code ? -1 : 1; }
      if (x === null || x === undefined) { return 1; }
      if (y === null || y === undefined) { return -1; }
      return (x < y ? -1 : 1) * dir;
    });
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.tabIndex = 0;
      tr.dataset.code = r.p.code;
      if (r.p.code === state.selected) { tr.classList.add("gg-selected"); }
      var band = bandOf(r.p.households);
      var cells = [r.p.code, r.v.name + (r.p.locked ? t("planner.paren", { text: t("planner.band.locked") }) : ""), r.v.village, r.p.households,
                   (r.p.deviation > 0 ? "+" : "") + r.p.deviation, null, pct(r.v.bound), r.v.flags];
      cells.forEach(function (c, i) {
        var td = el("td", [3, 4, 6].indexOf(i) >= 0 ? "num" : "", c === null ? null : String(c));
        if (i === 5) {
          var dot = el("i", "gg-dot gg-band-" + (r.p.locked ? "locked" : band));
          dot.setAttribute("aria-hidden", "true");
          td.appendChild(dot);
          td.appendChild(document.createTextNode(t("planner.band." + band)));
        }
        if (i === 7 && c) { td.className = "gg-flag-words"; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    Array.prototype.forEach.call($("gg-table").tHead.rows[0].cells, function (th) {
      th.setAttribute("aria-sort", th.dataset.key === key ? (dir > 0 ? "ascending" : "descending") : "none");
    });
    var inBand = state.features.filter(function (f) { return bandOf(f.properties.households) !== "outside"; }).length;
    var hh = state.features.reduce(function (s, f) { return s + f.properties.households; }, 0);
    $("gg-table-totals").textContent = t("planner.table.totals", { grids: state.features.length, households: hh, in_band: inBand });
    $("gg-table-empty").hidden = state.features.length > 0;
  }

  function historyText(e) {
    var p = e.payload || {};
    if (e.kind === "undo") { return t("planner.history.undo_of", { of: p.of }); }
    if (e.kind === "redo") { return t("planner.history.redo_of", { of: p.of }); }
    if (e.kind === "rerun" && !p.grids) { return t("planner.history.rerun_free", p); }
    var named = Object.assign({}, p);
    if (p.group) { named.group = unitLabel(p.group); }
    if (e.kind === "move") { named.from = gridLabel(p.from); named.to = gridLabel(p.to); }
    if (p.grid) { named.grid = gridLabel(p.grid); }
    return t("planner.history." + e.kind, named);
  }

  function renderHistory() {
    var h = state.history, list = clear($("gg-history-list"));
    var entries = h ? h.entries.slice().reverse() : [];
    entries.forEach(function (e) {
      var li = el("li", e.undone ? "gg-undone" : "");
      li.value = e.seq;
      li.appendChild(document.createTextNode(historyText(e) + (e.undone ? t("planner.paren", { text: t("planner.history.undone") }) : "")));
      if (e.author) { li.appendChild(el("span", "gg-by", " · " + e.author)); }
      list.appendChild(li);
    });
    $("gg-history-empty").hidden = entries.length > 0;
    $("gg-undo").disabled = !(state.editable && h && h.can_undo);
    $("gg-redo").disabled = !(state.editable && h && h.can_redo);
  }

  function renderDiff() {
    var s = $("gg-diff-summary");
    if (!state.active || state.active.id === state.draft) {
      s.textContent = state.editable ? t("planner.diff.no_active") : t("planner.readonly");
    } else if (!state.diff || !state.diff.changes.length) {
      s.textContent = t("planner.diff.none");
    } else {
      s.textContent = t("planner.diff.summary", { groups: state.diff.changes.length, households: state.diff.households_moved });
    }
    $("gg-diff-show").hidden = !state.diff;
    $("gg-activate").disabled = !state.editable;
  }

  function renderExports() {
    ["gpkg", "csv", "xlsx"].forEach(function (f) {
      $("gg-export-" + f).href = "/api/plans/" + state.draft + "/export." + f + "?lang=" + gg.lang;
    });
  }

  function kvTable(rows) {
    var table = el("table", "gg-kv");
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("th", "", r[0]));
      var td = el("td", r[2] || "", String(r[1]));
      tr.appendChild(td);
      table.appendChild(tr);
    });
    return table;
  }

  function renderSelected() {
    var box = clear($("gg-metrics"));
    box.appendChild(el("h2", "", t("planner.grid.title")));
    var p = state.selected && state.grids[state.selected];
    $("gg-edit").hidden = !(p && state.editable);
    $("gg-staff").hidden = !p;
    $("gg-print").hidden = !p;
    fillMoveSelects(p);
    if (!p) { box.appendChild(el("p", "gg-muted", t("planner.grid.pick"))); return; }
    var rows = [
      [t("common.code"), p.code],
      [t("common.name"), p.name || p.code],
      [t("common.village"), villageName(p.village_code)],
      [t("planner.col.households"), p.households],
      [t("planner.col.population"), p.population],
      [t("planner.grid.deviation"), (p.deviation > 0 ? "+" : "") + p.deviation],
      [t("planner.col.band"), t("planner.band." + bandOf(p.households)), "gg-text-" + bandOf(p.households)],
      [t("planner.grid.compactness"), GG.fmt(p.polsby_popper, 3)],
      [t("planner.grid.groups"), (p.groups || []).join("、") || "—"],
      [t("planner.grid.flags"), flagWords(p.flags) || t("planner.grid.no_flags"), p.flags && p.flags.length ? "gg-flag-words" : ""]
    ];
    if (state.picked && state.picked.grid_code === p.code) {
      rows.unshift([t("planner.grid.selected_group"), t("planner.group_label", { name: groupName(state.picked), n: state.picked.households })]);
    }
    box.appendChild(kvTable(rows));
    // edit card
    $("gg-rename-input").value = p.name || "";
    $("gg-lock").textContent = p.locked ? t("planner.edit.unlock") : t("planner.edit.lock");
    $("gg-lock").setAttribute("aria-pressed", p.locked ? "true" : "false");
    $("gg-rerun-village").textContent = villageName(p.village_code);
    $("gg-rerun-grids").value = state.features.filter(function (f) { return f.properties.village_code === p.village_code; }).length;
    // print links (engineer B's /print routes)
    $("gg-print-poster").href = "/print/poster.pdf?code=" + p.code + "&paper=A3&lang=" + gg.lang;
    $("gg-print-village").href = "/print/poster.pdf?code=" + p.village_code + "&paper=A3&lang=" + gg.lang;
    $("gg-print-cards").href = "/print/cards.pdf?grid=" + p.code + "&lang=" + gg.lang;
    loadStaff(p.code);
  }

  function selectGrid(code, zoom) {
    state.selected = code;
    if (state.fills) {
      state.outlines.setStyle(outlineStyle);
      if (zoom) {
        state.fills.eachLayer(function (l) {
          if (l.feature.properties.code === code) { map.fitBounds(l.getBounds(), { padding: [40, 40], maxZoom: 16 }); }
        });
      }
    }
    Array.prototype.forEach.call($("gg-table").tBodies[0].rows, function (tr) {
      tr.classList.toggle("gg-selected", tr.dataset.code === code);
    });
    renderSelected();
  }

  /* -- staff ----------------------------------------------------------------------------- */

  function photoUrl(s) {
    return s.photo && String(s.photo).indexOf("sha256:") === 0
      ? "/api/staff/" + s.staff_id + "/photo?thumb=true" : "/public/photos/" + s.staff_id;
  }

  function loadStaff(code) {
    var list = clear($("gg-staff-list"));
    GG.fetchJSON("/api/grids/" + code + "/staff?plan=" + state.draft).then(function (res) {
      if (state.selected !== code) { return; }
      if (!res.data.length) { list.appendChild(el("li", "gg-muted", t("planner.staff.empty"))); }
      res.data.forEach(function (s) {
        var li = el("li");
        var img = el("img");
        img.src = photoUrl(s);
        img.alt = t("planner.staff.photo_of", { name: s.name });
        li.appendChild(img);
        var txt = el("div");
        txt.appendChild(el("b", "", s.name));
        txt.appendChild(el("div", "gg-muted", t("common.role." + s.role) + " · " + t("common.post." + s.post) + (s.phone ? " · " + s.phone : "")));
        li.appendChild(txt);
        list.appendChild(li);
      });
    }, function (err) { list.appendChild(el("li", "gg-muted", why(err))); });
  }

  $("gg-staff-form").photo.addEventListener("change", function (e) {
    var f = e.target.files && e.target.files[0];
    $("gg-photo-name").textContent = f ? f.name : t("planner.staff.no_file");
  });

  $("gg-staff-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var form = e.target, code = state.selected, out = $("gg-staff-result");
    if (!code) { return; }
    say(out, t("common.saving"), true);
    var body = { role: form.role.value, post: form.post.value, name: form.name.value.trim() };
    if (form.phone.value.trim()) { body.phone = form.phone.value.trim(); }
    if (form.duties.value.trim()) { body.duties = form.duties.value.trim(); }
    var file = form.photo.files && form.photo.files[0];
    GG.fetchJSON("/api/grids/" + code + "/staff?plan=" + state.draft, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (res) {
      var s = res.data.filter(function (x) { return x.role === body.role && x.post === body.post; })[0];
      if (!file || !s) { return s; }
      var fd = new FormData();
      fd.append("file", file, file.name);
      return GG.fetchJSON("/api/staff/" + s.staff_id + "/photo", { method: "PUT", body: fd }).then(function () { return s; });
    }).then(function (s) {
      say(out, t(file ? "planner.staff.photo_saved" : "planner.staff.saved", { name: s ? s.name : body.name }), true);
      form.reset();
      $("gg-photo-name").textContent = t("planner.staff.no_file");
      loadStaff(code);
    }, function (err) { say(out, why(err), false); });
  });

  /* -- moves ------------------------------------------------------------------------------ */

  var result = $("gg-move-result");

  function fillMoveSelects(p) {
    var gsel = clear($("gg-move-group")), tsel = clear($("gg-move-to"));
    var ok = !!(p && state.editable);
    gsel.disabled = tsel.disabled = $("gg-move-go").disabled = !ok;
    if (!ok) { return; }
    var groups = state.groups.filter(function (g) { return g.properties.grid_code === p.code; });
    groups.forEach(function (g) {
      var o = el("option", "", t("planner.group_label", { name: g.properties.name, n: g.properties.households }));
      o.value = String(g.properties.id);
      if (state.picked && state.picked.id === g.properties.id) { o.selected = true; }
      gsel.appendChild(o);
    });
    if (!groups.length) { gsel.appendChild(el("option", "", t("planner.group_none"))); gsel.disabled = true; }
    state.features.forEach(function (f) {
      var q = f.properties;
      if (q.village_code !== p.village_code || q.code === p.code) { return; }
      var o = el("option", "", shortName(q) + t("planner.paren", { text: t("common.households", { n: q.households }) }));
      o.value = q.code;
      tsel.appendChild(o);
    });
    $("gg-move-go").disabled = !groups.length || !tsel.options.length;
  }

  function resetMove() {
    state.moving = false;
    $("gg-move-cancel").hidden = true;
    $("gg-move-start").disabled = !(state.picked && state.editable);
    $("gg-move-text").textContent = state.picked
      ? t("planner.move.picked", { group: groupName(state.picked), grid: gridLabel(state.picked.grid_code) })
      : t("planner.move.help");
    if (layers.groups) { layers.groups.setStyle(groupStyle); }
  }

  function dropPending() {
    state.pending = null;
    var w = $("gg-move-warning");
    if (w) { w.parentNode.removeChild(w); }
  }

  function onPick(groupProps, gridProps) {
    if (state.moving && state.picked) {
      var target = groupProps ? groupProps.grid_code : gridProps && gridProps.code;
      if (!target) { return; }
      if (target === state.picked.grid_code) { say(result, t("planner.move.same_grid"), false); return; }
      check(state.picked, target);
      return;
    }
    dropPending();
    if (groupProps) { state.picked = groupProps; }
    var code = groupProps ? groupProps.grid_code : gridProps && gridProps.code;
    if (code) { selectGrid(code, false); }
    resetMove();
  }

  function groupRef(g) { return g.village_code + "/" + g.group_no; }

  /** Check a move first: refused → why; outside the band → warning and confirmation. */
  function check(group, target) {
    dropPending();
    state.moving = false;
    $("gg-move-cancel").hidden = true;
    say(result, t("planner.move.submitting"), true);
    GG.fetchJSON("/api/plans/" + state.draft + "/moves/preview",
                 jsonOpts("POST", { group: groupRef(group), to: target })).then(function (res) {
      var p = res.data;
      if (!p.allowed) {
        var status = p.reason === "stale_version" ? 412 : 400;
        say(result, t("planner.move.refused", { status: status, reason: t("planner.reason." + (gg.has("planner.reason." + p.reason) ? p.reason : "refused")) }), false);
        if (p.reason === "stale_version") { loadDraft(); }
        resetMove();
        return;
      }
      if (p.needs_confirmation) { warn(group, target, p); return; }
      move(group, target, false);
    }, function (err) {
      say(result, t("planner.move.refused", { status: err.status || "", reason: why(err) }), false);
      if (err.status === 412) { loadDraft(); }
      resetMove();
    });
  }

  function warn(group, target, preview) {
    state.pending = { group: group, target: target };
    say(result, t("planner.move.needs_confirm"), false);
    var box = el("div", "gg-warn");
    box.id = "gg-move-warning";
    box.setAttribute("role", "alert");
    box.appendChild(el("b", "", t("planner.move.warn_title")));
    var ul = el("ul");
    preview.warnings.forEach(function (w) {
      var q = state.grids[w.grid] || { code: w.grid, village_code: w.grid.slice(0, 12) };
      ul.appendChild(el("li", "", t("planner.move.warn_line", { grid: shortName(q), before: w.before, after: w.after, min: w.min, max: w.max })));
    });
    box.appendChild(ul);
    var yes = el("button", "gg-primary", t("planner.move.confirm"));
    yes.type = "button";
    yes.id = "gg-move-confirm";
    var no = el("button", "", t("planner.move.cancel"));
    no.type = "button";
    yes.addEventListener("click", function () { var p = state.pending; dropPending(); if (p) { move(p.group, p.target, true); } });
    no.addEventListener("click", function () { dropPending(); say(result, ""); resetMove(); });
    box.appendChild(yes);
    box.appendChild(no);
    result.parentNode.insertBefore(box, result.nextSibling);
    yes.focus();
  }

  function move(group, target, confirmed) {
    say(result, t("planner.move.submitting"), true);
    GG.fetchJSON("/api/plans/" + state.draft + "/moves",
                 jsonOpts("POST", { group: groupRef(group), to: target, confirm: !!confirmed })).then(function (res) {
      state.etag = res.response.headers.get("ETag") || state.etag;
      say(result, t("planner.move.done", { group: groupName(group), grid: gridLabel(target), n: res.data.households }), true);
      state.picked = null;
      state.selected = target;
      return loadDraft();
    }).catch(function (err) {
      say(result, t("planner.move.refused", { status: err.status || "", reason: why(err) }), false);
      if (err.status === 412) { loadDraft(); }
    }).then(resetMove);
  }

  $("gg-move-start").addEventListener("click", function () {
    if (!state.picked) { return; }
    state.moving = true;
    $("gg-move-cancel").hidden = false;
    $("gg-move-start").disabled = true;
    $("gg-move-text").textContent = t("planner.move.pick_target");
  });
  $("gg-move-cancel").addEventListener("click", function () { state.picked = null; dropPending(); say(result, ""); resetMove(); });
  $("gg-move-go").addEventListener("click", function () {
    var id = parseInt($("gg-move-group").value, 10);
    var g = state.groups.map(function (f) { return f.properties; }).filter(function (p) { return p.id === id; })[0];
    if (g && $("gg-move-to").value) { state.picked = g; check(g, $("gg-move-to").value); }
  });

  /* -- edits: undo/redo, rename, lock, re-run ------------------------------------------ */

  var editOut = $("gg-edit-result");

  function step(kind) {
    say(result, "");
    GG.status(t("common.saving"));
    edit("/api/plans/" + state.draft + "/" + kind, "POST").then(function (data) {
      var what = historyText({ kind: data.payload.kind, payload: data.payload });
      GG.status(t("planner.history." + kind + "_done", { what: what }));
    }, function (err) { GG.status(why(err), "error"); });
  }
  $("gg-undo").addEventListener("click", function () { step("undo"); });
  $("gg-redo").addEventListener("click", function () { step("redo"); });

  $("gg-rename").addEventListener("submit", function (e) {
    e.preventDefault();
    var code = state.selected;
    say(editOut, t("common.saving"), true);
    edit("/api/plans/" + state.draft + "/grids/" + code + "/name", "PUT", { name: $("gg-rename-input").value })
      .then(function () { say(editOut, t("planner.edit.renamed"), true); }, function (err) { say(editOut, why(err), false); });
  });

  $("gg-lock").addEventListener("click", function () {
    var p = state.grids[state.selected];
    if (!p) { return; }
    say(editOut, t("common.saving"), true);
    edit("/api/plans/" + state.draft + "/grids/" + p.code + "/lock", "PUT", { locked: !p.locked })
      .then(function () { say(editOut, t(p.locked ? "planner.edit.unlocked" : "planner.edit.locked"), true); },
            function (err) { say(editOut, why(err), false); });
  });

  $("gg-rerun").addEventListener("submit", function (e) {
    e.preventDefault();
    var p = state.grids[state.selected];
    if (!p) { return; }
    var vc = p.village_code, n = parseInt($("gg-rerun-grids").value, 10);
    say(editOut, t("planner.rerun.running", { name: villageName(vc) }), true);
    GG.busy($("map"), true);
    edit("/api/plans/" + state.draft + "/villages/" + vc + "/rerun", "POST", { grids: isNaN(n) ? null : n })
      .then(function () {
        var count = state.features.filter(function (f) { return f.properties.village_code === vc; }).length;
        say(editOut, t("planner.rerun.done", { name: villageName(vc), n: count }), true);
      }, function (err) { GG.busy($("map"), false); say(editOut, why(err), false); });
  });

  /* -- diff and activation ---------------------------------------------------------------- */

  function ask(title, body, okLabel) {
    var dlg = $("gg-dialog");
    $("gg-dialog-title").textContent = title;
    clear($("gg-dialog-body")).appendChild(body);
    $("gg-dialog-ok").textContent = okLabel;
    $("gg-dialog-ok").hidden = !okLabel;
    return new Promise(function (resolve) {
      dlg.addEventListener("close", function onClose() {
        dlg.removeEventListener("close", onClose);
        resolve(dlg.returnValue === "ok");
      });
      dlg.returnValue = "";
      dlg.showModal();
    });
  }

  function diffBody(withNote) {
    var box = el("div");
    if (withNote) { box.appendChild(el("p", "", t("planner.activate.note"))); }
    var d = state.diff;
    if (!d) { box.appendChild(el("p", "gg-muted", t("planner.diff.no_active"))); return box; }
    box.appendChild(el("p", "", d.changes.length ? t("planner.diff.summary", { groups: d.changes.length, households: d.households_moved }) : t("planner.diff.none")));
    var ul = el("ul", "gg-dialog-body-list");
    ul.id = "gg-diff-list";
    d.changes.slice(0, 200).forEach(function (c) {
      ul.appendChild(el("li", "", t("planner.diff.row", {
        group: unitLabel(c.village_code + "/" + c.unit),
        from: c.from_grid ? gridLabel(c.from_grid) : t("planner.diff.new"),
        to: c.to_grid ? gridLabel(c.to_grid) : t("planner.diff.gone"), n: c.households
      })));
    });
    if (d.changes.length > 200) { ul.appendChild(el("li", "gg-muted", t("planner.activate.changes_more", { n: d.changes.length - 200 }))); }
    box.appendChild(ul);
    return box;
  }

  $("gg-diff-show").addEventListener("click", function () {
    ask(t("planner.diff.title"), diffBody(false), null);
  });

  $("gg-activate").addEventListener("click", function () {
    var name = state.info ? state.info.name : "";
    ask(t("planner.activate.title", { name: name }), diffBody(true), t("planner.activate.confirm")).then(function (ok) {
      if (!ok) { return; }
      GG.status(t("common.saving"));
      GG.fetchJSON("/api/plans/" + state.draft + "/activate", jsonOpts("POST")).then(function () {
        return loadPlans();
      }).then(function () { GG.status(t("planner.activate.done")); }, function (err) { GG.status(why(err), "error"); });
    });
  });

  /* -- table, keyboard, plan choice ------------------------------------------------------ */

  Array.prototype.forEach.call($("gg-table").tHead.rows[0].cells, function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.dataset.key;
      state.sort = { key: key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      renderTable();
    });
  });
  $("gg-table").tBodies[0].addEventListener("click", function (e) {
    var tr = e.target.closest("tr");
    if (tr) { state.picked = null; resetMove(); selectGrid(tr.dataset.code, true); }
  });
  $("gg-table").tBodies[0].addEventListener("keydown", function (e) {
    var tr = e.target.closest("tr");
    if (!tr) { return; }
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); selectGrid(tr.dataset.code, true); }
    if (e.key === "ArrowDown" && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
    if (e.key === "ArrowUp" && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
  });

  document.addEventListener("keydown", function (e) {
    var typing = /^(INPUT|SELECT|TEXTAREA)$/.test((e.target && e.target.tagName) || "");
    if (e.key === "Escape" && !$("gg-dialog").open) { state.picked = null; dropPending(); resetMove(); }
    if (typing || !(e.ctrlKey || e.metaKey)) { return; }
    if (e.key === "z" && !e.shiftKey && !$("gg-undo").disabled) { e.preventDefault(); step("undo"); }
    if ((e.key === "y" || (e.key === "Z" && e.shiftKey)) && !$("gg-redo").disabled) { e.preventDefault(); step("redo"); }
  });

  Array.prototype.forEach.call(document.querySelectorAll("input[name=gg-view]"), function (r) {
    r.addEventListener("change", function () {
      if (r.checked) { setView(r.value).catch(function (err) { GG.status(why(err), "error"); }); }
    });
  });

  $("gg-draft").addEventListener("change", function () {
    state.draft = parseInt($("gg-draft").value, 10);
    state.picked = null;
    state.selected = null;
    resetMove();
    loadDraft().then(fitDraft).catch(function (err) { GG.status(t("common.load_failed", { reason: why(err) }), "error"); });
  });

  function planOption(p) {
    var o = el("option", "", t("planner.plan_option", { name: p.name, id: p.id, status: t("common.plan." + p.status) }));
    o.value = String(p.id);
    return o;
  }

  function loadPlans() {
    GG.status(t("planner.loading"));
    return GG.fetchJSON("/api/plans").then(function (res) {
      var plans = Array.isArray(res.data) ? res.data : [];
      state.plans = plans;
      state.active = plans.filter(function (p) { return p.status === "active"; })[0] || null;
      $("gg-active-name").textContent = state.active ? state.active.name + " (#" + state.active.id + ")" : t("planner.no_active");
      var drafts = plans.filter(function (p) { return p.status === "draft"; });
      var empty = $("gg-plan-empty");
      empty.hidden = true;
      if (!drafts.length && state.active) { drafts = [state.active]; empty.textContent = t("planner.no_draft"); empty.hidden = false; }
      var sel = clear($("gg-draft"));
      drafts.forEach(function (p) { sel.appendChild(planOption(p)); });
      if (!drafts.length) {
        empty.textContent = t("planner.no_plan");
        empty.hidden = false;
        sel.disabled = true;
        GG.status("");
        return null;
      }
      var want = cfg.plan && drafts.some(function (p) { return p.id === cfg.plan; }) ? cfg.plan : drafts[drafts.length - 1].id;
      sel.value = String(want);
      state.draft = want;
      return loadDraft().then(function () { fitDraft(); return loadActive(); });
    });
  }

  loadPlans().then(function () {
    resetMove();
    document.body.dataset.ready = "1";
  }).catch(function (err) {
    GG.busy($("map"), false);
    GG.status(t("common.load_failed", { reason: why(err) }), "error");
    document.body.dataset.ready = "error";
  });

  window.ggPlanner = { state: state, map: map, layers: layers, pick: onPick, select: selectGrid };
})();
