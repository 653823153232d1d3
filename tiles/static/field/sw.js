/* sw.js — the field app's service worker (scope /field/), served at /field/sw.js.
 *
 * The server writes in the shell list (the page, the manifest, our scripts and styles and
 * the npm files, each URL carrying its content hash) and a version; a changed file makes a
 * new worker, which caches the new shell and drops the old one.
 *
 * Workbox comes from our own server (/assets/npm/workbox-*), never a CDN:
 *   - the shell: cached at install (through the HTTP cache, so files the page has just
 *     loaded are not fetched twice), served cache first;
 *   - pages under /field/: network first (a few seconds), the cached shell when offline;
 *   - the worker's bundle (/api/field/bundle): network first, the last copy when offline;
 *   - base-map tiles (/basemap/...): cache first, at most a few thousand kept;
 *   - everything else (the sync, uploads): network only.
 */
/* global workbox */
"use strict";

var SHELL = /*SHELL*/[];
var VERSION = /*VERSION*/'';
var SHELL_CACHE = "field-shell-" + VERSION;
var DATA_CACHE = "field-data";
var TILE_CACHE = "field-basemap";

importScripts("/assets/npm/workbox-sw/build/workbox-sw.js");
workbox.setConfig({
  debug: false,
  modulePathCb: function (name, debug) {
    return "/assets/npm/" + name + "/build/" + name + (debug ? ".dev.js" : ".prod.js");
  }
});
workbox.core.setCacheNameDetails({ prefix: "geogrid-field" });

var routing = workbox.routing;
var strategies = workbox.strategies;
var expiration = workbox.expiration;

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(SHELL_CACHE).then(function (cache) {
      return cache.addAll(SHELL.map(function (u) {
        return new Request(u, { credentials: "same-origin" });
      }));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (keys) {
      return Promise.all(keys.filter(function (k) {
        return k.indexOf("field-shell-") === 0 && k !== SHELL_CACHE;
      }).map(function (k) { return caches.delete(k); }));
    }).then(function () { return self.clients.claim(); })
  );
});

function sameOrigin(url) { return url.origin === self.location.origin; }

/* The app's pages: the network when it answers within 4 s, else the cached shell. */
routing.registerRoute(
  function (o) {
    return o.request.mode === "navigate" && sameOrigin(o.url) && o.url.pathname.indexOf("/field") === 0;
  },
  new strategies.NetworkFirst({
    cacheName: SHELL_CACHE,
    networkTimeoutSeconds: 4,
    matchOptions: { ignoreSearch: true },
    plugins: [{
      /* keep the page under /field/ whatever its query (?lang=...) */
      cacheKeyWillBeUsed: function (o) { return new URL("/field/", o.request.url).href; }
    }]
  })
);

/* The shell's files (versioned URLs): from the cache. */
routing.registerRoute(
  function (o) { return sameOrigin(o.url) && SHELL.indexOf(o.url.pathname + o.url.search) >= 0; },
  new strategies.CacheFirst({ cacheName: SHELL_CACHE })
);

/* The worker's own bundle: fresh when the network answers, else the last copy. */
routing.registerRoute(
  function (o) { return sameOrigin(o.url) && o.url.pathname === "/api/field/bundle"; },
  new strategies.NetworkFirst({
    cacheName: DATA_CACHE,
    networkTimeoutSeconds: 8,
    plugins: [{
      /* the app says "offline copy" when the answer comes from here */
      cachedResponseWillBeUsed: function (o) {
        if (!o.cachedResponse) { return o.cachedResponse; }
        var headers = new Headers(o.cachedResponse.headers);
        headers.set("X-Field-Cache", "1");
        return o.cachedResponse.blob().then(function (body) {
          return new Response(body, { status: o.cachedResponse.status, headers: headers });
        });
      }
    }]
  })
);

/* The base-map package (local tiles only: others are not allowed by the page's policy). */
routing.registerRoute(
  function (o) { return sameOrigin(o.url) && o.url.pathname.indexOf("/basemap/") === 0; },
  new strategies.CacheFirst({
    cacheName: TILE_CACHE,
    plugins: [new expiration.ExpirationPlugin({ maxEntries: 3000 })]
  })
);

/* The app asks which shell version is running (shown in its footer). */
self.addEventListener("message", function (event) {
  if (event.data && event.data.type === "version" && event.ports && event.ports[0]) {
    event.ports[0].postMessage({ version: VERSION });
  }
});
