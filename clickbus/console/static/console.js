// The clickbus console: the live view polls /v1/console/live once a second; the reports view reads /v1/reports.
// Plain ES module, no framework, no build step; charts by uPlot (vendored beside this file).
import uPlot from "./uPlot.esm.js";

const LIVE = "/v1/console/live";
const REPORTS = "/v1/reports";
const EVERY_MS = 1000;
const WINDOW_S = 600; // the server keeps ten minutes of samples; the page shows what it has
const SHOWN_S = 300; // the live charts' scrolling window
const VALID = "valid";
const CALLBACKS = ["delivered", "retried", "held", "refused", "dead_lettered"];
const DIMENSIONS = ["member", "publisher", "campaign", "creative", "placement", "country", "device", "source", "test"];
const TIMES = ["hour", "day", "month"];
const PALETTE = ["#cf222e", "#9a6700", "#8250df", "#0969da", "#bf3989", "#1b7c83", "#953800", "#6e7781"];
const FIXED = { valid: "#1a7f37", delivered: "#1a7f37", retried: "#9a6700", held: "#6e7781", refused: "#8250df", dead_lettered: "#cf222e" };

const $ = (selector) => document.querySelector(selector);

function cell(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

const count = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
const ms = (v) => (v == null ? "–" : `≤ ${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);
const rate = (v) => (v == null ? "–" : v.toFixed(v < 10 ? 2 : 0));

function bytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function colorOf(key, index) {
  return FIXED[key] ?? PALETTE[index % PALETTE.length];
}

// An opaque tint of `hex`: stacked areas overlap, so translucent fills would mix their colours.
function tint(hex, share = 0.45) {
  const channel = (i) => Math.round(255 - (255 - parseInt(hex.slice(i, i + 2), 16)) * share);
  return `rgb(${channel(1)}, ${channel(3)}, ${channel(5)})`;
}

// A time-series chart whose series (named by key) may come and go; stacked charts fill areas of cumulative sums.
// The time window a chart shows, put on its element (as every figure's value is) for whoever checks what the page shows.
function windowOnElement(target) {
  return {
    setScale: [(u, key) => {
      if (key === "x") Object.assign(target.dataset, { from: u.scales.x.min, until: u.scales.x.max });
    }],
  };
}

class TimeChart {
  constructor(target, { stacked = false, format = rate } = {}) {
    this.target = target;
    this.stacked = stacked;
    this.format = format;
    this.keys = null;
    this.plot = null;
    this.newest = null; // the newest sample's time: where the window ends
  }

  update(times, series) {
    const keys = Object.keys(series);
    if (keys.join("\n") !== this.keys) this.build(keys);
    const raw = keys.map((k) => series[k]);
    this.raw = raw;
    this.newest = times.length ? times[times.length - 1] : null;
    let lines = raw;
    if (this.stacked) {
      let sums = times.map(() => 0);
      const stacked = raw.map((values) => (sums = sums.map((s, i) => s + (values[i] ?? 0))));
      lines = stacked.reverse(); // the tallest first, so each smaller area is drawn over it
    }
    this.plot.setData([times, ...lines]);
  }

  build(keys) {
    this.keys = keys.join("\n");
    if (this.plot) this.plot.destroy();
    const order = this.stacked ? [...keys].reverse() : keys;
    const series = order.map((key) => {
      const index = keys.indexOf(key);
      const color = colorOf(key, index);
      return {
        label: key,
        stroke: color,
        fill: this.stacked ? tint(color) : undefined,
        width: 1.5,
        value: (u, v, si, i) => (i == null ? "–" : this.format(this.raw[index]?.[i])),
      };
    });
    const options = {
      width: Math.max(300, this.target.clientWidth - 4),
      height: 200,
      scales: {
        // a scrolling window that ends at the newest sample: a page opened a second ago shows one point at
        // the right edge of five minutes. Not uPlot's `max`: around a single point of a time scale, uPlot
        // stretches it to a thousand days later (86400 / its 1e-3), and the point fell out of the window.
        x: { time: true, range: () => { const end = this.newest ?? Date.now() / 1000; return [end - SHOWN_S, end]; } },
        y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
      },
      axes: [{}, { size: 56 }],
      hooks: windowOnElement(this.target),
      series: [{}, ...series],
    };
    this.plot = new uPlot(options, [[], ...series.map(() => [])], this.target);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(300, this.target.clientWidth - 4), height: 200 });
  }
}

// ---- the live view -------------------------------------------------------------------------------

const samples = [];
let lastT = 0;
const charts = {
  clicks: new TimeChart($("#chart-clicks"), { stacked: true }),
  impressions: new TimeChart($("#chart-impressions"), { stacked: true }),
  redirect: new TimeChart($("#chart-redirect"), { format: ms }),
  callbacks: new TimeChart($("#chart-callbacks"), { stacked: true }),
  callbackLatency: new TimeChart($("#chart-callback-latency"), { format: ms }),
  backlog: new TimeChart($("#chart-backlog"), { format: count }),
};

function ingest(fresh) {
  for (const sample of fresh) if (sample.t > lastT) { samples.push(sample); lastT = sample.t; }
  const oldest = lastT - WINDOW_S;
  while (samples.length && samples[0].t < oldest) samples.shift();
}

function keysOf(field) {
  const keys = new Set();
  for (const s of samples) for (const k of Object.keys(s[field] ?? {})) keys.add(k);
  return [...keys].sort((a, b) => (a === VALID ? -1 : b === VALID ? 1 : a.localeCompare(b)));
}

function byKey(field, keys) {
  return Object.fromEntries(keys.map((k) => [k, samples.map((s) => s[field]?.[k] ?? 0)]));
}

function drawCharts() {
  const times = samples.map((s) => s.t);
  charts.clicks.update(times, byKey("clicks", keysOf("clicks")));
  charts.impressions.update(times, byKey("impressions", keysOf("impressions")));
  charts.redirect.update(times, { p50: samples.map((s) => s.redirect_p50_ms), p99: samples.map((s) => s.redirect_p99_ms) });
  charts.callbacks.update(times, byKey("callbacks", CALLBACKS));
  charts.callbackLatency.update(times, { p99: samples.map((s) => s.callback_p99_ms) });
  charts.backlog.update(times, { lag: samples.map((s) => s.lag), spool: samples.map((s) => s.spool_records) });
}

function setMetric(name, value, text) {
  for (const node of document.querySelectorAll(`[data-metric="${name}"]`)) {
    node.textContent = text;
    node.dataset.value = value == null ? "" : String(value);
  }
}

function totalsTable(target, prefix, counts) {
  const rows = Object.entries(counts ?? {}).map(([reason, n]) =>
    row([cell("th", reason), cell("td", count(n), { "data-metric": `${prefix}.${reason}`, "data-value": String(n) })]));
  const all = Object.values(counts ?? {}).reduce((a, b) => a + b, 0);
  rows.push(row([cell("th", "all"), cell("td", count(all), { "data-metric": `${prefix}.all`, "data-value": String(all) })]));
  target.replaceChildren(...rows);
}

function drawLatest(latest) {
  totalsTable($("#clicks-total"), "clicks", latest.clicks);
  totalsTable($("#impressions-total"), "impressions", latest.impressions);
  for (const name of ["redirect_p50_ms", "redirect_p99_ms", "callback_p99_ms"]) setMetric(name, latest[name], ms(latest[name]));
  for (const name of ["lag", "retry_queue", "spool_records"]) setMetric(name, latest[name], count(latest[name]));
  const ready = latest.log_ready;
  setMetric("log_ready", ready, ready == null ? "–" : ready ? "reachable" : "UNREACHABLE");
  const bound = latest.disk_bound_bytes;
  const share = bound ? ` (${Math.round((100 * latest.disk_bytes) / bound)}%)` : "";
  setMetric("disk", latest.disk_bytes, bound == null ? `${bytes(latest.disk_bytes)} spooled` : `${bytes(latest.disk_bytes)} of ${bytes(bound)}${share}`);
  const rows = Object.entries(latest.bidders ?? {}).map(([member, b]) => row([
    cell("td", member),
    cell("td", b.breaker || "–", { class: `breaker-${b.breaker}`, "data-metric": `bidder.${member}.breaker`, "data-value": b.breaker }),
    ...CALLBACKS.map((k) => cell("td", count(b[k]), { "data-metric": `bidder.${member}.${k}`, "data-value": String(b[k]) })),
  ]));
  $("#bidders tbody").replaceChildren(...rows);
}

function clock(msSinceEpoch) {
  return new Date(msSinceEpoch).toISOString().slice(11, 23);
}

function drawRecent(recent) {
  const note = $("#recent-note");
  note.hidden = recent != null;
  note.textContent = "Recent clicks come from the notifier, and none is writing beside this listener.";
  const rows = (recent ?? []).map((c) => row([
    cell("td", clock(c.time_ms)),
    cell("td", c.click_id, { class: "id" }),
    cell("td", String(c.member)),
    cell("td", String(c.creative)),
    cell("td", c.landing_host),
    cell("td", c.verdict, { class: c.verdict === VALID ? "verdict-valid" : "verdict-invalid" }),
    cell("td", c.callback || "–"),
  ]));
  $("#recent tbody").replaceChildren(...rows);
}

function status(text, bad = false) {
  const node = $("#status");
  node.textContent = text;
  node.classList.toggle("bad", bad);
}

async function poll() {
  try {
    const response = await fetch(`${LIVE}?after=${lastT}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const feed = await response.json();
    ingest(feed.samples);
    drawLatest(feed.latest);
    drawRecent(feed.recent);
    if (!$("#live").hidden) drawCharts();
    const age = Math.max(0, feed.now - feed.written);
    status(`live · ${feed.source === "notifier" ? "sampled by the notifier" : "sampled by this worker"} · ${age.toFixed(1)} s old`);
    document.body.dataset.updated = String(feed.written);
  } catch (error) {
    status(`cannot reach the service (${error.message}); retrying`, true);
  } finally {
    setTimeout(poll, EVERY_MS); // after the answer, never on a fixed beat: a slow answer never piles requests up
  }
}

