// The operator page: sign in with an agent token, watch the handed-off sessions live, take one, reply, hand it back.
// Plain JS, no build step. Streams use single-use tickets, so every reconnect asks for a fresh one.
(function () {
  "use strict";

  var TOKEN_KEY = "assistant.operator.token";
  var STATUSES = ["waiting", "active", "message_left"];
  var RETRY_MIN_MS = 1000;
  var RETRY_MAX_MS = 15000;
  var REFRESH_DELAY_MS = 150;

  var STRINGS = {
    zh: {
      title: "客服工作台",
      skip: "跳到对话",
      logout: "退出",
      login_heading: "登录",
      token_label: "客服令牌",
      token_help: "粘贴管理员用 assistant token --sub 名字 --role agent 生成的令牌。令牌只保存在本标签页中。",
      login: "登录",
      sessions: "会话",
      group_waiting: "等待接入",
      group_active: "服务中",
      group_message_left: "留言",
      empty: "暂无",
      no_selection: "请从左侧选择一个会话",
      take: "接入",
      release: "交还智能助手",
      reply_label: "回复访客",
      send: "发送",
      reply_help: "Enter 发送，Shift+Enter 换行。接入会话后才能回复。",
      signed_in: "已登录：{name}",
      status_waiting: "等待接入",
      status_active: "{agent}服务中",
      status_message_left: "留言待处理",
      status_bot: "智能助手服务中",
      since: "{time}起",
      conn_connecting: "正在连接…",
      conn_live: "实时更新中",
      conn_retry: "连接中断，正在重连…",
      err_token_empty: "请先粘贴令牌。",
      err_not_agent: "这个令牌没有客服（agent）角色。",
      err_token_refused: "令牌无效或已过期，请重新登录。",
      signed_out: "已退出。",
      taken: "你已接入此会话，可以回复访客了。",
      already_taken: "该会话已被{agent}接入。",
      already_taken_unknown: "该会话已被其他客服接入。",
      not_handed_off: "这个会话已不在人工队列中。",
      released: "已交还智能助手。",
      not_yours: "你没有接入这个会话，无法回复。",
      send_failed: "发送失败：{message}",
      load_failed: "无法载入对话：{message}",
      failed: "操作失败：{message}",
      new_waiting: "有新的会话等待接入。",
      speaker_user: "访客",
      speaker_assistant: "助手",
      speaker_agent: "客服",
      speaker_me: "我",
      speaker_notice: "系统",
      meta: "{user} · {status}",
      session_label: "{user}，{status}：{text}",
      network: "网络错误"
    },
    en: {
      title: "Operator desk",
      skip: "Skip to the conversation",
      logout: "Sign out",
      login_heading: "Sign in",
      token_label: "Operator token",
      token_help: "Paste the token an administrator made with assistant token --sub NAME --role agent. It is kept in this tab only.",
      login: "Sign in",
      sessions: "Sessions",
      group_waiting: "Waiting",
      group_active: "Active",
      group_message_left: "Messages left",
      empty: "None",
      no_selection: "Select a session on the left",
      take: "Take",
      release: "Hand back",
      reply_label: "Reply to the visitor",
      send: "Send",
      reply_help: "Enter sends, Shift+Enter adds a line. Take the session to reply.",
      signed_in: "Signed in as {name}",
      status_waiting: "waiting",
      status_active: "with {agent}",
      status_message_left: "left a message",
      status_bot: "with the assistant",
      since: "since {time}",
      conn_connecting: "Connecting…",
      conn_live: "Live",
      conn_retry: "Connection lost, reconnecting…",
      err_token_empty: "Paste a token first.",
      err_not_agent: "This token does not have the agent role.",
      err_token_refused: "The token is invalid or has expired. Sign in again.",
      signed_out: "Signed out.",
      taken: "You have taken this session. You can reply now.",
      already_taken: "Already taken: {agent} has this session.",
      already_taken_unknown: "Already taken by another operator.",
      not_handed_off: "This session is no longer waiting for a person.",
      released: "Handed back to the assistant.",
      not_yours: "You don't have this session, so you can't reply.",
      send_failed: "Not sent: {message}",
      load_failed: "Could not load the conversation: {message}",
      failed: "That did not work: {message}",
      new_waiting: "A new session is waiting.",
      speaker_user: "Visitor",
      speaker_assistant: "Assistant",
      speaker_agent: "Agent",
      speaker_me: "You",
      speaker_notice: "Notice",
      meta: "{user} · {status}",
      session_label: "{user}, {status}: {text}",
      network: "network error"
    }
  };

  var lang = String(navigator.language || "").toLowerCase().indexOf("zh") === 0 ? "zh" : "en";

  function t(key, values) {
    var text = STRINGS[lang][key] || STRINGS.en[key] || key;
    return text.replace(/\{(\w+)\}/g, function (_, name) {
      return values && values[name] != null ? String(values[name]) : "";
    });
  }

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  // -- state ------------------------------------------------------------------------------------------------------

  var state = {
    token: null,
    me: null,
    sessions: [],
    known: null, // ids seen in the list, to announce newly waiting sessions (null before the first list)
    selected: null,
    queueStream: null,
    queueRetry: RETRY_MIN_MS,
    queueTimer: null,
    sessionStream: null,
    sessionRetry: RETRY_MIN_MS,
    sessionTimer: null,
    cursor: null, // the selected session's last event id
    items: [], // the transcript shown: {key, time, node}, in time order
    keys: {},
    refreshTimer: null,
    generation: 0, // bumped on every selection and sign-out, so late answers for an old one are dropped
    epoch: 0, // bumped on sign-out only: the list's stream outlives selections
    // The reply being sent, {session, text, id}: kept until the gateway acknowledges it, so a retry of the same
    // text carries the same client_msg_id and the visitor gets it once.
    pendingReply: null
  };

  // -- token ------------------------------------------------------------------------------------------------------

  function claimsOf(token) {
    var part = token.split(".")[1];
    if (!part) return null;
    try {
      var json = atob(part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4));
      var bytes = Uint8Array.from(json, function (c) { return c.charCodeAt(0); });
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (err) {
      return null;
    }
  }

  function signIn(token) {
    token = token.trim().replace(/^Bearer\s+/i, "");
    if (!token) return notify(t("err_token_empty"), "error", "token_empty");
    var claims = claimsOf(token);
    if (!claims) return notify(t("err_token_refused"), "error", "invalid_token");
    var roles = claims.roles || [];
    if (roles.indexOf("agent") < 0 && roles.indexOf("admin") < 0) {
      return notify(t("err_not_agent"), "error", "not_agent");
    }
    state.token = token;
    state.me = String(claims.sub || "");
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login-view").hidden = true;
    $("desk").hidden = false;
    $("logout").hidden = false;
    $("whoami").hidden = false;
    $("whoami").textContent = t("signed_in", { name: state.me });
    notify("", "info");
    connectQueue();
    $("queue-heading").focus();
  }

  function signOut(message, code) {
    state.generation += 1;
    state.epoch += 1;
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = state.me = state.selected = state.known = null;
    state.sessions = [];
    closeQueue();
    closeSessionStream();
    clearTranscript();
    renderSessions();
    renderDetail();
    $("desk").hidden = true;
    $("logout").hidden = true;
    $("whoami").hidden = true;
    $("login-view").hidden = false;
    notify(message || "", message ? "error" : "info", code);
    $("token").focus();
  }

  // -- HTTP -------------------------------------------------------------------------------------------------------

  function api(method, path, body) {
    var headers = { Authorization: "Bearer " + state.token, Accept: "application/json" };
    var init = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(
      function (res) {
        return res.json().catch(function () { return null; }).then(function (data) {
          if (res.status === 401 && state.token) signOut(t("err_token_refused"), (data && data.error) || "invalid_token");
          return { status: res.status, ok: res.ok, data: data || {} };
        });
      },
      function () {
        return { status: 0, ok: false, data: { error: "network", message: t("network") } };
      }
    );
  }

  function problem(res) {
    return (res.data && (res.data.message || res.data.error)) || "HTTP " + res.status;
  }

  // -- status line ------------------------------------------------------------------------------------------------

  function notify(text, tone, code) {
    var node = $("status");
    node.textContent = text;
    node.dataset.tone = tone || "info";
    if (code) node.dataset.code = code;
    else delete node.dataset.code;
  }

  function setConnection(which) {
    var node = $("connection");
    node.dataset.state = which;
    node.textContent = t("conn_" + which);
  }

  // -- the session list -------------------------------------------------------------------------------------------

  function connectQueue() {
    closeQueue();
    var epoch = state.epoch;
    setConnection(state.known === null ? "connecting" : "retry");
    api("POST", "/api/operator/stream-ticket").then(function (res) {
      if (epoch !== state.epoch || !state.token) return;
      if (res.status === 403) return signOut(t("err_not_agent"), "not_agent");
      if (!res.ok) return retryQueue();
      var source = new EventSource("/api/operator/events?ticket=" + encodeURIComponent(res.data.ticket));
      state.queueStream = source;
      source.addEventListener("sessions", function (event) {
        var data = JSON.parse(event.data);
        state.queueRetry = RETRY_MIN_MS;
        setConnection("live");
        updateSessions(Array.isArray(data) ? data : data.sessions || []);
      });
      source.onerror = function () {
        // A ticket is single use: the browser's own reconnect would be refused, so start over with a new one.
        source.close();
        if (state.queueStream === source) retryQueue();
      };
    });
  }

  function retryQueue() {
    state.queueStream = null;
    setConnection("retry");
    var delay = state.queueRetry * (0.75 + Math.random() * 0.5);
    state.queueRetry = Math.min(state.queueRetry * 2, RETRY_MAX_MS);
    state.queueTimer = setTimeout(connectQueue, delay);
  }

  function closeQueue() {
    clearTimeout(state.queueTimer);
    if (state.queueStream) state.queueStream.close();
    state.queueStream = null;
  }

  function updateSessions(sessions) {
    var announce = false;
    var known = {};
    sessions.forEach(function (s) {
      known[s.session_id] = true;
      if (state.known !== null && !state.known[s.session_id] && s.status === "waiting") announce = true;
    });
    var before = selectedSession();
    state.known = known;
    state.sessions = sessions;
    renderSessions();
    var after = selectedSession();
    renderDetail();
    if (announce) notify(t("new_waiting"), "info", "new_waiting");
    var waiting = sessions.filter(function (s) { return s.status === "waiting"; }).length;
    document.title = (waiting ? "(" + waiting + ") " : "") + t("title");
    // The list says the selected session changed (a new message, most likely): read its transcript again.
    if (after && (!before || before.updated_at !== after.updated_at || before.last_text !== after.last_text)) {
      scheduleRefresh();
    }
  }

  function selectedSession() {
    for (var i = 0; i < state.sessions.length; i++) {
      if (state.sessions[i].session_id === state.selected) return state.sessions[i];
    }
    return null;
  }

  function shortUser(userId) {
    // visitor:<site>:<id> and customer:<site>:<id>: the last part is the one an operator tells apart.
    var parts = String(userId || "").split(":");
    var last = parts[parts.length - 1] || "?";
    return parts.length > 2 && parts[0] === "customer" ? last : last.slice(0, 12);
  }

  function statusText(session) {
    if (!session) return t("status_bot");
    if (session.status === "active") {
      return t("status_active", { agent: session.agent === state.me ? t("speaker_me") : session.agent || "?" });
    }
    return t("status_" + session.status);
  }

  function clock(value) {
    if (value == null || value === "") return "";
    var date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (isNaN(date.getTime())) return "";
    return date.toLocaleTimeString(lang === "zh" ? "zh-CN" : "en", { hour: "2-digit", minute: "2-digit" });
  }

  // Each session keeps its button across updates (keyed by id): focus, a screen reader's place and a test's handle
  // on it survive the list changing around it.
  var rows = {};

  function sessionRow(sessionId) {
    var row = rows[sessionId];
    if (row) return row;
    var button = el("button", "session");
    button.type = "button";
    button.setAttribute("data-testid", "operator-session");
    button.dataset.sessionId = sessionId;
    var top = el("span", "session-top");
    row = { item: el("li"), button: button, who: el("span", "who"), badge: el("span"), last: el("span", "last"),
      when: el("span", "when") };
    top.appendChild(row.who);
    top.appendChild(row.badge);
    button.appendChild(top);
    button.appendChild(row.last);
    button.appendChild(row.when);
    button.addEventListener("click", function () { select(sessionId); });
    row.item.appendChild(button);
    rows[sessionId] = row;
    return row;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function renderSessions() {
    var listed = {};
    STATUSES.forEach(function (status) {
      var list = $("list-" + status);
      var group = state.sessions.filter(function (s) { return s.status === status; });
      var empty = list.querySelector(".empty");
      if (!group.length && !empty) list.appendChild(el("li", "empty", t("empty")));
      if (group.length && empty) list.removeChild(empty);
      group.forEach(function (s, index) {
        listed[s.session_id] = true;
        var row = sessionRow(s.session_id);
        var button = row.button;
        button.dataset.status = s.status;
        if (s.session_id === state.selected) button.setAttribute("aria-current", "true");
        else button.removeAttribute("aria-current");
        setText(row.who, shortUser(s.user_id));
        row.badge.className = "badge badge-" + s.status;
        setText(row.badge, statusText(s));
        setText(row.last, s.last_text || "");
        var when = clock(s.since || s.updated_at);
        setText(row.when, when ? t("since", { time: when }) : "");
        button.setAttribute("aria-label", t("session_label", {
          user: shortUser(s.user_id), status: statusText(s), text: s.last_text || ""
        }));
        // Moved only when out of place; moving a focused button keeps its focus in Chromium but not everywhere.
        if (list.children[index] !== row.item) {
          var hadFocus = document.activeElement === button;
          list.insertBefore(row.item, list.children[index] || null);
          if (hadFocus) button.focus();
        }
      });
    });
    Object.keys(rows).forEach(function (sessionId) {
      if (listed[sessionId]) return;
      var row = rows[sessionId];
      var hadFocus = document.activeElement === row.button;
      if (row.item.parentNode) row.item.parentNode.removeChild(row.item);
      delete rows[sessionId];
      if (hadFocus) $("queue-heading").focus();
    });
  }

  // Arrow keys move between sessions; Tab leaves the list.
  function onQueueKey(event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    var buttons = Array.prototype.slice.call(document.querySelectorAll("[data-testid=operator-session]"));
    var index = buttons.indexOf(document.activeElement);
    if (index < 0) return;
    event.preventDefault();
    var next = buttons[index + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) next.focus();
  }

  // -- the selected session ---------------------------------------------------------------------------------------

  function select(sessionId) {
    if (state.selected === sessionId) return;
    state.generation += 1;
    state.selected = sessionId;
    state.cursor = null;
    state.sessionRetry = RETRY_MIN_MS;
    closeSessionStream();
    clearTranscript();
    renderSessions();
    renderDetail();
    notify("", "info");
    // Stream first (it replays the session's replies from the start), then the transcript for the visitor's
    // messages; the two overlap and are merged by key.
    connectSession();
    loadTranscript();
  }

  function renderDetail() {
    var session = selectedSession();
    var heading = $("detail-heading");
    var mine = !!session && session.status === "active" && session.agent === state.me;
    if (!state.selected) {
      heading.textContent = t("no_selection");
      $("detail-meta").textContent = "";
    } else {
      heading.textContent = shortUser(session ? session.user_id : state.selectedUser);
      var meta = $("detail-meta");
      meta.textContent = statusText(session) + " · ";
      meta.appendChild(el("span", "sid", state.selected));
      $("detail").dataset.status = session ? session.status : "bot";
    }
    $("take").disabled = !session || mine;
    // Another operator's session is theirs to hand back; a waiting one or a left message may be dismissed.
    $("release").disabled = !mine && !(session && (session.status === "waiting" || session.status === "message_left"));
    $("reply-input").disabled = !mine;
    $("send").disabled = !mine;
  }

  function connectSession() {
    var sessionId = state.selected;
    var generation = state.generation;
    if (!sessionId) return;
    var path = "/api/sessions/" + encodeURIComponent(sessionId);
    api("POST", path + "/stream-ticket").then(function (res) {
      if (generation !== state.generation) return;
      if (!res.ok) {
        if (res.status !== 403 && res.status !== 404) return retrySession();
        // Handed back (by anyone): an operator no longer reads the session, and what was shown stays.
        if (!state.items.length) notify(t("load_failed", { message: problem(res) }), "error", res.data.error);
        return;
      }
      var url = path + "/events?ticket=" + encodeURIComponent(res.data.ticket);
      if (state.cursor) url += "&after=" + encodeURIComponent(state.cursor);
      var source = new EventSource(url);
      state.sessionStream = source;
      ["reply", "handoff", "held"].forEach(function (kind) {
        source.addEventListener(kind, function (event) {
          if (generation !== state.generation) return;
          state.sessionRetry = RETRY_MIN_MS;
          if (event.lastEventId) state.cursor = event.lastEventId;
          var reply = JSON.parse(event.data);
          if (!reply.kind) reply.kind = kind;
          addEntry(reply, false);
          // A held reply answers a visitor's message the stream does not carry: the transcript has its text.
          scheduleRefresh();
        });
      });
      source.onerror = function () {
        source.close();
        if (state.sessionStream === source && generation === state.generation) retrySession();
      };
    });
  }

  function retrySession() {
    state.sessionStream = null;
    var delay = state.sessionRetry * (0.75 + Math.random() * 0.5);
    state.sessionRetry = Math.min(state.sessionRetry * 2, RETRY_MAX_MS);
    state.sessionTimer = setTimeout(connectSession, delay);
  }

  function closeSessionStream() {
    clearTimeout(state.sessionTimer);
    clearTimeout(state.refreshTimer);
    if (state.sessionStream) state.sessionStream.close();
    state.sessionStream = null;
  }

  function scheduleRefresh() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(loadTranscript, REFRESH_DELAY_MS);
  }

  function loadTranscript() {
    var sessionId = state.selected;
    var generation = state.generation;
    if (!sessionId) return;
    api("GET", "/api/sessions/" + encodeURIComponent(sessionId)).then(function (res) {
      if (generation !== state.generation) return;
      if (!res.ok) {
        // Handed back: the session is no longer an operator's to read; keep what is shown, quietly.
        if (res.status === 404 && state.items.length) return;
        if (res.status !== 401) notify(t("load_failed", { message: problem(res) }), "error", res.data.error);
        return;
      }
      state.selectedUser = res.data.user_id;
      (res.data.entries || []).forEach(function (entry) { addEntry(entry, true); });
      renderDetail();
    });
  }

  function clearTranscript() {
    $("transcript").textContent = "";
    state.items = [];
    state.keys = {};
  }

  // The kind of a transcript entry or stream event: message (the visitor's), reply, handoff or held.
  function kindOf(entry, fromTranscript) {
    if (fromTranscript && entry.kind === "message") return "message";
    if (entry.kind === "handoff" || entry.kind === "held") return entry.kind;
    if (entry.reply_kind) return entry.reply_kind;
    return entry.handoff ? "handoff" : "reply";
  }

  function addEntry(entry, fromTranscript) {
    var kind = kindOf(entry, fromTranscript);
    if (kind === "held") return; // no text: it only says the message went to a person
    var text = entry.text || "";
    if (!text) return;
    var role = kind === "message" ? "user" : kind === "handoff" ? "assistant" : entry.role || "assistant";
    var key = kind + ":" + role + ":" + entry.message_id;
    if (state.keys[key]) return;
    state.keys[key] = true;
    var time = typeof entry.timestamp === "number" ? entry.timestamp : Date.parse(entry.at) / 1000 || Date.now() / 1000;
    var node = el("li", "msg msg-" + role + (kind === "handoff" ? " msg-handoff" : ""));
    // The test hook is on the text alone; the speaker and time around it are read by screen readers too.
    var body = el("span", "text", text);
    body.setAttribute("data-testid", "operator-message");
    body.dataset.role = role;
    body.dataset.kind = kind;
    body.dataset.messageId = entry.message_id || "";
    var speaker = kind === "handoff" ? t("speaker_notice")
      : role === "user" ? t("speaker_user")
      : role === "agent" ? t("speaker_agent")
      : t("speaker_assistant");
    var head = el("span", "speaker", speaker);
    var when = clock(time);
    if (when) head.appendChild(el("span", "when", " " + when));
    node.appendChild(head);
    node.appendChild(el("span", "visually-hidden", lang === "zh" ? "：" : ": "));
    node.appendChild(body);
    // In time order: an entry read late from the transcript (the visitor's message) goes before later replies.
    var index = state.items.length;
    while (index > 0 && state.items[index - 1].time > time) index -= 1;
    var list = $("transcript");
    var before = index < state.items.length ? state.items[index].node : null;
    list.insertBefore(node, before);
    state.items.splice(index, 0, { key: key, time: time, node: node });
    list.scrollTop = list.scrollHeight;
  }

  // -- actions ----------------------------------------------------------------------------------------------------

  function take() {
    var sessionId = state.selected;
    if (!sessionId) return;
    $("take").disabled = true;
    api("POST", "/api/operator/sessions/" + encodeURIComponent(sessionId) + "/take").then(function (res) {
      if (sessionId !== state.selected) return;
      if (res.ok) {
        patchSession(sessionId, { status: "active", agent: res.data.agent || state.me });
        notify(t("taken"), "ok", "taken");
        $("reply-input").focus();
      } else if (res.status === 409) {
        var agent = res.data.agent;
        notify(agent ? t("already_taken", { agent: agent }) : t("already_taken_unknown"), "error", "already_taken");
      } else if (res.status === 404) {
        notify(t("not_handed_off"), "error", res.data.error || "not_found");
      } else if (res.status !== 401) {
        notify(t("failed", { message: problem(res) }), "error", res.data.error);
      }
      renderDetail();
    });
  }

  function release() {
    var sessionId = state.selected;
    if (!sessionId) return;
    $("release").disabled = true;
    api("POST", "/api/operator/sessions/" + encodeURIComponent(sessionId) + "/release").then(function (res) {
      if (sessionId !== state.selected) return;
      if (res.ok) {
        state.sessions = state.sessions.filter(function (s) { return s.session_id !== sessionId; });
        renderSessions();
        notify(t("released"), "ok", "released");
      } else if (res.status === 409) {
        notify(t("not_yours"), "error", res.data.error);
      } else if (res.status !== 401) {
        notify(t("failed", { message: problem(res) }), "error", res.data.error);
      }
      renderDetail();
    });
  }

  function send() {
    var sessionId = state.selected;
    var input = $("reply-input");
    var text = input.value.trim();
    if (!sessionId || !text || input.disabled) return;
    $("send").disabled = true;
    var pending = state.pendingReply;
    if (!pending || pending.session !== sessionId || pending.text !== text) {
      pending = state.pendingReply = { session: sessionId, text: text, id: newClientMsgId() };
    }
    var body = { text: text, client_msg_id: pending.id };
    api("POST", "/api/operator/sessions/" + encodeURIComponent(sessionId) + "/messages", body).then(
      function (res) {
        // Acknowledged, or refused for good (4xx): the next send is a new reply. A network error or a 5xx keeps
        // it, and sending again retries it.
        if ((res.ok || (res.status >= 400 && res.status < 500)) && state.pendingReply === pending) {
          state.pendingReply = null;
        }
        if (res.ok) {
          if (input.value.trim() === text) input.value = "";
          // Shown at once; the same reply coming back on the stream has the same key and is not shown twice.
          if (sessionId === state.selected && res.data.message_id) {
            // After the last line shown, not at this browser's clock, which may not agree with the server's.
            var last = state.items.length ? state.items[state.items.length - 1].time : Date.now() / 1000;
            addEntry({ kind: "reply", role: "agent", message_id: res.data.message_id, text: text,
              timestamp: last + 0.001 }, false);
          }
        } else if (res.status === 409) {
          notify(t("not_yours"), "error", res.data.error);
        } else if (res.status !== 401) {
          notify(t("send_failed", { message: problem(res) }), "error", res.data.error);
        }
        renderDetail();
        input.focus();
      }
    );
  }

  function newClientMsgId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  function patchSession(sessionId, fields) {
    state.sessions.forEach(function (s) {
      if (s.session_id === sessionId) Object.keys(fields).forEach(function (k) { s[k] = fields[k]; });
    });
    renderSessions();
  }

  // -- start ------------------------------------------------------------------------------------------------------

  function translatePage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    document.title = t("title");
  }

  function start() {
    translatePage();
    renderSessions();
    renderDetail();
    $("login-form").addEventListener("submit", function (event) {
      event.preventDefault();
      signIn($("token").value);
    });
    $("token").addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        signIn($("token").value);
      }
    });
    $("logout").addEventListener("click", function () { signOut(t("signed_out"), "signed_out"); });
    $("take").addEventListener("click", take);
    $("release").addEventListener("click", release);
    $("reply-form").addEventListener("submit", function (event) {
      event.preventDefault();
      send();
    });
    $("reply-input").addEventListener("keydown", function (event) {
      // Not while an input method is composing: its Enter picks the characters.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        send();
      }
    });
    document.querySelector(".queue").addEventListener("keydown", onQueueKey);
    var saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else $("token").focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
