/* geogrid-map.js — shared helpers of geogrid's map pages (Leaflet 1.9, no CDN, no build step).
 * Needs i18n.js (gg.t) loaded first.
 *
 * GG.config()              the page configuration embedded by the server (JSON)
 * GG.createMap(id, opt)    a Leaflet map with the configured base map (none/xyz/tianditu/gcj02/
 *                          mbtiles raster or vector); says so on the map when there is none;
 *                          opt.basemap === false leaves the base map off
 * GG.geojson(data, opt)    L.geoJSON with coordinates shifted to GCJ-02 when the base map needs it
 * GG.vectorTiles(url, o)   Leaflet.VectorGrid protobuf layer, shifted tile by tile for GCJ-02
 * GG.fetchJSON(url, o)     fetch + JSON; a failure rejects with err.code (the API's error code),
 *                          err.message in the page's language (never the server's English)
 * GG.status(msg, kind)     the status line ("error" kind for failures); GG.status("") clears it
 * GG.busy(el, on)          loading state of an element (aria-busy + spinner class)
 * GG.legends(map)          one legend control with a section per layer, shown with its layer
 * GG.overlaySwitcher(map, layers)  layer control; returns replace(key, layer, label)
 * GG.BAND / GG.bandClass(n, band)  the colours of the plan's band: within / near / outside
 * GG.RAMPS                 sequential ramps, one per kind of quantity (never the band colours)
 * GG.caseColour(status)    the colour of a case status (CSS variables --gg-status-*)
 * GG.wgs2gcj(lng, lat)     WGS84 → GCJ-02 (same formula as geogrid.coords.wgs84_to_gcj02)
 */
