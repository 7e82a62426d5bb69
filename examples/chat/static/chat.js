// The chat page: one WebSocket to /chat/<room>; every event the room broadcasts is shown.
// ?room=NAME picks the room; ?say=TEXT sends TEXT once connected (used by the browser test).
"use strict";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const log = document.getElementById("log");
const status = document.getElementById("status");
document.getElementById("room").textContent = room;

function show(text, cls) {
  const item = document.createElement("li");
  item.textContent = text;
  if (cls) item.className = cls;
  log.appendChild(item);
}

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(`${scheme}//${location.host}/chat/${encodeURIComponent(room)}`);

socket.addEventListener("open", () => {
  status.textContent = "connected";
  const say = params.get("say");
  if (say) socket.send(say);
});

socket.addEventListener("message", (event) => {
  const data = JSON.parse(event.data);
  if (data.kind === "message") show(data.text, "message");
  else show(`${data.kind}: ${data.members} in the room`, "info");
});

socket.addEventListener("close", (event) => {
  status.textContent = `closed (${event.code})`;
});

document.getElementById("send").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value && socket.readyState === WebSocket.OPEN) socket.send(input.value);
  input.value = "";
});
