/* Public grid map (网格化图谱): each grid with its responsible staff — name, photo, duty phone,
 * duties. No resident data: the server sends grid outlines, household counts and staff only.
 * Data: /public/grids.geojson (server-side join of the active plan's grids and staff). */
(function () {
  "use strict";
  var map = GG.createMap("map");
  var ROLES = { leader: "网格长", guide: "网格指导员", info_officer: "网格信息员" };
  var panel = document.getElementById("gg-grid");
  var list = document.getElementById("gg-list");
  var search = document.getElementById("gg-search");
  var byCode = {};
  var selected = null;

  function show(f) {
    var p = f.properties;
    var staff = (p.staff || []).map(function (s) {
      return '<div class="gg-staff"><img alt="' + GG.esc(s.name) + '" src="' + GG.esc(s.photo_url) + '">' +
        "<div><b>" + GG.esc(s.name) + '</b> <span class="role">' + GG.esc(ROLES[s.role] || s.role) +
        (s.post === "B" ? "（B岗）" : "") + "</span><br>" +
        (s.phone ? '电话 <a href="tel:' + GG.esc(s.phone) + '">' + GG.esc(s.phone) + "</a><br>" : "") +
        '<span class="gg-muted">' + GG.esc(s.duties || "") + "</span></div></div>";
    }).join("") || '<p class="gg-muted">暂无网格员信息 No staff on file.</p>';
    panel.innerHTML = "<h2>" + GG.esc(p.name) + "</h2>" +
      '<p class="gg-muted">编号 ' + GG.esc(p.code) + (p.village ? " · " + GG.esc(p.village) : "") +
      " · " + GG.esc(p.households) + " 户</p>" + staff;
  }

  function select(code) {
    var l = byCode[code];
    if (!l) { return; }
    if (selected) { grids.resetStyle(selected); }
    selected = l;
    l.setStyle({ weight: 4, color: "#ff7f00" });
    l.bringToFront();
    show(l.feature);
  }

  var grids = null;
  GG.fetchJSON("/public/grids.geojson").then(function (res) {
    grids = GG.geojson(res.data, {
      style: function () { return { color: GG.GRID_STROKE, weight: 1.5, fillColor: "#9ecae1", fillOpacity: 0.35 }; },
      onEachFeature: function (f, l) {
        byCode[f.properties.code] = l;
        l.bindTooltip(GG.esc(f.properties.name), { sticky: true });
        l.on("click", function () { select(f.properties.code); });
      }
    }).addTo(map);
    if (grids.getBounds().isValid()) { map.fitBounds(grids.getBounds(), { padding: [10, 10] }); }
    list.innerHTML = res.data.features.map(function (f) {
      var p = f.properties, lead = (p.staff || [])[0];
      return '<li data-code="' + GG.esc(p.code) + '">' + GG.esc(p.name) +
        (lead ? ' <span class="gg-muted">' + GG.esc(lead.name) + "</span>" : "") + "</li>";
    }).join("");
    if (!res.data.features.length) { GG.status("暂无现行网格方案 No active plan", "error"); }
    document.body.dataset.ready = "1";
  }).catch(function (err) {
    GG.status("加载失败 Load failed: " + err.message, "error");
    document.body.dataset.ready = "error";
  });

  list.addEventListener("click", function (e) {
    var li = e.target.closest("li");
    if (li) { select(li.dataset.code); map.fitBounds(byCode[li.dataset.code].getBounds(), { maxZoom: 15 }); }
  });
  search.addEventListener("input", function () {
    var q = search.value.trim();
    Array.prototype.forEach.call(list.children, function (li) {
      li.hidden = q && li.textContent.indexOf(q) < 0 && li.dataset.code.indexOf(q) < 0;
    });
  });
  window.ggPublic = { map: map, select: select };
})();
