// The chat page: one WebSocket to the room the form names, at
// ws[s]://HOST/ROOM?name=NAME on the host and port the page came from.
// What the room program (examples/chat/room.py) broadcasts goes to the
// log as it is; the page adds only its own notes, marked as such.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const joinForm = $("join-form"), roomSel = $("room"), nameIn = $("name"),
    joinBtn = $("join"), stateEl = $("state"), log = $("log"),
    sendForm = $("send-form"), msgIn = $("message"), sendBtn = $("send"),
    leaveBtn = $("leave");

  // What a close code means to someone chatting (RFC 6455 7.4.1 and
  // gatewayd's docs/POLICY.md).
  const CODES = {
    1000: "closed normally",
    1001: "the server is going away",
    1005: "no code given",
    1006: "the connection was refused or lost",
    1007: "the server rejected a message",
    1008: "closed by policy",
    1009: "a message was too big",
    1011: "the room's program is down",
    1012: "the room's program did not come back",
  };

  // The room joined or being joined, from the join until the socket's
  // close event: {sock, leave}.
  let current = null;

  function setState(state, text) {
    stateEl.dataset.state = state;
    stateEl.textContent = text;
  }

  // "idle": the join form is live; "connecting" and "open": the socket
  // is, and Leave ends it; "open": messages can be sent.
  function setPhase(phase) {
    const busy = phase !== "idle";
    roomSel.disabled = nameIn.disabled = joinBtn.disabled = busy;
    leaveBtn.disabled = !busy;
    msgIn.disabled = sendBtn.disabled = phase !== "open";
    document.body.dataset.phase = phase;
  }

  function describe(ev) {
    let s = "close code " + ev.code;
    if (CODES[ev.code]) s += ": " + CODES[ev.code];
    if (ev.reason) s += "; reason: " + ev.reason;
    return s;
  }

  // Append a line, scrolling along only when the reader is at the end.
  function addLine(text, kind, me) {
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
    const li = document.createElement("li");
    li.className = kind;
    let m;
    if (kind === "server" && (m = /^(.*?) says ([\s\S]*)$/.exec(text))) {
      // "NAME says TEXT": the name stands out.  textContent only: what
      // others write is never parsed as HTML.
      li.classList.add("says");
      if (m[1] === me) li.classList.add("mine");
      const who = document.createElement("b");
      who.textContent = m[1];
      li.append(who, " says " + m[2]);
    } else {
      if (kind === "server") {
        if (/ has joined \/\S*$/.test(text)) li.classList.add("joined");
        else if (/ has left \/\S*$/.test(text)) li.classList.add("left");
      }
      li.textContent = text;
    }
    log.append(li);
    if (atEnd) log.scrollTop = log.scrollHeight;
  }

  function roomUrl(room, name) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + location.host + room + "?name=" +
      encodeURIComponent(name);
  }

  function join(room, name, hint) {
    let sock, opened = false, leaving = false;
    try {
      sock = new WebSocket(roomUrl(room, name));
    } catch (e) {
      setState("error", "Cannot connect: " + e.message);
      return;
    }
    current = {
      sock,
      leave() {
        leaving = true;
        setState("closing", "Leaving " + room + "…");
        sock.close(1000, "left");
      },
    };
    setPhase("connecting");
    setState("connecting", "Connecting to " + room + " as " + name + "…");

    sock.addEventListener("open", () => {
      opened = true;
      setPhase("open");
      setState("open", "Connected to " + room + " as " + name + ".");
      addLine("You are in " + room + " as " + name + ".", "note");
      msgIn.focus();
    });
    sock.addEventListener("message", (ev) => {
      if (typeof ev.data === "string") addLine(ev.data, "server", name);
      else addLine("(a binary message, " + ev.data.size + " bytes)", "note");
    });
    sock.addEventListener("close", (ev) => {
      current = null;
      setPhase("idle");
      if (leaving && opened) {
        setState("closed", "You left " + room + ".");
        addLine("You left " + room + ".", "note");
      } else if (leaving) {
        setState("closed", "Not connected: you cancelled.");
      } else if (!opened) {
        // A refused handshake shows as 1006 alone: a browser does not
        // tell a page the HTTP status.
        setState("error", "Could not join " + room + " as " + name +
          ": the server refused the connection or could not be reached" +
          " (close code " + ev.code + ")." + (hint ? " " + hint : ""));
      } else {
        setState("error", "The server closed the connection (" +
          describe(ev) + ").");
        addLine("Disconnected from " + room + " (" + describe(ev) + ").",
          "note");
      }
    });
  }

  joinForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (current) return;
    const name = nameIn.value.trim();
    if (name === "") {
      setState("error", "Pick a name first.");
      nameIn.focus();
      return;
    }
    if (!location.host) {
      setState("error", "Open this page from gatewayd (http://HOST:PORT/), " +
        "not as a file.");
      return;
    }
    const opt = roomSel.selectedOptions[0];
    join(roomSel.value, name, opt && opt.dataset.hint);
  });

  sendForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = msgIn.value;
    if (!current || current.sock.readyState !== WebSocket.OPEN ||
        text === "") return;
    current.sock.send(text);
    msgIn.value = "";
    msgIn.focus();
  });

  leaveBtn.addEventListener("click", () => {
    if (current) current.leave();
  });

  setPhase("idle");
})();