// ---- the reports view -----------------------------------------------------------------------------
// `/v1/reports` answers {since, until, by, kept_since, clipped, rows: [{<by>..., counters}], totals}; the table
// shows the counters below in this order, each cell keeping the value it was given (data-value, as JSON).

const REPORT_COLUMNS = {
  impressions: "impressions",
  clicks: "clicks",
  ctr: "CTR",
  invalid_impressions: "invalid impressions",
  invalid_clicks: "invalid clicks",
  invalid: "invalid by reason",
  ivt_rate: "IVT rate",
  delivered: "delivered",
  retried: "retried",
  dead_lettered: "dead-lettered",
  callback_p50_ms: "callback p50 (ms)",
  callback_p99_ms: "callback p99 (ms)",
};
const REASONS = new Set(["invalid", "ivt_rate"]); // {reason: n}, shown a reason a line
const GRAIN_S = { hour: 3600, day: 86400 };
const MAX_POINTS = 20000; // beyond this the chart shows only the periods that have rows

let report = null;
let reportsAsked = 0; // only the latest request draws: an earlier, slower answer is dropped
let sortBy = { column: null, descending: true };

function reportParams(form, format) {
  const data = new FormData(form);
  const by = [data.get("time"), ...DIMENSIONS.filter((d) => data.get(`dim-${d}`))].filter(Boolean);
  const params = new URLSearchParams({ since: data.get("since") || "24h" });
  if (data.get("until")) params.set("until", data.get("until"));
  if (by.length) params.set("by", by.join(","));
  params.set("format", format);
  return params;
}

