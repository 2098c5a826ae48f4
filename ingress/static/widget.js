/* The assistant's chat widget: one script tag, no framework, no build step. See docs/widget.md. */
(function () {
  "use strict";
  var me = document.currentScript || document.querySelector("script[data-site-key][src*='widget.js']");
  if (!me || window.__assistantWidget) return;
  var base = new URL(me.src, location.href).origin;
  var data = me.dataset;
  var site = data.siteKey || "";
  var lang = data.lang === "zh" || data.lang === "en" ? data.lang : /^zh/i.test(navigator.language) ? "zh" : "en";
  var color = /^#[0-9a-f]{3}([0-9a-f]{3})?$/i.test(data.color || "") ? data.color : "#2563eb";
  var T = {
    zh: { title: "在线客服", open: "打开在线客服", close: "关闭", input: "输入消息", send: "发送", you: "我",
      bot: "智能助手", agent: "人工客服", typing: "正在输入…", hello: "您好！有什么可以帮您？",
      offline: "连接中断，正在重连…", failed: "发送失败，正在重试…" },
    en: { title: "Chat with us", open: "Open chat", close: "Close", input: "Type a message", send: "Send", you: "You",
      bot: "Assistant", agent: "Agent", typing: "Typing…", hello: "Hi! How can we help?",
      offline: "Connection lost. Reconnecting…", failed: "Not sent yet. Retrying…" }
  }[lang];
  var title = data.title || T.title;
  // A signed-in customer, vouched for by the site (HMAC of the id): the same history on every device.
  var customer = data.customerId || "", signature = data.customerSignature || "";
  var key = "assistant-widget:" + site + (customer ? ":" + customer : "");
  var st = load();
  var shown = {}; // event keys already on screen: kind + message id
  var waiting = {}; // message ids sent and not answered yet
  var answered = {}; // message ids whose reply, handoff or held event came
  var es = null, opening = false, retry = 0, retryTimer = 0, sending = false, agentName = "", ready = false, renewing = null;

  function load() {
    try { return JSON.parse(localStorage.getItem(key)) || {}; } catch (e) { return {}; }
  }
  function save() {
    try { localStorage.setItem(key, JSON.stringify(st)); } catch (e) { /* private mode: this page only */ }
  }
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return "10000000-1000-4000-8000-100000000000".replace(/[018]/g, function (c) {
      return (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16);
    });
  }
  function expired(token) {
    try {
      var claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      return claims.exp * 1000 < Date.now() + 30000;
    } catch (e) { return true; }
  }

  // --- the API: a visitor token, renewed with the previous one; a 401 renews once and retries ---
  function token(force) {
    if (st.token && !force && !expired(st.token)) return Promise.resolve(st.token);
    // One renewal at a time: the stream and a send that both find the token old share it.
    return renewing || (renewing = renew().then(function (t) { renewing = null; return t; },
      function (e) { renewing = null; throw e; }));
  }
  function renew() {
    var body = { site_key: site };
    if (customer && signature) { body.customer_id = customer; body.customer_signature = signature; }
    else if (st.token) body.visitor_token = st.token;
    return call("POST", "/api/visitor-tokens", body).then(function (r) {
      if (r.status === 401 && body.visitor_token) { // too old to renew: a new visitor, with a new session
        st = { outbox: st.outbox, open: st.open }; save(); clearLog();
        return renew();
      }
      if (r.status !== 201) throw new Error("visitor token: " + r.status);
      st.token = r.body.token;
      if (!st.session && r.body.session_id) st.session = r.body.session_id; // the customer's chat elsewhere
      save();
      return st.token;
    });
  }
  function call(method, path, body, bearer) {
    var headers = { "Content-Type": "application/json" };
    if (bearer) headers.Authorization = "Bearer " + bearer;
    return fetch(base + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (b) { return { status: r.status, body: b }; });
      });
  }
  function api(method, path, body) {
    return token().then(function (t) { return call(method, path, body, t); }).then(function (r) {
      if (r.status !== 401) return r;
      return token(true).then(function (t) { return call(method, path, body, t); });
    });
  }

  // --- sending: one message at a time, each kept with its client_msg_id until the gateway acknowledged it ---
  function send(text) {
    var item = { id: uuid(), text: text };
    (st.outbox = st.outbox || []).push(item); save();
    add("user", "c:" + item.id, text);
    flush();
  }
  function flush() {
    var item = (st.outbox || [])[0];
    if (sending || !item || !ready) return;
    sending = true;
    var body = { text: item.text, client_msg_id: item.id };
    if (st.session) body.session_id = st.session;
    typing(true);
    api("POST", "/api/messages?wait=0", body).then(function (r) {
      if (gone(r)) { st.session = null; st.last = null; save(); throw 0; }
      if (r.status >= 400 && r.status < 500 && r.status !== 429) {
        st.outbox.shift(); save(); // refused for good: retrying cannot help
        note((r.body && r.body.message) || "error " + r.status);
        return;
      }
      if (r.status !== 200 && r.status !== 202) throw 0;
      st.outbox.shift();
      st.session = r.body.session_id; save();
      var bubble = log.querySelector('[data-key="c:' + item.id + '"]');
      // A resend of a message the gateway had already (its answer was lost): it is in the history once.
      if (bubble && shown["user:" + r.body.message_id]) bubble.remove();
      else if (bubble) bubble.setAttribute("data-key", "user:" + r.body.message_id);
      shown["user:" + r.body.message_id] = 1;
      // Its answer may have come on the stream before this response did.
      if (!answered[r.body.message_id]) waiting[r.body.message_id] = 1;
      stream();
    }).then(function () { sending = false; retry = 0; status(""); flush(); }, function () {
      sending = false;
      status(T.failed);
      setTimeout(flush, backoff());
    }).then(function () { typing(Object.keys(waiting).length > 0); });
  }

  // --- the event stream: a single-use ticket per connection, so every reconnect asks for a new one and
  // resumes after the last event id (the browser's own reconnect would reuse a spent ticket) ---
  function stream() {
    if (es || opening || !st.session) return;
    opening = true;
    var path = "/api/sessions/" + encodeURIComponent(st.session);
    api("POST", path + "/stream-ticket").then(function (r) {
      opening = false;
      if (gone(r)) { st.session = null; st.last = null; save(); return; }
      if (r.status !== 201) throw 0;
      var url = base + path + "/events?ticket=" + encodeURIComponent(r.body.ticket) +
        (st.last ? "&after=" + encodeURIComponent(st.last) : "");
      es = new EventSource(url);
      ["reply", "handoff", "held"].forEach(function (k) { es.addEventListener(k, onEvent); });
      es.addEventListener("partial", onPartial);
      es.onopen = function () { retry = 0; status(""); };
      es.onerror = function () {
        if (es) es.close();
        es = null;
        status(T.offline);
        clearTimeout(retryTimer);
        retryTimer = setTimeout(stream, backoff());
      };
    }).catch(function () {
      opening = false;
      clearTimeout(retryTimer);
      retryTimer = setTimeout(stream, backoff());
    });
  }
  function gone(r) { // the session is not this visitor's (any more): start a new one
    return r.status === 404 && /session/.test((r.body && r.body.message) || "");
  }
  function backoff() {
    retry = Math.min(retry + 1, 6);
    return Math.min(15000, 500 * Math.pow(2, retry - 1)) * (0.75 + Math.random() / 2);
  }
  function onEvent(e) {
    var r;
    try { r = JSON.parse(e.data); } catch (x) { return; }
    if (e.lastEventId) { st.last = e.lastEventId; save(); }
    delete waiting[r.message_id];
    answered[r.message_id] = 1;
    if (e.type !== "held") show(e.type, r);
    typing(Object.keys(waiting).length > 0);
  }
  function onPartial(e) {
    var p;
    try { p = JSON.parse(e.data); } catch (x) { return; }
    if (shown["reply:" + p.message_id]) return;
    var bubble = log.querySelector('[data-key="reply:' + p.message_id + '"]') ||
      add("assistant", "reply:" + p.message_id, "", true);
    bubble.lastChild.textContent += p.delta;
    typing(false);
  }
  function show(kind, r) {
    var k = kind + ":" + r.message_id;
    if (shown[k]) return;
    if (kind === "handoff") {
      var h = r.handoff || {};
      agentName = h.status === "active" ? h.agent || "" : "";
      add("assistant", k, r.text || "", false, "handoff");
      return;
    }
    if (!r.text) return;
    var role = r.role === "agent" ? "agent" : "assistant";
    var partial = log.querySelector('[data-key="' + k + '"][data-partial]');
    if (partial) partial.remove();
    add(role, k, r.text, false, "reply", role === "agent" ? (r.handoff && r.handoff.agent) || agentName : "");
  }

  // --- history: the transcript of the stored session, then the stream after the last event seen ---
  function history() {
    if (!st.session && customer && !st.token) { // a customer new on this device: the token names their session
      return token().then(function () { return st.session ? history() : go(); }, go);
    }
    if (!st.session) return go();
    api("GET", "/api/sessions/" + encodeURIComponent(st.session)).then(function (r) {
      if (gone(r)) { st.session = null; st.last = null; save(); return; }
      if (r.status !== 200) return;
      var pending = [].slice.call(log.querySelectorAll('[data-key^="c:"]'));
      pending.forEach(function (n) { n.remove(); });
      (r.body.entries || []).forEach(function (e) {
        if (e.kind === "message") {
          if (!shown["user:" + e.message_id]) add("user", "user:" + e.message_id, e.text || "");
          return;
        }
        if (e.kind === "handoff" || e.kind === "reply") show(e.kind, e); // "held" has no text
      });
      pending.forEach(function (n) { log.appendChild(n); });
      scroll();
    }).then(go, go);
  }
  function go() {
    ready = true;
    stream();
    flush();
  }

  // --- the page: a button, a non-modal dialog with a header, a live log, a typing state and a form ---
  var css = ".asw,.asw *{box-sizing:border-box;font:14px/1.45 system-ui,-apple-system,'Segoe UI','PingFang SC'," +
    "'Microsoft YaHei',sans-serif;letter-spacing:0}" +
    ".asw{position:fixed;right:20px;bottom:20px;z-index:2147483000;color:#1f2937}" +
    ".asw-open{width:56px;height:56px;border-radius:50%;border:0;background:var(--asw);color:var(--asw-on);" +
    "cursor:pointer;box-shadow:0 6px 20px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center}" +
    ".asw-open svg{width:28px;height:28px;fill:currentColor}" +
    ".asw-panel{position:absolute;right:0;bottom:72px;width:360px;max-width:calc(100vw - 40px);height:520px;" +
    "max-height:calc(100vh - 110px);background:#fff;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.25);" +
    "display:flex;flex-direction:column;overflow:hidden}.asw-panel[hidden]{display:none}" +
    ".asw-head{background:var(--asw);color:var(--asw-on);padding:12px 14px;display:flex;align-items:center}" +
    ".asw-head h2{flex:1;margin:0;font-size:16px;font-weight:600}" +
    ".asw-x{background:none;border:0;color:inherit;font-size:22px;line-height:1;cursor:pointer;padding:2px 6px}" +
    ".asw-log{flex:1;overflow-y:auto;padding:12px;background:#f6f7f9;display:flex;flex-direction:column;gap:8px}" +
    ".asw-m{max-width:82%;padding:8px 11px;border-radius:14px;white-space:pre-wrap;word-wrap:break-word}" +
    ".asw-m[data-role=user]{align-self:flex-end;background:var(--asw);color:var(--asw-on);border-bottom-right-radius:4px}" +
    ".asw-m[data-role=assistant]{align-self:flex-start;background:#fff;border:1px solid #e5e7eb;border-bottom-left-radius:4px}" +
    ".asw-m[data-role=agent]{align-self:flex-start;background:#fff7e6;border:1px solid #f5c26b;border-bottom-left-radius:4px}" +
    ".asw-m[data-kind=handoff]{align-self:center;max-width:92%;background:none;border:0;color:#6b7280;" +
    "font-size:12px;text-align:center;padding:2px 8px}" +
    ".asw-who{display:block;font-size:11px;font-weight:600;color:#b45309;margin-bottom:2px}" +
    ".asw-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    ".asw-typing{padding:0 14px 6px;background:#f6f7f9;color:#6b7280;font-size:12px}.asw-typing[hidden]{display:none}" +
    ".asw-status{padding:0 14px;color:#b91c1c;font-size:12px;background:#f6f7f9}" +
    ".asw-form{display:flex;gap:8px;padding:10px;border-top:1px solid #e5e7eb}" +
    ".asw-in{flex:1;border:1px solid #d1d5db;border-radius:20px;padding:8px 12px;outline:none}" +
    ".asw-in:focus{border-color:var(--asw);box-shadow:0 0 0 2px var(--asw-ring)}" +
    ".asw-send{border:0;border-radius:20px;padding:8px 14px;background:var(--asw);color:var(--asw-on);cursor:pointer}" +
    ".asw button:focus-visible,.asw-log:focus-visible{outline:3px solid var(--asw-ring);outline-offset:2px}";

  function el(tag, attrs, text) {
    var n = document.createElement(tag);
    for (var a in attrs) n.setAttribute(a, attrs[a]);
    if (text) n.textContent = text;
    return n;
  }
  function onColor(hex) { // black or white text, whichever reads better on the theme colour
    var h = hex.length === 4 ? hex.replace(/\w/g, "$&$&") : hex;
    var rgb = [1, 3, 5].map(function (i) { return parseInt(h.substr(i, 2), 16); });
    return rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114 > 160 ? "#111" : "#fff";
  }
  var root = el("div", { "class": "asw", lang: lang });
  root.style.setProperty("--asw", color);
  root.style.setProperty("--asw-on", onColor(color));
  root.style.setProperty("--asw-ring", color + "66");
  var panel = el("div", { "class": "asw-panel", role: "dialog", "aria-labelledby": "asw-title", id: "asw-panel", hidden: "" });
  var head = el("div", { "class": "asw-head" });
  head.appendChild(el("h2", { id: "asw-title" }, title));
  var closer = el("button", { type: "button", "class": "asw-x", "aria-label": T.close }, "×");
  head.appendChild(closer);
  var log = el("div", { "class": "asw-log", role: "log", "aria-live": "polite", "aria-label": title, tabindex: "0" });
  log.appendChild(el("div", { "class": "asw-m", "data-role": "assistant", "data-kind": "greeting" }, T.hello));
  var typer = el("div", { "class": "asw-typing", "data-testid": "assistant-typing", role: "status", hidden: "" }, T.typing);
  var line = el("div", { "class": "asw-status", role: "status" });
  var form = el("form", { "class": "asw-form" });
  var input = el("input", { type: "text", "class": "asw-in", "data-testid": "assistant-input", "aria-label": T.input,
    placeholder: T.input, maxlength: "4000", autocomplete: "off" });
  var sendButton = el("button", { type: "submit", "class": "asw-send", "data-testid": "assistant-send" }, T.send);
  form.appendChild(input); form.appendChild(sendButton);
  [head, log, typer, line, form].forEach(function (n) { panel.appendChild(n); });
  var opener = el("button", { type: "button", "class": "asw-open", "data-testid": "assistant-open",
    "aria-label": T.open, "aria-expanded": "false", "aria-controls": "asw-panel" });
  opener.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9' +
    'l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z"/></svg>';
  root.appendChild(panel); root.appendChild(opener);

  function add(role, k, text, partial, kind, who) {
    var n = el("div", { "class": "asw-m", "data-testid": "assistant-message", "data-role": role, "data-key": k,
      "data-kind": kind || (role === "user" ? "message" : "reply") });
    if (partial) n.setAttribute("data-partial", "");
    if (kind !== "handoff") {
      var label = role === "user" ? T.you : role === "agent" ? (who ? who + " · " : "") + T.agent : T.bot;
      n.appendChild(el("span", { "class": role === "agent" ? "asw-who" : "asw-sr" }, label + (role === "agent" ? "" : lang === "zh" ? "：" : ": ")));
    }
    n.appendChild(document.createTextNode(text));
    if (!partial && k.indexOf("c:") !== 0) shown[k] = 1;
    log.appendChild(n);
    scroll();
    return n;
  }
  function note(text) { status(text); }
  function status(text) { line.textContent = text; }
  function typing(on) { typer.hidden = !on; }
  function scroll() { log.scrollTop = log.scrollHeight; }
  function clearLog() { // the old visitor's conversation; messages still to send stay
    [].forEach.call(log.querySelectorAll("[data-key]"), function (n) {
      if (n.getAttribute("data-key").indexOf("c:") !== 0) n.remove();
    });
    shown = {}; waiting = {};
  }
  function toggle(open) {
    panel.hidden = !open;
    opener.setAttribute("aria-expanded", String(open));
    if (open) {
      input.focus(); scroll();
    } else opener.focus();
    st.open = open; save();
  }
  opener.addEventListener("click", function () { toggle(panel.hidden); });
  closer.addEventListener("click", function () { toggle(false); });
  root.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !panel.hidden) { e.preventDefault(); toggle(false); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send(text);
  });

  function start() {
    var style = el("style", {}, css);
    document.head.appendChild(style);
    document.body.appendChild(root);
    (st.outbox || []).forEach(function (m) { add("user", "c:" + m.id, m.text); });
    if (st.open) toggle(true);
    history(); // then the stream, and the messages left unsent
  }
  window.__assistantWidget = { version: 1, state: function () { return st; } };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
