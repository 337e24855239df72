// The sandbox AuthKit widget: what the hosted iframe does, without OAuth.
//
// 1. Reads its settings from the `data` query parameter (base64 JSON that
//    @picahq/authkit builds: linkTokenEndpoint, linkHeaders, title,
//    imageUrl, companyName, selectedConnection, showNameInput, appTheme),
//    or from the same object posted by the parent after load.
// 2. POSTs to linkTokenEndpoint with linkHeaders (cross-origin: the
//    token endpoint must answer CORS for this page's origin).
// 3. Lists the integrations of the answer, with search.
// 4. On a pick, asks the sandbox (POST /widget/connections, same origin)
//    to connect it for the identity of the token answer's requestId, and
//    posts {messageType: "LINK_SUCCESS", message: record} to the parent;
//    {messageType: "LINK_ERROR", message: "text"} on failure and
//    {messageType: "EXIT_EVENT_LINK"} when closed.
"use strict";

(function () {
  // The package shows the iframe 100 ms after its load event and ignores
  // messages until then; messages wait at least this long after load.
  var POST_DELAY_MS = 400;
  // How long to wait for the parent's settings message without `data`.
  var SETTINGS_WAIT_MS = 3000;
  var TOKEN_TIMEOUT_MS = 20000;

  var settings = null;
  var rows = [];
  var requestId = null;
  var chosen = null;
  var busy = false;
  var loadedAt = null;
  var closed = false;

  function $(id) {
    return document.getElementById(id);
  }

  function show(view) {
    ["loading", "list", "confirm", "done", "error"].forEach(function (v) {
      $("view-" + v).hidden = v !== view;
    });
    document.body.setAttribute("data-view", view);
  }

  // The parent's origin when the browser tells it, else "*" (the package
  // itself does not check event.origin, pica-api.md).
  function parentOrigin() {
    var origin = null;
    try {
      if (location.ancestorOrigins && location.ancestorOrigins.length) {
        origin = location.ancestorOrigins[0];
      } else if (document.referrer) {
        origin = new URL(document.referrer).origin;
      }
    } catch (e) {
      origin = null;
    }
    // An opaque origin ("null", a file: page) cannot be targeted.
    return origin && origin !== "null" ? origin : "*";
  }

  function whenShown(fn) {
    var wait = loadedAt === null ? POST_DELAY_MS
      : Math.max(0, loadedAt + POST_DELAY_MS - Date.now());
    setTimeout(fn, wait);
  }

  function post(messageType, message) {
    var msg = { messageType: messageType };
    if (message !== undefined) {
      msg.message = message;
    }
    whenShown(function () {
      if (window.parent && window.parent !== window) {
        window.parent.postMessage(msg, parentOrigin());
      }
    });
  }

  function close() {
    if (closed) {
      return;
    }
    closed = true;
    document.body.setAttribute("data-closed", "true");
    post("EXIT_EVENT_LINK");
  }

  function fail(text, notify) {
    busy = false;
    $("error-text").textContent = text;
    show("error");
    if (notify) {
      post("LINK_ERROR", text);
    }
  }

  // Decodes the `data` parameter as @picahq/authkit encodes it:
  // btoa(JSON.stringify(settings)).
  function settingsFromQuery() {
    var data = new URLSearchParams(location.search).get("data");
    if (!data) {
      return null;
    }
    try {
      var value = JSON.parse(atob(data));
      return value && typeof value === "object" ? value : null;
    } catch (e) {
      return null;
    }
  }

  // Only images that cost no outside request: inline, or this origin's.
  function safeImage(url) {
    if (typeof url !== "string" || url === "") {
      return null;
    }
    if (/^data:image\//i.test(url)) {
      return url;
    }
    try {
      var u = new URL(url, location.href);
      return u.origin === location.origin ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function hue(text) {
    var h = 0;
    for (var i = 0; i < text.length; i++) {
      h = (h * 31 + text.charCodeAt(i)) % 360;
    }
    return h;
  }

  function avatar(row) {
    var src = safeImage(row.image);
    var el;
    if (src) {
      el = document.createElement("img");
      el.src = src;
      el.alt = "";
    } else {
      el = document.createElement("span");
      el.textContent = (row.title || "?").trim().charAt(0).toUpperCase();
      el.style.background = "hsl(" + hue(row.title || "") + " 55% 45%)";
    }
    el.className = "avatar";
    el.setAttribute("aria-hidden", "true");
    return el;
  }

  function chosenBlock(target, row) {
    target.textContent = "";
    target.appendChild(avatar(row));
    var name = document.createElement("strong");
    name.textContent = row.title;
    target.appendChild(name);
  }

  function applySettings() {
    var s = settings;
    document.body.classList.toggle("dark", s.appTheme === "dark");
    if (typeof s.title === "string" && s.title) {
      $("title").textContent = s.title;
      document.title = s.title;
    }
    if (typeof s.companyName === "string" && s.companyName) {
      $("company").textContent = "for " + s.companyName;
      $("company").hidden = false;
    }
    var logo = safeImage(s.imageUrl);
    if (logo) {
      $("logo").src = logo;
      $("logo").hidden = false;
    }
    $("name-label").hidden = !s.showNameInput;
  }

  function renderList() {
    var q = $("search").value.trim().toLowerCase();
    var list = $("list");
    var shown = 0;
    list.textContent = "";
    rows.forEach(function (row) {
      if (q && String(row.title).toLowerCase().indexOf(q) < 0) {
        return;
      }
      shown++;
      var li = document.createElement("li");
      var b = document.createElement("button");
      b.type = "button";
      b.className = "item";
      b.setAttribute("data-integration-id", String(row.id));
      b.setAttribute("data-title", row.title);
      b.appendChild(avatar(row));
      var name = document.createElement("span");
      name.className = "item-title";
      name.textContent = row.title;
      b.appendChild(name);
      b.addEventListener("click", function () {
        pick(row);
      });
      li.appendChild(b);
      list.appendChild(li);
    });
    $("count").textContent = shown === rows.length
      ? rows.length + " integrations"
      : shown + " of " + rows.length + " integrations";
  }

  function pick(row) {
    if (busy) {
      return;
    }
    chosen = row;
    if (settings.showNameInput) {
      chosenBlock($("confirm-chosen"), row);
      $("name").value = "";
      show("confirm");
      $("name").focus();
      return;
    }
    connect();
  }

  function connect() {
    if (busy || !chosen) {
      return;
    }
    busy = true;
    var row = chosen;
    var body = { requestId: requestId, integrationId: row.id };
    if (settings.showNameInput && $("name").value.trim()) {
      body.name = $("name").value.trim();
    }
    $("loading-text").textContent = "Connecting " + row.title + "\u2026";
    show("loading");
    fetch("/widget/connections", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().catch(function () {
        return null;
      }).then(function (json) {
        if (res.status !== 201 || !json || typeof json.key !== "string") {
          var why = json && json.error ? json.error : "status " + res.status;
          throw new Error("Could not connect " + row.title + ": " + why);
        }
        return json;
      });
    }).then(function (record) {
      busy = false;
      chosenBlock($("done-chosen"), row);
      $("done-text").textContent = row.title + " is connected.";
      document.body.setAttribute("data-connection-key", record.key);
      show("done");
      post("LINK_SUCCESS", record);
      $("done").focus();
    }).catch(function (e) {
      fail(e.message || String(e), true);
    });
  }

  function tokenError(res, json) {
    var msg = json && json.error
      ? (json.error.message || json.error.code || json.error)
      : (json && json.message) || "";
    return "The token endpoint answered " + res.status
      + (msg ? ": " + msg : "");
  }

  function loadToken() {
    var url = settings.linkTokenEndpoint;
    if (typeof url !== "string" || !url) {
      fail("No token endpoint was given (token.url).", true);
      return;
    }
    var headers = {};
    var given = settings.linkHeaders;
    if (given && typeof given === "object") {
      Object.keys(given).forEach(function (k) {
        if (given[k] !== undefined && given[k] !== null) {
          headers[k] = String(given[k]);
        }
      });
    }
    $("loading-text").textContent = "Loading integrations\u2026";
    show("loading");
    var ctrl = typeof AbortController === "function"
      ? new AbortController() : null;
    var timer = setTimeout(function () {
      if (ctrl) {
        ctrl.abort();
      }
    }, TOKEN_TIMEOUT_MS);
    fetch(url, {
      method: "POST",
      mode: "cors",
      headers: headers,
      signal: ctrl ? ctrl.signal : undefined,
    }).catch(function (e) {
      throw new Error("The token endpoint " + url + " could not be "
        + "reached (is it up, and does it allow this origin, "
        + location.origin + ", by CORS?)");
    }).then(function (res) {
      return res.json().catch(function () {
        return null;
      }).then(function (json) {
        if (!res.ok) {
          throw new Error(tokenError(res, json));
        }
        if (!json || !Array.isArray(json.rows)) {
          throw new Error("The token endpoint's answer has no rows.");
        }
        return json;
      });
    }).then(function (answer) {
      clearTimeout(timer);
      requestId = answer.requestId;
      rows = answer.rows.filter(function (r) {
        return r && r.active !== false && typeof r.title === "string";
      });
      $("foot").hidden = answer.isWhiteLabel === true;
      document.body.setAttribute("data-request-id", String(requestId));
      showIntegrations();
    }).catch(function (e) {
      clearTimeout(timer);
      fail(e.message || String(e), true);
    });
  }

  function showIntegrations() {
    var sel = settings.selectedConnection;
    if (typeof sel === "string" && sel) {
      var want = sel.toLowerCase();
      var row = rows.filter(function (r) {
        return r.title.toLowerCase() === want;
      })[0];
      if (row) {
        chosen = row;
        chosenBlock($("confirm-chosen"), row);
        show("confirm");
        return;
      }
    }
    renderList();
    show("list");
    $("search").focus();
  }

  function start(s) {
    if (settings) {
      return;
    }
    settings = s;
    applySettings();
    loadToken();
  }

  function wire() {
    $("close").addEventListener("click", close);
    $("error-close").addEventListener("click", close);
    $("done").addEventListener("click", close);
    $("backdrop").addEventListener("click", close);
    $("search").addEventListener("input", renderList);
    $("connect").addEventListener("click", connect);
    $("back").addEventListener("click", function () {
      chosen = null;
      renderList();
      show("list");
    });
    $("retry").addEventListener("click", function () {
      if (rows.length) {
        renderList();
        show("list");
      } else {
        loadToken();
      }
    });
    document.addEventListener("keydown", function (e) {
      if (e.key === "Escape") {
        close();
      }
    });
    // The package also posts the settings object after load.
    window.addEventListener("message", function (e) {
      if (e.source !== window.parent || !e.data
          || typeof e.data !== "object"
          || typeof e.data.linkTokenEndpoint !== "string") {
        return;
      }
      start(e.data);
    });
  }

  wire();
  window.addEventListener("load", function () {
    loadedAt = Date.now();
  });
  var fromQuery = settingsFromQuery();
  if (fromQuery) {
    start(fromQuery);
  } else {
    setTimeout(function () {
      if (!settings) {
        settings = {};
        fail("No settings: open this page through @picahq/authkit "
          + "(baseUrl), which adds ?data=...", true);
      }
    }, SETTINGS_WAIT_MS);
  }
})();