function reportStatus(text, bad = false) {
  const node = $("#report-status");
  node.textContent = text;
  node.classList.toggle("bad", bad);
}

async function refusal(response) {
  const text = await response.text();
  try {
    return JSON.parse(text).error ?? text;
  } catch {
    return text.slice(0, 300);
  }
}

async function loadReport(event) {
  event?.preventDefault();
  const form = $("#report-form");
  $("#report-csv").href = `${REPORTS}?${reportParams(form, "csv")}`;
  reportStatus("loading…");
  const asked = ++reportsAsked;
  let answer = null;
  let text = "";
  let bad = true;
  try {
    const response = await fetch(`${REPORTS}?${reportParams(form, "json")}`, { cache: "no-store" });
    if (response.status === 404) {
      text = "reports not available: this service does not serve /v1/reports.";
    } else if (response.status === 503) {
      text = `reports not available: ${await refusal(response)}`;
    } else if (!response.ok) {
      text = `the report was refused (${response.status}): ${await refusal(response)}`;
    } else {
      answer = await response.json();
      const clipped = answer.clipped ? ` · clipped to what is kept (since ${answer.kept_since})` : "";
      const rows = answer.rows.length === 1 ? "1 row" : `${answer.rows.length} rows`;
      text = `${rows} · ${answer.since} to ${answer.until} (UTC)${clipped}`;
      bad = false;
    }
  } catch (error) {
    text = `reports not available (${error.message}).`;
  }
  if (asked !== reportsAsked) return;
  report = answer;
  reportStatus(text, bad);
  drawReport();
}

