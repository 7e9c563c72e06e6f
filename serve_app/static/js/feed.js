// A pipeline's records as one page holds them: history from the query API (raw rows of the
// window) and the hot cache (mapped but perhaps not yet stored), then the live tail over the
// WebSocket resumed after the newest seq loaded. Records are kept once each, by seq, oldest
// first, at most `maxRecords` (the newest); listeners hear of each change.

import { api, liveTicket } from "./api.js";
import { LiveStream } from "./live.js";

const HISTORY_LIMIT = 10000;
const HOT_LIMIT = 1000;

export function recordOf(row) {
  // A query row {seq, time, field...} as a live record {seq, time, data}.
  const { seq, time, ...data } = row;
  return { seq, time, data };
}

export function timeMs(record) {
  const t = Date.parse(record.time);
  return Number.isNaN(t) ? null : t;
}

export class PipelineFeed {
  constructor(pipeline, { windowS = 900, maxRecords = 20000 } = {}) {
    this.pipeline = pipeline;
    this.id = pipeline.id;
    this.windowS = windowS;
    this.maxRecords = maxRecords;
    this.records = [];
    this.seqs = new Set();
    this.listeners = new Set();
    this.stream = null;
    this.state = "loading";
    this.notes = [];
    this.truncated = false;
    this.loaded = 0;  // records loaded as history (query and hot cache), before the live tail
  }

  subscribe(listener) { this.listeners.add(listener); return () => this.listeners.delete(listener); }

  _emit(kind, detail) { for (const listener of this.listeners) listener(kind, detail); }

  add(records) {
    let added = 0;
    let ordered = true;
    const last = () => this.records.length ? this.records[this.records.length - 1].seq : -1;
    for (const record of records) {
      if (this.seqs.has(record.seq)) continue;
      this.seqs.add(record.seq);
      if (record.seq < last()) ordered = false;
      this.records.push(record);
      added += 1;
    }
    if (!ordered) this.records.sort((a, b) => a.seq - b.seq);
    if (this.records.length > this.maxRecords) {
      for (const old of this.records.splice(0, this.records.length - this.maxRecords)) this.seqs.delete(old.seq);
      this.truncated = true;
    }
    return added;
  }

  newestSeq() { return this.records.length ? this.records[this.records.length - 1].seq : null; }

  async start() {
    const from = new Date(Date.now() - this.windowS * 1000).toISOString();
    try {
      const answer = await api("GET", `/v1/pipelines/${this.id}/query`,
                               { params: { from, order: "desc", limit: HISTORY_LIMIT } });
      this.add(answer.rows.map(recordOf));
      if (answer.rows.length >= HISTORY_LIMIT) this.truncated = true;
      // The query API says when its answer may miss stored rows (PostgreSQL behind, lake unreadable).
      if (answer.stale) this.notes.push(`history may miss stored records: ${answer.stale.reason}`);
    } catch (err) {
      this.notes.push(`history: ${err.message}`);
    }
    try {
      const hot = await api("GET", `/v1/pipelines/${this.id}/records`, { params: { limit: HOT_LIMIT } });
      this.add(hot.records);
    } catch (err) {
      this.notes.push(`recent records: ${err.message}`);
    }
    this.loaded = this.records.length;
    const floor = (this.pipeline.counters || {}).last_seq;
    const after = this.newestSeq() ?? (typeof floor === "number" ? floor : null);
    this.stream = new LiveStream(this.id, {
      after,
      ticket: liveTicket,
      onRecords: (records) => { if (this.add(records)) this._emit("records", records); },
      onGap: (gap) => this._emit("gap", gap),
      onState: (state, detail) => { this.state = state; this._emit("state", { state, detail }); },
    }).start();
    this._emit("records", []);
  }

  // Records whose event time lies in the last `windowS` seconds (all of them with null).
  inWindow(windowS) {
    if (!windowS) return this.records;
    const since = Date.now() - windowS * 1000;
    return this.records.filter((r) => { const t = timeMs(r); return t !== null && t >= since; });
  }

  close() { if (this.stream) this.stream.close(); this.listeners.clear(); }
}
