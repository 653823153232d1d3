/* dashboard.js — 领导驾驶舱 (/leader/dashboard): ECharts from /assets/npm/echarts, Chinese locale.
 * Data: /api/dashboard/cases (counts by week, month, category, status, children, workers; this
 * period and the previous one; overdue now), /api/assessment/indicators (engineer A's indicator
 * table: the ranking chart), /api/grid-teams (五个一 completeness), and at grid level the desk's
 * case list /api/cases?grid=. Drill-down: click a village or grid in the ranking chart; the
 * breadcrumb goes back up. Every chart: PNG (chart.getDataURL) and Excel (server-side XlsxWriter:
 * /api/dashboard/export.xlsx, A's /api/assessment/indicators/export). ?screen=1: 大屏 layout,
 * reloading its data every cfg.refresh seconds. The page loads ECharts' common build (line, bar,
 * pie: what it draws) after this file; "gg-dashboard-drawn" marks the first charts drawn. */
(function () {
  "use strict";
  var cfg = GG.config();
  var t = gg.t;
  var CASE_ROLES = ["town_leader", "village_leader", "grid_worker"];
  var LEVEL_BELOW = { town: "village", village: "grid", grid: "staff" };
  var COLOURS = { current: "#1f4e9c", previous: "#9fb3cf", closed: "#2e7d32", overdue: "#c62828", cases: "#1f4e9c" };
  var $ = function (id) { return document.getElementById(id); };
  var charts = {};
  var state = { area: cfg.area, trail: [], from: "", to: "", category: "", indicators: null, indicatorKey: "" };
  var dark = !!cfg.screen;

  function iso(d) { return d.toISOString().slice(0, 10); }
  (function defaults() {
    var to = new Date(), from = new Date(to.getTime() - 89 * 864e5);
    state.from = iso(from); state.to = iso(to);
    $("gg-dash-from").value = state.from; $("gg-dash-to").value = state.to;
    (cfg.categories || []).forEach(function (c) {
      var o = document.createElement("option"); o.value = c; o.textContent = c;
      $("gg-dash-category").appendChild(o);
    });
  })();

  function chart(key) {
    if (!charts[key]) {
      charts[key] = echarts.init($("gg-chart-" + key), dark ? "dark" : null,
        { renderer: "canvas", locale: gg.lang === "en" ? "EN" : "ZH" });
    }
    return charts[key];
  }

  /** Draw `option` in chart `key`, or its "no data" note when `empty`. */
  function draw(key, option, empty) {
    var card = $("gg-card-" + key), el = $("gg-chart-" + key);
    card.querySelector(".gg-chart-empty").hidden = !empty;
    el.hidden = !!empty;
    card.dataset.empty = empty ? "1" : "0";
    if (empty) { if (charts[key]) { charts[key].clear(); } return; }
    var base = {
      backgroundColor: "transparent", animationDuration: 300,
      tooltip: { trigger: "axis", renderMode: "richText" },
      grid: { left: 48, right: 16, top: 36, bottom: 56, containLabel: true },
      legend: { top: 0 }
    };
    var c = chart(key);
    c.setOption(Object.assign(base, option), true);
    c.resize();
  }

  function params() {
    return { area: state.area, from: state.from, to: state.to, category: state.category };
  }

  function bars(names, series, opts) {
    return Object.assign({
      xAxis: { type: "category", data: names, axisLabel: { interval: 0, rotate: names.length > 6 ? 30 : 0 } },
      yAxis: { type: "value", minInterval: 1 },
      series: series
    }, opts || {});
  }

  function render(d) {
    var cur = d.totals.current, prev = d.totals.previous;
    var empty = cur.cases === 0;
    $("gg-dash-empty").hidden = !empty;
    document.body.dataset.empty = empty ? "1" : "0";
    $("gg-kpi-cases").textContent = cur.cases;
    $("gg-kpi-prev").textContent = t("dashboard.kpi.previous", { n: prev.cases });
    $("gg-kpi-closed").textContent = cur.closed;
    $("gg-kpi-overdue").textContent = d.totals.overdue_now;
    $("gg-kpi-suspended").textContent = cur.suspended;
    var S = function (k) { return t("dashboard.series." + k); };
    draw("trend_week", bars(d.by_week.map(function (r) { return r.week; }), [
      { name: S("cases"), type: "line", smooth: true, data: d.by_week.map(function (r) { return r.cases; }), itemStyle: { color: COLOURS.cases } },
      { name: S("closed"), type: "line", smooth: true, data: d.by_week.map(function (r) { return r.closed; }), itemStyle: { color: COLOURS.closed } }
    ]), empty);
    draw("trend_month", bars(d.by_month.map(function (r) { return r.month; }), [
      { name: S("cases"), type: "bar", data: d.by_month.map(function (r) { return r.cases; }), itemStyle: { color: COLOURS.cases } },
      { name: S("closed"), type: "bar", data: d.by_month.map(function (r) { return r.closed; }), itemStyle: { color: COLOURS.closed } }
    ]), d.by_month.every(function (r) { return !r.cases; }));
    draw("category", bars(d.by_category.map(function (r) { return r.name; }), [
      { name: S("current"), type: "bar", data: d.by_category.map(function (r) { return r.cases; }), itemStyle: { color: COLOURS.current } },
      { name: S("previous"), type: "bar", data: d.by_category.map(function (r) { return r.previous; }), itemStyle: { color: COLOURS.previous } }
    ]), empty && !d.by_category.length);
    draw("status", {
      tooltip: { trigger: "item", renderMode: "richText" },
      legend: { type: "scroll", bottom: 0 },
      series: [{ name: t("dashboard.chart.status"), type: "pie", radius: ["35%", "65%"],
        data: d.by_status.map(function (r) { return { name: r.label, value: r.cases }; }) }]
    }, empty);
    var kids = d.children;
    draw("children", bars(kids.map(function (r) { return r.name; }), [
      { name: S("current"), type: "bar", data: kids.map(function (r) { return r.cases; }), itemStyle: { color: COLOURS.current } },
      { name: S("previous"), type: "bar", data: kids.map(function (r) { return r.previous; }), itemStyle: { color: COLOURS.previous } },
      { name: S("overdue"), type: "bar", data: kids.map(function (r) { return r.overdue; }), itemStyle: { color: COLOURS.overdue } }
    ]), !kids.length || kids.every(function (r) { return !r.cases && !r.previous && !r.overdue; }));
    if (kids.length) {
      chart("children").off("click");
      chart("children").on("click", function (e) { drill(kids[e.dataIndex]); });
    }
    $("gg-card-children").dataset.codes = kids.map(function (r) { return r.code; }).join(",");
    draw("workers", bars(d.workers.map(function (r) { return r.name; }), [
      { name: S("handled"), type: "bar", data: d.workers.map(function (r) { return r.handled; }), itemStyle: { color: COLOURS.current } },
      { name: S("closed"), type: "bar", data: d.workers.map(function (r) { return r.closed; }), itemStyle: { color: COLOURS.closed } }
    ]), !d.workers.length);
    crumbs(d.area);
    cases(d.area);
    $("gg-dash-updated").textContent = t("dashboard.updated", { time: new Date().toLocaleTimeString() });
  }

  function crumbs(area) {
    var el = $("gg-dash-crumbs");
    var items = state.trail.concat([{ code: area.code, name: area.name }]);
    el.innerHTML = items.map(function (a, i) {
      return i < items.length - 1 ? '<a data-i="' + i + '">' + GG.esc(a.name) + "</a> ›" : "<span>" + GG.esc(a.name) + "</span>";
    }).join(" ");
    $("gg-dash-up").hidden = !state.trail.length;
    document.body.dataset.area = area.code;
    document.body.dataset.level = area.level;
  }

  function drill(child) {
    if (!child) { return; }
    state.trail.push({ code: state.area, name: $("gg-dash-crumbs").lastChild.textContent });
    state.area = child.code;
    load();
  }

  function up(i) {
    var target = state.trail[i];
    state.trail = state.trail.slice(0, i);
    state.area = target.code;
    load();
  }

  /* At grid level: the grid's cases of the period from the desk's list API. */
  function cases(area) {
    var box = $("gg-dash-cases");
    box.hidden = area.level !== "grid";
    if (box.hidden) { return; }
    var body = $("gg-dash-cases-body");
    body.innerHTML = "";
    if (CASE_ROLES.indexOf(cfg.role) < 0) { $("gg-dash-cases-note").textContent = t("dashboard.no_case_access"); return; }
    $("gg-dash-cases-note").textContent = "";
    GG.fetchJSON(GG.url("/api/cases", { grid: area.code, from: state.from, to: state.to, limit: 100 })).then(function (res) {
      var items = res.data.items || [];
      body.innerHTML = items.map(function (c) {
        return "<tr><td>" + GG.esc(c.case_no) + "</td><td>" + GG.esc(c.category) + "</td><td>" +
          GG.esc(c.status) + "</td><td>" + GG.esc(String(c.reported_at || "").slice(0, 16).replace("T", " ")) + "</td></tr>";
      }).join("") || '<tr><td colspan="4" class="gg-muted">' + GG.esc(t("dashboard.empty")) + "</td></tr>";
      box.dataset.rows = String(items.length);
    }).catch(function (err) { $("gg-dash-cases-note").textContent = err.message; box.dataset.rows = "error"; });
  }

  function indicators(area) {
    var level = LEVEL_BELOW[area.level];
    var q = { level: level, code: area.code, from: state.from, to: state.to };
    $("gg-xlsx-indicators").href = GG.url("/api/assessment/indicators/export", Object.assign({ format: "xlsx" }, q));
    return GG.fetchJSON(GG.url("/api/assessment/indicators", q)).then(function (res) {
      var d = res.data, sel = $("gg-dash-indicator");
      if (!state.indicatorKey && d.indicators.length) {
        sel.innerHTML = d.indicators.map(function (i) { return '<option value="' + GG.esc(i.key) + '">' + GG.esc(i.name) + "</option>"; }).join("");
        state.indicatorKey = (d.indicators.filter(function (i) { return /closure/.test(i.key); })[0] || d.indicators[0]).key;
        sel.value = state.indicatorKey;
      }
      state.indicators = d;
      drawIndicator();
    }).catch(function () { draw("indicators", {}, true); });
  }

  function drawIndicator() {
    var d = state.indicators, key = state.indicatorKey;
    if (!d) { return; }
    var rows = d.rows.filter(function (r) { return r[key] !== null && r[key] !== undefined; })
      .sort(function (a, b) { return b[key] - a[key]; }).slice(0, 20);
    var def = d.indicators.filter(function (i) { return i.key === key; })[0] || { name: key };
    draw("indicators", bars(rows.map(function (r) { return r.name || r.code; }), [
      { name: def.name + (def.unit ? "（" + def.unit + "）" : ""), type: "bar", data: rows.map(function (r) { return r[key]; }), itemStyle: { color: COLOURS.current } }
    ]), !rows.length);
  }

  function teams(area) {
    return GG.fetchJSON(GG.url("/api/grid-teams", { code: area.code })).then(function (res) {
      var grids = res.data.grids, counts = [0, 0, 0, 0, 0, 0];
      grids.forEach(function (g) { counts[g.parts] += 1; });
      draw("teams", bars(counts.map(function (_, i) { return t("dashboard.parts", { n: i }); }), [
        { name: t("dashboard.series.grids"), type: "bar", data: counts.map(function (n, i) {
          return { value: n, itemStyle: { color: i === 5 ? COLOURS.closed : (i >= 3 ? "#f0b45a" : COLOURS.overdue) } };
        }) }
      ]), !grids.length);
    }).catch(function () { draw("teams", {}, true); });
  }

  function excelLinks() {
    Array.prototype.forEach.call(document.querySelectorAll("a.gg-xlsx"), function (a) {
      a.href = GG.url("/api/dashboard/export.xlsx", Object.assign({ chart: a.dataset.chart }, params()));
    });
    $("gg-dash-excel-all").href = GG.url("/api/dashboard/export.xlsx", Object.assign({ chart: "all" }, params()));
  }

  /** Resolves once every script of the page ran: the page loads ECharts after this file, so
   * that the first data request runs while the browser fetches and parses ECharts. */
  var scripts = new Promise(function (ok) {
    if (document.readyState !== "loading") { ok(); } else { document.addEventListener("DOMContentLoaded", ok); }
  });

  /** Mark "gg-dashboard-drawn" (performance.mark, once) in the frame after the first charts
   * were drawn: bench/bench_dashboard.py times the first paint from navigation to it. */
  var painted = false;
  function firstPaint() {
    if (painted) { return; }
    painted = true;
    requestAnimationFrame(function () {
      performance.mark("gg-dashboard-drawn");
      document.body.dataset.drawn = "1";
    });
  }

  function load() {
    // "0" while a reload runs (the first load leaves it unset until drawn: tests wait for it)
    if (document.body.dataset.ready !== undefined) { document.body.dataset.ready = "0"; }
    excelLinks();
    return Promise.all([GG.fetchJSON(GG.url("/api/dashboard/cases", params())), scripts]).then(function (got) {
      var res = got[0];
      render(res.data);
      firstPaint();
      return Promise.all([indicators(res.data.area), teams(res.data.area)]);
    }).then(function () {
      document.body.dataset.ready = "1";
    }).catch(function (err) {
      GG.status(t("common.load_failed", { reason: err.message }), "error");
      document.body.dataset.ready = "error";
    });
  }

  $("gg-dash-filters").addEventListener("submit", function (e) {
    e.preventDefault();
    state.from = $("gg-dash-from").value || state.from;
    state.to = $("gg-dash-to").value || state.to;
    state.category = $("gg-dash-category").value;
    load();
  });
  $("gg-dash-crumbs").addEventListener("click", function (e) {
    var a = e.target.closest("a[data-i]");
    if (a) { up(+a.dataset.i); }
  });
  $("gg-dash-up").addEventListener("click", function () { up(state.trail.length - 1); });
  $("gg-dash-indicator").addEventListener("change", function (e) { state.indicatorKey = e.target.value; drawIndicator(); });
  document.addEventListener("click", function (e) {
    var b = e.target.closest("button.gg-png");
    if (!b || !charts[b.dataset.chart]) { return; }
    var a = document.createElement("a");
    a.href = charts[b.dataset.chart].getDataURL({ type: "png", pixelRatio: 2, backgroundColor: dark ? "#061a33" : "#ffffff" });
    a.download = "dashboard-" + b.dataset.chart + "-" + state.area + ".png";
    document.body.appendChild(a); a.click(); a.remove();
  });
  window.addEventListener("resize", function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); });
  window.ggDashboard = { charts: charts, state: state, drill: function (code) { drill({ code: code }); } };
  load();
  if (cfg.screen) { setInterval(load, Math.max(10, cfg.refresh || 60) * 1000); }
})();
