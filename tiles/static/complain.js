/* complain.js — 居民投诉: the residents' complaint form and its status page.
 *
 * Both pages talk to Open311 GeoReport v2 like any other client:
 *   GET  /open311/v2/services.json            categories for the form (grouped)
 *   POST /open311/v2/requests.json            multipart: fields + the photo as "media"
 *   GET  /open311/v2/requests/{id}.json       with the X-Open311-Token header: own request
 * Errors are GeoReport arrays [{code, description, rule}]: the page shows
 * complaint.rule.<rule> in its language, never the server's English description.
 * Photos are made smaller in the browser (long side ≤ 1600 px, JPEG) before upload.
 * The token is never put into a URL: it is handed to the status page in sessionStorage.
 */
(function () {
  "use strict";
  var cfg = GG.config();
  var $ = function (id) { return document.getElementById(id); };
  var MAX_SIDE = 1600, QUALITY = 0.85, TOKEN_KEY = "gg.complaint.token.";
  var LOCALE = gg.lang === "zh" ? "zh-CN" : "en-GB";

  function ruleText(rule) {
    var key = "complaint.rule." + rule;
    return gg.has(key) ? gg.t(key) : gg.t("complaint.rule.unknown");
  }

  function when(iso) {
    if (!iso) { return "—"; }
    var d = new Date(iso);
    return isNaN(d.getTime()) ? iso : d.toLocaleString(LOCALE, { hour12: false });
  }

  /* GCJ-02 base map: a clicked point is shifted; undo it (iterated inverse, ~cm). */
  function toWgs(latlng) {
    if (!cfg.basemap || cfg.basemap.shift !== "gcj02") { return [latlng.lng, latlng.lat]; }
    var x = latlng.lng, y = latlng.lat;
    for (var i = 0; i < 6; i++) {
      var g = GG.wgs2gcj(x, y);
      x -= g[0] - latlng.lng; y -= g[1] - latlng.lat;
    }
    return [x, y];
  }

  /* A GeoReport answer: the body, or an error carrying the rules. */
  function open311(url, options) {
    var opts = options || {};
    var headers = opts.headers || {};
    headers.Accept = "application/json";
    if (opts.method === "POST" && cfg.csrf) { headers["X-CSRF-Token"] = cfg.csrf; }
    opts.headers = headers;
    opts.credentials = "same-origin";
    return fetch(url, opts).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!resp.ok) {
          var rules = Array.isArray(data) ? data.map(function (e) { return e.rule || "unknown"; }) : ["unknown"];
          var err = new Error(rules.join(","));
          err.rules = rules;
          err.status = resp.status;
          throw err;
        }
        return data;
      });
    }, function () {
      var err = new Error("network");
      err.rules = ["unknown"];
      throw err;
    });
  }

  function showErrors(box, rules) {
    var seen = {};
    box.innerHTML = "<b>" + GG.esc(gg.t("complaint.errors_title")) + "</b><ul>" +
      rules.filter(function (r) { var s = seen[r]; seen[r] = true; return !s; })
        .map(function (r) { return "<li>" + GG.esc(ruleText(r)) + "</li>"; }).join("") + "</ul>";
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }

  /* The public grid outlines, so that a resident finds their place without a base map. */
  function outlines(map) {
    GG.fetchJSON("/public/grids.geojson").then(function (res) {
      var layer = GG.geojson(res.data, {
        interactive: false,
        style: function () { return { color: GG.GRID_STROKE, weight: 1, fillOpacity: 0.03 }; }
      }).addTo(map);
      layer.bringToBack();
    }).catch(function () { /* the map works without them */ });
  }

  // ------------------------------------------------------------------ the form

  function formPage() {
    var form = $("gg-c-form"), errors = $("gg-c-errors"), submit = $("gg-c-submit");
    var map = GG.createMap("map");
    var marker = null, point = null, photo = null;
    outlines(map);

    function setPoint(lon, lat, latlng) {
      point = [lon, lat];
      var ll = latlng || GG.toLatLng(lon, lat);
      if (marker) { marker.setLatLng(ll); } else {
        marker = L.circleMarker(ll, { radius: 9, color: "#c62828", weight: 3, fillOpacity: 0.6 }).addTo(map);
      }
      $("gg-c-where").textContent = gg.t("complaint.location_set", { lat: lat.toFixed(5), lon: lon.toFixed(5) });
    }

    map.on("click", function (e) {
      var w = toWgs(e.latlng);
      setPoint(w[0], w[1], e.latlng);
    });

    $("gg-c-locate").addEventListener("click", function () {
      if (!navigator.geolocation) { GG.status(gg.t("complaint.locate_failed"), "error"); return; }
      $("gg-c-where").textContent = gg.t("complaint.locating");
      navigator.geolocation.getCurrentPosition(function (pos) {
        var lon = pos.coords.longitude, lat = pos.coords.latitude;
        setPoint(lon, lat);
        map.setView(GG.toLatLng(lon, lat), Math.max(map.getZoom(), 16));
      }, function () {
        $("gg-c-where").textContent = gg.t("complaint.location_none");
        GG.status(gg.t("complaint.locate_failed"), "error");
      }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
    });

    /* The photo, re-encoded smaller as JPEG (EXIF and all metadata dropped with it). */
    function shrink(file) {
      return new Promise(function (resolve, reject) {
        var url = URL.createObjectURL(file);
        var img = new Image();
        img.onload = function () {
          var scale = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
          var canvas = document.createElement("canvas");
          canvas.width = Math.max(1, Math.round(img.naturalWidth * scale));
          canvas.height = Math.max(1, Math.round(img.naturalHeight * scale));
          canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
          URL.revokeObjectURL(url);
          canvas.toBlob(function (blob) { if (blob) { resolve(blob); } else { reject(new Error("encode")); } },
            "image/jpeg", QUALITY);
        };
        img.onerror = function () { URL.revokeObjectURL(url); reject(new Error("decode")); };
        img.src = url;
      });
    }

    $("gg-c-photo").addEventListener("change", function (e) {
      var file = e.target.files && e.target.files[0];
      photo = null;
      $("gg-c-preview").hidden = true;
      if (!file) { return; }
      shrink(file).then(function (blob) {
        photo = blob;
        $("gg-c-preview-img").src = URL.createObjectURL(blob);
        $("gg-c-preview").hidden = false;
      }, function () {
        e.target.value = "";
        GG.status(gg.t("complaint.photo_failed"), "error");
      });
    });
    $("gg-c-photo-remove").addEventListener("click", function () {
      photo = null;
      $("gg-c-photo").value = "";
      $("gg-c-preview").hidden = true;
    });

    /* The service's questions (GeoReport attributes), asked below the category. */
    var questions = [];
    function renderQuestions(attrs) {
      questions = attrs.filter(function (a) { return a.variable !== false; });
      var box = $("gg-c-attrs");
      box.innerHTML = questions.map(function (a) {
        var id = "gg-c-attr-" + a.code, input;
        if (a.datatype === "singlevaluelist" || a.datatype === "multivaluelist") {
          input = '<select id="' + id + '"' + (a.datatype === "multivaluelist" ? " multiple" : "") + ">" +
            (a.datatype === "singlevaluelist" ? '<option value=""></option>' : "") +
            (a.values || []).map(function (v) {
              return '<option value="' + GG.esc(v.key) + '">' + GG.esc(v.name) + "</option>";
            }).join("") + "</select>";
        } else if (a.datatype === "text") {
          input = '<textarea id="' + id + '" rows="2" maxlength="500"></textarea>';
        } else {
          var type = a.datatype === "number" ? "number" : (a.datatype === "datetime" ? "datetime-local" : "text");
          input = '<input id="' + id + '" type="' + type + '" maxlength="500">';
        }
        return '<label class="gg-c-attr">' + GG.esc(a.description) + (a.required ? " *" : "") + input + "</label>";
      }).join("");
      $("gg-c-questions").hidden = !questions.length;
    }
    function answers() {
      var out = [];
      questions.forEach(function (a) {
        var el = $("gg-c-attr-" + a.code);
        if (!el) { return; }
        var values = el.multiple ? Array.prototype.filter.call(el.options, function (o) { return o.selected; })
          .map(function (o) { return o.value; }) : [el.value.trim()];
        values.filter(Boolean).forEach(function (v) { out.push(["attribute[" + a.code + "]", v]); });
      });
      return out;
    }
    $("gg-c-category").addEventListener("change", function () {
      var code = $("gg-c-category").value;
      renderQuestions([]);
      if (!code) { return; }
      open311("/open311/v2/services/" + encodeURIComponent(code) + ".json").then(function (d) {
        if ($("gg-c-category").value === code) { renderQuestions(d.attributes || []); }
      }, function () { /* the form works without the questions */ });
    });

    function localRules() {
      var rules = [];
      if (!$("gg-c-category").value) { rules.push("service_code_missing"); }
      var d = $("gg-c-description").value.trim();
      if (!d) { rules.push("description_missing"); } else if (d.length < 4) { rules.push("description_too_short"); }
      if (!point && !$("gg-c-address").value.trim()) { rules.push("location_missing"); }
      questions.forEach(function (a) {
        var el = $("gg-c-attr-" + a.code);
        if (a.required && el && !el.value.trim()) { rules.push("attribute_missing"); }
      });
      var phone = $("gg-c-phone").value.trim();
      if (phone && !/^\+?[0-9][0-9 -]{5,18}[0-9]$/.test(phone)) { rules.push("phone_invalid"); }
      return rules;
    }

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      errors.hidden = true;
      var rules = localRules();
      if (rules.length) { showErrors(errors, rules); return; }
      var body = new FormData();
      body.append("service_code", $("gg-c-category").value);
      body.append("description", $("gg-c-description").value.trim());
      if (point) { body.append("long", point[0].toFixed(7)); body.append("lat", point[1].toFixed(7)); }
      [["address_string", "gg-c-address"], ["first_name", "gg-c-name"], ["phone", "gg-c-phone"]]
        .forEach(function (f) { var v = $(f[1]).value.trim(); if (v) { body.append(f[0], v); } });
      answers().forEach(function (kv) { body.append(kv[0], kv[1]); });
      if (photo) { body.append("media", photo, "photo.jpg"); }
      submit.disabled = true;
      submit.textContent = gg.t("complaint.submitting");
      open311("/open311/v2/requests.json", { method: "POST", body: body }).then(function (data) {
        var r = data[0];
        try { sessionStorage.setItem(TOKEN_KEY + r.service_request_id, r.token); } catch (err) { /* private mode */ }
        $("gg-c-id").textContent = r.service_request_id;
        $("gg-c-token").textContent = r.token;
        $("gg-c-expected").textContent = when(r.expected_datetime);
        $("gg-c-track").href = "/complain/status?id=" + encodeURIComponent(r.service_request_id) +
          "&lang=" + gg.lang;
        form.hidden = true;
        $("gg-c-done").hidden = false;
        document.body.dataset.submitted = r.service_request_id;
        window.scrollTo(0, 0);
      }, function (err) {
        showErrors(errors, err.rules || ["unknown"]);
      }).then(function () {
        submit.disabled = false;
        submit.textContent = gg.t("complaint.submit");
      });
    });

    $("gg-c-again").addEventListener("click", function () {
      form.reset();
      renderQuestions([]);
      photo = null; point = null;
      if (marker) { map.removeLayer(marker); marker = null; }
      $("gg-c-preview").hidden = true;
      $("gg-c-where").textContent = gg.t("complaint.location_none");
      $("gg-c-done").hidden = true;
      form.hidden = false;
      delete document.body.dataset.submitted;
    });

    open311("/open311/v2/services.json").then(function (services) {
      var select = $("gg-c-category"), groups = {}, order = [];
      services.forEach(function (s) {
        var g = s.group || s.service_name;
        if (!groups[g]) { groups[g] = []; order.push(g); }
        groups[g].push(s);
      });
      order.forEach(function (g) {
        var og = document.createElement("optgroup");
        og.label = g;
        groups[g].forEach(function (s) {
          var o = document.createElement("option");
          o.value = s.service_code;
          o.textContent = s.service_name;
          og.appendChild(o);
        });
        select.appendChild(og);
      });
      document.body.dataset.ready = "1";
    }, function (err) {
      showErrors(errors, err.rules || ["unknown"]);
      document.body.dataset.ready = "error";
    });
    window.ggComplain = { map: map, setPoint: setPoint };
  }

  // ------------------------------------------------------------------ the status page

  function statusPage() {
    var form = $("gg-s-form"), box = $("gg-s-error"), map = null, marker = null;
    var params = new URLSearchParams(window.location.search);
    if (params.get("id")) {
      $("gg-s-id").value = params.get("id");
      try { $("gg-s-token").value = sessionStorage.getItem(TOKEN_KEY + params.get("id")) || ""; } catch (e) { /* none */ }
    }

    function render(r) {
      $("gg-s-state").textContent = gg.t("complaint.state." + (r.status === "closed" ? "closed" : "open"));
      $("gg-s-state").className = "gg-c-state gg-c-state-" + r.status;
      $("gg-s-service").textContent = r.service_name || "";
      $("gg-s-description").textContent = r.description || "";
      $("gg-s-rid").textContent = r.service_request_id;
      $("gg-s-requested").textContent = when(r.requested_datetime);
      $("gg-s-updated").textContent = when(r.updated_datetime);
      $("gg-s-expected").textContent = r.status === "closed" ? "—" : when(r.expected_datetime);
      $("gg-s-agency").textContent = r.agency_responsible || "—";
      $("gg-s-notes").textContent = r.status_notes || "—";
      $("gg-s-photos").innerHTML = (r.media_urls || []).map(function (u) {
        return '<img src="' + GG.esc(u) + '" alt="' + GG.esc(gg.t("complaint.photo")) + '">';
      }).join("");
      $("gg-s-history").innerHTML = (r.history || []).map(function (h) {
        var what = h.note || (gg.has("complaint.event." + h.action) ? gg.t("complaint.event." + h.action)
          : (gg.has("cases.status." + h.status) ? gg.t("cases.status." + h.status) : ""));
        return "<li><time>" + GG.esc(when(h.at)) + "</time> " + GG.esc(what) + "</li>";
      }).join("") || "<li>—</li>";
      $("gg-s-result").hidden = false;
      if (!map) { map = GG.createMap("map"); outlines(map); }
      map.invalidateSize();
      if (r.lat !== null && r.long !== null) {
        var ll = GG.toLatLng(r.long, r.lat);
        if (marker) { marker.setLatLng(ll); } else {
          marker = L.circleMarker(ll, { radius: 8, color: "#c62828", weight: 3, fillOpacity: 0.6 }).addTo(map);
        }
        map.setView(ll, 16);
      }
      document.body.dataset.found = r.service_request_id;
      showRating(r);
    }

    /* 满意度回访: an ended request (closed, or rejected as not a case) may be rated by the
       token holder; rating again replaces it. */
    var rform = $("gg-r-form"), rbox = $("gg-r-error"), current = null;
    function showRating(r) {
      current = r;
      rform.hidden = r.status !== "closed" || ["closed", "archived", "rejected", "voided"]
        .indexOf(r.workflow_status) < 0;
      rbox.hidden = true;
      $("gg-r-done").hidden = !r.feedback;
      var fb = r.feedback || {};
      Array.prototype.forEach.call(rform.elements.rating, function (el) { el.checked = el.value === fb.rating; });
      $("gg-r-comment").value = fb.comment || "";
    }
    rform.addEventListener("submit", function (e) {
      e.preventDefault();
      rbox.hidden = true;
      var picked = rform.querySelector("input[name=rating]:checked");
      if (!picked) { rbox.textContent = gg.t("complaint.rate_pick"); rbox.hidden = false; return; }
      var body = { rating: picked.value };
      var comment = $("gg-r-comment").value.trim();
      if (comment) { body.comment = comment; }
      $("gg-r-send").disabled = true;
      open311("/open311/v2/requests/" + encodeURIComponent(current.service_request_id) + "/feedback.json", {
        method: "POST", body: JSON.stringify(body),
        headers: { "Content-Type": "application/json", "X-Open311-Token": $("gg-s-token").value.trim() }
      }).then(function (data) {
        current.feedback = data[0];
        $("gg-r-done").hidden = false;
        document.body.dataset.rated = data[0].rating;
      }, function (err) {
        rbox.textContent = ruleText((err.rules || ["unknown"])[0]);
        rbox.hidden = false;
      }).then(function () { $("gg-r-send").disabled = false; });
    });

    form.addEventListener("submit", function (e) {
      e.preventDefault();
      box.hidden = true;
      $("gg-s-result").hidden = true;
      rform.hidden = true;
      delete document.body.dataset.found;
      var id = $("gg-s-id").value.trim(), token = $("gg-s-token").value.trim();
      if (!/^[0-9]{1,19}$/.test(id) || !token) {
        box.textContent = gg.t("complaint.lookup_failed"); box.hidden = false; return;
      }
      open311("/open311/v2/requests/" + encodeURIComponent(id) + ".json",
        { headers: { "X-Open311-Token": token } }).then(function (data) {
        render(data[0]);
      }, function (err) {
        var rules = err.rules || ["unknown"];
        box.textContent = (err.status === 403 || err.status === 404) ? gg.t("complaint.lookup_failed")
          : ruleText(rules[0]);
        box.hidden = false;
        document.body.dataset.found = "none";
      });
    });
    document.body.dataset.ready = "1";
    if ($("gg-s-id").value && $("gg-s-token").value) { form.requestSubmit(); }
  }

  if (cfg.page === "complain_status") { statusPage(); } else { formPage(); }
})();
