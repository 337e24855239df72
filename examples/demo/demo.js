// The authkit-broker demo: the real @picahq/authkit widget against the
// broker (token endpoint, connection store, passthrough) and the
// sandbox's widget page.
//
// Where things are, learnt at run time:
//   ?broker=http://127.0.0.1:8080   the broker (default: this page's
//                                   origin); its /demo/config.json gives
//                                   api_base and widget_url (--dev only)
//   ?api=...&widget=...             skip config.json: the API base (like
//                                   http://127.0.0.1:8080/api) and the
//                                   widget URL (the package's baseUrl)
//   ?user=bob                       the user to start as
"use strict";

(function () {
  var USERS = ["alice", "bob"];
  var FETCH_TIMEOUT_MS = 20000;

  var cfg = null;
  var user = "alice";

  function $(id) {
    return document.getElementById(id);
  }

  function log(kind, text) {
    var li = document.createElement("li");
    li.className = kind;
    li.setAttribute("data-kind", kind);
    var t = document.createElement("time");
    t.textContent = new Date().toLocaleTimeString();
    li.appendChild(t);
    li.appendChild(document.createTextNode(" " + text));
    $("log").insertBefore(li, $("log").firstChild);
  }

  function banner(text) {
    $("banner").textContent = text;
    $("banner").hidden = !text;
  }

  function status(text) {
    $("status").textContent = text || "";
  }

  function trimSlash(s) {
    return String(s).replace(/\/+$/, "");
  }

  // fetch with a deadline; answers {status, json, text} or throws.
  function call(method, url, opts) {
    opts = opts || {};
    var ctrl = new AbortController();
    var timer = setTimeout(function () {
      ctrl.abort();
    }, FETCH_TIMEOUT_MS);
    var headers = Object.assign({}, opts.headers || {});
    var init = { method: method, headers: headers, signal: ctrl.signal };
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    }
    return fetch(url, init).then(function (res) {
      return res.text().then(function (text) {
        var json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch (e) {
          json = null;
        }
        return { status: res.status, json: json, text: text };
      });
    }, function (e) {
      throw new Error(method + " " + url + " failed: "
        + (e.name === "AbortError" ? "timed out" : "network or CORS error"));
    }).finally(function () {
      clearTimeout(timer);
    });
  }

  function errorText(res) {
    var e = res.json && res.json.error;
    if (e && typeof e === "object") {
      return res.status + " " + (e.code || "") + ": " + (e.message || "");
    }
    return res.status + " " + (res.text || "").slice(0, 200);
  }

  function asUser(extra) {
    return Object.assign({ "x-user-id": user }, extra || {});
  }

  function loadConfig() {
    var q = new URLSearchParams(location.search);
    if (q.get("user") && USERS.indexOf(q.get("user")) >= 0) {
      user = q.get("user");
    }
    if (q.get("api") && q.get("widget")) {
      var api = trimSlash(q.get("api"));
      return Promise.resolve({
        api_base: api,
        token_url: api + "/authkit/token",
        widget_url: q.get("widget"),
      });
    }
    var broker = q.get("broker") ? trimSlash(q.get("broker")) : "";
    var url = broker + "/demo/config.json";
    return call("GET", url).then(function (res) {
      if (res.status !== 200 || !res.json || !res.json.api_base) {
        throw new Error("GET " + url + " answered " + errorText(res));
      }
      return res.json;
    }).catch(function (e) {
      throw new Error(e.message + ". Serve this page from the broker "
        + "(authkit-broker --dev, then open /demo/), or add "
        + "?broker=http://HOST:PORT to its address.");
    });
  }

  function useAuthKit() {
    var mod = window.exports;
    return mod && typeof mod.useAuthKit === "function"
      ? mod.useAuthKit : null;
  }

  function shortKey(key) {
    return key.length > 44 ? key.slice(0, 30) + "\u2026" + key.slice(-12)
      : key;
  }

  function when(t) {
    var d = t ? new Date(t) : null;
    return d && !isNaN(d.getTime()) ? d.toLocaleString() : String(t || "");
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) {
      td.className = cls;
    }
    tr.appendChild(td);
    return td;
  }

  function button(text, cls, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.className = cls;
    b.addEventListener("click", onClick);
    return b;
  }

  function render(list) {
    var tbody = $("rows");
    tbody.textContent = "";
    list.forEach(function (c) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-key", c.connection_key);
      tr.setAttribute("data-platform", c.platform);
      cell(tr, c.platform, "platform");
      var st = cell(tr, c.state || "unknown", "state");
      st.setAttribute("data-state", c.state || "unknown");
      var k = cell(tr, shortKey(c.connection_key), "key");
      k.title = c.connection_key;
      cell(tr, when(c.created_at), "created");
      var actions = cell(tr, "", "actions");
      actions.appendChild(button("Try it", "try", function () {
        tryIt(c);
      }));
      actions.appendChild(button("Delete", "delete danger", function () {
        remove(c);
      }));
      tbody.appendChild(tr);
    });
    $("empty").hidden = list.length > 0;
    $("connections").setAttribute("data-count", String(list.length));
    $("connections").setAttribute("data-user", user);
  }

  function refresh() {
    var who = user;
    return call("GET", cfg.api_base + "/connections", {
      headers: asUser(),
    }).then(function (res) {
      if (who !== user) {
        return;                        // switched meanwhile
      }
      if (res.status !== 200 || !res.json
          || !Array.isArray(res.json.connections)) {
        throw new Error("listing failed: " + errorText(res));
      }
      render(res.json.connections);
      document.body.setAttribute("data-listed-for", who);
    }).catch(function (e) {
      log("error", e.message);
      status(e.message);
    });
  }

  function store(record, who) {
    status("Storing the connection\u2026");
    return call("POST", cfg.api_base + "/connections", {
      headers: { "x-user-id": who },
      json: record,
    }).then(function (res) {
      if (res.status !== 201 && res.status !== 200) {
        throw new Error("the broker refused the connection: "
          + errorText(res));
      }
      var c = res.json && res.json.connection;
      log("ok", "stored " + (c ? c.platform + " (" + c.state + ")"
        : record.key) + " for " + who + " [" + res.status + "]");
      status("Connected " + (record.platform || "") + ".");
    }).catch(function (e) {
      log("error", e.message);
      status(e.message);
    }).then(refresh);
  }

  function connect() {
    var factory = useAuthKit();
    if (!factory) {
      return;
    }
    var who = user;
    var kit = factory({
      token: { url: cfg.token_url, headers: { "x-user-id": who } },
      baseUrl: cfg.widget_url,
      title: "Connect an integration",
      companyName: "authkit-broker demo",
      onSuccess: function (record) {
        log("event", "LINK_SUCCESS " + record.platform + " " + record.key);
        store(record, who);
      },
      onError: function (message) {
        log("error", "LINK_ERROR " + message);
        status(String(message));
      },
      onClose: function () {
        log("event", "EXIT_EVENT_LINK (widget closed)");
      },
    });
    status("");
    log("info", "opening the widget as " + who);
    kit.open();
  }

  function remove(c) {
    var who = user;
    return call("DELETE", cfg.api_base + "/connections/"
      + encodeURIComponent(c.connection_key), {
      headers: { "x-user-id": who },
    }).then(function (res) {
      if (res.status !== 200) {
        throw new Error("delete failed: " + errorText(res));
      }
      log("ok", "deleted " + c.platform + " of " + who);
    }).catch(function (e) {
      log("error", e.message);
    }).then(refresh);
  }

  function sync() {
    return call("POST", cfg.api_base + "/connections/sync", {
      headers: asUser(),
    }).then(function (res) {
      if (res.status !== 200) {
        throw new Error("sync failed: " + errorText(res));
      }
      log("ok", "synced with Pica");
    }).catch(function (e) {
      log("error", e.message);
    }).then(refresh);
  }

  function tryIt(c) {
    var path = $("pt-path").value.trim() || "/";
    if (path.charAt(0) !== "/") {
      path = "/" + path;
    }
    var out = $("pt-result");
    out.hidden = false;
    out.removeAttribute("data-status");
    out.textContent = "GET /passthrough" + path + " \u2026";
    return call("GET", cfg.api_base + "/passthrough" + path, {
      headers: asUser({ "x-connection-key": c.connection_key }),
    }).then(function (res) {
      out.setAttribute("data-status", String(res.status));
      var body = res.json ? JSON.stringify(res.json, null, 2) : res.text;
      var e = res.json && res.json.error;
      if (res.status === 404 && e && e.code === "not_found"
          && /route/.test(e.message || "")) {
        out.setAttribute("data-unavailable", "true");
        out.textContent = "This broker has no passthrough route yet "
          + "(404 not_found). " + body;
        log("info", "passthrough not available in this broker");
        return;
      }
      out.textContent = res.status + "\n" + body;
      log(res.status < 400 ? "ok" : "error", "passthrough " + path
        + " via " + c.platform + ": " + res.status);
    }).catch(function (e) {
      out.setAttribute("data-status", "0");
      out.textContent = e.message;
      log("error", e.message);
    });
  }

  function switchUser(next) {
    user = next;
    $("who").textContent = user;
    $("user").value = user;
    var q = new URLSearchParams(location.search);
    q.set("user", user);
    history.replaceState(null, "", "?" + q.toString());
    $("rows").textContent = "";
    $("pt-result").hidden = true;
    status("");
    log("info", "signed in as " + user);
    return refresh();
  }

  function start() {
    $("pt-path").addEventListener("input", function () {
      $("pt-shown").textContent = $("pt-path").value;
    });
    loadConfig().then(function (c) {
      cfg = c;
      $("foot").textContent = "API " + cfg.api_base + " \u00b7 widget "
        + cfg.widget_url;
      if (!useAuthKit()) {
        banner("@picahq/authkit is not installed: run `npm ci` in "
          + "examples/demo, then reload.");
      } else {
        $("connect").disabled = false;
      }
      $("refresh").disabled = false;
      $("sync").disabled = false;
      $("connect").addEventListener("click", connect);
      $("refresh").addEventListener("click", refresh);
      $("sync").addEventListener("click", sync);
      $("user").addEventListener("change", function () {
        switchUser($("user").value);
      });
      document.body.setAttribute("data-ready", "true");
      return switchUser(user);
    }).catch(function (e) {
      banner(e.message);
      document.body.setAttribute("data-ready", "error");
    });
  }

  start();
})();
