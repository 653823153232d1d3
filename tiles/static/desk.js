/* desk.js — 事件受理台: the case desk of the service centre and the grid workers.
 *
 * Everything comes from the cases API, as any client would use it:
 *   GET  /api/cases/inbox | /api/cases/due?kind=overdue|soon | /api/cases?...   queues
 *   GET  /api/cases/machine, /api/cases/categories                             vocabulary
 *   GET  /api/cases/{id}          one case: events, allowed_actions, attachments, ETag
 *   POST /api/cases/{id}/transitions  with If-Match (412: someone else was first)
 *   POST /api/cases/files         photos (made smaller in the browser first)
 *   POST /api/cases               a new case reported from the desk
 *   GET  /api/cases/due/counts    overdue and soon-due cases per grid: grids flagged on the map
 *   GET  /api/auth/me             permissions: the "unmask" button only for holders of unmask
 *   POST /api/cases/{id}/reporter/unmask   the reporter's full contact, with a reason (audited)
 * The buttons are exactly the case's allowed_actions; the server decides, the page asks.
 * Lists put overdue cases first. On phones the list, map and detail are three tabs.
 */
(function () {
  "use strict";
  var cfg = GG.config();
  var $ = function (id) { return document.getElementById(id); };
  var LOCALE = gg.lang === "zh" ? "zh-CN" : "en-GB";
  var PAGE = 50, MAX_SIDE = 1600, QUALITY = 0.85;
  var desk = $("gg-desk");
  var state = {
    queue: "inbox", status: "", filters: {}, items: [], total: 0, offset: 0,
    current: null, etag: null, machine: null, categories: [], reportPoint: null, pending: null,
    parts: []
  };

  // ------------------------------------------------------------------ helpers

  /* A vocabulary word: the cases catalogue first (statuses, actions), then the desk's own. */
  function label(ns, code) {
    var keys = ["cases." + ns + "." + code, "desk." + ns + "." + code];
    for (var i = 0; i < keys.length; i++) { if (gg.has(keys[i])) { return gg.t(keys[i]); } }
    return code;
  }
  function when(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleString(LOCALE, { hour12: false, year: "numeric",
      month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  }
  /* Answers change with every action: never from the browser cache. */
  function api(url, options) { return GG.fetchJSON(url, L.extend({ cache: "no-store" }, options || {})); }
  function errorText(err) {
    if (err && err.status === 412) { return gg.t("desk.stale"); }
    if (err && err.status === 409 && err.data && err.data.code === "IllegalTransition") { return gg.t("desk.illegal"); }
    return gg.errorText(err && err.data ? err.data : err);
  }
  function result(el, text, ok) {
    el.textContent = text;
    el.className = "gg-result " + (ok ? "ok" : "err");
    el.hidden = false;
  }
  function show(view) {
    desk.dataset.view = view;
    Array.prototype.forEach.call(document.querySelectorAll(".gg-d-tabs button"), function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.view === view));
    });
    if (view === "map") { setTimeout(resized, 0); }
  }
  /* A map first laid out hidden (phones open on the list) had no size: fit it once shown. */
  var fitted = false;
  function resized() {
    map.invalidateSize();
    if (fitted || !map.getSize().x) { return; }
    fitted = true;
    if (state.current && state.current.lon !== undefined && state.current.lon !== null) {
      map.setView(GG.toLatLng(state.current.lon, state.current.lat), 16);
    } else if (cfg.bounds) {
      var b = cfg.bounds;
      map.fitBounds(L.latLngBounds(GG.toLatLng(b[0], b[1]), GG.toLatLng(b[2], b[3])));
    }
  }
  document.addEventListener("click", function (e) {
    var b = e.target.closest && e.target.closest("[data-view]");
    if (b && b.tagName === "BUTTON") { show(b.dataset.view); }
  });

  /* Photos: re-encoded smaller as JPEG (metadata dropped), then uploaded one by one. */
  function shrink(file) {
    return new Promise(function (resolve, reject) {
      var url = URL.createObjectURL(file), img = new Image();
      img.onload = function () {
        var s = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
        var c = document.createElement("canvas");
        c.width = Math.max(1, Math.round(img.naturalWidth * s));
        c.height = Math.max(1, Math.round(img.naturalHeight * s));
        c.getContext("2d").drawImage(img, 0, 0, c.width, c.height);
        URL.revokeObjectURL(url);
        c.toBlob(function (b) { if (b) { resolve(b); } else { reject(new Error("encode")); } }, "image/jpeg", QUALITY);
      };
      img.onerror = function () { URL.revokeObjectURL(url); reject(new Error("decode")); };
      img.src = url;
    });
  }
  function upload(input) {
    var files = Array.prototype.slice.call(input.files || []);
    return files.reduce(function (chain, f) {
      return chain.then(function (shas) {
        return shrink(f).then(function (blob) {
          var body = new FormData();
          body.append("file", blob, "photo.jpg");
          return api("/api/cases/files", { method: "POST", body: body });
        }).then(function (res) { shas.push(res.data.sha256); return shas; });
      });
    }, Promise.resolve([]));
  }

  // ------------------------------------------------------------------ map

  var map = GG.createMap("map");
  var caseLayer = L.layerGroup().addTo(map);
  var focusLayer = L.layerGroup().addTo(map);
  var grids = null, gridByCode = {};
  /* Overdue and soon-due cases per grid (the grid a case was reported in): such grids are
   * drawn red or orange, with the counts in their tooltip and a legend. */
  var DUE_HOURS = 24, OVERDUE_COLOUR = "#c62828", SOON_COLOUR = "#ef6c00";
  var dueByGrid = {};
  function gridStyle(f) {
    var d = dueByGrid[f.properties.code];
    if (d && d.overdue) { return { color: OVERDUE_COLOUR, weight: 2, fillColor: OVERDUE_COLOUR, fillOpacity: 0.22 }; }
    if (d && d.soon) { return { color: SOON_COLOUR, weight: 2, fillColor: SOON_COLOUR, fillOpacity: 0.16 }; }
    return { color: GG.GRID_STROKE, weight: 1, fillColor: GG.GRID_STROKE, fillOpacity: 0.04 };
  }
  function gridTip(layer) {
    var p = layer.feature.properties, d = dueByGrid[p.code];
    var lines = [GG.esc(p.name || p.code)];
    if (d && (d.overdue || d.soon)) {
      lines.push(GG.esc(gg.t("desk.due_counts", { overdue: d.overdue, soon: d.soon })));
    }
    return lines.join("<br>");
  }
  var legends = GG.legends(map);
  function restyleGrids() {
    if (!grids) { return; }
    grids.resetStyle();
    var c = state.current, g = c && (gridByCode[c.current_grid_code] || gridByCode[c.grid_code]);
    if (g) { g.setStyle({ color: "#ff7f00", weight: 3 }); }
  }
  function loadDue() {
    return api(GG.url("/api/cases/due/counts", { within_hours: DUE_HOURS })).then(function (res) {
      dueByGrid = {};
      var overdue = 0, soon = 0;
      (res.data || []).forEach(function (r) {
        if (!r.grid_code) { return; }
        dueByGrid[r.grid_code] = r;
        if (r.overdue) { overdue++; } else if (r.soon) { soon++; }
      });
      legends.set("due", { title: gg.t("desk.legend.due"), items: [
        { colour: OVERDUE_COLOUR, label: gg.t("desk.legend.overdue", { n: overdue }) },
        { colour: SOON_COLOUR, label: gg.t("desk.legend.soon", { n: soon, hours: DUE_HOURS }) }
      ] });
      restyleGrids();
      document.body.dataset.dueGrids = String(Object.keys(dueByGrid).length);
    }).catch(function () { /* flags are a nicety: the lists say the same */ });
  }
  GG.fetchJSON("/public/grids.geojson").then(function (res) {
    grids = GG.geojson(res.data, {
      style: gridStyle,
      onEachFeature: function (f, l) { gridByCode[f.properties.code] = l; l.bindTooltip(gridTip, { sticky: true }); }
    }).addTo(map);
    grids.bringToBack();
    restyleGrids();
  }).catch(function () { /* the desk works without grid outlines */ });

  function statusColour(c) {
    if (c.overdue) { return "#c62828"; }
    var css = getComputedStyle(document.documentElement).getPropertyValue("--gg-status-" + c.status);
    return (css && css.trim()) || "#1f4e9c";
  }
  function drawCases() {
    caseLayer.clearLayers();
    state.items.forEach(function (c) {
      if (c.lon === null || c.lat === null || c.lon === undefined) { return; }
      L.circleMarker(GG.toLatLng(c.lon, c.lat), {
        radius: 6, color: statusColour(c), weight: 2, fillOpacity: 0.7
      }).bindTooltip(GG.esc(c.case_no + " " + (c.category_name || c.category || "")))
        .on("click", function () {
          if ($("gg-d-report").hidden) { openCase(c.id); } // while reporting, a click places the point
        }).addTo(caseLayer);
    });
  }
  function focus(c) {
    focusLayer.clearLayers();
    restyleGrids(); // the case's grid outlined, every grid keeping its due flag
    var g = gridByCode[c.current_grid_code] || gridByCode[c.grid_code];
    if (c.lon !== null && c.lon !== undefined) {
      var ll = GG.toLatLng(c.lon, c.lat);
      L.circleMarker(ll, { radius: 10, color: "#ff7f00", weight: 3, fillOpacity: 0.2 }).addTo(focusLayer);
      if (g) { map.fitBounds(g.getBounds(), { maxZoom: 16, padding: [20, 20] }); } else { map.setView(ll, 16); }
    }
  }

  // ------------------------------------------------------------------ queues and lists

  function overdueFirst(a, b) {
    if (!!a.overdue !== !!b.overdue) { return a.overdue ? -1 : 1; }
    var da = a.due_at ? Date.parse(a.due_at) : Infinity, db = b.due_at ? Date.parse(b.due_at) : Infinity;
    if (da !== db) { return da - db; }
    return Date.parse(b.reported_at) - Date.parse(a.reported_at);
  }

  function listUrl(offset, extra) {
    var q = L.extend({ limit: PAGE, offset: offset }, extra || {});
    if (state.queue === "inbox") { return GG.url("/api/cases/inbox", q); }
    if (state.queue === "overdue" || state.queue === "soon") {
      q.kind = state.queue;
      return GG.url("/api/cases/due", q);
    }
    var f = state.filters;
    q.status = state.status || f.status;
    q.category = f.category; q.grid = f.grid; q.from = f.from; q.to = f.to;
    return GG.url("/api/cases", q);
  }

  /* A list is read in parts, overdue cases first: the inbox and due lists are ordered so by
   * the server; a status queue or a search is asked for its overdue cases, then the rest. */
  function partsFor(queue) {
    return queue === "all" ? [{ overdue: "true" }, { overdue: "false" }] : [{}];
  }

  function renderList() {
    var ul = $("gg-d-cases");
    $("gg-d-count").textContent = gg.t("desk.count", { n: state.total });
    if (!state.items.length) { ul.innerHTML = '<li class="gg-muted">' + GG.esc(gg.t("desk.empty")) + "</li>"; }
    else {
      ul.innerHTML = state.items.map(function (c) {
        var due = c.due_at ? gg.t("desk.due", { at: when(c.due_at) }) : gg.t("desk.no_deadline");
        return '<li data-id="' + c.id + '" class="' + (c.overdue ? "gg-d-overdue " : "") +
          (state.current && state.current.id === c.id ? "gg-d-selected" : "") + '" tabindex="0">' +
          '<div class="gg-d-line1"><b>' + GG.esc(c.case_no) + "</b>" +
          '<span class="gg-d-badge gg-d-s-' + GG.esc(c.status) + '">' + GG.esc(label("status", c.status)) + "</span>" +
          (c.overdue ? '<span class="gg-d-flag">' + GG.esc(gg.t("desk.overdue")) + "</span>" : "") + "</div>" +
          '<div class="gg-d-line2">' + GG.esc(c.category_name || c.category || "") + " · " + GG.esc(due) + "</div>" +
          '<div class="gg-d-line3">' + GG.esc((c.description || "").slice(0, 80)) + "</div></li>";
      }).join("");
    }
    $("gg-d-more").hidden = state.items.length >= state.total;
    drawCases();
  }

  function fetchPart(part) {
    return api(listUrl(part.offset, part.extra)).then(function (res) {
      var page = res.data || { items: [], total: 0 };
      part.offset += (page.items || []).length;
      part.total = page.total || 0;
      return page.items || [];
    });
  }

  var loads = 0;
  function load(append) {
    var fetches, mine = ++loads; // an older answer arriving late must not overwrite a newer one
    if (!append) {
      state.parts = partsFor(state.queue).map(function (extra) { return { extra: extra, offset: 0, total: null }; });
      fetches = Promise.all(state.parts.map(fetchPart)).then(function (pages) {
        return [].concat.apply([], pages);
      });
    } else {
      var next = state.parts.filter(function (p) { return p.offset < p.total; })[0];
      fetches = next ? fetchPart(next) : Promise.resolve([]);
    }
    return fetches.then(function (items) {
      if (mine !== loads) { return state.items; }
      state.items = (append ? state.items : []).concat(items);
      state.items.sort(overdueFirst);
      state.total = state.parts.reduce(function (n, p) { return n + (p.total || 0); }, 0);
      renderList();
      return state.items;
    });
  }

  var countRounds = 0;
  function counts() {
    var round = ++countRounds; // only the latest round of counts is shown
    loadDue();
    var chips = document.querySelectorAll("#gg-d-statuses [data-status]");
    var queues = ["inbox", "overdue", "soon"].concat(Array.prototype.map.call(chips, function (b) {
      return "status-" + b.dataset.status;
    }));
    queues.forEach(function (q) {
      var url = q === "inbox" ? "/api/cases/inbox?limit=1"
        : q.indexOf("status-") === 0 ? "/api/cases?limit=1&status=" + encodeURIComponent(q.slice(7))
        : "/api/cases/due?limit=1&kind=" + q;
      api(url).then(function (res) {
        if (round !== countRounds) { return; }
        var el = document.querySelector('[data-count="' + q + '"]');
        if (el) { el.textContent = res.data && res.data.total ? String(res.data.total) : ""; }
      }).catch(function () { /* counts are a nicety */ });
    });
  }

  function selectQueue(q, status) {
    state.queue = q; state.status = status || "";
    Array.prototype.forEach.call(document.querySelectorAll("#gg-d-queues [data-queue]"), function (b) {
      b.setAttribute("aria-selected", String(b.dataset.queue === q && !status));
    });
    Array.prototype.forEach.call(document.querySelectorAll("#gg-d-statuses [data-status]"), function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.status === status));
    });
    return load(false).catch(function (err) { GG.status(errorText(err), "error"); });
  }

  $("gg-d-queues").addEventListener("click", function (e) {
    var b = e.target.closest("[data-queue]");
    if (b) { selectQueue(b.dataset.queue); }
  });
  $("gg-d-statuses").addEventListener("click", function (e) {
    var b = e.target.closest("[data-status]");
    if (b) { selectQueue("all", b.dataset.status); }
  });
  $("gg-d-cases").addEventListener("click", function (e) {
    var li = e.target.closest("li[data-id]");
    if (li) { openCase(+li.dataset.id); }
  });
  $("gg-d-cases").addEventListener("keydown", function (e) {
    var li = e.target.closest("li[data-id]");
    if (li && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); openCase(+li.dataset.id); }
  });
  $("gg-d-more").addEventListener("click", function () { load(true); });
  $("gg-d-filters").addEventListener("submit", function (e) {
    e.preventDefault();
    var f = {};
    ["grid", "category", "status", "from", "to"].forEach(function (k) {
      var v = $("gg-d-" + k).value.trim();
      if (v) { f[k] = v; }
    });
    state.filters = f;
    selectQueue("all", "");
  });
  $("gg-d-reset").addEventListener("click", function () {
    state.filters = {};
    setTimeout(function () { selectQueue("all", ""); }, 0);
  });

  // ------------------------------------------------------------------ one case

  function fact(name, value) {
    return value === undefined || value === null || value === "" ? "" :
      "<tr><th>" + GG.esc(gg.t(name)) + "</th><td>" + GG.esc(value) + "</td></tr>";
  }

  function renderCase(c) {
    state.current = c;
    $("gg-d-pick").hidden = true;
    $("gg-d-report").hidden = true;
    $("gg-d-case").hidden = false;
    $("gg-d-no").textContent = c.case_no;
    var badge = $("gg-d-badge");
    badge.textContent = label("status", c.status) + (c.overdue ? " · " + gg.t("desk.overdue") : "");
    badge.className = "gg-d-badge gg-d-s-" + c.status + (c.overdue ? " gg-d-badge-overdue" : "");
    var due = c.due_at ? when(c.due_at) : (c.deadline_problem ? gg.t("desk.deadline_problem", { reason: c.deadline_problem }) : gg.t("desk.no_deadline"));
    var rep = c.reporter ? [c.reporter.name, c.reporter.phone].filter(Boolean).join(" ") : "";
    $("gg-d-facts").innerHTML =
      fact("desk.case.category", (c.category_name || "") + (c.category && c.category !== c.category_name ? "（" + c.category + "）" : "")) +
      fact("desk.case.source", label("source", c.source)) +
      fact("desk.case.reported_at", when(c.reported_at)) +
      fact("desk.case.status", label("status", c.status)) +
      "<tr><th>" + GG.esc(gg.t("desk.case.due")) + "</th><td" + (c.overdue ? ' class="gg-flag"' : "") + ">" + GG.esc(due) + "</td></tr>" +
      fact("desk.case.grid", c.grid_code) +
      fact("desk.case.current_grid", c.current_grid_code !== c.grid_code ? c.current_grid_code : "") +
      fact("desk.case.assignee", c.assignee ? (c.assignee.name || c.assignee.code) : "") +
      fact("desk.case.owner", c.owner ? c.owner.username : "") +
      fact("desk.case.reporter", rep) +
      fact("desk.case.address", c.address) +
      fact("desk.case.description", c.description) +
      (c.rework_count ? fact("desk.case.status", gg.t("desk.rework", { n: c.rework_count })) : "") +
      (c.pending ? fact("desk.case.status", gg.t("desk.pending", { what: label("pending", c.pending) })) : "");
    renderUnmask(c);
    renderActions(c);
    renderTimeline(c);
    renderList();
    focus(c);
  }

  /* The reporter's full contact: a button only for holders of the "unmask" permission (the
   * block is cloned from its <template> then, so others' pages do not hold it at all); it
   * asks for the reason, which the server audits, and shows what it answers. */
  var mayUnmask = false;
  function unmaskBox() {
    var box = $("gg-d-unmask-box");
    if (box || !mayUnmask) { return box; }
    box = document.importNode($("gg-d-unmask-tpl").content, true).firstElementChild;
    $("gg-d-facts").insertAdjacentElement("afterend", box);
    $("gg-d-unmask").addEventListener("click", function () {
      $("gg-d-unmask-form").hidden = false;
      $("gg-d-unmask").hidden = true;
      $("gg-d-unmask-reason").focus();
    });
    $("gg-d-unmask-cancel").addEventListener("click", function () { renderUnmask(state.current); });
    $("gg-d-unmask-form").addEventListener("submit", function (e) {
      e.preventDefault();
      unmask(state.current);
    });
    return box;
  }
  function renderUnmask(c) {
    var box = unmaskBox();
    if (!box) { return; }
    box.hidden = !(c && c.reporter);
    $("gg-d-unmask").hidden = false;
    $("gg-d-unmask-form").hidden = true;
    $("gg-d-unmask-form").reset();
    $("gg-d-unmasked").hidden = true;
    $("gg-d-unmasked").innerHTML = "";
    $("gg-d-unmask-result").hidden = true;
  }
  function unmask(c) {
    var out = $("gg-d-unmask-result"), reason = $("gg-d-unmask-reason").value.trim();
    if (reason.length < 2) { result(out, gg.t("desk.unmask.need_reason"), false); return; }
    var button = $("gg-d-unmask-form").querySelector("[type=submit]");
    button.disabled = true;
    api("/api/cases/" + c.id + "/reporter/unmask", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reason: reason })
    }).then(function (res) {
      if (!state.current || state.current.id !== c.id) { return; } // another case is open now
      var people = res.data || [];
      $("gg-d-unmasked").innerHTML = people.length ? people.map(function (p, i) {
        var who = people.length > 1 ? gg.t("desk.unmask.nth", { n: i + 1 }) : gg.t("desk.case.reporter");
        return "<tr><th>" + GG.esc(who) + "</th><td>" + GG.esc([p.name, p.phone].filter(Boolean).join(" ") || "—") + "</td></tr>";
      }).join("") : "<tr><td>" + GG.esc(gg.t("desk.unmask.none")) + "</td></tr>";
      $("gg-d-unmasked").hidden = false;
      $("gg-d-unmask-form").hidden = true;
      result(out, gg.t("desk.unmask.audited"), true);
      document.body.dataset.unmasked = String(c.id);
    }, function (err) { result(out, errorText(err), false); }).then(function () {
      button.disabled = false;
    });
  }

  function renderActions(c) {
    var box = $("gg-d-actions"), acts = c.allowed_actions || [];
    $("gg-d-fields").hidden = true;
    $("gg-d-fields").innerHTML = "";
    state.pending = null;
    if (!acts.length) { box.innerHTML = '<p class="gg-muted">' + GG.esc(gg.t("desk.no_actions")) + "</p>"; return; }
    box.innerHTML = acts.map(function (a) {
      var name = typeof a === "string" ? a : a.action;
      return '<button type="button" class="gg-d-act" data-action="' + GG.esc(name) + '">' +
        GG.esc(label("action", name)) + "</button>";
    }).join("");
  }

  var FIELD_INPUTS = {
    amount: function () { return '<label>' + GG.esc(gg.t("desk.field.amount")) + ' <input type="number" min="1" max="365" name="amount" value="1"></label>'; },
    unit: function () {
      return "<label>" + GG.esc(gg.t("desk.field.unit")) + ' <select name="unit"><option value="days">' +
        GG.esc(gg.t("desk.field.unit.days")) + '</option><option value="hours">' + GG.esc(gg.t("desk.field.unit.hours")) + "</option></select></label>";
    },
    rating: function () {
      return "<label>" + GG.esc(gg.t("desk.field.rating")) + ' <select name="rating">' +
        ["satisfied", "basic", "unsatisfied"].map(function (r) {
          return '<option value="' + r + '">' + GG.esc(gg.t("desk.field.rating." + r)) + "</option>";
        }).join("") + "</select></label>";
    },
    to_user: function () { return "<label>" + GG.esc(gg.t("desk.field.to_user")) + ' <input type="number" min="1" name="to_user"></label>'; },
    into: function () { return "<label>" + GG.esc(gg.t("desk.field.into")) + ' <input type="number" min="1" name="into"></label>'; }
  };

  function actionFields(name) {
    var acts = (state.current && state.current.allowed_actions) || [];
    for (var i = 0; i < acts.length; i++) {
      if (typeof acts[i] !== "string" && acts[i].action === name) {
        return (acts[i].fields || []).filter(function (f) { return FIELD_INPUTS[f]; });
      }
    }
    return [];
  }

  $("gg-d-actions").addEventListener("click", function (e) {
    var b = e.target.closest("[data-action]");
    if (!b) { return; }
    var name = b.dataset.action, fields = actionFields(name);
    if (fields.length && state.pending !== name) {
      state.pending = name;
      var box = $("gg-d-fields");
      box.innerHTML = fields.map(function (f) { return FIELD_INPUTS[f](); }).join("") +
        '<button type="button" class="gg-d-primary" data-confirm="' + GG.esc(name) + '">' +
        GG.esc(gg.t("common.confirm")) + " · " + GG.esc(label("action", name)) + "</button>";
      box.hidden = false;
      return;
    }
    transition(name, {});
  });
  $("gg-d-fields").addEventListener("click", function (e) {
    var b = e.target.closest("[data-confirm]");
    if (!b) { return; }
    var data = {};
    Array.prototype.forEach.call($("gg-d-fields").querySelectorAll("[name]"), function (el) {
      if (el.value === "") { return; }
      data[el.name] = el.type === "number" ? +el.value : el.value;
    });
    transition(b.dataset.confirm, data);
  });

  function transition(action, data) {
    var c = state.current, out = $("gg-d-result");
    var buttons = document.querySelectorAll("#gg-d-action-box button");
    Array.prototype.forEach.call(buttons, function (b) { b.disabled = true; });
    out.hidden = true;
    upload($("gg-d-photos")).then(function (shas) {
      var body = {
        action: action, note: $("gg-d-note").value.trim(), public: $("gg-d-public").checked,
        attachments: shas
      };
      Object.keys(data).forEach(function (k) { body[k] = data[k]; });
      return api("/api/cases/" + c.id + "/transitions", {
        method: "POST", headers: { "Content-Type": "application/json", "If-Match": state.etag },
        body: JSON.stringify(body)
      });
    }).then(function (res) {
      $("gg-d-note").value = "";
      $("gg-d-public").checked = false;
      $("gg-d-photos").value = "";
      state.etag = res.response.headers.get("ETag") || res.data.etag;
      renderCase(res.data);
      result(out, gg.t("desk.done", { action: label("action", action) }), true);
      document.body.dataset.lastAction = action;
      load(false).catch(function () { /* the list refreshes on the next action */ });
      counts();
    }, function (err) {
      result(out, errorText(err), false);
      if (err && (err.status === 412 || err.status === 409)) { openCase(c.id, true); }
    }).then(function () {
      Array.prototype.forEach.call(buttons, function (b) { b.disabled = false; });
    });
  }

  function renderTimeline(c) {
    var files = {};
    (c.attachments || []).forEach(function (a) { files[a.sha256] = a; });
    $("gg-d-timeline").innerHTML = (c.events || []).slice().reverse().map(function (ev) {
      var photos = (ev.attachments || []).map(function (sha) {
        var f = files[sha];
        if (!f) { return ""; }
        return f.mime && f.mime.indexOf("image/") === 0
          ? '<a href="' + GG.esc(f.url) + '" target="_blank" rel="noopener"><img src="' + GG.esc(f.thumb_url) + '" alt="' + GG.esc(gg.t("desk.photo")) + '"></a>'
          : '<a href="' + GG.esc(f.url) + '" target="_blank" rel="noopener">PDF</a>';
      }).join("");
      var move = ev.from_status && ev.to_status && ev.from_status !== ev.to_status
        ? label("status", ev.from_status) + " → " + label("status", ev.to_status) : "";
      return "<li><div class=\"gg-d-evhead\"><b>" + GG.esc(label("action", ev.action)) + "</b> " +
        "<time>" + GG.esc(when(ev.at)) + "</time></div>" +
        '<div class="gg-muted">' + GG.esc(ev.actor || "") + (ev.actor_role ? "（" + GG.esc(label("role", ev.actor_role)) + "）" : "") +
        (move ? " · " + GG.esc(move) : "") + (ev.public ? " · " + GG.esc(gg.t("desk.event.public")) : "") + "</div>" +
        (ev.note ? '<p class="gg-d-note">' + GG.esc(ev.note) + "</p>" : "") +
        (photos ? '<div class="gg-d-photos">' + photos + "</div>" : "") + "</li>";
    }).join("");
  }

  function openCase(id, keepResult) {
    if (!keepResult) { $("gg-d-result").hidden = true; }
    return api("/api/cases/" + id).then(function (res) {
      state.etag = res.response.headers.get("ETag") || res.data.etag;
      renderCase(res.data);
      show("detail");
      document.body.dataset.caseId = String(id);
      return res.data;
    }, function (err) { GG.status(errorText(err), "error"); });
  }

  // ------------------------------------------------------------------ reporting

  var reportMarker = null;
  $("gg-d-report-open").addEventListener("click", function () {
    $("gg-d-pick").hidden = true;
    $("gg-d-case").hidden = true;
    $("gg-d-report").hidden = false;
    $("gg-d-r-result").hidden = true;
    show("detail");
  });
  map.on("click", function (e) {
    if ($("gg-d-report").hidden) { return; }
    var ll = e.latlng, x = ll.lng, y = ll.lat;
    if (cfg.basemap && cfg.basemap.shift === "gcj02") {
      for (var i = 0; i < 6; i++) { var g = GG.wgs2gcj(x, y); x -= g[0] - ll.lng; y -= g[1] - ll.lat; }
    }
    state.reportPoint = [x, y];
    if (reportMarker) { reportMarker.setLatLng(ll); } else {
      reportMarker = L.circleMarker(ll, { radius: 9, color: "#c62828", weight: 3 }).addTo(map);
    }
    $("gg-d-r-point").textContent = gg.t("desk.report.point_set", { lat: y.toFixed(5), lon: x.toFixed(5) });
    if (desk.dataset.view === "map") { show("detail"); } // phones: back to the form
  });
  $("gg-d-report").addEventListener("submit", function (e) {
    e.preventDefault();
    var out = $("gg-d-r-result"), cat = $("gg-d-r-category").value, text = $("gg-d-r-description").value.trim();
    if (!cat) { result(out, gg.t("desk.report.need_category"), false); return; }
    if (!text) { result(out, gg.t("desk.report.need_description"), false); return; }
    if (!state.reportPoint) { result(out, gg.t("desk.report.need_point"), false); return; }
    $("gg-d-r-submit").disabled = true;
    upload($("gg-d-r-photos")).then(function (shas) {
      return api("/api/cases", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          category: cat, description: text, lon: state.reportPoint[0], lat: state.reportPoint[1],
          source: "grid_worker", address: $("gg-d-r-address").value.trim() || null, attachments: shas
        })
      });
    }).then(function (res) {
      var c = res.data.case, dups = res.data.duplicates || [];
      $("gg-d-report").reset();
      state.reportPoint = null;
      if (reportMarker) { map.removeLayer(reportMarker); reportMarker = null; }
      $("gg-d-r-point").textContent = gg.t("desk.report.point");
      document.body.dataset.reported = String(c.id);
      state.etag = res.response.headers.get("ETag") || c.etag;
      renderCase(c);
      result($("gg-d-result"), gg.t("desk.report.done", { no: c.case_no }) +
        (dups.length ? "；" + gg.t("desk.report.duplicates", { n: dups.length }) : ""), true);
      load(false); counts();
    }, function (err) { result(out, errorText(err), false); }).then(function () {
      $("gg-d-r-submit").disabled = false;
    });
  });

  // ------------------------------------------------------------------ start

  function fillSelect(el, options) {
    options.forEach(function (o) {
      var opt = document.createElement("option");
      opt.value = o[0]; opt.textContent = o[1];
      el.appendChild(opt);
    });
  }

  Promise.all([
    api("/api/cases/machine").then(function (r) { return r.data; }, function () { return null; }),
    api("/api/cases/categories").then(function (r) { return r.data; }, function () { return []; }),
    api("/api/auth/me").then(function (r) { return r.data; }, function () { return null; })
  ]).then(function (got) {
    var machine = got[0] || {}, cats = got[1] || [], me = got[2] || {};
    mayUnmask = (me.permissions || []).indexOf("unmask") >= 0;
    state.machine = machine;
    state.categories = cats;
    var statuses = machine.statuses || [];
    statuses = statuses.map(function (s) { return typeof s === "string" ? s : s.status || s.code; });
    fillSelect($("gg-d-status"), statuses.map(function (s) { return [s, label("status", s)]; }));
    var openSet = machine.open || statuses;
    var open = statuses.filter(function (st) { return openSet.indexOf(st) >= 0; }); // workflow order
    $("gg-d-statuses").innerHTML = open.map(function (s) {
      return '<button type="button" data-status="' + GG.esc(s) + '" aria-pressed="false" class="gg-d-chip gg-d-s-' +
        GG.esc(s) + '">' + GG.esc(label("status", s)) + ' <b data-count="status-' + GG.esc(s) + '"></b></button>';
    }).join("");
    var catOptions = cats.filter(function (c) { return c.active !== false; }).map(function (c) {
      return [c.code, (c.parent_code ? "　" : "") + c.name];
    });
    fillSelect($("gg-d-category"), catOptions);
    fillSelect($("gg-d-r-category"), catOptions);
    counts();
    return selectQueue("inbox");
  }).then(function () {
    document.body.dataset.ready = "1";
  }, function (err) {
    GG.status(errorText(err), "error");
    document.body.dataset.ready = "error";
  });

  window.ggDesk = {
    state: state, map: map, openCase: openCase, selectQueue: selectQueue, show: show,
    gridLayer: function (code) { return gridByCode[code]; }, dueByGrid: function () { return dueByGrid; }
  };
})();
