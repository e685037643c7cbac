// The console's pages. Every page is built from API answers with DOM
// nodes and textContent (never HTML strings), so no value a tenant or a
// destination wrote can become markup.

import * as api from "./api.js";
import { runChart, LEGEND } from "./chart.js";

/** An element with attributes (`on*` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
/** A run time (microseconds since the epoch) in the viewer's time zone. */
export const whenMicros = (us) => (us ? fmt.format(new Date(us / 1000)) : "—");
const whenSeconds = (s) => (s ? fmt.format(new Date(s * 1000)) : "—");
const enc = encodeURIComponent;

function duration(run) {
  if (!run.finished_at) return run.status === "running" ? "running" : "—";
  const ms = (run.finished_at - run.started_at) / 1000;
  return ms < 1000 ? `${Math.round(ms)} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
}

const badge = (status) => h("span", { class: `badge ${status || "none"}` }, status || "never run");
const table = (head, rows, label) => h("div", { class: "table-wrap" },
  h("table", { "aria-label": label }, h("thead", {}, h("tr", {}, head.map(([t, cls]) => h("th", { class: cls, scope: "col" }, t)))),
    h("tbody", {}, rows)));
const stat = (k, v) => h("div", { class: "stat" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k));
const errorBox = (e) => h("p", { class: "error", role: "alert" }, e.message || String(e));

/** The empty state when the tenant has no project yet. */
function noProject() {
  return h("div", { class: "card" },
    h("h2", {}, "No project yet"),
    h("p", {}, "Upload a project to see its syncs here. From the folder holding its sluice.yaml:"),
    h("pre", {}, `sluice apply --server ${location.origin} --token-file TOKEN_FILE`),
    h("p", { class: "muted" }, "Then come back to this page: every sync is listed with its last run."));
}

// ----- sign in -----

export function signInPage(main, done) {
  const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true, spellcheck: "false" });
  const message = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card signin", onsubmit: async (ev) => {
    ev.preventDefault();
    message.replaceChildren();
    try { done(await api.signIn(input.value.trim())); }
    catch (e) { message.replaceChildren(errorBox(e.status === 401 ? { message: "That token is not valid." } : e)); }
  } },
  h("h1", {}, "Sign in"),
  h("p", {}, "Paste a tenant token (slk_…) to see its syncs, or the operator token to manage tenants. The token stays in this browser tab only."),
  h("label", { for: "token" }, "Token"), input,
  h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Sign in")), message);
  main.replaceChildren(form);
  input.focus();
}

// ----- operator -----

export async function tenantsPage(main) {
  const { tenants } = await api.get("/api/v1/tenants");
  main.replaceChildren(h("h1", {}, "Tenants"),
    tenants.length === 0
      ? h("div", { class: "card" }, h("p", {}, "No tenants yet. Create one with POST /api/v1/tenants, then a token for it with POST /api/v1/tokens; sign in with that token to see its syncs."))
      : table([["Tenant"], ["Created"], ["Grant ceiling"]], tenants.map((t) =>
        h("tr", {}, h("td", {}, t.name), h("td", {}, new Date(t.created_at).toLocaleString()),
          h("td", {}, h("code", {}, (t.grant_ceiling || []).join(", "))))), "Tenants"),
    h("p", { class: "muted" }, "The operator sees tenants only; a tenant's syncs and runs are seen with that tenant's token."));
}

// ----- syncs -----

export async function syncsPage(main) {
  const data = await api.get("/api/v1/console/syncs");
  if (!data.has_project) { main.replaceChildren(h("h1", {}, "Syncs"), noProject()); return; }
  const rows = data.syncs.map((s) => h("tr", {},
    h("td", {}, h("a", { href: `#/syncs/${enc(s.name)}` }, s.name), h("div", { class: "muted" }, `${s.model} → ${s.destination}.${s.object} (${s.mode})`)),
    h("td", {}, badge(s.last_run && s.last_run.status), h("div", { class: "muted" }, s.last_run ? whenMicros(s.last_run.started_at) : "")),
    h("td", {}, s.schedule ? (s.paused ? h("span", {}, s.schedule, " ", badge("paused")) : s.schedule) : h("span", { class: "muted" }, "manual")),
    h("td", { class: "hide-narrow" }, s.next_run ? whenSeconds(s.next_run) : "—"),
    h("td", { class: "num" }, s.snapshot_rows.toLocaleString()),
    h("td", { class: "num hide-narrow" }, s.rejected_rows.toLocaleString())));
  main.replaceChildren(h("h1", {}, "Syncs"),
    data.syncs.length === 0
      ? h("div", { class: "card" }, h("p", {}, "The project has no syncs. Add one under `syncs:` in sluice.yaml and apply it again."))
      : table([["Sync"], ["Last run"], ["Schedule"], ["Next run", "hide-narrow"], ["Rows in snapshot", "num"], ["Rejected", "num hide-narrow"]], rows, "Syncs"));
}

