/* Planner page: draft vs active plan, grid metrics on click, move a group between grids.
 * Data: GET /api/plans, GET /api/plans/{id}/grids (ETag), GET /planner/plans/{id}/groups.geojson,
 * POST /api/plans/{id}/moves with If-Match (refusals 400/409/412 are shown to the planner). */
(function () {
  "use strict";
  var cfg = GG.config();
  var map = GG.createMap("map");
  var draftSel = document.getElementById("gg-draft");
  var moveBtn = document.getElementById("gg-move-start");
  var cancelBtn = document.getElementById("gg-move-cancel");
  var moveText = document.getElementById("gg-move-text");
  var result = document.getElementById("gg-move-result");
  var state = { plans: [], draft: null, active: null, etag: null, grids: {}, picked: null, moving: false };
  var layers = { draft: null, active: null, groups: null };
  var replace = GG.overlaySwitcher(map, layers);

  /** Deviation in percent of the target: the API gives households − target (a count). */
  function devPct(p) {
    var d = GG.prop(p, ["deviation"]), hh = GG.prop(p, ["households"]);
    if (typeof d !== "number" || typeof hh !== "number" || hh - d <= 0) { return null; }
    return 100 * d / (hh - d);
  }

  function devColour(pct) {
    if (pct === null || isNaN(pct)) { return "#cccccc"; }
    if (pct < -20) { return "#4575b4"; }
    if (pct < -10) { return "#91bfdb"; }
    if (pct <= 10) { return "#f7f7f7"; }
    if (pct <= 20) { return "#fc8d59"; }
    return "#d73027";
  }

  function devText(p) {
    var d = GG.prop(p, ["deviation"]), pct = devPct(p);
    if (typeof d !== "number") { return "—"; }
    return (d > 0 ? "+" : "") + d + " 户" + (pct === null ? "" : "（" + (pct > 0 ? "+" : "") + pct.toFixed(1) + "%）");
  }

  function gridCode(p) { return GG.prop(p, ["code", "grid_code"]); }

  function showMetrics(p, group) {
    var flags = GG.prop(p, ["flags"]);
    var rows = [
      ["编号 Code", GG.esc(gridCode(p))],
      ["名称 Name", GG.esc(GG.fmt(GG.prop(p, ["name"])))],
      ["户数 Households", GG.esc(GG.fmt(GG.prop(p, ["households", "household_count"])))],
      ["人口 Population", GG.esc(GG.fmt(GG.prop(p, ["population"])))],
      ["偏差 Deviation", GG.esc(devText(p))],
      ["紧凑度 Polsby–Popper", GG.esc(GG.fmt(GG.prop(p, ["polsby_popper", "compactness"]), 3))],
      ["小组 Groups", GG.esc(GG.fmt(GG.prop(p, ["groups", "group_nos", "group_ids"])))],
      ["提示 Flags", '<span class="gg-flag">' + GG.esc(GG.fmt(flags)) + "</span>"]
    ];
    if (group) {
      rows.unshift(["所选小组 Group", GG.esc(group.name + "（" + group.households + " 户）")]);
    }
    document.getElementById("gg-metrics").innerHTML = "<h2>网格指标 Grid metrics</h2><table class=\"gg-kv\">" +
      rows.map(function (r) { return "<tr><th>" + r[0] + "</th><td>" + r[1] + "</td></tr>"; }).join("") +
      "</table>";
  }

  function say(msg, ok) {
    result.hidden = !msg;
    result.textContent = msg || "";
    result.className = "gg-result " + (ok ? "ok" : "err");
  }

  function resetMove() {
    state.moving = false;
    cancelBtn.hidden = true;
    moveBtn.disabled = !state.picked;
    moveText.textContent = state.picked
      ? "已选 " + state.picked.name + "（网格 " + state.picked.grid_code + "）。点“移动”，再点击相邻网格。"
      : "先点击一个村民小组，再点“移动”，然后点击相邻网格。";
    if (layers.groups) { layers.groups.setStyle(groupStyle); }
  }

  function groupStyle(f) {
    var picked = state.picked && f.properties.id === state.picked.id;
    return { color: picked ? "#ff7f00" : "#7a7a7a", weight: picked ? 3 : 0.6,
             dashArray: picked ? null : "2 3", fillOpacity: picked ? 0.25 : 0, fillColor: "#ff7f00" };
  }

  function onPick(groupProps, gridProps) {
    if (state.moving && state.picked) {
      var target = groupProps ? groupProps.grid_code : gridCode(gridProps);
      if (!target) { return; }
      if (target === state.picked.grid_code) { say("请点击另一个网格（相邻）。Pick a different grid.", false); return; }
      move(state.picked, target);
      return;
    }
    if (groupProps) { state.picked = groupProps; }
    var code = groupProps ? groupProps.grid_code : gridCode(gridProps);
    var gp = state.grids[code] || gridProps;
    if (gp) { showMetrics(gp, groupProps); }
    resetMove();
  }

  function move(group, target) {
    say("正在提交… Submitting", true);
    GG.fetchJSON("/api/plans/" + state.draft + "/moves", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "If-Match": state.etag || "*" },
      body: JSON.stringify({ group: group.village_code + "/" + group.group_no, to: target, author: "planner-page" })
    }).then(function () {
      say("已将 " + group.name + " 移至网格 " + target + "。Moved.", true);
      state.picked = null;
      return loadDraft();
    }).catch(function (err) {
      var why = { 400: "无效调整", 409: "冲突", 412: "方案已被他人修改，已重新加载", 428: "缺少版本号" }[err.status] || "失败";
      say("未调整（" + (err.status || "") + " " + why + "）：" + err.message, false);
      if (err.status === 412) { loadDraft(); }
    }).then(resetMove);
  }

  function gridLayer(data, draft) {
    return GG.geojson(data, {
      style: function (f) {
        return draft
          ? { color: GG.GRID_STROKE, weight: 2, fillColor: devColour(devPct(f.properties)), fillOpacity: 0.55 }
          : { color: "#e66100", weight: 2.5, dashArray: "6 4", fill: false, interactive: false };
      },
      onEachFeature: function (f, layer) {
        if (draft) { layer.on("click", function () { onPick(null, f.properties); }); }
      }
    });
  }

  function loadDraft() {
    if (!state.draft) { return Promise.resolve(); }
    var id = state.draft;
    return Promise.all([
      GG.fetchJSON("/api/plans/" + id + "/grids"),
      GG.fetchJSON("/planner/plans/" + id + "/groups.geojson")
    ]).then(function (res) {
      if (id !== state.draft) { return; }
      state.etag = res[0].response.headers.get("ETag");
      state.grids = {};
      (res[0].data.features || []).forEach(function (f) { state.grids[gridCode(f.properties)] = f.properties; });
      replace("draft", gridLayer(res[0].data, true), "草案 Draft");
      replace("groups", GG.geojson(res[1].data, {
        style: groupStyle,
        onEachFeature: function (f, layer) { layer.on("click", function (e) { L.DomEvent.stopPropagation(e); onPick(f.properties, null); }); }
      }), "村民小组 Groups");
      if (layers.active) { layers.active.bringToFront(); }
      if (layers.draft.getBounds().isValid()) { map.fitBounds(layers.draft.getBounds(), { padding: [10, 10] }); }
      GG.status("");
    });
  }

  function loadActive() {
    if (!state.active) { return Promise.resolve(); }
    return GG.fetchJSON("/api/plans/" + state.active.id + "/grids").then(function (res) {
      replace("active", gridLayer(res.data, false), "现行 Active");
      if (layers.active) { layers.active.bringToFront(); }
    });
  }

  GG.status("加载方案… Loading plans");
  GG.fetchJSON("/api/plans").then(function (res) {
    var plans = Array.isArray(res.data) ? res.data : (res.data.plans || res.data.items || []);
    state.plans = plans;
    state.active = plans.filter(function (p) { return p.status === "active"; })[0] || null;
    document.getElementById("gg-active-name").textContent = state.active ? state.active.name + " (#" + state.active.id + ")" : "无 none";
    var drafts = plans.filter(function (p) { return p.status === "draft"; });
    if (!drafts.length && state.active) { drafts = [state.active]; }
    draftSel.innerHTML = drafts.map(function (p) {
      return '<option value="' + p.id + '">' + GG.esc(p.name) + " (#" + p.id + ", " + GG.esc(p.status) + ")</option>";
    }).join("");
    var want = cfg.plan && drafts.some(function (p) { return p.id === cfg.plan; }) ? cfg.plan : (drafts.length ? drafts[drafts.length - 1].id : null);
    if (!want) { GG.status("暂无方案 No plan yet", "error"); return null; }
    draftSel.value = String(want);
    state.draft = want;
    return Promise.all([loadDraft(), loadActive()]);
  }).then(function () {
    document.body.dataset.ready = "1";
  }).catch(function (err) {
    GG.status("加载失败 Load failed: " + err.message, "error");
    document.body.dataset.ready = "error";
  });

  draftSel.addEventListener("change", function () {
    state.draft = parseInt(draftSel.value, 10);
    state.picked = null;
    resetMove();
    loadDraft().catch(function (err) { GG.status("加载失败: " + err.message, "error"); });
  });
  moveBtn.addEventListener("click", function () {
    if (!state.picked) { return; }
    state.moving = true;
    cancelBtn.hidden = false;
    moveBtn.disabled = true;
    moveText.textContent = "请点击要并入的相邻网格。Click the neighbouring grid to move " + state.picked.name + " into.";
  });
  cancelBtn.addEventListener("click", function () { state.picked = null; say(""); resetMove(); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") { state.picked = null; resetMove(); } });
  window.ggPlanner = { state: state, map: map, layers: layers, pick: onPick };
})();
