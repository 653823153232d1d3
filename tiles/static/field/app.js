/* app.js — the field app (/field/): a grid worker's own area offline, and an outbox.
 *
 * Data: GET /api/field/bundle (the worker's grid, households masked, assigned cases, due
 * inspections, own recent visits, form lists) is kept in IndexedDB ("meta"/"bundle") and
 * cached by the service worker, so the app opens offline after a reload.
 *
 * Outbox: a case (photos, GPS position or a tap on the map), a visit or an edit of one's own
 * visit is saved to IndexedDB ("outbox") with a UUID made here, and sent when the network
 * returns (the online event, a retry every 30 s, the "send now" button): photos first
 * (POST /api/cases/files, by sha256), then POST /api/field/sync in batches. The server
 * creates each record once per UUID, so sending twice creates nothing twice. Each record
 * shows its state: waiting, sending, created / already there / updated, conflict (an edit
 * of a visit that changed on the server: shown side by side, keep mine or take theirs),
 * error (with the reason).
 *
 * No inline script or handler (the page's Content-Security-Policy), no text from the
 * server put in as HTML.
 */
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("gg-config").textContent);
  var MSG = JSON.parse(document.getElementById("gg-messages").textContent);
  var LOCALE = cfg.lang === "en" ? "en" : "zh-CN";
  var BATCH = 50;
  var RETRY_MS = 30000;
  var PHOTO_MAX = 1600;
  var KEEP_SENT = 50;
  var TRANSIENT = ["InternalError", "DatabaseUnavailable"];

  var state = {
    bundle: null, csrf: "", sending: false, map: null, layers: null, pick: null,
    pickMarker: null, casePos: null, photos: { case: [], visit: [], inspect: [] }, conflict: null,
    editing: null, inspecting: null
  };

  // -- helpers --------------------------------------------------------------------------

  function t(key, vars) {
    var text = Object.prototype.hasOwnProperty.call(MSG, key) ? MSG[key] :
      (key.indexOf("errors.") === 0 && MSG["errors.unknown"]) || key;
    return String(text).replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, function (m, name) {
      return vars && vars[name] !== undefined && vars[name] !== null ? String(vars[name]) : m;
    });
  }

  function $(sel, root) { return (root || document).querySelector(sel); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; }
      else if (k === "class") { node.className = attrs[k]; }
      else if (attrs[k] !== null && attrs[k] !== undefined) { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(c); } });
    return node;
  }

  function uuid() {
    if (self.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function when(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString(LOCALE, { hour12: false });
  }

  function today() {
    var d = new Date();
    return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" +
      String(d.getDate()).padStart(2, "0");
  }

  function errorText(code) { return t("errors." + (code || "unknown")); }

  function HttpError(status, body) { this.status = status; this.body = body || {}; }

  async function api(method, url, body, isForm) {
    var headers = { Accept: "application/json" };
    if (method !== "GET" && state.csrf) { headers["X-CSRF-Token"] = state.csrf; }
    if (body && !isForm) { headers["Content-Type"] = "application/json"; }
    var r = await fetch(url, {
      method: method, credentials: "same-origin", headers: headers,
      body: body ? (isForm ? body : JSON.stringify(body)) : undefined
    });
    var data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) { throw new HttpError(r.status, data); }
    return data;
  }

  // -- storage (IndexedDB through idb) --------------------------------------------------------

  var dbp = idb.openDB("geogrid-field", 1, {
    upgrade: function (db) {
      db.createObjectStore("outbox", { keyPath: "client_id" });
      db.createObjectStore("sent", { keyPath: "client_id" });
      db.createObjectStore("photos", { keyPath: "id" });
      db.createObjectStore("meta");
    }
  });

  async function outbox() {
    var all = await (await dbp).getAll("outbox");
    return all.sort(function (a, b) { return a.created_at < b.created_at ? -1 : 1; });
  }

  // -- network state ------------------------------------------------------------------------

  function showNet() {
    var online = navigator.onLine;
    var n = $("#ff-net");
    n.textContent = online ? t("field.online") : t("field.offline");
    n.dataset.online = online ? "1" : "0";
  }

  function showSignin(needed) { $("#ff-signin").hidden = !needed; }

  // -- the bundle -------------------------------------------------------------------------------

  async function loadBundle() {
    var db = await dbp;
    try {
      var r = await fetch("/api/field/bundle", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (r.status === 401) { showSignin(true); return false; }
      if (!r.ok) { return false; }
      var b = await r.json();
      if (r.headers.get("X-Field-Cache")) {  // the service worker's copy: we are offline
        return !!state.bundle || (applyBundle(b, "cache"), true);
      }
      await db.put("meta", b, "bundle");
      showSignin(false);
      applyBundle(b, "network");
      prefetchTiles(b.basemap);
      return true;
    } catch (e) {
      return false;
    }
  }

  function applyBundle(b, source) {
    state.bundle = b;
    state.csrf = b.csrf || state.csrf;
    document.body.dataset.bundle = source;
    $("#ff-who").textContent = t("field.who", {
      user: b.user.username, scope: b.user.scope, time: when(b.generated_at)
    });
    renderMap();
    renderCases();
    renderHouseholds();
    renderForms();
    renderMyVisits();
  }

  async function prefetchTiles(pkg) {
    if (!pkg || !pkg.tiles || !pkg.tiles.length) { return; }
    var db = await dbp;
    var key = pkg.url + "#" + pkg.tiles.length + "#" + pkg.tiles[0];
    if ((await db.get("meta", "tiles")) === key) { return; }
    for (var i = 0; i < pkg.tiles.length; i += 6) {
      await Promise.all(pkg.tiles.slice(i, i + 6).map(function (u) {
        return fetch(u, { credentials: "same-origin" }).catch(function () { return null; });
      }));
    }
    await db.put("meta", key, "tiles");
  }

  // -- the map ------------------------------------------------------------------------------------

  function baseLayer() {
    var layers = (cfg.basemap && cfg.basemap.layers) || [];
    var pkg = state.bundle && state.bundle.basemap;
    var spec = layers[0] || (pkg ? { url: pkg.url, maxZoom: pkg.max_zoom, attribution: pkg.attribution } : null);
    return spec ? L.tileLayer(spec.url, spec) : null;
  }

  function renderMap() {
    var b = state.bundle;
    if (!state.map) {
      state.map = L.map("map", { zoomControl: true, attributionControl: true, preferCanvas: true });
      var base = baseLayer();
      if (base) { base.addTo(state.map); }
    }
    if (state.layers) { state.layers.remove(); }
    var group = L.featureGroup();
    b.grids.forEach(function (g) {
      if (g.geometry) {
        L.geoJSON(g.geometry, { style: { color: "#1f4e9c", weight: 3, fill: true, fillOpacity: 0.05 } })
          .bindTooltip(g.name || g.code).addTo(group);
      }
    });
    b.households.forEach(function (h) {
      if (h.lon === null || h.lon === undefined) { return; }
      L.circleMarker([h.lat, h.lon], { radius: 5, color: "#555", weight: 1, fillColor: "#f5a623", fillOpacity: 0.9 })
        .bindPopup(function () { return householdCard(h); }).addTo(group);
    });
    b.cases.forEach(function (c) {
      L.circleMarker([c.lat, c.lon], { radius: 7, color: "#b00020", weight: 2, fillColor: "#ff5252", fillOpacity: 0.8 })
        .bindTooltip(c.case_no + " " + (c.category_name || c.category)).addTo(group);
    });
    (b.due_inspections || []).forEach(function (p) {
      var lat = p.lat, lon = p.lon;
      if (lat === undefined && p.geometry && p.geometry.coordinates) { lon = p.geometry.coordinates[0]; lat = p.geometry.coordinates[1]; }
      if (lat !== undefined && lat !== null) {
        L.circleMarker([lat, lon], { radius: 6, color: "#2e7d32", weight: 2, fillOpacity: 0.6 })
          .bindTooltip(p.name || String(p.id)).addTo(group);
      }
    });
    group.addTo(state.map);
    state.layers = group;
    if (b.bbox) {
      state.map.fitBounds([[b.bbox[1], b.bbox[0]], [b.bbox[3], b.bbox[2]]], { padding: [12, 12] });
    } else {
      state.map.setView([30.5, 114.3], 12);
    }
  }

  function householdCard(h) {
    var btn = el("button", { type: "button", text: t("field.visit.record") });
    btn.addEventListener("click", function () { startVisit(h.id); });
    return el("div", { class: "ff-card" }, [
      el("strong", { text: t("field.households.item", { no: h.register_no, house: h.house_no || "" }) }),
      el("div", { text: [h.head || t("field.households.no_head"), h.phone || ""].join(" ") }),
      el("div", { text: t("field.households.members", { n: h.members }) }),
      btn
    ]);
  }

  // -- lists ----------------------------------------------------------------------------------------

  function renderCases() {
    var ul = $("#ff-cases");
    ul.replaceChildren();
    var cases = state.bundle.cases || [];
    if (!cases.length) { ul.appendChild(el("li", { class: "ff-empty", text: t("field.cases.none") })); }
    cases.forEach(function (c) {
      ul.appendChild(el("li", { class: c.overdue ? "ff-overdue" : "" }, [
        el("strong", { text: c.case_no + " · " + (c.category_name || c.category) }),
        el("span", { text: t("field.cases.status", { status: c.status, due: c.due_at ? when(c.due_at) : "—" }) }),
        el("p", { text: c.description || "" })
      ]));
    });
    var due = state.bundle.due_inspections || [];
    $("#ff-due-title").hidden = !due.length;
    var dl = $("#ff-due");
    dl.replaceChildren();
    due.forEach(function (p) {
      var btn = el("button", { type: "button", text: t("field.inspect.start") });
      btn.addEventListener("click", function () { openInspect(p); });
      dl.appendChild(el("li", { "data-point": String(p.id), class: p.due_state === "overdue" ? "ff-overdue" : "" }, [
        el("strong", { text: (p.point_no ? p.point_no + " · " : "") + (p.name || "") }),
        el("span", { text: p.next_due ? t("field.inspections.due", { day: p.next_due }) : "" }),
        btn]));
    });
  }

  function renderHouseholds() {
    var q = ($("#ff-hh-q").value || "").trim();
    var ul = $("#ff-households");
    ul.replaceChildren();
    var all = state.bundle.households;
    var shown = all.filter(function (h) {
      return !q || [h.register_no, h.house_no, h.head, h.natural_village].some(function (v) {
        return v && String(v).indexOf(q) >= 0;
      });
    });
    $("#ff-hh-count").textContent = t("field.households.count", { shown: shown.length, total: all.length });
    shown.slice(0, 300).forEach(function (h) {
      var li = el("li", { "data-household": String(h.id) }, [householdCard(h)]);
      ul.appendChild(li);
    });
  }

  function renderForms() {
    var b = state.bundle;
    var cat = $("#ff-case select[name=category]");
    var keep = cat.value;
    cat.replaceChildren(el("option", { value: "", text: t("field.case.choose") }));
    b.categories.forEach(function (c) {
      cat.appendChild(el("option", { value: c.code, text: (cfg.lang === "en" && c.name_en) || c.name }));
    });
    cat.value = keep;
    var hh = $("#ff-visit select[name=household_id]");
    keep = hh.value;
    hh.replaceChildren(el("option", { value: "", text: t("field.visit.choose") }));
    b.households.forEach(function (h) {
      hh.appendChild(el("option", { value: String(h.id), text: t("field.households.item", { no: h.register_no, house: h.house_no || "" }) + " " + (h.head || "") }));
    });
    hh.value = keep;
    var tags = $("#ff-visit [data-tags]");
    tags.replaceChildren();
    (b.visit_tags || []).forEach(function (tag) {
      var code = typeof tag === "string" ? tag : (tag.code || tag.name);
      var name = typeof tag === "string" ? tag : (cfg.lang === "en" && tag.name_en) || tag.name || tag.code;
      tags.appendChild(el("label", { class: "ff-check" }, [el("input", { type: "checkbox", name: "tags", value: code }), document.createTextNode(" " + name)]));
    });
    var day = $("#ff-visit input[name=visited_on]");
    if (!day.value) { day.value = today(); }
  }

  function renderMyVisits() {
    var ul = $("#ff-my-visits");
    ul.replaceChildren();
    var visits = state.bundle.visits || [];
    if (!visits.length) { ul.appendChild(el("li", { class: "ff-empty", text: t("field.visit.none") })); }
    visits.forEach(function (v) {
      var btn = el("button", { type: "button", text: t("field.visit.edit") });
      btn.addEventListener("click", function () { editVisit(v); });
      ul.appendChild(el("li", { "data-visit": String(v.id) }, [
        el("strong", { text: v.visited_on + " · " + (v.register_no || v.key_unit_name || "") }),
        el("p", { text: v.notes }),
        btn
      ]));
    });
  }

  // -- tabs -----------------------------------------------------------------------------------------

  function showTab(name) {
    document.querySelectorAll(".ff-panel").forEach(function (p) { p.hidden = p.id !== "tab-" + name; });
    document.querySelectorAll(".ff-tabs button").forEach(function (b) {
      if (b.dataset.tab === name) { b.setAttribute("aria-current", "page"); } else { b.removeAttribute("aria-current"); }
    });
    if (name === "map" && state.map) { state.map.invalidateSize(); }
    if (name === "report") { openPicker(); }
  }

  // -- photos ---------------------------------------------------------------------------------------

  async function downscale(file) {
    var bmp = await createImageBitmap(file);
    var scale = Math.min(1, PHOTO_MAX / Math.max(bmp.width, bmp.height));
    var canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bmp.width * scale));
    canvas.height = Math.max(1, Math.round(bmp.height * scale));
    canvas.getContext("2d").drawImage(bmp, 0, 0, canvas.width, canvas.height);
    if (bmp.close) { bmp.close(); }
    return await new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", 0.8); });
  }

  function bindPhotos(form, key) {
    var input = $("input[name=photos]", form);
    var thumbs = $("[data-thumbs]", form);
    input.addEventListener("change", async function () {
      for (var i = 0; i < input.files.length; i++) {
        try {
          var blob = await downscale(input.files[i]);
          state.photos[key].push({ id: uuid(), blob: blob });
        } catch (e) {
          formError(form, t("field.photo_unreadable"));
        }
      }
      input.value = "";
      thumbs.replaceChildren();
      state.photos[key].forEach(function (p) {
        thumbs.appendChild(el("img", { src: URL.createObjectURL(p.blob), alt: t("field.photo") }));
      });
      thumbs.dataset.count = String(state.photos[key].length);
    });
  }

  async function keepPhotos(key) {
    var db = await dbp;
    var ids = [];
    for (var i = 0; i < state.photos[key].length; i++) {
      var p = state.photos[key][i];
      await db.put("photos", { id: p.id, blob: p.blob, sha256: null });
      ids.push(p.id);
    }
    state.photos[key] = [];
    return ids;
  }

  // -- the case form ----------------------------------------------------------------------------------

  function setPos(lat, lon, source, accuracy) {
    state.casePos = { lat: Math.round(lat * 1e6) / 1e6, lon: Math.round(lon * 1e6) / 1e6, source: source, accuracy: accuracy };
    var p = $("#ff-case .ff-pos");
    p.dataset.pos = source;
    p.textContent = t(source === "gps" ? "field.case.pos_gps" : "field.case.pos_map", {
      lat: state.casePos.lat.toFixed(6), lon: state.casePos.lon.toFixed(6),
      acc: accuracy ? Math.round(accuracy) : "—"
    });
    if (state.pick) {
      if (state.pickMarker) { state.pickMarker.setLatLng([lat, lon]); }
      else { state.pickMarker = L.marker([lat, lon], { icon: L.divIcon({ className: "ff-pin" }) }).addTo(state.pick); }
    }
  }

  function locate() {
    if (!navigator.geolocation) { return; }
    $("#ff-case .ff-pos").textContent = t("field.case.locating");
    navigator.geolocation.getCurrentPosition(function (pos) {
      setPos(pos.coords.latitude, pos.coords.longitude, "gps", pos.coords.accuracy);
      if (state.pick) { state.pick.setView([pos.coords.latitude, pos.coords.longitude], Math.max(state.pick.getZoom(), 16)); }
    }, function () {
      if (!state.casePos) { $("#ff-case .ff-pos").textContent = t("field.case.gps_failed"); }
    }, { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 });
  }

  function openPicker() {
    if (!state.pick) {
      state.pick = L.map("ff-case-map", { zoomControl: true, attributionControl: false });
      var base = baseLayer();
      if (base) { base.addTo(state.pick); }
      state.bundle.grids.forEach(function (g) {
        if (g.geometry) { L.geoJSON(g.geometry, { style: { color: "#1f4e9c", weight: 2, fillOpacity: 0.03 }, interactive: false }).addTo(state.pick); }
      });
      var bb = state.bundle.bbox;
      if (bb) { state.pick.fitBounds([[bb[1], bb[0]], [bb[3], bb[2]]]); } else { state.pick.setView([30.5, 114.3], 12); }
      state.pick.on("click", function (e) { setPos(e.latlng.lat, e.latlng.lng, "map", null); });
      if (!state.casePos) { locate(); }
    }
    setTimeout(function () { state.pick.invalidateSize(); }, 0);
  }

  function formError(form, text) {
    var p = $(".ff-error", form);
    p.textContent = text || "";
    p.hidden = !text;
  }

  async function saveCase(ev) {
    ev.preventDefault();
    var form = ev.target;
    var f = form.elements;
    if (!f.category.value) { return formError(form, t("field.case.need_category")); }
    if (!f.description.value.trim()) { return formError(form, t("field.case.need_description")); }
    if (!state.casePos) { return formError(form, t("field.case.need_position")); }
    formError(form, "");
    var body = {
      category: f.category.value, description: f.description.value.trim(),
      priority: Number(f.priority.value), lon: state.casePos.lon, lat: state.casePos.lat,
      recorded_at: new Date().toISOString(), position_source: state.casePos.source
    };
    if (f.address.value.trim()) { body.address = f.address.value.trim(); }
    if (state.casePos.accuracy) { body.accuracy_m = Math.round(state.casePos.accuracy); }
    var photos = await keepPhotos("case");
    await queue({ kind: "case", body: body, photos: photos,
      summary: t("field.summary.case", { category: f.category.selectedOptions[0].textContent, n: photos.length }) });
    form.reset();
    $("[data-thumbs]", form).replaceChildren();
    state.casePos = null;
    if (state.pickMarker) { state.pickMarker.remove(); state.pickMarker = null; }
    $("#ff-case .ff-pos").textContent = t("field.case.no_position");
    showTab("outbox");
  }

  // -- inspections --------------------------------------------------------------------------------

  function openInspect(p) {
    var dlg = $("#ff-inspect");
    var form = $("#ff-inspect-form");
    form.reset();
    formError(form, "");
    state.inspecting = p;
    state.photos.inspect = [];
    $("[data-thumbs]", form).replaceChildren();
    $("[data-point]", form).textContent = (p.point_no ? p.point_no + " · " : "") + (p.name || "");
    var tpl = (state.bundle.inspection_templates || []).filter(function (x) { return x.code === p.template_code; })[0];
    var again = (p.recheck || []).map(function (r) { return r.item; });
    var items = $("[data-items]", form);
    items.replaceChildren();
    ((tpl && tpl.items) || []).forEach(function (it) {
      var sel = el("select", { name: "item", "data-item": it.code });
      ["pass", "fail", "na"].forEach(function (v) { sel.appendChild(el("option", { value: v, text: t("field.inspect." + v) })); });
      var label = (cfg.lang === "en" && it.label_en) || it.label;
      items.appendChild(el("label", { class: again.indexOf(it.code) >= 0 ? "ff-recheck" : "" }, [
        document.createTextNode(label + (again.indexOf(it.code) >= 0 ? " · " + t("field.inspect.recheck") : "")), sel]));
    });
    if (!items.children.length) { items.appendChild(el("p", { class: "ff-note", text: t("field.inspect.no_template") })); }
    dlg.showModal();
  }

  async function saveInspect(ev) {
    ev.preventDefault();
    var form = ev.target;
    var p = state.inspecting;
    var results = Array.prototype.map.call(form.querySelectorAll("select[name=item]"), function (s) {
      return { item: s.dataset.item, result: s.value };
    });
    if (!p || !results.length) { return formError(form, t("field.inspect.no_template")); }
    var body = { point_id: p.id, inspected_at: new Date().toISOString(), results: results };
    var note = form.elements.note.value.trim();
    if (note) { body.note = note; }
    var photos = await keepPhotos("inspect");
    var failed = results.filter(function (r) { return r.result === "fail"; }).length;
    await queue({ kind: "inspection", body: body, photos: photos,
      summary: t("field.summary.inspection", { point: p.name || p.point_no, failed: failed, n: photos.length }) });
    $("#ff-inspect").close();
    state.inspecting = null;
    showTab("outbox");
  }

  // -- the visit form -------------------------------------------------------------------------------

  function startVisit(householdId) {
    showTab("visit");
    $("#ff-visit select[name=household_id]").value = String(householdId);
    $("#ff-visit textarea[name=notes]").focus();
  }

  async function saveVisit(ev) {
    ev.preventDefault();
    var form = ev.target;
    var f = form.elements;
    if (!f.household_id.value) { return formError(form, t("field.visit.need_household")); }
    if (!f.notes.value.trim()) { return formError(form, t("field.visit.need_notes")); }
    formError(form, "");
    var people = f.people_met.value.split(/[,，、;；\s]+/).map(function (s) { return s.trim(); }).filter(Boolean);
    var tags = Array.prototype.filter.call(form.querySelectorAll("input[name=tags]"), function (c) { return c.checked; })
      .map(function (c) { return c.value; });
    var body = {
      household_id: Number(f.household_id.value), visited_on: f.visited_on.value || today(),
      people_met: people, notes: f.notes.value.trim(), tags: tags, follow_up: f.follow_up.checked
    };
    var photos = await keepPhotos("visit");
    var label = f.household_id.selectedOptions[0].textContent;
    await queue({ kind: "visit", body: body, photos: photos, summary: t("field.summary.visit", { household: label, n: photos.length }) });
    form.reset();
    $("[data-thumbs]", form).replaceChildren();
    f.visited_on.value = today();
    showTab("outbox");
  }

  function editVisit(v) {
    var dlg = $("#ff-edit");
    state.editing = v;
    dlg.querySelector("textarea[name=notes]").value = v.notes;
    dlg.showModal();
  }

  async function closeEdit() {
    var dlg = $("#ff-edit");
    var v = state.editing;
    state.editing = null;
    if (dlg.returnValue !== "save" || !v) { return; }
    var notes = dlg.querySelector("textarea[name=notes]").value.trim();
    if (!notes || notes === v.notes) { return; }
    await queue({ kind: "visit", record_id: v.id, base_version: v.version, body: { notes: notes }, photos: [],
      summary: t("field.summary.edit", { id: v.id }) });
    showTab("outbox");
  }

  // -- the outbox -------------------------------------------------------------------------------------

  async function queue(rec) {
    rec.client_id = uuid();
    rec.created_at = new Date().toISOString();
    rec.status = "waiting";
    await (await dbp).put("outbox", rec);
    await renderOutbox();
    if (navigator.onLine) { sendOutbox(); }
  }

  function statusText(rec) {
    var r = rec.result || {};
    if (rec.status === "error") { return t("field.status.error", { reason: errorText(r.code) }); }
    if (rec.status === "conflict") { return t("field.status.conflict"); }
    return t("field.status." + rec.status.replace("-", "_"), { id: r.record_id || "" });
  }

  async function renderOutbox() {
    var items = await outbox();
    var ul = $("#ff-outbox");
    ul.replaceChildren();
    $("#ff-count").textContent = String(items.length);
    document.body.dataset.outbox = String(items.length);
    if (!items.length) { ul.appendChild(el("li", { class: "ff-empty", text: t("field.outbox.empty") })); }
    items.forEach(function (rec) {
      var actions = [];
      if (rec.status === "conflict") {
        var b = el("button", { type: "button", text: t("field.conflict.resolve") });
        b.addEventListener("click", function () { showConflict(rec); });
        actions.push(b);
      }
      if (rec.status === "error") {
        var retry = el("button", { type: "button", text: t("field.outbox.retry") });
        retry.addEventListener("click", function () { resetRecord(rec); });
        var drop = el("button", { type: "button", text: t("field.outbox.delete") });
        drop.addEventListener("click", function () { dropRecord(rec); });
        actions.push(retry, drop);
      }
      ul.appendChild(el("li", { "data-client-id": rec.client_id, "data-status": rec.status, "data-kind": rec.kind }, [
        el("strong", { text: rec.summary }),
        el("span", { class: "ff-state", text: statusText(rec) }),
        el("small", { text: when(rec.created_at) }),
        el("div", { class: "ff-row" }, actions)
      ]));
    });
    var sent = (await (await dbp).getAll("sent")).sort(function (a, b) { return a.at < b.at ? 1 : -1; });
    var sl = $("#ff-sent");
    sl.replaceChildren();
    sent.forEach(function (s) {
      sl.appendChild(el("li", { "data-client-id": s.client_id, "data-status": s.status }, [
        el("strong", { text: s.summary }), el("span", { class: "ff-state", text: statusText(s) }), el("small", { text: when(s.at) })
      ]));
    });
  }

  async function resetRecord(rec) {
    rec.status = "waiting";
    delete rec.result;
    await (await dbp).put("outbox", rec);
    await renderOutbox();
    sendOutbox();
  }

  async function dropRecord(rec) {
    var db = await dbp;
    await db.delete("outbox", rec.client_id);
    for (var i = 0; i < rec.photos.length; i++) { await db.delete("photos", rec.photos[i]); }
    await renderOutbox();
  }

  async function upload(blob) {
    var fd = new FormData();
    fd.append("file", blob, "photo.jpg");
    var stored = await api("POST", "/api/cases/files", fd, true);
    return stored.sha256;
  }

  /* Upload the photos of ``rec`` not uploaded yet; their sha256s, in order. */
  async function photoShas(rec) {
    var db = await dbp;
    var shas = [];
    for (var i = 0; i < rec.photos.length; i++) {
      var p = await db.get("photos", rec.photos[i]);
      if (!p) { continue; }
      if (!p.sha256) {
        p.sha256 = await upload(p.blob);
        await db.put("photos", p);
      }
      shas.push(p.sha256);
    }
    return shas;
  }

  function wire(rec, shas) {
    var body = Object.assign({}, rec.body);
    if (shas.length) { body.photos = shas; }
    var out = { client_id: rec.client_id, kind: rec.kind, body: body };
    if (rec.record_id) { out.record_id = rec.record_id; out.base_version = rec.base_version; }
    return out;
  }

  async function settle(rec, result) {
    var db = await dbp;
    rec.result = result;
    if (["created", "already-there", "updated"].indexOf(result.status) >= 0) {
      await db.delete("outbox", rec.client_id);
      for (var i = 0; i < rec.photos.length; i++) { await db.delete("photos", rec.photos[i]); }
      await db.put("sent", { client_id: rec.client_id, kind: rec.kind, summary: rec.summary, status: result.status,
        result: result, at: new Date().toISOString() });
      var sent = (await db.getAll("sent")).sort(function (a, b) { return a.at < b.at ? 1 : -1; });
      for (var j = KEEP_SENT; j < sent.length; j++) { await db.delete("sent", sent[j].client_id); }
      return true;
    }
    if (result.status === "conflict") {
      rec.status = "conflict";
      rec.current = result.current;
    } else if (TRANSIENT.indexOf(result.code) >= 0) {
      rec.status = "waiting";
    } else {
      rec.status = "error";
    }
    await db.put("outbox", rec);
    return false;
  }

  function note(text) { $("#ff-outbox-note").textContent = text; }

  async function sendOutbox() {
    // a record queued while a sending runs is sent right after it, not at the next retry
    if (state.sending) { state.again = true; return; }
    state.sending = true;
    state.again = false;
    document.body.dataset.sending = "1";
    var done = 0, kept = false;
    try {
      var waiting = (await outbox()).filter(function (r) { return r.status === "waiting"; });
      if (!waiting.length) { return; }
      if (!state.csrf) { await loadBundle(); }
      note(t("field.outbox.sending", { n: waiting.length }));
      var ready = [];
      for (var i = 0; i < waiting.length; i++) {
        try {
          ready.push(wire(waiting[i], await photoShas(waiting[i])));
        } catch (e) {
          if (!(e instanceof HttpError) || e.status === 401 || e.status === 403 || e.status >= 500) { throw e; }
          await settle(waiting[i], { status: "error", code: (e.body && e.body.code) || "InvalidInput" });
        }
      }
      var byId = {};
      waiting.forEach(function (r) { byId[r.client_id] = r; });
      for (var k = 0; k < ready.length; k += BATCH) {
        var answer = await api("POST", "/api/field/sync", { records: ready.slice(k, k + BATCH) });
        for (var m = 0; m < answer.results.length; m++) {
          var res = answer.results[m];
          var rec = byId[res.client_id];
          if (rec) { if (await settle(rec, res)) { done += 1; } else { kept = true; } }
        }
      }
      note(t(kept ? "field.outbox.sent_some" : "field.outbox.sent_all", { n: done }));
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) { showSignin(true); note(t("field.signin_needed")); }
      else if (e instanceof HttpError && e.status === 403 && !state.retried) {
        state.retried = true;  // the session's CSRF token changed: fetch it again, once
        state.csrf = "";
        state.sending = false;
        await loadBundle();
        return sendOutbox();
      } else if (e instanceof HttpError) { note(errorText(e.body && e.body.code)); }
      else { note(t("field.outbox.offline")); }
    } finally {
      state.sending = false;
      state.retried = false;
      document.body.dataset.sending = "0";
      await renderOutbox();
    }
    if (done) { loadBundle(); }
    if (state.again && navigator.onLine) { state.again = false; sendOutbox(); }
  }

  // -- conflicts --------------------------------------------------------------------------------------

  function showValue(v) {
    if (Array.isArray(v)) { return v.join("、"); }
    if (v === true) { return t("field.yes"); }
    if (v === false) { return t("field.no"); }
    return v === null || v === undefined ? "—" : String(v);
  }

  function showConflict(rec) {
    state.conflict = rec;
    var dlg = $("#ff-conflict");
    var mine = $("[data-side=mine]", dlg), theirs = $("[data-side=theirs]", dlg);
    mine.replaceChildren(); theirs.replaceChildren();
    var cur = rec.current || {};
    Object.keys(rec.body).forEach(function (k) {
      var label = t("field.field." + k);
      mine.append(el("dt", { text: label }), el("dd", { text: showValue(rec.body[k]) }));
      theirs.append(el("dt", { text: label }), el("dd", { text: showValue(cur[k]) }));
    });
    theirs.append(el("dt", { text: t("field.field.version") }), el("dd", { text: showValue(cur.version) }));
    dlg.showModal();
  }

  async function resolve(choice) {
    var rec = state.conflict;
    var dlg = $("#ff-conflict");
    dlg.close();
    state.conflict = null;
    if (!rec || choice === "close") { return; }
    var db = await dbp;
    var cur = rec.current || {};
    if (choice === "keep-mine") {  // resend, based on the version now on the server
      rec.base_version = cur.version;
      rec.status = "waiting";
      delete rec.result;
      delete rec.current;
      await db.put("outbox", rec);
      await renderOutbox();
      return sendOutbox();
    }
    await db.delete("outbox", rec.client_id);  // take theirs: my edit is dropped
    await db.put("sent", { client_id: rec.client_id, kind: rec.kind, summary: rec.summary, status: "took-theirs",
      result: { record_id: rec.record_id }, at: new Date().toISOString() });
    if (state.bundle && cur.id) {
      state.bundle.visits = (state.bundle.visits || []).map(function (v) { return v.id === cur.id ? cur : v; });
      await db.put("meta", state.bundle, "bundle");
      renderMyVisits();
    }
    await renderOutbox();
  }

  // -- start ----------------------------------------------------------------------------------------------

  function registerWorker() {
    if (!("serviceWorker" in navigator)) { return; }
    navigator.serviceWorker.register(cfg.sw, { scope: cfg.scope }).catch(function () { /* no offline copy */ });
    var mark = function () { if (navigator.serviceWorker.controller) { document.body.dataset.sw = "active"; } };
    navigator.serviceWorker.addEventListener("controllerchange", mark);
    mark();
  }

  async function start() {
    showNet();
    document.querySelectorAll(".ff-tabs button").forEach(function (b) {
      b.addEventListener("click", function () { showTab(b.dataset.tab); });
    });
    $("#ff-hh-q").addEventListener("input", renderHouseholds);
    $("#ff-case").addEventListener("submit", saveCase);
    $("#ff-visit").addEventListener("submit", saveVisit);
    $("#ff-case [data-act=gps]").addEventListener("click", locate);
    bindPhotos($("#ff-case"), "case");
    bindPhotos($("#ff-visit"), "visit");
    bindPhotos($("#ff-inspect-form"), "inspect");
    $("#ff-inspect-form").addEventListener("submit", saveInspect);
    $("#ff-inspect [data-act=cancel]").addEventListener("click", function () { $("#ff-inspect").close(); });
    $("#ff-send").addEventListener("click", sendOutbox);
    $("#ff-edit").addEventListener("close", closeEdit);
    document.querySelectorAll("#ff-conflict [data-act]").forEach(function (b) {
      b.addEventListener("click", function () { resolve(b.dataset.act); });
    });
    window.addEventListener("online", function () { showNet(); sendOutbox(); loadBundle(); });
    window.addEventListener("offline", showNet);
    setInterval(function () { if (navigator.onLine) { sendOutbox(); } }, RETRY_MS);

    var cached = await (await dbp).get("meta", "bundle");
    if (cached) { applyBundle(cached, "cache"); }
    await renderOutbox();
    if (cached) { document.body.dataset.ready = "1"; }  // opened from the phone's own copy
    registerWorker();
    var fresh = await loadBundle();
    document.body.dataset.ready = cached || fresh ? "1" : "0";
    if (!cached && !fresh) { $("#ff-who").textContent = t("field.no_data"); }
    if (navigator.onLine) { sendOutbox(); }
  }

  start();
}());