/** Follows the sync's next run live; resolves with the finished run. */
export function followRun(name, after, panel) {
  const bar = h("progress", { max: 100, "aria-label": "Run progress" });
  const text = h("span", { id: "progress-text", role: "status", "aria-live": "polite" }, "Queued: waiting for a worker…");
  const link = h("span");
  panel.replaceChildren(h("div", { class: "card progress", id: "progress" }, bar, text, link));
  return new Promise((resolve, reject) => {
    let finished = null;
    const onEvent = (event, data) => {
      if (event === "waiting") return;
      if (event === "error") { reject(new Error(data)); return; }
      if (event === "timeout") return;
      const { run, percent } = JSON.parse(data);
      const c = run.counts;
      if (percent !== null && percent !== undefined) { bar.value = percent; } else { bar.removeAttribute("value"); }
      text.textContent = `${percent === null ? "…" : percent + "%"} · run #${run.id} ${run.status} · ${c.ok} ok, ${c.rejected} rejected, ${c.sent} sent`;
      text.dataset.percent = percent === null ? "" : String(percent);
      if (event === "done") {
        finished = run;
        link.replaceChildren(h("a", { href: `#/runs/${run.id}` }, `Open run #${run.id}`));
      }
    };
    const reconnect = () => api.stream(`/api/v1/syncs/${enc(name)}/progress?after=${after}`, onEvent)
      .then(() => (finished ? resolve(finished) : reconnect()), reject);
    reconnect();
  });
}

function confirmDialog(text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

export async function syncPage(main, name, rerender) {
  const s = await api.get(`/api/v1/console/syncs/${enc(name)}`);
  // The run a progress stream follows is the first after this one.
  let latest = s.runs.length ? s.runs[0].id : 0;
  const message = h("div", { "aria-live": "polite" });
  const live = h("div");
  const act = (label, fn, attrs = {}) => h("button", { type: "button", ...attrs, onclick: async (ev) => {
    const button = ev.currentTarget; button.disabled = true; message.replaceChildren();
    try { await fn(); } catch (e) { message.replaceChildren(errorBox(e)); } finally { button.disabled = false; }
  } }, label);
  const runAndFollow = async (body) => {
    await api.post(`/api/v1/syncs/${enc(name)}/runs`, body);
    latest = (await followRun(name, latest, live)).id;
  };
  const actions = h("div", { class: "actions" },
    act("Run now", () => runAndFollow(undefined), { class: "primary", id: "run-now" }),
    h("a", { class: "button", href: `#/plan/${enc(name)}` }, "Plan next run"),
    act("Full resync…", async () => {
      const ok = await confirmDialog(`A full resync re-sends all ${s.snapshot_rows.toLocaleString()} row(s) in the snapshot of ${name}, and any new ones. Go on?`, `Re-send ${s.snapshot_rows.toLocaleString()} rows`);
      if (ok) await runAndFollow({ full_resync: true });
    }),
    act(`Retry rejected rows (${s.rejected_rows})`, async () => {
      await api.post(`/api/v1/syncs/${enc(name)}/retry`);
      latest = (await followRun(name, latest, live)).id;
    }, { disabled: s.rejected_rows === 0 }),
    s.schedule ? act(s.paused ? "Resume schedule" : "Pause schedule", async () => {
      await api.post(`/api/v1/syncs/${enc(name)}/${s.paused ? "resume" : "pause"}`); rerender();
    }) : null,
    act("Unlock stale run", async () => {
      const r = await api.post(`/api/v1/syncs/${enc(name)}/unlock`);
      message.replaceChildren(h("p", { class: "notice" }, r.unlocked_runs.length ? `Marked run(s) ${r.unlocked_runs.join(", ")} killed.` : "No stale run: nothing to unlock."));
    }));
  const chart = s.runs.length
    ? h("div", { class: "card chart" }, runChart(s.runs, whenMicros),
      h("div", { class: "legend" }, LEGEND.map(([k, label]) => h("span", {}, h("span", { class: `sw ${k}` }), label))))
    : h("div", { class: "card" }, h("p", {}, "No runs yet. Press “Run now”, or “Plan next run” to see what it would send first."));
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/syncs" }, "← Syncs")),
    h("h1", {}, `Sync ${s.name}`),
    h("div", { class: "grid" },
      stat("Last run", s.last_run ? s.last_run.status : "never"),
      stat("Rows in snapshot", s.snapshot_rows.toLocaleString()),
      stat("Rejected (ledger)", s.rejected_rows
        ? h("a", { href: `#/rejected/${enc(s.name)}`, "aria-label": `${s.rejected_rows} rejected row(s): open the ledger` },
          s.rejected_rows.toLocaleString())
        : "0"),
      stat("Schedule", s.schedule ? (s.paused ? `${s.schedule} (paused)` : s.schedule) : "manual"),
      stat("Next run", s.next_run ? whenSeconds(s.next_run) : "—")),
    actions, message, live,
    h("h2", {}, "Rows per run"), chart,
    h("h2", {}, "Last runs"),
    s.runs.length ? runsTable(s.runs) : h("p", { class: "muted" }, "None yet."),
    h("h2", {}, "Configuration"), h("pre", { "aria-label": "The sync in sluice.yaml" }, s.yaml || "(not available)"));
}