(function (global) {
  "use strict";

  var PI = Math.PI, A = 6378245.0, EE = 0.00669342162296594323;
  var gg = global.gg || { t: function (k) { return k; }, errorText: function () { return ""; } };

  function inChina(lng, lat) {
    return lng > 73.66 && lng < 135.05 && lat > 3.86 && lat < 53.55;
  }

  /** WGS84 → GCJ-02; points outside China are returned unchanged. */
  function wgs2gcj(lng, lat) {
    if (!inChina(lng, lat)) { return [lng, lat]; }
    var u = lng - 105.0, v = lat - 35.0;
    var common = (20.0 * Math.sin(6.0 * u * PI) + 20.0 * Math.sin(2.0 * u * PI)) * 2.0 / 3.0;
    var dlat = -100.0 + 2.0 * u + 3.0 * v + 0.2 * v * v + 0.1 * u * v + 0.2 * Math.sqrt(Math.abs(u));
    dlat += common;
    dlat += (20.0 * Math.sin(v * PI) + 40.0 * Math.sin(v / 3.0 * PI)) * 2.0 / 3.0;
    dlat += (160.0 * Math.sin(v / 12.0 * PI) + 320.0 * Math.sin(v * PI / 30.0)) * 2.0 / 3.0;
    var dlon = 300.0 + u + 2.0 * v + 0.1 * u * u + 0.1 * u * v + 0.1 * Math.sqrt(Math.abs(u));
    dlon += common;
    dlon += (20.0 * Math.sin(u * PI) + 40.0 * Math.sin(u / 3.0 * PI)) * 2.0 / 3.0;
    dlon += (150.0 * Math.sin(u / 12.0 * PI) + 300.0 * Math.sin(u / 30.0 * PI)) * 2.0 / 3.0;
    var radlat = lat / 180.0 * PI;
    var magic = 1.0 - EE * Math.sin(radlat) * Math.sin(radlat);
    var sq = Math.sqrt(magic);
    dlat = (dlat * 180.0) / ((A * (1.0 - EE)) / (magic * sq) * PI);
    dlon = (dlon * 180.0) / (A / sq * Math.cos(radlat) * PI);
    return [lng + dlon, lat + dlat];
  }

  var cfg = null;
  function config() {
    if (!cfg) {
      var el = document.getElementById("gg-config");
      cfg = el ? JSON.parse(el.textContent) : {};
      cfg.basemap = cfg.basemap || { kind: "none", layers: [], shift: null };
    }
    return cfg;
  }

  function shiftOn() { return config().basemap.shift === "gcj02"; }

  /** Data coordinates (WGS84) → a LatLng on the base map. */
  function toLatLng(lng, lat) {
    if (shiftOn()) { var g = wgs2gcj(lng, lat); return L.latLng(g[1], g[0]); }
    return L.latLng(lat, lng);
  }

  function coordsToLatLng(c) { return toLatLng(c[0], c[1]); }

  /** Leaflet.VectorGrid 1.3 calls L.DomEvent.fakeStop, which Leaflet 1.8+ no longer has. */
  if (global.L && L.DomEvent && !L.DomEvent.fakeStop) {
    L.DomEvent.fakeStop = function (e) { if (e) { e._stopped = true; } return true; };
  }

  function status(msg, kind) {
    var el = document.getElementById("gg-status");
    if (!el) { return; }
    el.textContent = msg || "";
    el.className = "gg-status" + (kind ? " gg-status-" + kind : "");
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    el.hidden = !msg;
  }

  function busy(el, on) {
    if (!el) { return; }
    el.classList.toggle("gg-busy", !!on);
    el.setAttribute("aria-busy", on ? "true" : "false");
  }

  /* -- base maps ------------------------------------------------------------------------ */

  /** Style of a vector base map by its layer names (OpenMapTiles-like or anything else). */
  function baseStyle(name) {
    var n = String(name).toLowerCase();
    if (/water|ocean|river|lake/.test(n)) { return { fill: true, fillColor: "#b3d4e6", fillOpacity: 1, stroke: true, color: "#9cc3da", weight: 0.6 }; }
    if (/park|landcover|landuse|green|wood|forest|farm/.test(n)) { return { fill: true, fillColor: "#e4eedb", fillOpacity: 1, stroke: false }; }
    if (/building/.test(n)) { return { fill: true, fillColor: "#e0d9d2", fillOpacity: 1, color: "#cfc6bd", weight: 0.5 }; }
    if (/road|transport|street|highway|rail/.test(n)) { return { color: "#ffffff", weight: 2, opacity: 1, fill: false }; }
    if (/boundary|admin/.test(n)) { return { color: "#9e9aa6", weight: 1, dashArray: "4,3", fill: false }; }
    if (/label|place|poi|name/.test(n)) { return { radius: 0, stroke: false, fill: false }; }
    return { color: "#c8c8c8", weight: 0.8, fill: true, fillColor: "#f0efe9", fillOpacity: 0.6 };
  }

  function addBasemap(map, c) {
    c.basemap.layers.forEach(function (b) {
      var opts = {
        maxZoom: b.maxZoom || 18, attribution: b.attribution || "",
        minNativeZoom: b.minNativeZoom, maxNativeZoom: b.maxNativeZoom, pane: "tilePane"
      };
      if (b.vector) {
        if (!L.VectorGrid) { return; }
        var styles = new Proxy({}, { get: function (target, name) { return baseStyle(name); } });
        L.vectorGrid.protobuf(b.url, L.extend(opts, {
          vectorTileLayerStyles: styles, interactive: false, rendererFactory: L.canvas.tile
        })).addTo(map);
      } else {
        L.tileLayer(b.url, L.extend(opts, { subdomains: b.subdomains || "abc", crossOrigin: false })).addTo(map);
      }
    });
  }

  /** A notice on the map saying plainly that no base map is configured (closable). */
  function noBasemapNotice(map) {
    var ctl = L.control({ position: "bottomleft" });
    ctl.onAdd = function () {
      var div = L.DomUtil.create("div", "gg-notice");
      div.id = "gg-nobasemap";
      div.setAttribute("role", "note");
      var text = L.DomUtil.create("span", "", div);
      text.textContent = gg.t("common.basemap.none");
      var close = L.DomUtil.create("button", "gg-notice-close", div);
      close.type = "button";
      close.textContent = "×";
      close.setAttribute("aria-label", gg.t("common.close"));
      L.DomEvent.disableClickPropagation(div);
      L.DomEvent.on(close, "click", function () { map.removeControl(ctl); });
      return div;
    };
    return ctl.addTo(map);
  }

  function createMap(id, options) {
    var c = config();
    var opts = L.extend({ zoomControl: true, preferCanvas: true, minZoom: 3 }, options || {});
    var showBase = opts.basemap !== false;
    var zoom = opts.zoomControl !== false;
    delete opts.basemap;
    opts.zoomControl = false;  // our own, with titles in the page's language
    var map = L.map(id, opts);
    if (zoom) {
      L.control.zoom({ zoomInTitle: gg.t("common.zoom_in"), zoomOutTitle: gg.t("common.zoom_out") }).addTo(map);
    }
    map.attributionControl.setPrefix(false);
    if (showBase) { addBasemap(map, c); }
    if (c.basemap.kind === "none" || !showBase) { map.getContainer().classList.add("gg-nobasemap"); }
    if (c.basemap.kind === "none" && showBase) { noBasemapNotice(map); }
    L.control.scale({ imperial: false }).addTo(map);
    var b = c.bounds;
    if (b) {
      map.fitBounds(L.latLngBounds(toLatLng(b[0], b[1]), toLatLng(b[2], b[3])));
    } else {
      map.setView([30, 114], 5);
    }
    map.getContainer().setAttribute("aria-label", document.title);
    return map;
  }

  function geojson(data, options) {
    return L.geoJSON(data, L.extend({ coordsToLatLng: coordsToLatLng }, options || {}));
  }

  /** A VectorGrid protobuf layer; with a GCJ-02 base map each tile is moved by the offset
   * at its centre (the offset changes by < 1 px across one tile at any zoom). */
  var Shifted = null;
  function vectorTiles(url, options) {
    if (!L.VectorGrid) { throw new Error("Leaflet.VectorGrid is not loaded"); }
    if (!Shifted) {
      Shifted = L.VectorGrid.Protobuf.extend({
        _getTilePos: function (coords) {
          var pos = L.GridLayer.prototype._getTilePos.call(this, coords);
          if (!shiftOn() || !this._map) { return pos; }
          var size = this.getTileSize();
          var centre = coords.scaleBy(size).add(size.divideBy(2));
          var ll = this._map.unproject(centre, coords.z);
          var moved = this._map.project(toLatLng(ll.lng, ll.lat), coords.z);
          return pos.add(moved.subtract(centre).round());
        }
      });
    }
    var opts = L.extend({
      // SVG tiles are hit-tested by the DOM, so clicks stay right on shifted tiles.
      rendererFactory: shiftOn() ? L.svg.tile : L.canvas.tile,
      maxNativeZoom: 18, maxZoom: 20
    }, options || {});
    return new Shifted(withToken(url), opts);
  }

  /** The page's credentials on a URL: an embed page passes its embed token on. */
  function withToken(url) {
    var token = config().embed_token;
    if (!token) { return url; }
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "embed_token=" + encodeURIComponent(token);
  }

  function fetchJSON(url, options) {
    var opts = L.extend({}, options || {});
    var headers = L.extend({ Accept: "application/json" }, opts.headers || {});
    var method = (opts.method || "GET").toUpperCase();
    // state-changing requests of a signed-in page echo the session's CSRF token
    if (method !== "GET" && method !== "HEAD" && config().csrf) { headers["X-CSRF-Token"] = config().csrf; }
    opts.headers = headers;
    opts.credentials = "same-origin";
    return fetch(withToken(url), opts)
      .catch(function () {
        var err = new Error(gg.t("errors.network"));
        err.status = 0;
        throw err;
      })
      .then(function (resp) {
        return resp.text().then(function (body) {
          var data = null;
          try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
          if (!resp.ok) {
            var err = new Error("");
            err.status = resp.status;
            err.data = data;
            err.code = data && data.code;
            err.description = data && data.description;  // the server's words: logs only
            err.message = gg.errorText(err);
            throw err;
          }
          return { data: data, response: resp };
        });
      });
  }

  /** The first defined value among the names, looked up in p and then in p.metrics. */
  function prop(p, names) {
    for (var i = 0; i < names.length; i++) {
      var k = names[i];
      if (p && p[k] !== undefined && p[k] !== null) { return p[k]; }
      if (p && p.metrics && p.metrics[k] !== undefined && p.metrics[k] !== null) { return p.metrics[k]; }
    }
    return undefined;
  }

  function binColour(value, breaks, colours) {
    for (var i = breaks.length - 1; i >= 0; i--) {
      if (value >= breaks[i]) { return colours[i]; }
    }
    return colours[0];
  }

  /* -- one visual language ---------------------------------------------------------------- */

  /** The plan's band colours: the same meaning on every page (see geogrid.css). */
  var BAND = { within: "#2e7d32", near: "#f9a825", outside: "#c62828", locked: "#9e9e9e" };

  /** "within", "near" (inside the band, within 10% of min or max) or "outside". */
  function bandClass(n, band) {
    if (n < band.min || n > band.max) { return "outside"; }
    if (n <= band.min * 1.1 || n >= band.max * 0.9) { return "near"; }
    return "within";
  }

  /** Legend items of the band, for GG.legends(...).set(key, {items}). */
  function bandItems(band) {
    return ["within", "near", "outside"].map(function (k) {
      return { colour: BAND[k], label: gg.t("common.band." + k) };
    }).concat(band ? [{ label: gg.t("common.band.range", { min: band.min, max: band.max }) }] : []);
  }

  /** Sequential ramps, light to dark; none uses the band's green/amber/red. */
  var RAMPS = {
    heat: ["#f2f0f7", "#dadaeb", "#bcbddc", "#9e9ac8", "#756bb1", "#54278f"],
    counts: ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#4292c6", "#08519c"]
  };

  function caseColour(status) {
    var css = global.getComputedStyle(document.documentElement);
    var v = css.getPropertyValue("--gg-status-" + status).trim();
    return v || css.getPropertyValue("--gg-status-other").trim() || "#616161";
  }

  /** Legend items of binned counts: [{colour, label}] for breaks and their colours. */
  function binItems(breaks, colours) {
    return breaks.map(function (b, i) {
      var hi = i + 1 < breaks.length ? "–" + (breaks[i + 1] - 1) : "+";
      return { colour: colours[i], label: (i + 1 < breaks.length && breaks[i + 1] - 1 === b) ? String(b) : b + hi };
    });
  }

  /** One legend control; a section per layer key, shown while its layer is on the map.
   *  set(key, {title, items: [{colour, label, shape}]}, layer)  add or replace a section
   *  remove(key)                                                   drop it
   */
  function legends(map, position) {
    var sections = {}, order = [];
    var ctl = L.control({ position: position || "bottomright" });
    var div = null;
    ctl.onAdd = function () {
      div = L.DomUtil.create("div", "gg-legend");
      div.id = "gg-legend";
      div.setAttribute("role", "region");
      div.setAttribute("aria-label", gg.t("common.legend"));
      L.DomEvent.disableClickPropagation(div);
      render();
      return div;
    };
    function render() {
      if (!div) { return; }
      div.innerHTML = "";
      var shown = 0;
      order.forEach(function (key) {
        var s = sections[key];
        if (s.layer && !map.hasLayer(s.layer)) { return; }
        shown++;
        var sec = L.DomUtil.create("section", "gg-legend-section", div);
        sec.dataset.layer = key;
        var h = L.DomUtil.create("b", "", sec);
        h.textContent = s.title;
        s.items.forEach(function (it) {
          var row = L.DomUtil.create("div", "gg-legend-row", sec);
          if (it.colour) {
            var sw = L.DomUtil.create("i", "gg-swatch" + (it.shape ? " gg-swatch-" + it.shape : ""), row);
            // swatch colours through the CSSOM: the Content-Security-Policy refuses style attributes
            sw.style.background = it.colour;
          }
          L.DomUtil.create("span", "", row).textContent = it.label;
        });
      });
      div.hidden = shown === 0;
    }
    map.on("layeradd layerremove", function (e) {
      if (order.some(function (k) { return sections[k].layer === e.layer; })) { render(); }
    });
    ctl.addTo(map);
    return {
      control: ctl,
      set: function (key, spec, layer) {
        if (!sections[key]) { order.push(key); }
        sections[key] = { title: spec.title, items: spec.items || [], layer: layer || null };
        render();
      },
      remove: function (key) {
        delete sections[key];
        order = order.filter(function (k) { return k !== key; });
        render();
      },
      render: render
    };
  }

  /** A single-layer legend of binned counts (kept for pages written against the old API). */
  function legend(title, breaks, colours, position) {
    var ctl = L.control({ position: position || "bottomright" });
    ctl.onAdd = function () {
      var div = L.DomUtil.create("div", "gg-legend");
      var b = L.DomUtil.create("b", "", div);
      b.textContent = title;
      binItems(breaks, colours).forEach(function (it) {
        var row = L.DomUtil.create("div", "gg-legend-row", div);
        L.DomUtil.create("i", "gg-swatch", row).style.background = it.colour;
        L.DomUtil.create("span", "", row).textContent = it.label;
      });
      return div;
    };
    return ctl;
  }

  function esc(s) {
    return String(s === undefined || s === null ? "" : s)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function fmt(v, digits) {
    if (v === undefined || v === null || v === "") { return "—"; }
    if (typeof v === "number") { return digits === undefined ? String(v) : v.toFixed(digits); }
    if (Array.isArray(v)) { return v.length ? v.map(function (x) { return typeof x === "object" ? (x.name || x.group_no || x.id) : x; }).join("、") : "—"; }
    return String(v);
  }

  function layerUrl(path, params) {
    var q = [];
    Object.keys(params || {}).forEach(function (k) {
      if (params[k] !== undefined && params[k] !== null && params[k] !== "") {
        q.push(encodeURIComponent(k) + "=" + encodeURIComponent(params[k]));
      }
    });
    return path + (q.length ? "?" + q.join("&") : "");
  }

  /* A layer switcher over the named overlays in `layers`; the returned
   * replace(key, layer, label) swaps one in, shown or hidden as the user left it. */
  function overlaySwitcher(map, layers) {
    var control = L.control.layers(null, null, { collapsed: false }).addTo(map);
    return function replace(key, layer, label) {
      var wasOn = !layers[key] || map.hasLayer(layers[key]);
      if (layers[key]) { control.removeLayer(layers[key]); map.removeLayer(layers[key]); }
      layers[key] = layer;
      if (wasOn) { layer.addTo(map); }
      control.addOverlay(layer, label);
    };
  }

  /** Bottom-sheet panels on phones: a button toggles the panel open or folded. */
  function sheet(panel) {
    if (!panel) { return; }
    var btn = panel.querySelector(".gg-sheet-toggle");
    if (!btn) { return; }
    btn.addEventListener("click", function () {
      var folded = panel.classList.toggle("gg-folded");
      btn.setAttribute("aria-expanded", folded ? "false" : "true");
      btn.textContent = gg.t(folded ? "common.panel.show" : "common.panel.hide");
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll(".gg-side"), sheet);
  });

  global.GG = {
    config: config, createMap: createMap, geojson: geojson, vectorTiles: vectorTiles,
    fetchJSON: fetchJSON, withToken: withToken, wgs2gcj: wgs2gcj, toLatLng: toLatLng,
    status: status, busy: busy, prop: prop, binColour: binColour, legend: legend, legends: legends,
    binItems: binItems, esc: esc, fmt: fmt, url: layerUrl, overlaySwitcher: overlaySwitcher,
    BAND: BAND, bandClass: bandClass, bandItems: bandItems, RAMPS: RAMPS, caseColour: caseColour,
    /** Sequential reds (kept for older pages; new code uses GG.RAMPS). */
    REDS: ["#fee5d9", "#fcbba1", "#fc9272", "#fb6a4a", "#de2d26", "#a50f15"],
    /** Stroke colour of grid boundaries on every page (tests look for it). */
    GRID_STROKE: "#1f4e9c",
    /** Fill of grids on the public page and embeds. */
    GRID_FILL: "#9ecae1"
  };
})(window);
