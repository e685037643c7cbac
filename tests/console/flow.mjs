// The web console in headless Chromium (Debian's /usr/bin/chromium, driven
// by playwright-core; no browser download). Started by
// tests/tests/console.rs, which sets up the server, a worker, two tenants
// and a receiver that rejects the first row, and passes them in the
// environment. Any console error or uncaught exception fails the flow.
//
// Signs in as tenant A, opens the syncs, plans and runs the sync from its
// page, watches the progress reach 100%, opens the run (its stage timings),
// finds the planted rejected row by its key, downloads the CSV and checks
// it, pauses and resumes the schedule, finds the row in the sync's whole
// ledger and its CSV, retries the rejected row; then signs in as tenant B
// and checks nothing of A shows; then as the operator (tenants).
// Screenshots of every page go to $SCREENSHOTS.

import { chromium } from "playwright-core";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (tests/tests/console.rs sets it)`);
  return value;
}

const base = env("CONSOLE_URL");
const tokenA = env("TOKEN_A");
const tokenB = env("TOKEN_B");
const operator = env("OPERATOR_TOKEN");
const sync = env("SYNC");
const planted = env("PLANTED_KEY");
const snapshotRows = env("SNAPSHOT_ROWS_AFTER_RUN");
const shots = env("SCREENSHOTS");
const csvOut = env("CSV_OUT");
const TIMEOUT = 90_000;

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

await mkdir(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  timeout: TIMEOUT,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-sync",
    "--disable-background-networking", "--disable-component-update"],
});
const errors = [];
// Set while the flow asks for another tenant's objects on purpose: the
// browser logs each 404 answer as a console error, which is expected then.
let expecting404 = false;

try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 }, acceptDownloads: true, timezoneId: "Asia/Tokyo",
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (expecting404 && /status of 404/.test(m.text())) return;
    errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`uncaught: ${e.message}`));
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  const bodyText = () => page.locator("body").innerText();

  async function signIn(token) {
    await page.goto(`${base}/#/syncs`);
    const field = page.getByLabel("Token");
    await field.fill(token);
    await field.press("Enter"); // the form submits from the keyboard
  }

  // ----- tenant A: sign in, syncs -----
  await page.goto(`${base}/`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await shot("signin");
  await signIn(tokenA);
  await page.getByRole("heading", { name: "Syncs" }).waitFor();
  const syncLink = page.getByRole("link", { name: sync, exact: true });
  await syncLink.waitFor();
  check((await bodyText()).includes("every 86400s"), "the syncs list shows the schedule");
  check(/GMT\+9|Asia\/Tokyo/.test(await page.locator("#tz").innerText()), "times are in the viewer's time zone");
  await shot("syncs");

  // Keyboard: focus the sync's link and follow it with Enter.
  await syncLink.focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: `Sync ${sync}` }).waitFor();
  await shot("sync-before-run");

  // ----- the plan -----
  await page.getByRole("link", { name: "Plan next run" }).click();
  await page.getByRole("heading", { name: "Sample rows" }).waitFor();
  const planText = await bodyText();
  check(planText.includes(planted), "the plan's samples show the planted row");
  await shot("plan");
  await page.goBack();
  await page.getByRole("heading", { name: `Sync ${sync}` }).waitFor();

  // ----- run from the page, live progress to 100% -----
  await page.getByRole("button", { name: "Run now" }).click();
  await page.waitForFunction(() => document.getElementById("progress-text")?.dataset.percent === "100",
    null, { timeout: 180_000 });
  check((await page.locator("progress").getAttribute("value")) === "100", "the progress bar is full");
  await shot("progress");

  // ----- the run: planted rejected row by key, CSV -----
  await page.getByRole("link", { name: /Open run #\d+/ }).click();
  await page.getByRole("heading", { name: /Run #\d+ of/ }).waitFor();
  const runHash = new URL(page.url()).hash;
  const stageRows = await page.locator("tr.stage-row").allInnerTexts();
  check(stageRows.length === 9 && stageRows.every((t) => /\d ms/.test(t)),
    `the run page shows how long each stage took: ${stageRows.join(" | ")}`);
  await page.getByLabel("Search").fill(planted);
  const row = page.locator("tr.rejected-row", { hasText: planted });
  await row.waitFor();
  check((await page.locator("tr.rejected-row").count()) === 1, "the search finds exactly the planted row");
  check((await row.innerText()).includes("400"), "the destination's message is shown");
  await shot("run");
  await page.getByLabel("Search").fill("no-such-key");
  await page.getByText("No rejected row matches").waitFor();
  await page.getByLabel("Search").fill("");
  await page.locator("tr.rejected-row").first().waitFor();

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download CSV" }).click(),
  ]);
  await download.saveAs(csvOut);
  const csv = (await readFile(csvOut, "utf8")).trim().split(/\r?\n/);
  check(csv[0] === "kind,key,message", `CSV header: ${csv[0]}`);
  // Keys are written as `sluice rejected` prints them (a text key quoted).
  check(csv.length === 2 && csv[1].startsWith("rejected,") && csv[1].includes(planted) && csv[1].includes("400"),
    `CSV rows: ${csv.join(" | ")}`);

  // ----- actions on the sync page -----
  await page.getByRole("link", { name: `← Sync ${sync}` }).click();
  await page.getByRole("heading", { name: `Sync ${sync}` }).waitFor();
  await page.getByRole("button", { name: "Full resync…" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  check((await dialog.innerText()).includes(`all ${snapshotRows} row(s)`), "the resync confirmation states the row count");
  await shot("full-resync-confirm");
  await page.keyboard.press("Escape"); // cancels: nothing is enqueued
  await dialog.waitFor({ state: "hidden" });

  await page.getByRole("button", { name: "Pause schedule" }).click();
  await page.getByRole("button", { name: "Resume schedule" }).waitFor();
  check((await bodyText()).includes("(paused)"), "a paused schedule says so");
  await page.getByRole("button", { name: "Resume schedule" }).click();
  await page.getByRole("button", { name: "Pause schedule" }).waitFor();

  await page.getByRole("button", { name: "Unlock stale run" }).click();
  await page.getByText("No stale run: nothing to unlock.").waitFor();

  // ----- the sync's whole rejected-row ledger -----
  await page.getByRole("link", { name: /open the ledger/ }).click();
  await page.getByRole("heading", { name: `Rejected rows of ${sync}` }).waitFor();
  await page.getByLabel("Search").fill(planted);
  await page.locator("tr.ledger-row", { hasText: planted }).waitFor();
  check((await page.locator("tr.ledger-row").count()) === 1, "the ledger search finds exactly the planted row");
  await shot("ledger");
  const [ledgerDownload] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Download CSV" }).click(),
  ]);
  await ledgerDownload.saveAs(`${csvOut}.ledger`);
  const ledgerCsv = (await readFile(`${csvOut}.ledger`, "utf8")).trim().split(/\r?\n/);
  check(ledgerCsv[0] === "key,message,attempts,first_run,last_run", `ledger CSV header: ${ledgerCsv[0]}`);
  check(ledgerCsv.length === 2 && ledgerCsv[1].includes(planted) && ledgerCsv[1].includes("400"),
    `ledger CSV rows: ${ledgerCsv.join(" | ")}`);
  await page.getByRole("link", { name: `← Sync ${sync}` }).click();
  await page.getByRole("heading", { name: `Sync ${sync}` }).waitFor();

  await page.getByRole("button", { name: "Retry rejected rows (1)" }).click();
  await page.waitForFunction(() => document.getElementById("progress-text")?.dataset.percent === "100",
    null, { timeout: 180_000 });
  await page.reload();
  await page.getByRole("button", { name: "Retry rejected rows (0)" }).waitFor();
  await shot("sync");

  // ----- plugins -----
  await page.getByRole("link", { name: "Plugins" }).click();
  await page.getByRole("cell", { name: /^hook/ }).waitFor();
  check(/[0-9a-f]{64}/.test(await bodyText()), "each plugin shows its digest");
  await shot("plugins");

  // ----- a narrow screen -----
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/#/syncs`);
  await syncLink.waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the syncs page fits a narrow screen (overflow ${overflow}px)`);
  await shot("syncs-narrow");
  await page.setViewportSize({ width: 1280, height: 800 });

  // ----- tenant B sees nothing of A -----
  await page.getByRole("button", { name: "Sign out" }).click();
  await signIn(tokenB);
  await page.getByRole("heading", { name: "Syncs" }).waitFor();
  await page.getByRole("link", { name: "beta_contacts" }).waitFor();
  check(!(await bodyText()).includes(sync), "B's syncs list does not show A's sync");
  expecting404 = true;
  for (const hash of [runHash, `#/syncs/${sync}`, `#/plan/${sync}`, `#/rejected/${sync}`]) {
    await page.goto(`${base}/${hash}`);
    await page.getByRole("heading", { name: "Not found" }).waitFor();
    const text = await bodyText();
    check(!text.includes(planted), `B's ${hash} shows nothing of A's rows`);
  }
  await shot("other-tenant");
  const runId = runHash.split("/")[2];
  const statuses = await page.evaluate(async ({ runId, sync }) => {
    const auth = { authorization: `Bearer ${sessionStorage.getItem("sluice.token")}` };
    const paths = [`/api/v1/runs/${runId}/rejected.csv`, `/api/v1/runs/${runId}/rejected/search?q=`,
      `/api/v1/syncs/${sync}/progress`, `/api/v1/console/syncs/${sync}`, `/api/v1/syncs/${sync}/rejected?q=`,
      `/api/v1/syncs/${sync}/rejected.csv`];
    const out = [];
    for (const p of paths) out.push((await fetch(p, { headers: auth })).status);
    for (const p of ["pause", "resume", "unlock", "retry", "plan"]) {
      out.push((await fetch(`/api/v1/syncs/${sync}/${p}`, { method: "POST", headers: auth })).status);
    }
    return out;
  }, { runId, sync });
  check(statuses.every((s) => s === 404), `B's calls on A's objects answer 404: ${statuses}`);
  await page.goto(`${base}/#/plugins`);
  await page.getByRole("heading", { name: "Plugins" }).waitFor();
  await page.getByRole("cell", { name: /^hook/ }).waitFor();
  expecting404 = false;

  // ----- the operator sees tenants -----
  await page.getByRole("button", { name: "Sign out" }).click();
  await signIn(operator);
  await page.getByRole("heading", { name: "Tenants" }).waitFor();
  const tenants = await bodyText();
  check(tenants.includes("acme") && tenants.includes("beta"), "the operator sees both tenants");
  check(!tenants.includes(planted), "the operator's page holds no tenant's rows");
  await shot("tenants");

  await context.close();
} finally {
  await browser.close();
}

if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(1);
}
console.log("console flow passed");