function runsTable(runs) {
  return table([["Run"], ["Status"], ["Started"], ["Duration", "hide-narrow"], ["Sent", "num"], ["OK", "num"], ["Rejected", "num"]],
    runs.map((r) => h("tr", {},
      h("td", {}, h("a", { href: `#/runs/${r.id}` }, `#${r.id}`), r.full_resync ? " (full resync)" : ""),
      h("td", {}, badge(r.status)), h("td", {}, whenMicros(r.started_at)), h("td", { class: "hide-narrow" }, duration(r)),
      h("td", { class: "num" }, r.counts.sent), h("td", { class: "num" }, r.counts.ok), h("td", { class: "num" }, r.counts.rejected))), "Runs");
}

// ----- a run -----

const PAGE = 25;

/** The paged results of a search box: `fetchPage(q, offset)` answers
 * {total, rows}; `empty(q)` draws no match, `draw(rows)` a page. */
function pagedSearch(search, fetchPage, empty, draw) {
  const results = h("div");
  let offset = 0;
  const load = async () => {
    const q = search.value.trim();
    const page = await fetchPage(q, offset);
    const pager = h("div", { class: "pager" },
      h("button", { type: "button", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "← Previous"),
      h("span", { class: "muted" }, page.total ? `${offset + 1}–${offset + page.rows.length} of ${page.total.toLocaleString()}` : ""),
      h("button", { type: "button", disabled: offset + PAGE >= page.total, onclick: () => { offset += PAGE; load(); } }, "Next →"));
    results.replaceChildren(page.total === 0 ? empty(q) : h("div", {}, draw(page.rows), pager));
  };
  let timer;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { offset = 0; load(); }, 250); });
  return { results, load };
}

/** How long each stage of a run took: the stages in order, then the busy
 * time of the run stage's parts, which overlap. */
function stageTimings(t) {
  if (!t) return h("p", { class: "muted" }, "Stage timings are recorded when the run ends.");
  const row = (name, ms, what) => h("tr", { class: "stage-row" },
    h("td", {}, name), h("td", { class: "num" }, `${ms.toLocaleString()} ms`), h("td", { class: "hide-narrow muted" }, what));
  return h("div", {},
    table([["Stage"], ["Took", "num"], ["What it covers", "hide-narrow"]], [
      row("load", t.load_ms, "loading and instantiating the plugins"),
      row("discover", t.discover_ms, "asking the destination for its objects (authenticates)"),
      row("mappings", t.mappings_ms, "checking the mappings against the destination's fields"),
      row("run", t.run_ms, "reading, diffing, mapping, transforming, writing, committing"),
      row("deletes", t.deletes_ms, "mirror mode's deletes"),
    ], "Stages"),
    table([["Within run", ""], ["Busy", "num"], ["What it covers", "hide-narrow"]], [
      row("read", t.read_ms, "the source's calls"),
      row("diff, map, transform", t.transform_ms, "against the snapshot, mappings, transforms"),
      row("write", t.write_ms, "delivering chunks, pacing and retries included, summed over writers"),
      row("commit", t.commit_ms, "recording acknowledged rows in the state"),
    ], "Busy time within the run stage"),
    h("p", { class: "muted" }, "The parts of the run stage overlap (the source is read while earlier rows are written), so their busy times can add up to more than the stage."),
    instantiation(t));
}

