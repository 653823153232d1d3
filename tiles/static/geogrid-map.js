/* geogrid-map.js — shared helpers of geogrid's map pages (Leaflet 1.9, no CDN, no build step).
 *
 * GG.config()            the page configuration embedded by the server (JSON)
 * GG.createMap(id)       a Leaflet map with the configured base map (none/xyz/tianditu/gcj02)
 * GG.geojson(data, opt)  L.geoJSON with coordinates shifted to GCJ-02 when the base map needs it
 * GG.vectorTiles(url, o) Leaflet.VectorGrid protobuf layer, shifted tile by tile for GCJ-02
 * GG.fetchJSON(url, o)   fetch + JSON with the server's error description on failure
 * GG.overlaySwitcher(map, layers)  layer control; returns replace(key, layer, label)
 * GG.wgs2gcj(lng, lat)   WGS84 → GCJ-02 (same formula as geogrid.coords.wgs84_to_gcj02)
 */
(function (global) {
  "use strict";

  var PI = Math.PI, A = 6378245.0, EE = 0.00669342162296594323;

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
    el.hidden = !msg;
  }

  function createMap(id, options) {
    var c = config();
    var map = L.map(id, L.extend({ zoomControl: true, preferCanvas: true, minZoom: 3 }, options || {}));
    map.attributionControl.setPrefix("Leaflet");
    c.basemap.layers.forEach(function (b) {
      L.tileLayer(b.url, {
        subdomains: b.subdomains || "abc", maxZoom: b.maxZoom || 18,
        attribution: b.attribution || "", crossOrigin: false
      }).addTo(map);
    });
    if (c.basemap.kind === "none") { map.getContainer().classList.add("gg-nobasemap"); }
    L.control.scale({ imperial: false }).addTo(map);
    var b = c.bounds;
    if (b) {
      map.fitBounds(L.latLngBounds(toLatLng(b[0], b[1]), toLatLng(b[2], b[3])));
    } else {
      map.setView([30, 114], 5);
    }
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
      .then(function (resp) {
        return resp.text().then(function (body) {
          var data = null;
          try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
          if (!resp.ok) {
            var why = data && (data.description || data.detail || data.message);
            if (why && typeof why !== "string") { why = JSON.stringify(why); }
            var err = new Error(why || (resp.status + " " + resp.statusText));
            err.status = resp.status;
            err.data = data;
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

  function legend(title, breaks, colours, position) {
    var ctl = L.control({ position: position || "bottomright" });
    ctl.onAdd = function () {
      var div = L.DomUtil.create("div", "gg-legend");
      var html = "<b>" + esc(title) + "</b>";
      for (var i = 0; i < breaks.length; i++) {
        var hi = i + 1 < breaks.length ? "–" + (breaks[i + 1] - 1) : "+";
        html += "<div><i></i>" + breaks[i] + hi + "</div>";
      }
      div.innerHTML = html;
      // swatch colours through the CSSOM: the Content-Security-Policy refuses style attributes
      var swatches = div.querySelectorAll("i");
      for (var j = 0; j < swatches.length; j++) { swatches[j].style.background = colours[j]; }
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

  global.GG = {
    config: config, createMap: createMap, geojson: geojson, vectorTiles: vectorTiles,
    fetchJSON: fetchJSON, withToken: withToken, wgs2gcj: wgs2gcj, toLatLng: toLatLng, status: status, prop: prop,
    binColour: binColour, legend: legend, esc: esc, fmt: fmt, url: layerUrl,
    overlaySwitcher: overlaySwitcher,
    /** Sequential reds for counts, light to dark. */
    REDS: ["#fee5d9", "#fcbba1", "#fc9272", "#fb6a4a", "#de2d26", "#a50f15"],
    /** Stroke colour of grid boundaries on every page (tests look for it). */
    GRID_STROKE: "#1f4e9c"
  };
})(window);
