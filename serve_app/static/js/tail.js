// A pipeline's live tail as a dashboard needs it: the records whose event time is at or after
// the widgets' anchor (what the query API has not answered for), from the hot cache at the
// start and then the live socket (resumed without gaps; live.js). Records are kept once each
// (by seq); `trim` drops those the next query answers for. Listeners hear of each change.

import { api, liveTicket } from "./api.js";
import { timeMs } from "./feed.js";
import { LiveStream } from "./live.js";

const HOT_LIMIT = 1000;

export class Tail {
  constructor(pipeline) {
    this.pipeline = pipeline;
    this.id = pipeline.id;
    this.records = [];
    this.seqs = new Set();
    this.floorMs = -Infinity;
    this.listeners = new Set();
    this.stream = null;
    this.state = "loading";
    this.notes = [];
  }

  subscribe(listener) { this.listeners.add(listener); return () => this.listeners.delete(listener); }

  _emit(kind, detail) { for (const listener of this.listeners) listener(kind, detail); }

  add(records) {
    let added = 0;
    for (const record of records) {
      const t = timeMs(record);
      if (this.seqs.has(record.seq) || t === null || t < this.floorMs) continue;
      this.seqs.add(record.seq);
      this.records.push(record);
      added += 1;
    }
    return added;
  }

  // Records of event time in [fromMs, toMs).
  between(fromMs, toMs = Infinity) {
    return this.records.filter((r) => { const t = timeMs(r); return t >= fromMs && t < toMs; });
  }

  trim(floorMs) {
    this.floorMs = floorMs;
    this.records = this.records.filter((r) => {
      const keep = timeMs(r) >= floorMs;
      if (!keep) this.seqs.delete(r.seq);
      return keep;
    });
  }

  async start(floorMs) {
    this.floorMs = floorMs;
    let after = (this.pipeline.counters || {}).last_seq;
    try {
      const hot = (await api("GET", `/v1/pipelines/${this.id}/records`, { params: { limit: HOT_LIMIT } })).records;
      this.add(hot);
      if (hot.length) after = hot[hot.length - 1].seq;
    } catch (err) {
      this.notes.push(`recent records: ${err.message}`);
    }
    this.stream = new LiveStream(this.id, {
      after: typeof after === "number" ? after : null,
      ticket: liveTicket,
      onRecords: (records) => { if (this.add(records)) this._emit("records", records); },
      onGap: (gap) => this._emit("gap", gap),
      onState: (state, detail) => { this.state = state; this._emit("state", { state, detail }); },
    }).start();
  }

  close() { if (this.stream) this.stream.close(); this.listeners.clear(); }
}
