//! The minimal browser page served at `/` until the browser-client issue replaces it.

/// A plain HTML page that says what this server is and chats over `new WebSocket()`.
pub(crate) const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>chatgroup</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head>
<body>
<h1>chatgroup</h1>
<p>A real-time chat server speaking RFC 6455 WebSocket. Until the chat protocol lands, this
page joins a conversation over the test relay <code>/broadcast?conversation_id=N</code>
(served when the server runs with <code>--echo</code>); every text you send reaches the
other members.</p>
<form id="join">Conversation <input id="conv" value="1" size="6">
<button>Join</button> <span id="status">disconnected</span></form>
<ul id="log"></ul>
<form id="send"><input id="text" size="60" autocomplete="off" placeholder="message">
<button>Send</button></form>
<script>
let ws = null;
const $ = (id) => document.getElementById(id);
function log(line) {
  const li = document.createElement("li");
  li.textContent = line;
  $("log").appendChild(li);
}
$("join").onsubmit = (e) => {
  e.preventDefault();
  if (ws) ws.close(1000);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/broadcast?conversation_id=${encodeURIComponent($("conv").value)}`);
  ws.onopen = () => { $("status").textContent = "connected"; };
  ws.onclose = (ev) => { $("status").textContent = `closed (${ev.code})`; };
  ws.onmessage = (ev) => log(ev.data);
};
$("send").onsubmit = (e) => {
  e.preventDefault();
  if (ws && ws.readyState === WebSocket.OPEN && $("text").value) {
    ws.send($("text").value);
    log(`me: ${$("text").value}`);
    $("text").value = "";
  }
};
</script>
</body>
</html>
"#;