/** The part of the load stage spent instantiating the run's plugin
 * instances (microseconds; absent from runs recorded before it was). */
function instantiation(t) {
  if (!t.instances) return null;
  const ms = (t.instantiate_us / 1000).toLocaleString(undefined, { maximumFractionDigits: 3 });
  return h("p", { class: "muted stage-instantiate" },
    `Within load: instantiating ${t.instances} plugin instance${t.instances === 1 ? "" : "s"} took ${ms} ms.`);
}

export async function runPage(main, id) {
  const run = await api.get(`/api/v1/runs/${enc(id)}`);
  const c = run.counts;
  const search = h("input", { type: "search", id: "rejected-search", placeholder: "Find a row by key or message" });
  const { results, load } = pagedSearch(search,
    (q, offset) => api.get(`/api/v1/runs/${enc(id)}/rejected/search?q=${enc(q)}&offset=${offset}&limit=${PAGE}`),
    (q) => h("p", { class: "muted" }, q ? `No rejected row matches “${q}”.` : "No row was rejected or invalid in this run."),
    (rows) => table([["Key"], ["Kind"], ["Destination's message"]], rows.map((r) =>
      h("tr", { class: "rejected-row" }, h("td", {}, h("code", {}, r.key ?? "(no key)")), h("td", {}, r.kind), h("td", {}, r.message))), "Rejected rows"));
  const downloadMessage = h("div", { "aria-live": "polite" });
  main.replaceChildren(
    h("p", {}, h("a", { href: `#/syncs/${enc(run.sync)}` }, `← Sync ${run.sync}`)),
    h("h1", {}, `Run #${run.id} of ${run.sync} `, badge(run.status)),
    h("div", { class: "grid" },
      stat("Started", whenMicros(run.started_at)), stat("Duration", duration(run)),
      stat("Planned", c.planned), stat("Added", c.added), stat("Changed", c.changed), stat("Removed", c.removed),
      stat("Unchanged", c.unchanged), stat("Invalid", c.invalid), stat("Sent", c.sent), stat("OK", c.ok),
      stat("Rejected", c.rejected), stat("Retried", c.retried), stat("Throttle waits (API)", c.throttled_waits),
      stat("Paced waits (Sluice)", c.paced_waits), stat("Write calls", c.write_calls), stat("HTTP requests", c.requests),
      stat("Outcome unknown", c.outcome_unknown)),
    run.error ? h("div", { class: "error" }, h("strong", {}, `Failed at stage ${run.stage || "run"}: `), run.error) : "",
    h("h2", {}, "Stages"), stageTimings(run.timings),
    h("h2", {}, "Rejected and invalid rows"),
    h("p", { class: "muted" }, "The rows this run rejected or found invalid, as the state samples them (up to 100 per run). ",
      h("a", { href: `#/rejected/${enc(run.sync)}` }, "Every row still rejected for this sync →")),
    h("label", { for: "rejected-search" }, "Search"), search,
    h("div", { class: "actions" }, h("button", { type: "button", id: "download-csv", onclick: async () => {
      downloadMessage.replaceChildren();
      try { await api.download(`/api/v1/runs/${enc(id)}/rejected.csv`, `run-${id}-rejected.csv`); }
      catch (e) { downloadMessage.replaceChildren(errorBox(e)); }
    } }, "Download CSV")), downloadMessage, results);
  await load();
}

// ----- a sync's whole rejected-row ledger -----