function dimensionsOf(rep) {
  return rep.by ?? [];
}

function columnsOf(rep) {
  const totals = rep.totals ?? {};
  return [...dimensionsOf(rep), ...Object.keys(REPORT_COLUMNS).filter((c) => c in totals)];
}

function byReason(value, each) {
  return Object.entries(value).map(([reason, n]) => `${reason} ${each(n)}`).join("\n") || "–"; // a line each
}

const percent = (v, digits = 2) => `${(100 * v).toFixed(digits)}%`;

function show(column, value, dimension) {
  if (value == null) return "–";
  if (column === "hour") return value.replace("T", " ").slice(0, 16); // 2026-12-03 14:00
  if (dimension) return String(value); // ids and labels, never "1,234"
  if (column === "invalid") return byReason(value, count);
  if (column === "ivt_rate") return byReason(value, (v) => percent(v, 1));
  if (column === "ctr") return percent(value);
  if (column.endsWith("_ms")) return value.toFixed(1);
  return typeof value === "number" ? count(value) : String(value);
}

function sortKey(value) {
  if (value && typeof value === "object") return Object.values(value).reduce((a, b) => a + b, 0);
  return value ?? -Infinity;
}

function reportCells(columns, dims, values, tag = "td") {
  return columns.map((c) => cell(tag, show(c, values[c], dims.includes(c)), {
    "data-column": c,
    "data-value": JSON.stringify(values[c] ?? null),
    ...(REASONS.has(c) ? { class: "reasons" } : {}),
  }));
}

function drawReport() {
  const table = $("#report-table");
  const figure = $("#report-figure");
  if (!report) {
    for (const part of [table.tHead, table.tBodies[0], table.tFoot]) part.replaceChildren();
    figure.hidden = true;
    return;
  }
  const dims = dimensionsOf(report);
  const columns = columnsOf(report);
  const rows = [...report.rows];
  if (sortBy.column && columns.includes(sortBy.column)) {
    rows.sort((a, b) => {
      const x = sortKey(a[sortBy.column]);
      const y = sortKey(b[sortBy.column]);
      const order = x < y ? -1 : x > y ? 1 : 0;
      return sortBy.descending ? -order : order;
    });
  }
  table.tHead.replaceChildren(row(columns.map((c) => {
    const th = cell("th", REPORT_COLUMNS[c] ?? c, { "data-column": c, title: "sort" });
    if (c === sortBy.column) th.classList.add(sortBy.descending ? "desc" : "asc");
    return th;
  })));
  table.tBodies[0].replaceChildren(...rows.map((r) => row(reportCells(columns, dims, r))));
  const totals = row(reportCells(columns, dims, report.totals ?? {}));
  if (dims.length) totals.cells[0].textContent = "total";
  table.tFoot.replaceChildren(totals);
  drawReportChart(figure);
}

// Every hour, day or month from the report's start to its end (UTC), so a period without traffic shows as 0.
function timeline(grain, since, until) {
  const times = [];
  const start = new Date(since * 1000);
  let t = grain === "month"
    ? Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), 1) / 1000
    : since - (since % GRAIN_S[grain]);
  while (t < until && times.length <= MAX_POINTS) {
    times.push(t);
    if (grain === "month") {
      const d = new Date(t * 1000);
      t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) / 1000;
    } else {
      t += GRAIN_S[grain];
    }
  }
  return times.length > MAX_POINTS ? [] : times;
}

