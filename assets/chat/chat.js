// The ringws chat page: one WebSocket to /chat; the server sends JSON events
// (welcome, join, leave, nick, message) and broadcasts every line we send.
"use strict";

const log = document.getElementById("log");
const statusLine = document.getElementById("status");
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
        statusLine.textContent = `you are ${m.name}, on shard ${m.shard}; ${m.members} here`;
        add([[null, `Welcome, ${m.name} (shard ${m.shard}). Type /nick NAME to change your name.`]], true);
        break;
      case "join": add([[null, `${m.name} joined (shard ${m.shard})`]], true); break;
      case "leave": add([[null, `${m.name} left`]], true); break;
      case "nick": add([[null, `${m.from} is now ${m.to}`]], true); break;
      case "message": add([["shard", `#${m.shard}`], ["from", m.from], [null, m.text]]); break;
    }
  };
  socket.onclose = () => {
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
