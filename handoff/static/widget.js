/*
 * StarCard chat widget: one <script> tag embeds it.
 *
 *   <script src="https://support.example.com/widget.js"
 *           data-server="https://bot.example.com"   (Rasa, socket.io channel)
 *           data-lang="auto" data-open="false"></script>
 *
 * The conversation id and the secret the server issued with it live in
 * localStorage, so a reload continues the same conversation (rejoining needs
 * the secret) and its history is fetched from the web service with the
 * secret. Every message is inserted with textContent, never as HTML.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script.src, location.href);
  var webOrigin = base.origin;
  var server = script.getAttribute("data-server") || (base.protocol + "//" + base.hostname + ":5005");
  var STORE = "starcard-chat:" + server;
  var TEXT = {
    zh: {
      title: "星卡数码客服", subtitle: "智能客服小卡 · 随时转人工", placeholder: "请输入您的问题…",
      send: "发送", open: "联系客服", close: "关闭", typing: "小卡正在输入…",
      offline: "连接中断，正在重新连接…", error: "消息发送失败，请稍后重试。", person: "转人工",
      agent: "人工客服", withAgent: "人工客服 {name} 正在为您服务"
    },
    en: {
      title: "StarCard Support", subtitle: "Xiaoka, AI assistant · a person is one tap away", placeholder: "Type your question…",
      send: "Send", open: "Chat with us", close: "Close", typing: "Xiaoka is typing…",
      offline: "Connection lost, reconnecting…", error: "Your message could not be sent, please try again.", person: "Talk to a person",
      agent: "Support agent", withAgent: "You are chatting with {name} from our support team"
    }
  };
  var langAttr = script.getAttribute("data-lang") || "auto";
  var uiLang = langAttr !== "auto" ? langAttr : ((navigator.language || "en").toLowerCase().indexOf("zh") === 0 ? "zh" : "en");
  var t = TEXT[uiLang] || TEXT.en;

  function load(key) { try { return JSON.parse(localStorage.getItem(STORE) || "{}")[key]; } catch (e) { return undefined; } }
  function save(key, value) {
    var state = {};
    try { state = JSON.parse(localStorage.getItem(STORE) || "{}"); } catch (e) { state = {}; }
    state[key] = value;
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* private mode: no persistence */ }
  }

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI','PingFang SC','Noto Sans CJK SC','Microsoft YaHei',sans-serif}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;border:0;border-radius:28px;padding:14px 20px;background:#1f6feb;color:#fff;font-size:15px;box-shadow:0 6px 20px rgba(0,0,0,.2);cursor:pointer}",
    ".panel{position:fixed;right:20px;bottom:20px;z-index:2147483001;width:370px;height:560px;max-height:calc(100vh - 40px);display:none;flex-direction:column;background:#fff;border-radius:14px;box-shadow:0 10px 40px rgba(0,0,0,.25);overflow:hidden}",
    ".panel.open{display:flex}",
    ".head{background:#1f6feb;color:#fff;padding:14px 16px;display:flex;align-items:center;justify-content:space-between}",
    ".head h2{margin:0;font-size:16px;font-weight:600}.head p{margin:2px 0 0;font-size:12px;opacity:.85}",
    ".x{background:transparent;border:0;color:#fff;font-size:22px;cursor:pointer;line-height:1}",
    ".log{flex:1;overflow-y:auto;padding:14px;background:#f5f7fa;display:flex;flex-direction:column;gap:8px}",
    ".msg{max-width:82%;padding:9px 12px;border-radius:12px;font-size:14px;line-height:1.45;white-space:pre-wrap;word-wrap:break-word;overflow-wrap:anywhere}",
    ".bot{align-self:flex-start;background:#fff;color:#1d2129;border:1px solid #e5e8ef;border-bottom-left-radius:4px}",
    ".bot.agent{background:#eef4ff;border-color:#c6d8fb}",
    ".who{align-self:flex-start;color:#4e5969;font-size:11px;margin:2px 0 -5px 4px}",
    ".user{align-self:flex-end;background:#1f6feb;color:#fff;border-bottom-right-radius:4px}",
    ".notice{align-self:center;color:#86909c;font-size:12px}",
    ".buttons{display:flex;flex-wrap:wrap;gap:6px;align-self:flex-start;max-width:90%}",
    ".buttons button{border:1px solid #1f6feb;color:#1f6feb;background:#fff;border-radius:16px;padding:6px 12px;font-size:13px;cursor:pointer}",
    ".buttons button:disabled{opacity:.45;cursor:default}",
    ".typing{align-self:flex-start;color:#86909c;font-size:12px;display:none}",
    ".typing.on{display:block}",
    ".composer{display:flex;gap:8px;padding:10px;border-top:1px solid #e5e8ef;background:#fff}",
    ".composer textarea{flex:1;resize:none;border:1px solid #c9cdd4;border-radius:8px;padding:8px 10px;font-size:14px;height:40px;max-height:110px}",
    ".composer button{border:0;border-radius:8px;background:#1f6feb;color:#fff;padding:0 16px;font-size:14px;cursor:pointer}",
    "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;height:100vh;max-height:100vh;border-radius:0}}"
  ].join("");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var host = el("div");
  host.id = "starcard-chat";
  var root = host.attachShadow({ mode: "open" });
  var style = el("style"); style.textContent = CSS; root.appendChild(style);
  var launcher = el("button", "launcher", t.open); launcher.setAttribute("data-testid", "launcher");
  var panel = el("div", "panel"); panel.setAttribute("role", "dialog"); panel.setAttribute("aria-label", t.title);
  var head = el("div", "head");
  var subtitle = el("p", null, t.subtitle); subtitle.setAttribute("data-testid", "subtitle");
  var titles = el("div"); titles.appendChild(el("h2", null, t.title)); titles.appendChild(subtitle);
  var closeBtn = el("button", "x", "×"); closeBtn.setAttribute("aria-label", t.close);
  head.appendChild(titles); head.appendChild(closeBtn);
  var log = el("div", "log"); log.setAttribute("aria-live", "polite"); log.setAttribute("data-testid", "log");
  var typing = el("div", "typing", t.typing); typing.setAttribute("data-testid", "typing");
  log.appendChild(typing);
  var composer = el("form", "composer");
  var input = el("textarea"); input.placeholder = t.placeholder; input.setAttribute("data-testid", "input"); input.maxLength = 4000;
  var sendBtn = el("button", null, t.send); sendBtn.type = "submit";
  composer.appendChild(input); composer.appendChild(sendBtn);
  panel.appendChild(head); panel.appendChild(log); panel.appendChild(composer);
  root.appendChild(launcher); root.appendChild(panel);

  function scroll() { log.scrollTop = log.scrollHeight; }
  function addMessage(kind, text) {
    var bubble = el("div", "msg " + kind, text);
    bubble.setAttribute("data-testid", kind + "-message");
    log.insertBefore(bubble, typing); scroll(); return bubble;
  }
  // a line a person wrote: their name above it, and the header says who the customer talks to
  function addAgentMessage(text, agent) {
    log.insertBefore(el("div", "who", t.agent + " · " + agent), typing);
    addMessage("bot", text).className += " agent";
  }
  // while a person holds the chat the bot is silent: no "the assistant is typing" after a line
  var agentName = null;
  function setAgent(name) {
    agentName = name || null;
    subtitle.textContent = agentName ? t.withAgent.replace("{name}", agentName) : t.subtitle;
    if (agentName) showTyping(false);
  }
  function addBotLine(text, agent) {
    if (agent) addAgentMessage(text, agent); else addMessage("bot", text);
    setAgent(agent);
    botShown++;
  }
  function disableOldButtons() {
    var groups = log.querySelectorAll(".buttons button");
    for (var i = 0; i < groups.length; i++) groups[i].disabled = true;
  }
  function addButtons(buttons, live) {
    if (!buttons || !buttons.length) return;
    var row = el("div", "buttons");
    buttons.forEach(function (b) {
      var btn = el("button", null, b.title || b.payload);
      btn.type = "button";
      btn.disabled = !live;
      btn.addEventListener("click", function () { send(b.payload, b.title); });
      row.appendChild(btn);
    });
    log.insertBefore(row, typing); scroll();
  }
  function showTyping(on) { typing.className = on ? "typing on" : "typing"; if (on) scroll(); }

  var socket = null;
  var sessionId = load("session_id") || null;
  var sessionSecret = load("session_secret") || null;
  var historyLoaded = false;
  var typingTimer = null;
  var pending = [];  // typed before the session was confirmed; sent right after
  var botShown = 0;  // bot lines on screen, to catch up on what was said while the socket was down
  var dropped = false;

  function renderHistory(items) {
    items.forEach(function (item) {
      if (item.speaker === "customer") addMessage("user", item.text);
      else if (item.text) addBotLine(item.text, item.agent);
    });
    var last = items[items.length - 1];
    if (last && last.speaker !== "customer" && last.buttons && last.buttons.length) addButtons(last.buttons, true);
  }

  // the conversation's messages from the web service; history is a convenience, so a failure is none
  function fetchHistory(id) {
    return fetch(webOrigin + "/api/history/" + encodeURIComponent(id), { headers: { "X-Conversation-Secret": sessionSecret || "" } })
      .then(function (r) { return r.ok ? r.json() : { messages: [] }; })
      .then(function (data) { return data.messages || []; })
      .catch(function () { return []; });
  }

  function loadHistory(id) {
    if (historyLoaded) return Promise.resolve();
    historyLoaded = true;
    return fetchHistory(id).then(renderHistory);
  }

  // Back after a dropped socket (a replica restarted, the network blinked): lines the bot or an
  // agent sent meanwhile went to a socket that was gone; the conversation's history has them.
  function catchUp(id) {
    return fetchHistory(id).then(function (items) {
      var said = items.filter(function (m) { return m.speaker !== "customer" && m.text; });
      var missed = said.slice(botShown);
      if (missed.length) { disableOldButtons(); renderHistory(missed); }
    });
  }

  function connect() {
    if (socket) return;
    socket = window.io(server, { transports: ["websocket", "polling"], path: "/socket.io" });
    socket.on("connect", function () {
      socket.emit("session_request", { session_id: sessionId, session_secret: sessionSecret });
    });
    // comes right before session_confirm: the id's secret, kept with it
    socket.on("session_secret", function (data) {
      if (!data || !data.session_id || !data.secret) return;
      sessionSecret = data.secret; save("session_secret", data.secret);
    });
    socket.on("session_confirm", function (id) {
      var fresh = id !== sessionId;
      sessionId = id; save("session_id", id);
      var ready = dropped && historyLoaded && !fresh ? catchUp(id) : loadHistory(id);
      dropped = false;
      ready.then(function () {
        pending.splice(0).forEach(function (m) { m.session_id = sessionId; socket.emit("user_uttered", m); });
        if (fresh && !log.querySelector(".msg")) {
          // opening greeting in the page's language; the payload entity sets the language slot
          socket.emit("user_uttered", { session_id: sessionId, message: '/greet{"language":"' + uiLang + '"}', metadata: { ui_language: uiLang, automatic: true } });
          showTyping(true);
        }
      });
    });
    socket.on("bot_uttered", function (data) {
      disableOldButtons();
      if (data && data.text) addBotLine(data.text, data.agent);
      var buttons = (data && (data.quick_replies || data.buttons)) || [];
      addButtons(buttons, true);
      clearTimeout(typingTimer);
      typingTimer = setTimeout(function () { showTyping(false); }, 400);
    });
    socket.on("error_message", function () { showTyping(false); addMessage("notice", t.error); });
    socket.on("disconnect", function () { dropped = true; addMessage("notice", t.offline); });
    socket.on("connect_error", function () { showTyping(false); });
  }

  function send(payload, shown) {
    var text = (payload || "").trim();
    disableOldButtons();
    if (shown !== undefined) addMessage("user", shown);
    else if (text) addMessage("user", text);
    var metadata = { ui_language: uiLang };
    if (shown !== undefined) metadata.button_title = shown;
    if (socket && sessionId && socket.connected) {
      socket.emit("user_uttered", { session_id: sessionId, message: text, metadata: metadata });
    } else {
      pending.push({ session_id: sessionId, message: text, metadata: metadata });
    }
    if (agentName) return;  // a person answers in their own time; the bot says nothing meanwhile
    showTyping(true);
    clearTimeout(typingTimer);
    typingTimer = setTimeout(function () { showTyping(false); }, 15000);
  }

  composer.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    input.value = "";
    send(text);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit ? composer.requestSubmit() : composer.dispatchEvent(new Event("submit"));
    }
  });

  function open() {
    panel.className = "panel open"; launcher.style.display = "none"; save("open", true);
    ensureClient(connect); setTimeout(function () { input.focus(); }, 50);
  }
  function close() { panel.className = "panel"; launcher.style.display = ""; save("open", false); }
  launcher.addEventListener("click", open);
  closeBtn.addEventListener("click", close);

  function ensureClient(done) {
    if (window.io) return done();
    var s = document.createElement("script");
    s.src = webOrigin + "/static/vendor/socket.io.min.js";
    s.onload = done;
    document.head.appendChild(s);
  }

  function mount() {
    document.body.appendChild(host);
    if (load("open") || script.getAttribute("data-open") === "true") open();
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
  window.StarCardChat = { open: open, close: close, sessionId: function () { return sessionId; } };
})();
