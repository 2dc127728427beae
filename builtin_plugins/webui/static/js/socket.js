// The chat WebSocket: authenticates with the access token as its first message, renews
// it after every token refresh, and reconnects with backoff after a drop. Frames sent
// while it is down wait in a queue and go out once it is authenticated again.
import { refresh, session } from "./api.js";
import { prefs } from "./prefs.js";

const BACKOFF = [500, 1000, 2000, 4000, 8000, 10000];
// A network that goes silent without closing the socket: a ping every PING ms, and the
// connection is given up as lost when nothing at all has come for SILENCE ms (under 10 s).
export const PING = 2500;
export const SILENCE = 6000;

export class ChatSocket {
  constructor({ onFrame, onState }) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.ws = null;
    this.state = "idle"; // idle | connecting | open | reconnecting | closed
    this.queue = [];
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.wasOpen = false;
    this.fresh = false; // the socket is open but not yet authenticated
    this.unsubscribe = session.onChange((kind) => {
      if (kind === "tokens" && this.state === "open") this.raw({ type: "auth", token: session.accessToken });
    });
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.onState(state);
  }

  async connect() {
    if (this.stopped || (this.ws && this.ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.setState(this.wasOpen ? "reconnecting" : "connecting");
    try {
      await refreshIfStale();
    } catch {
      if (!session.signedIn) return this.close();
    }
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${window.location.host}/ws/chat`);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.fresh = true;
      this.heard = Date.now();
      this.beat();
      ws.send(JSON.stringify({ type: "auth", token: session.accessToken }));
    });
    ws.addEventListener("message", (event) => this.receive(event.data));
    ws.addEventListener("close", (event) => this.closed(ws, event));
  }

  // While open: ping, and give the socket up when the network has gone silent.
  beat() {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.heard > SILENCE) {
        clearInterval(this.heartbeat);
        this.ws = null;
        try { ws.close(4000, "silent"); } catch { /* closing a dead socket */ }
        this.lost({ code: 4000 });
        return;
      }
      // not yet authenticated: no ping (the server answers those too), so an auth message
      // lost on the way is noticed as silence like the rest
      if (this.fresh) return;
      try { ws.send(JSON.stringify({ type: "ping" })); } catch { /* the close event follows */ }
    }, PING);
  }

  receive(data) {
    this.heard = Date.now();
    let frame;
    try { frame = JSON.parse(data); } catch { return; }
    if (!frame || typeof frame !== "object" || frame.type === "pong") return;
    if (frame.type === "auth_ok") {
      // only a new connection's first auth_ok; later ones answer a renewed token
      if (!this.fresh) return;
      this.fresh = false;
      const reconnected = this.wasOpen;
      this.attempt = 0;
      this.wasOpen = true;
      this.setState("open");
      const waiting = this.queue.splice(0);
      for (const f of waiting) this.raw(f);
      // the chat messages that went out only now are not lost: their replies stream here
      const resent = waiting.filter((f) => f.type === "chat").map((f) => f.request_id);
      if (reconnected) this.onFrame({ type: "reconnected", resent });
      return;
    }
    if (frame.type === "error" && (frame.code === "INVALID_TOKEN" || frame.code === "AUTH_REQUIRED") && !frame.request_id) {
      // the token expired or was revoked: the close that follows reconnects after a refresh
      this.needsRefresh = true;
      return;
    }
    this.onFrame(frame);
  }

  closed(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    return this.lost(event);
  }

  async lost(event) {
    clearInterval(this.heartbeat);
    if (this.stopped) return this.setState("closed");
    this.setState("reconnecting");
    // the account was disabled or deleted: no refresh can help, and the user is told why
    const ended = event.code === 4401 && /\b(disabled|deleted)\b/.exec(event.reason || "");
    if (ended) {
      session.clear(ended[1]);
      return this.close();
    }
    if (event.code === 4401 || event.code === 1008 || this.needsRefresh) {
      this.needsRefresh = false;
      try { await refresh(); } catch { if (!session.signedIn) return this.close(); }
    }
    const delay = BACKOFF[Math.min(this.attempt, BACKOFF.length - 1)] * (0.75 + Math.random() / 2);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  raw(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  // Send now if authenticated (true), else as soon as the socket is back (false).
  send(frame) {
    if (this.state === "open" && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.raw(frame);
      return true;
    }
    this.queue.push(frame);
    if (!this.ws) this.connect();
    return false;
  }

  // Drop a queued frame that has not gone out (e.g. a cancelled request).
  unqueue(predicate) {
    const before = this.queue.length;
    this.queue = this.queue.filter((f) => !predicate(f));
    return before !== this.queue.length;
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    this.unsubscribe();
    if (this.ws) this.ws.close(1000, "bye");
    this.ws = null;
    this.setState("closed");
  }
}

async function refreshIfStale() {
  const at = Number(prefs.get("expires") || 0);
  if (at - Date.now() < 20_000) await refresh();
}
