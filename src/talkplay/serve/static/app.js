// TalkPlay chat page: talks to the JSON API of the same server; no external resources.
// All server text is inserted with textContent (never innerHTML), so metadata cannot inject markup.
"use strict";

const state = {
  key: sessionStorage.getItem("talkplay-key") || null,
  sid: null,
  token: null,
  busy: false,
  maxChars: 1000,
};

const $ = (id) => document.getElementById(id);
const log = $("log");

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function toast(message) {
  const box = $("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 5000);
}

async function api(path, options = {}) {
  const headers = { "Accept": "application/json", ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (state.key) headers["Authorization"] = "Bearer " + state.key;
  if (state.token) headers["X-Session-Token"] = state.token;
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.detail) || ("HTTP " + response.status));
    error.status = response.status;
    error.code = data && data.error;
    throw error;
  }
  return data;
}

function askForKey() {
  $("key-form").hidden = false;
  $("key-input").focus();
}

async function health() {
  try {
    const h = await api("/api/health");
    $("system").textContent = `${h.recommender} · ${h.tracks.toLocaleString()} tracks`;
    return true;
  } catch (e) {
    if (e.status === 401) askForKey();
    else toast("Server unreachable: " + e.message);
    return false;
  }
}

async function ensureSession() {
  if (state.sid) return;
  const s = await api("/api/sessions", { method: "POST" });
  state.sid = s.session_id;
  state.token = s.client_token;
  state.maxChars = s.limits.max_message_chars;
  $("text").maxLength = state.maxChars;
}

function bubble(role, text) {
  const row = el("div", "msg " + role);
  row.appendChild(el("div", "bubble", text));
  log.appendChild(row);
  row.scrollIntoView({ behavior: "smooth", block: "end" });
  return row;
}

function trackCard(track) {
  const card = el("article", "card");
  card.dataset.trackId = track.id;
  const head = el("div", "card-head");
  head.appendChild(el("span", "rank", String(track.rank)));
  const titles = el("div", "titles");
  titles.appendChild(el("h3", "title", track.title));
  const artist = track.artists.length ? track.artists.join(", ") : "Unknown artist";
  titles.appendChild(el("p", "artist", artist));
  const meta = [track.album, track.year].filter((x) => x !== null && x !== undefined && x !== "");
  if (meta.length) titles.appendChild(el("p", "album", meta.join(" · ")));
  head.appendChild(titles);
  card.appendChild(head);
  if (track.tags.length) {
    const tags = el("div", "tags");
    track.tags.forEach((t) => tags.appendChild(el("span", "tag", t)));
    card.appendChild(tags);
  }
  if (track.audio_url) {
    const audio = el("audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = track.audio_url;
    card.appendChild(audio);
  }
  const actions = el("div", "actions");
  const like = el("button", "like", "♥ Like");
  like.type = "button";
  like.setAttribute("aria-label", `Like ${track.title}`);
  const skip = el("button", "skip", "✕ Skip");
  skip.type = "button";
  skip.setAttribute("aria-label", `Skip ${track.title}`);
  like.addEventListener("click", () => feedback(card, track, "like"));
  skip.addEventListener("click", () => feedback(card, track, "skip"));
  actions.append(like, skip);
  card.appendChild(actions);
  return card;
}

function showTurn(turn) {
  const row = el("div", "msg assistant");
  const box = el("div", "bubble");
  const fallback = turn.tracks.length ? "Here is what I found for you:" : "I found nothing new for that.";
  box.appendChild(el("p", "reply", turn.reply || fallback));
  const cards = el("div", "cards");
  turn.tracks.forEach((t) => cards.appendChild(trackCard(t)));
  box.appendChild(cards);
  if (turn.turns_left <= 3) box.appendChild(el("p", "note", `${turn.turns_left} turns left in this chat.`));
  row.appendChild(box);
  log.appendChild(row);
  row.scrollIntoView({ behavior: "smooth", block: "start" });
}

function setBusy(busy) {
  state.busy = busy;
  $("send").disabled = busy;
  document.body.classList.toggle("busy", busy);
  let typing = $("typing");
  if (busy && !typing) {
    typing = el("div", "msg assistant typing");
    typing.id = "typing";
    typing.appendChild(el("div", "bubble", "Listening…"));
    log.appendChild(typing);
  } else if (!busy && typing) typing.remove();
}

async function withTurn(request) {
  if (state.busy) return;
  setBusy(true);
  try {
    await ensureSession();
    showTurn(await request());
  } catch (e) {
    if (e.status === 401) askForKey();
    if (e.code === "session_not_found") { state.sid = null; state.token = null; }
    toast(e.message);
  } finally {
    setBusy(false);
  }
}

function send(text) {
  text = text.trim();
  if (!text) return;
  $("welcome")?.remove();
  bubble("user", text);
  withTurn(() => api(`/api/sessions/${state.sid}/messages`, { method: "POST", body: { text } }));
}

function feedback(card, track, action) {
  if (state.busy) return;
  card.classList.add(action === "like" ? "liked" : "skipped");
  card.querySelectorAll(".actions button").forEach((b) => { b.disabled = true; });
  bubble("user feedback", action === "like" ? `♥ ${track.title}` : `✕ Not ${track.title}`);
  withTurn(() => api(`/api/sessions/${state.sid}/feedback`,
    { method: "POST", body: { track_id: track.id, action } }));
}

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("text");
  const text = input.value;
  input.value = "";
  send(text);
});

document.querySelectorAll("#suggestions .chip").forEach((chip) =>
  chip.addEventListener("click", () => send(chip.textContent)));

$("new-chat").addEventListener("click", () => {
  state.sid = null;
  state.token = null;
  log.replaceChildren();
  bubble("assistant", "New chat. What would you like to hear?");
  $("text").focus();
});

$("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.key = $("key-input").value.trim() || null;
  if (state.key) sessionStorage.setItem("talkplay-key", state.key);
  if (await health()) $("key-form").hidden = true;
});

(function init() {
  // A key may come in the URL fragment (#key=...), which browsers never send to the server.
  const match = location.hash.match(/key=([^&]+)/);
  if (match) {
    state.key = decodeURIComponent(match[1]);
    sessionStorage.setItem("talkplay-key", state.key);
    history.replaceState(null, "", location.pathname);
  }
  health();
})();
