/* Public grid map (网格化图谱) for residents: find your grid by address or location, see the
 * staff who serve it (photo, name, role, tap-to-call phone, duties). No resident data: the
 * server sends grid outlines, household counts and staff only.
 * Data: /public/grids.geojson, /public/find?address=, /public/at?lng=&lat=.
 * /public/grid/<code> opens with that grid selected (cfg.grid). */
(function () {
  "use strict";
  var cfg = GG.config();
  var t = gg.t;
  var map = GG.createMap("map");
  var panel = document.getElementById("gg-grid");
  var list = document.getElementById("gg-list");
  var filter = document.getElementById("gg-search");
  var form = document.getElementById("gg-find");
  var address = document.getElementById("gg-address");
  var results = document.getElementById("gg-results");
  var locateBtn = document.getElementById("gg-locate");
  var byCode = {};
  var props = {};
  var selected = null;
  var grids = null;
  var legends = GG.legends(map);
  var STYLE = { color: GG.GRID_STROKE, weight: 1.5, fillColor: GG.GRID_FILL, fillOpacity: 0.35 };
  var SELECTED = { color: "#0d2b5e", weight: 4, fillColor: GG.GRID_FILL, fillOpacity: 0.55 };

  function staffHtml(s) {
    var role = gg.has("common.role." + s.role) ? t("common.role." + s.role) : s.role;
    var post = s.post && gg.has("common.post." + s.post) ? "（" + t("common.post." + s.post) + "）" : "";
    var tel = s.tel || (s.phone ? "tel:" + String(s.phone).replace(/[^\d+\-]/g, "") : "");
    return '<div class="gg-staff"><img alt="' + GG.esc(s.name) + '" src="' + GG.esc(s.photo_url) + '" width="64" height="64">' +
      '<div class="gg-staff-text"><b>' + GG.esc(s.name) + '</b> <span class="role">' + GG.esc(role) + GG.esc(post) + "</span>" +
      (s.phone ? '<a class="gg-tel" href="' + GG.esc(tel) + '" aria-label="' + GG.esc(t("public.call", { phone: s.phone })) + '">' +
        '<span aria-hidden="true">☎</span> ' + GG.esc(s.phone) + "</a>" : "") +
      (s.duties ? '<span class="gg-muted">' + GG.esc(s.duties) + "</span>" : "") + "</div></div>";
  }

  function show(p) {
    var staff = (p.staff || []).map(staffHtml).join("") || '<p class="gg-empty">' + GG.esc(t("public.no_staff")) + "</p>";
    var lang = "&lang=" + encodeURIComponent(gg.lang);
    panel.innerHTML = "<h2>" + GG.esc(p.name) + "</h2>" +
      '<p class="gg-muted">' + GG.esc(t("public.grid_meta", {
        code: p.code, village: p.village || "—", households: t("common.households", { n: p.households })
      })) + "</p>" + staff +
      '<p class="gg-links"><a href="/public/grid/' + GG.esc(p.code) + "?lang=" + GG.esc(gg.lang) + '">' + GG.esc(t("public.share")) + "</a>" +
      ' <a href="/print/poster.pdf?code=' + GG.esc(p.code) + "&paper=A4" + GG.esc(lang) + '" target="_blank" rel="noopener">' + GG.esc(t("public.print_poster")) + "</a>" +
      ' <a href="/print/cards.pdf?grid=' + GG.esc(p.code) + GG.esc(lang) + '" target="_blank" rel="noopener">' + GG.esc(t("public.print_cards")) + "</a></p>";
    panel.dataset.code = p.code;
    showTeam(p.code);
    showFigures(p.code);
  }

  /** The public part of the grid's team (五个一: party organisation, service team, parts). */
  function showTeam(code) {
    GG.fetchJSON("/api/grid-teams/" + encodeURIComponent(code) + "/public").then(function (res) {
      if (panel.dataset.code !== code) { return; }
      var team = res.data, box = document.createElement("section");
      box.className = "gg-team";
      box.id = "gg-team";
      var parts = Object.keys(team.parts).map(function (k) {
        var part = team.parts[k];
        return "<li>" + (part.present ? "✔ " : "○ ") + GG.esc(part.label) + " " +
          GG.esc(t(part.present ? "teams.present" : "teams.missing")) + "</li>";
      }).join("");
      var members = team.members.map(function (m) {
        return "<li><b>" + GG.esc(m.name) + "</b> " + GG.esc(m.role_label) +
          (m.title ? " · " + GG.esc(m.title) : "") +
          (m.office_phone ? ' <a class="gg-tel" href="tel:' + GG.esc(String(m.office_phone).replace(/[^\d+\-]/g, "")) +
            '">☎ ' + GG.esc(m.office_phone) + "</a>" : "") + "</li>";
      }).join("");
      box.innerHTML = "<h3>" + GG.esc(t("teams.title")) + "</h3>" +
        (team.party_org.name ? "<p>" + GG.esc(t("teams.party_org")) + "：" + GG.esc(team.party_org.name) + "</p>" : "") +
        '<ul class="gg-team-parts" aria-label="' + GG.esc(t("teams.parts")) + '">' + parts + "</ul>" +
        "<h4>" + GG.esc(t("teams.service")) + "</h4>" +
        (members ? '<ul class="gg-team-members">' + members + "</ul>" : '<p class="gg-empty">' + GG.esc(t("teams.none")) + "</p>");
      panel.appendChild(box);
    }).catch(function () { /* the team part is optional: the staff card stays */ });
  }

  /** 考核公示: the grid's closure rate and satisfaction of the last published round. */
  function showFigures(code) {
    GG.fetchJSON("/api/assessment/public/grids/" + encodeURIComponent(code)).then(function (res) {
      var pub = res.data.published;
      if (panel.dataset.code !== code || !pub) { return; }
      var pct = function (v) { return v === null || v === undefined ? t("assessment.no_value") : (v * 100).toFixed(1) + "%"; };
      var box = document.createElement("section");
      box.className = "gg-figures";
      box.id = "gg-figures";
      box.innerHTML = "<h3>" + GG.esc(t("assessment.public_title")) + "</h3>" +
        '<p class="gg-muted">' + GG.esc(t("assessment.public_round", { label: pub.label })) + "</p>" +
        "<p>" + GG.esc(t("assessment.close_rate")) + "：<b>" + GG.esc(pct(pub.close_rate)) + "</b>　" +
        GG.esc(t("assessment.satisfaction_rate")) + "：<b>" + GG.esc(pct(pub.satisfaction_rate)) + "</b></p>";
      panel.insertBefore(box, panel.querySelector(".gg-links"));
    }).catch(function () { /* the figures are optional: the staff card stays */ });
  }

  /** Select grid `code`: highlight it, show its card, keep its address in the URL. */
  function select(code, zoom) {
    var l = byCode[code];
    if (!l) { return false; }
    if (selected) { selected.setStyle(STYLE); }
    selected = l;
    l.setStyle(SELECTED);
    l.bringToFront();
    show(props[code]);
    if (zoom) { map.fitBounds(l.getBounds(), { maxZoom: 15, padding: [20, 20] }); }
    if (window.history && window.history.replaceState) {
      var url = "/public/grid/" + encodeURIComponent(code) + window.location.search;
      window.history.replaceState(null, "", url);
    }
    document.body.dataset.selected = code;
    return true;
  }

  function renderList(features) {
    list.innerHTML = features.map(function (f) {
      var p = f.properties, lead = (p.staff || [])[0];
      return '<li><button type="button" data-code="' + GG.esc(p.code) + '">' + GG.esc(p.name) +
        (lead ? ' <span class="gg-muted">' + GG.esc(lead.name) + "</span>" : "") + "</button></li>";
    }).join("");
  }

  GG.busy(document.getElementById("map"), true);
  GG.status(t("common.loading"));
  GG.fetchJSON("/public/grids.geojson").then(function (res) {
    GG.status("");
    grids = GG.geojson(res.data, {
      style: function () { return STYLE; },
      onEachFeature: function (f, l) {
        byCode[f.properties.code] = l;
        props[f.properties.code] = f.properties;
        l.bindTooltip(GG.esc(f.properties.name), { sticky: true });
        l.on("click", function () { select(f.properties.code, false); });
      }
    }).addTo(map);
    legends.set("grids", { title: t("common.layer.grids"), items: [{ colour: GG.GRID_FILL, label: t("common.grid") }] }, grids);
    if (grids.getBounds().isValid() && !cfg.grid) { map.fitBounds(grids.getBounds(), { padding: [10, 10] }); }
    renderList(res.data.features);
    if (!res.data.features.length) {
      panel.innerHTML = '<p class="gg-empty">' + GG.esc(t("public.no_grids")) + "</p>";
    }
    if (cfg.grid) { select(cfg.grid, true); }
    document.body.dataset.ready = "1";
  }).catch(function (err) {
    GG.status(t("common.load_failed", { reason: err.message }), "error");
    document.body.dataset.ready = "error";
  }).then(function () { GG.busy(document.getElementById("map"), false); });

  list.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-code]");
    if (b) { select(b.dataset.code, true); panel.focus(); }
  });
  filter.addEventListener("input", function () {
    var q = filter.value.trim();
    Array.prototype.forEach.call(list.children, function (li) {
      var b = li.firstChild;
      li.hidden = !!q && li.textContent.indexOf(q) < 0 && b.dataset.code.indexOf(q) < 0 &&
        String(props[b.dataset.code].village || "").indexOf(q) < 0;
    });
  });

  /* -- find by address or location ---------------------------------------------------- */

  function parsedText(p) {
    var parts = [];
    if (p.town) { parts.push(t("public.parsed.town", { v: p.town })); }
    if (p.village) { parts.push(t("public.parsed.village", { v: p.village })); }
    if (p.group !== null && p.group !== undefined) { parts.push(t("public.parsed.group", { v: p.group })); }
    if (p.house_number) { parts.push(t("public.parsed.house", { v: p.house_number })); }
    return parts.length ? t("public.parsed", { parts: parts.join(gg.lang === "zh" ? "，" : ", ") }) : "";
  }

  function showFound(data) {
    var html = "";
    if (data.parsed) { html += '<p class="gg-muted">' + GG.esc(parsedText(data.parsed)) + "</p>"; }
    var found = data.grids || [];
    found.forEach(function (g) { props[g.code] = props[g.code] || g; });
    if (!found.length) {
      var key = data.match === "none" && data.parsed ? "public.none." + (data.reason || "no_grid") : "public.none.point";
      html += '<p class="gg-empty" role="alert">' + GG.esc(t(key, { village: data.parsed && data.parsed.village })) + "</p>";
      results.innerHTML = html;
      results.dataset.found = "";
      return;
    }
    var head = data.match === "group" && found.length > 1 ? "public.match.group_many" : "public.match." + data.match;
    html += "<p>" + GG.esc(t(head)) + "</p><ul class=\"gg-list\">" + found.map(function (g) {
      return '<li><button type="button" data-code="' + GG.esc(g.code) + '">' + GG.esc(g.name) +
        ' <span class="gg-muted">' + GG.esc(g.village || "") + "</span></button></li>";
    }).join("") + "</ul>";
    results.innerHTML = html;
    results.dataset.found = found.map(function (g) { return g.code; }).join(",");
    if (found.length === 1 || data.match !== "village") {
      if (!select(found[0].code, true)) { show(found[0]); }
    }
  }

  results.addEventListener("click", function (e) {
    var b = e.target.closest("button[data-code]");
    if (b && !select(b.dataset.code, true)) { show(props[b.dataset.code]); }
  });

  function lookup(url, pending) {
    results.innerHTML = '<p class="gg-muted">' + GG.esc(t(pending)) + "</p>";
    results.dataset.found = "";
    GG.busy(results, true);
    return GG.fetchJSON(url).then(function (res) {
      GG.status("");
      showFound(res.data);
    }).catch(function (err) {
      results.innerHTML = '<p class="gg-result err" role="alert">' + GG.esc(err.message) + "</p>";
    }).then(function () { GG.busy(results, false); results.dataset.done = String(Date.now()); });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var q = address.value.trim();
    if (!q) { address.focus(); return; }
    lookup(GG.url("/public/find", { address: q }), "public.searching");
  });

  locateBtn.addEventListener("click", function () {
    if (!navigator.geolocation) {
      results.innerHTML = '<p class="gg-result err" role="alert">' + GG.esc(t("public.locate_unsupported")) + "</p>";
      return;
    }
    results.innerHTML = '<p class="gg-muted">' + GG.esc(t("public.locating")) + "</p>";
    navigator.geolocation.getCurrentPosition(function (pos) {
      var lng = pos.coords.longitude, lat = pos.coords.latitude;
      L.circleMarker(GG.toLatLng(lng, lat), { radius: 7, color: "#fff", weight: 2, fillColor: "#1565c0", fillOpacity: 1 }).addTo(map);
      lookup(GG.url("/public/at", { lng: lng.toFixed(6), lat: lat.toFixed(6) }), "public.searching");
    }, function () {
      results.innerHTML = '<p class="gg-result err" role="alert">' + GG.esc(t("public.locate_denied")) + "</p>";
      results.dataset.done = String(Date.now());
    }, { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 });
  });

  window.ggPublic = { map: map, select: select, layers: function () { return grids; } };
})();