function drawReportChart(figure) {
  const grain = dimensionsOf(report).find((d) => TIMES.includes(d));
  figure.hidden = !grain;
  if (!grain) return;
  const sums = new Map();
  const since = Math.max(Date.parse(report.since), Date.parse(report.kept_since)) / 1000;
  for (const t of timeline(grain, since, Date.parse(report.until) / 1000)) sums.set(t, { valid: 0, invalid: 0, impressions: 0 });
  for (const r of report.rows) {
    const t = Date.parse(r[grain]) / 1000;
    const s = sums.get(t) ?? { valid: 0, invalid: 0, impressions: 0 };
    s.valid += r.clicks ?? 0;
    s.invalid += r.invalid_clicks ?? 0;
    s.impressions += r.impressions ?? 0;
    sums.set(t, s);
  }
  const times = [...sums.keys()].sort((a, b) => a - b);
  const field = (name) => times.map((t) => sums.get(t)[name]);
  $("#report-figure figcaption").textContent = `Clicks (valid, invalid) and impressions by ${grain} (UTC)`;
  reportChart.update(times, field("valid"), field("invalid"), field("impressions"), GRAIN_S[grain] ?? 31 * 86400);
}

// The report's chart: clicks as bars (valid below, invalid on top), impressions as a line on their own axis.
class ReportChart {
  constructor(target) {
    this.target = target;
    this.plot = null;
    this.raw = [[], [], []];
    this.step = 3600;
    this.span = null; // the first and last period: where the axis starts and ends
  }

  update(times, valid, invalid, impressions, grainS) {
    if (!this.plot) this.build();
    this.raw = [invalid, valid, impressions];
    this.step = times.length > 1 ? Math.min(...times.slice(1).map((t, i) => t - times[i])) : grainS;
    this.span = times.length ? [times[0], times[times.length - 1]] : null;
    this.plot.setData([times, valid.map((v, i) => v + invalid[i]), valid, impressions]);
  }

  build() {
    const bars = uPlot.paths.bars({ size: [0.7, 40] });
    const legend = (index) => (u, v, si, i) => (i == null ? "–" : count(this.raw[index][i]));
    const upFromZero = (u, min, max) => [0, Math.max(1, max * 1.1)];
    const clicks = (label, color, index) => ({
      label, scale: "clicks", stroke: color, fill: tint(color, 0.7), paths: bars, points: { show: false }, value: legend(index),
    });
    const options = {
      width: Math.max(300, this.target.clientWidth - 4),
      height: 240,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"), // reports count UTC hours and days
      hooks: windowOnElement(this.target),
      scales: {
        // whole bars at the ends; the periods' own span, not uPlot's, which is a thousand days for a single period
        x: {
          time: true,
          range: (u, min, max) => {
            const [first, last] = this.span ?? [min, max];
            return [first - this.step / 2, last + this.step / 2];
          },
        },
        clicks: { range: upFromZero },
        impressions: { range: upFromZero },
      },
      axes: [
        {},
        { scale: "clicks", label: "clicks", size: 56 },
        { scale: "impressions", label: "impressions", side: 1, size: 56, grid: { show: false } },
      ],
      series: [
        {},
        clicks("invalid clicks", FIXED.dead_lettered, 0),
        clicks("valid clicks", FIXED.valid, 1),
        { label: "impressions", scale: "impressions", stroke: "#0969da", width: 1.5, points: { show: false }, value: legend(2) },
      ],
    };
    this.plot = new uPlot(options, [[], [], [], []], this.target);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(300, this.target.clientWidth - 4), height: 240 });
  }
}

const reportChart = new ReportChart($("#chart-report"));

function sortOn(event) {
  const column = event.target.closest("th")?.dataset.column;
  if (!column || !report) return;
  sortBy = { column, descending: sortBy.column === column ? !sortBy.descending : true };
  drawReport();
}

// ---- the page --------------------------------------------------------------------------------------

function route() {
  const view = location.hash === "#reports" ? "reports" : "live";
  for (const name of ["live", "reports"]) {
    $(`#${name}`).hidden = name !== view;
    $(`#tab-${name}`).classList.toggle("active", name === view);
  }
  if (view === "live") { for (const chart of Object.values(charts)) chart.resize(); drawCharts(); }
  if (view === "reports") { reportChart.resize(); loadReport(); } // each visit reads the report afresh
}

function start() {
  const dims = $("#dimensions");
  for (const d of DIMENSIONS) {
    const label = cell("label", ` ${d}`);
    const box = cell("input", "", { type: "checkbox", name: `dim-${d}` });
    if (d === "creative") box.checked = true;
    label.prepend(box);
    dims.append(label);
  }
  $("#report-form").addEventListener("submit", loadReport);
  $("#report-table").tHead.addEventListener("click", sortOn);
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", () => { for (const chart of [...Object.values(charts), reportChart]) chart.resize(); });
  route();
  poll();
}

start();
