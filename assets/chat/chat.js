// The ringws chat page: one WebSocket to /chat; the server sends JSON events
// (welcome, join, leave, nick, message) and broadcasts every line we send. The header
// shows our name and shard and how many are here: welcome, join and leave carry the
// room's count ("members"), and the nick event we get for our own /nick says "self".
"use strict";

const log = document.getElementById("log");
const statusLine = document.getElementById("status");
const meLine = document.getElementById("me");
const countLine = document.getElementById("count");
const form = document.getElementById("send");
const input = document.getElementById("text");
const button = document.getElementById("button");

function add(parts, notice) {
  const item = document.createElement("li");
  if (notice) item.className = "notice";
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    if (cls) span.className = cls;
    span.textContent = text;
    item.appendChild(span);
  }
  const atBottom = log.parentElement.scrollTop + log.parentElement.clientHeight >= log.parentElement.scrollHeight - 4;
  log.appendChild(item);
  if (atBottom) item.scrollIntoView();
}

// Who we are and how many are here, while connected (null: not joined).
let me = null;
let myShard = null;
let members = null;

function showRoom() {
  meLine.textContent = me === null ? "" : `you are ${me} (shard ${myShard})`;
  countLine.textContent =
    members === null ? "" : members === 1 ? "1 member here" : `${members} members here`;
}

function setMembers(m) {
  if (typeof m.members === "number") members = m.members;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/chat`);
  socket.onopen = () => {
    statusLine.textContent = "connected";
    input.disabled = button.disabled = false;
    input.focus();
  };
  socket.onmessage = (event) => {
    let m;
    try { m = JSON.parse(event.data); } catch { return; }
    switch (m.type) {
      case "welcome":
        me = m.name;
        myShard = m.shard;
        setMembers(m);
        add([[null, `Welcome, ${m.name} (shard ${m.shard}). Type /nick NAME to change your name.`]], true);
        break;
      case "join":
        setMembers(m);
        add([[null, `${m.name} joined (shard ${m.shard})`]], true);
        break;
      case "leave":
        setMembers(m);
        add([[null, `${m.name} left`]], true);
        break;
      case "nick":
        if (m.self === true) me = m.to;
        add([[null, m.self === true ? `you are now ${m.to}` : `${m.from} is now ${m.to}`]], true);
        break;
      case "message": add([["shard", `#${m.shard}`], ["from", m.from], [null, m.text]]); break;
    }
    showRoom();
  };
  socket.onclose = () => {
    me = myShard = members = null;
    showRoom();
    statusLine.textContent = "disconnected; retrying…";
    input.disabled = button.disabled = true;
    setTimeout(connect, 2000);
  };
  form.onsubmit = (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (text && socket.readyState === WebSocket.OPEN) {
      socket.send(text);
      input.value = "";
    }
  };
}

connect();
