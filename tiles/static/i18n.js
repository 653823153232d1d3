/* i18n.js — the message catalogue on a page (load it before any page script).
 *
 * The server renders the merged catalogue of the page's language into
 * <script type="application/json" id="gg-messages"> and the language into <html data-lang>.
 *
 * gg.t(key, vars)      the message, {name} placeholders filled from vars (unknown ones kept);
 *                      an unknown errors.* key falls back to errors.unknown, any other
 *                      unknown key is returned as it is (and logged as a warning)
 * gg.lang              "zh" or "en"
 * gg.setLang(lang)     remember the choice (localStorage + cookie) and reload in it
 * gg.errorText(err)    the message for a failed request: errors.<code> of an API error body
 *                      ({code, description}: the description is never shown), errors.network
 *                      when the server was not reached
 */
(function (global) {
  "use strict";
  var gg = global.gg = global.gg || {};
  var STORE = "gg.lang", LANGS = ["zh", "en"];
  var el = document.getElementById("gg-messages");
  var catalogue = {};
  try { catalogue = el ? JSON.parse(el.textContent) : {}; } catch (e) { catalogue = {}; }
  var root = document.documentElement;
  gg.lang = root.getAttribute("data-lang") || "zh";

  function fill(text, vars) {
    return String(text).replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, function (m, name) {
      return vars && vars[name] !== undefined && vars[name] !== null ? String(vars[name]) : m;
    });
  }

  gg.has = function (key) { return Object.prototype.hasOwnProperty.call(catalogue, key); };

  gg.t = function (key, vars) {
    if (gg.has(key)) { return fill(catalogue[key], vars); }
    if (String(key).indexOf("errors.") === 0 && gg.has("errors.unknown")) {
      return fill(catalogue["errors.unknown"], vars);
    }
    if (global.console) { console.warn("i18n: no message " + key); }
    return String(key);
  };

  gg.errorText = function (err) {
    var code = err && (err.code || (err.data && err.data.code));
    if (code) { return gg.t("errors." + code); }
    if (err && err.status) { return gg.t("errors.unknown"); }
    return gg.t("errors.network");
  };

  function remember(lang) {
    try { global.localStorage.setItem(STORE, lang); } catch (e) { /* storage refused */ }
    document.cookie = "gg_lang=" + lang + "; path=/; max-age=31536000; SameSite=Lax";
  }

  function urlWithLang(lang) {
    var u = new URL(global.location.href);
    u.searchParams.set("lang", lang);
    return u.toString();
  }

  gg.setLang = function (lang) {
    if (LANGS.indexOf(lang) < 0) { throw new Error("unknown language " + lang); }
    remember(lang);
    global.location.assign(urlWithLang(lang));
  };

  /* A page opened without ?lang= follows the remembered choice (embeds follow their URL). */
  var explicit = new URL(global.location.href).searchParams.get("lang");
  var persistent = root.getAttribute("data-lang-persist") !== "0";
  if (persistent) {
    if (explicit && LANGS.indexOf(explicit) >= 0) {
      remember(explicit);
    } else {
      var stored = null;
      try { stored = global.localStorage.getItem(STORE); } catch (e) { stored = null; }
      if (stored && stored !== gg.lang && LANGS.indexOf(stored) >= 0) {
        global.location.replace(urlWithLang(stored));
      }
    }
  }

  /* Any element with data-gg-lang="en" switches the page's language when activated. */
  document.addEventListener("click", function (e) {
    var target = e.target && e.target.closest ? e.target.closest("[data-gg-lang]") : null;
    if (target) { e.preventDefault(); gg.setLang(target.getAttribute("data-gg-lang")); }
  });
})(window);