export async function ledgerPage(main, name) {
  const search = h("input", { type: "search", id: "ledger-search", placeholder: "Find a row by key or message" });
  const { results, load } = pagedSearch(search,
    (q, offset) => api.get(`/api/v1/syncs/${enc(name)}/rejected?q=${enc(q)}&offset=${offset}&limit=${PAGE}`),
    (q) => h("p", { class: "muted" }, q ? `No rejected row matches “${q}”.` : "No row of this sync is waiting in the ledger: every rejected row was delivered since."),
    (rows) => table([["Key"], ["Destination's message"], ["Attempts", "num hide-narrow"], ["Runs", "hide-narrow"]], rows.map((r) =>
      h("tr", { class: "ledger-row" }, h("td", {}, h("code", {}, r.key)), h("td", {}, r.message),
        h("td", { class: "num hide-narrow" }, r.attempts),
        h("td", { class: "hide-narrow" }, h("a", { href: `#/runs/${r.first_run}` }, `#${r.first_run}`),
          r.last_run !== r.first_run ? [" … ", h("a", { href: `#/runs/${r.last_run}` }, `#${r.last_run}`)] : ""))), "Rejected-row ledger"));
  const downloadMessage = h("div", { "aria-live": "polite" });
  main.replaceChildren(
    h("p", {}, h("a", { href: `#/syncs/${enc(name)}` }, `← Sync ${name}`)),
    h("h1", {}, `Rejected rows of ${name}`),
    h("p", {}, "Every row the destination refused that no later run delivered. Each run sends them again; “Retry rejected rows” on the sync's page sends only them, now."),
    h("label", { for: "ledger-search" }, "Search"), search,
    h("div", { class: "actions" }, h("button", { type: "button", id: "download-ledger-csv", onclick: async () => {
      downloadMessage.replaceChildren();
      try { await api.download(`/api/v1/syncs/${enc(name)}/rejected.csv`, `${name}-rejected.csv`); }
      catch (e) { downloadMessage.replaceChildren(errorBox(e)); }
    } }, "Download CSV")), downloadMessage, results);
  await load();
}

// ----- plan -----

export async function planPage(main, name) {
  main.replaceChildren(h("p", {}, h("a", { href: `#/syncs/${enc(name)}` }, `← Sync ${name}`)), h("h1", {}, `Plan for ${name}`),
    h("p", { class: "muted", role: "status" }, "Reading the source and comparing with what was delivered…"));
  const plan = await api.post(`/api/v1/syncs/${enc(name)}/plan`);
  const c = plan.counts;
  const live = h("div");
  const samples = plan.planned || [];
  main.replaceChildren(
    h("p", {}, h("a", { href: `#/syncs/${enc(name)}` }, `← Sync ${name}`)),
    h("h1", {}, `Plan for ${name}`),
    h("p", {}, "What the next run would do. Nothing was sent or recorded."),
    plan.config_changed ? h("p", { class: "notice" }, `The sync's configuration changed since its last run: ${c.changed} delivered row(s) will be re-sent.`) : "",
    h("div", { class: "grid" }, stat("Add", c.added), stat("Change", c.changed), stat("Delete", c.removed),
      stat("Unchanged", c.unchanged), stat("Invalid", c.invalid), stat("To send", c.planned)),
    plan.mirror && plan.mirror.refused ? h("p", { class: "error" }, `Deletes would be refused: ${plan.mirror.refused}`) : "",
    h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: async (ev) => {
      ev.currentTarget.disabled = true;
      const s = await api.get(`/api/v1/console/syncs/${enc(name)}`);
      await api.post(`/api/v1/syncs/${enc(name)}/runs`);
      await followRun(name, s.runs.length ? s.runs[0].id : 0, live);
    } }, "Run now")), live,
    h("h2", {}, "Sample rows"),
    samples.length === 0 ? h("p", { class: "muted" }, "Nothing to send: the destination has every row as it is.")
      : table([["Change"], ["Key"], ["Fields as sent"]], samples.map((r) => h("tr", {},
        h("td", {}, r.change), h("td", {}, h("code", {}, r.key)), h("td", {}, h("code", {}, JSON.stringify(r.fields))))), "Sample rows"));
}

// ----- plugins -----

export async function pluginsPage(main) {
  main.replaceChildren(h("h1", {}, "Plugins"), h("p", { class: "muted", role: "status" }, "Loading the project's components…"));
  const data = await api.get("/api/v1/console/plugins");
  if (!data.has_project) { main.replaceChildren(h("h1", {}, "Plugins"), noProject()); return; }
  main.replaceChildren(h("h1", {}, "Plugins"),
    h("p", {}, "Each component the project uses, what it asks for (its imports) and what the project grants it. A plugin reaches only what is both requested and granted."),
    table([["Instance"], ["Plugin"], ["Digest (SHA-256)", "hide-narrow"], ["Requests"], ["Granted"]], data.plugins.map((p) => h("tr", {},
      h("td", {}, p.name, h("div", { class: "muted" }, p.role)),
      h("td", {}, p.plugin, p.world ? h("div", { class: "muted" }, p.world) : null),
      h("td", { class: "hide-narrow" }, h("code", {}, p.digest || "—")),
      h("td", {}, p.error ? h("span", { class: "error" }, p.error) : h("code", {}, p.requested.join(", "))),
      h("td", {}, p.grants.length ? h("code", {}, p.grants.join(", ")) : h("span", { class: "muted" }, "nothing")))), "Plugins"));
}
