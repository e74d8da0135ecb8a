// The ringws chat page: one WebSocket to /chat; the server sends JSON events
// (welcome, join, leave, nick, message, error), each naming its room, and says every
// line we send to our room. We start in "lobby"; "/join NAME" moves us (the join event
// we get for it says "self", and so does the nick event for our own "/nick NAME"). The
// header shows our name, shard and room. Text is shown as text, never as HTML.
"use strict";

const log = document.getElementById("log");
const statusLine = document.getElementById("status");
const meLine = document.getElementById("me");
const roomLine = document.getElementById("room");
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

// Who we are and where, while connected (null: not joined).
let me = null;
let myShard = null;
let room = null;

function showRoom() {
  meLine.textContent = me === null ? "" : `you are ${me} (shard ${myShard})`;
  roomLine.textContent = room === null ? "" : `room: ${room}`;
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
        room = m.room;
        add([[null, `Welcome, ${m.name} (shard ${m.shard}), to the room ${m.room}. Type /join ROOM to change rooms, /nick NAME to change your name.`]], true);
        break;
      case "join":
        if (m.self === true) {
          room = m.room;
          add([[null, `you joined the room ${m.room}`]], true);
        } else {
          add([[null, `${m.name} joined (shard ${m.shard})`]], true);
        }
        break;
      case "leave":
        add([[null, `${m.name} left`]], true);
        break;
      case "error":
        add([[null, `error: ${m.text}`]], true);
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
    me = myShard = room = null;
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
