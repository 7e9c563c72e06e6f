// One pipeline's live records over `WS /v1/pipelines/{id}/live`, resumed without gaps or
// duplicates: the stream keeps the last seq it has seen and reconnects with `after=<that>`,
// with exponential back-off (0.5 s doubling to 10 s, jittered); records at or below the
// cursor are dropped, so a record is handed on at most once. A `gap` message moves the
// cursor past records that no longer exist; a `status` message says the pipeline is not
// running (its records follow once it runs).
//
// No token ever goes in the socket's URL (browsers print a failed socket's URL in the
// console, and proxies log it): before each connection the stream asks `ticket()`, which
// gives a single-use ticket (`?ticket=`) or, on the page, null: the page session's cookie
// goes with the socket. A refused ask (401/403) ends the stream, as do the close codes
// 4400/4403/4404; 4401 (a used ticket, a session ended or a token revoked meanwhile) asks
// again, which says which.

const FINAL_CODES = new Set([4400, 4403, 4404]);
const REASONS = { 4400: "the request was refused (bad `after`)", 4401: "the token is unknown or revoked", 4403: "the token may not read this pipeline",
                  4404: "the pipeline does not exist (any more)" };

export class LiveStream {
  constructor(pipelineId, { after = null, ticket, onRecords, onGap, onState }) {
    this.pipelineId = pipelineId;
    this.cursor = after;
    this.ticket = ticket;  // async () => a live ticket, or null to open with the page session's cookie
    this.onRecords = onRecords || (() => {});
    this.onGap = onGap || (() => {});
    this.onState = onState || (() => {});
    this.delay = 500;
    this.stopped = false;
    this.ws = null;
    this.timer = null;
    this.connects = 0;
    this.handed = 0;     // records handed on, each once
    this.dropped = 0;    // records received again (at or below the cursor) and dropped
    this.state = "idle";
  }

  start() { this._connect(); return this; }

  url(ticket) {
    const url = new URL(`/v1/pipelines/${encodeURIComponent(this.pipelineId)}/live`, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (this.cursor !== null && this.cursor !== undefined) url.searchParams.set("after", String(this.cursor));
    if (ticket) url.searchParams.set("ticket", ticket);  // none: the page session's cookie goes with it
    return url.toString();
  }

  _set(state, detail) {
    this.state = state;
    this.onState(state, detail);
  }

  async _connect() {
    if (this.stopped) return;
    this.timer = null;
    this.connects += 1;
    let ticket;
    try {
      ticket = await this.ticket();
    } catch (err) {
      if (this.stopped) return;
      if (err.status === 401 || err.status === 403) {
        this._set("closed", REASONS[err.status === 401 ? 4401 : 4403]);
        return;
      }
      this._retry();
      return;
    }
    if (this.stopped) return;
    const ws = new WebSocket(this.url(ticket));
    this.ws = ws;
    this._set("connecting");
    ws.onmessage = (event) => { if (this.ws === ws) this._message(event.data); };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (FINAL_CODES.has(event.code)) {
        this._set("closed", REASONS[event.code]);
        return;
      }
      this._retry();
    };
  }

  _retry() {
    const wait = this.delay * (0.75 + Math.random() * 0.5);
    this.delay = Math.min(this.delay * 2, 10000);
    this._set("reconnecting", `again in ${(wait / 1000).toFixed(1)} s`);
    this.timer = setTimeout(() => this._connect(), wait);
  }

  _message(text) {
    let message;
    try { message = JSON.parse(text); } catch { return; }
    this.delay = 500;  // the connection works: the next cut starts the back-off afresh
    if (message.type === "gap") {
      if (this.cursor === null || message.to > this.cursor) this.cursor = message.to;
      this.onGap(message);
      return;
    }
    if (message.type === "status") {
      if (message.status === "running") this._set("live");
      else this._set("waiting", message.message || `the pipeline is ${message.status}`);
      return;
    }
    if (message.type || !Array.isArray(message.records)) return;  // a control message we do not know
    if (this.state !== "live") this._set("live");
    const fresh = [];
    for (const record of message.records) {
      if (this.cursor === null || record.seq > this.cursor) {
        fresh.push(record);
        this.cursor = record.seq;
      } else {
        this.dropped += 1;
      }
    }
    if (typeof message.seq === "number" && (this.cursor === null || message.seq > this.cursor)) {
      this.cursor = message.seq;
    }
    this.handed += fresh.length;
    if (fresh.length) this.onRecords(fresh);
  }

  // A cut as a network drop makes it: the stream reconnects by itself.
  drop() { if (this.ws) this.ws.close(); }

  close() {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000); }
    this._set("stopped");
  }
}
