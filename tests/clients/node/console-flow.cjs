// Drives Hearth's console, provider portal, patient portal and bundled demo app in
// headless Chromium, the way an administrator, a clinician and a patient would:
//   1. an administrator signs in, registers an app and activates it at a site;
//   2. in the provider portal it picks a practitioner and a patient and launches the app;
//      the practitioner signs in on Hearth's authorization page and approves;
//   3. the app (the demo app's pages) shows the patient;
//   4. the administrator revokes the grant and the app's next FHIR call fails;
//   5. the usage page shows the launch, or says that analytics is not configured;
//   6. a patient signs in to the patient portal and launches the demo app for itself.
// With "screenshots" set, it saves each page at desktop and phone width as PNG files.
//
// Usage: node console-flow.cjs '<JSON config>' with
//   base_url, admin {username, password}, practitioner {username, password, id, search},
//   patient {username, password, id, search}, app {client_id, name, redirect_uri,
//   launch_uri, scope}, expect_analytics (bool), screenshots (directory or null)
//
// Prints one JSON report on stdout and exits 0 when every step ran, else 1 with "error".
// Packages are loaded from HEARTH_TEST_NODE_DIR (the directory holding node_modules).

"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { createRequire } = require("node:module");

const nodeDir = process.env.HEARTH_TEST_NODE_DIR || __dirname;
const requireDependency = createRequire(path.join(nodeDir, "package.json"));
const { chromium } = requireDependency("playwright-core");

const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const STEP_TIMEOUT_MS = 30_000;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
// How long the usage page may take to show a launch that the analytics sink is still
// writing to ClickHouse.
const ANALYTICS_WAIT_MS = 90_000;

async function main() {
  const config = JSON.parse(process.argv[2] || "{}");
  const report = { pages: [], blocked_requests: [], console_errors: [], screenshots: [] };
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_FLAGS,
  });
  try {
    const admin = await newContext(browser, report);
    await adminFlow(admin, config, report);
    const patient = await newContext(browser, report);
    await patientFlow(patient, config, report);
  } catch (error) {
    report.error = String(error && error.stack ? error.stack : error);
  } finally {
    await browser.close();
  }
  return report;
}

async function newContext(browser, report) {
  const context = await browser.newContext({ viewport: DESKTOP });
  // Every request that does not go to the loopback address is aborted and recorded.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1" || url.protocol === "data:") return route.continue();
    report.blocked_requests.push(url.origin + url.pathname);
    return route.abort();
  });
  context.on("page", (page) => watch(page, report));
  return context;
}

function watch(page, report) {
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (message) => {
    if (message.type() === "error") report.console_errors.push(message.text());
  });
}

// Saves the current page at desktop and phone width.
async function shot(page, config, report, name) {
  if (!config.screenshots) return;
  for (const [label, size] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(size);
    const file = path.join(config.screenshots, `${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true });
    report.screenshots.push(path.basename(file));
  }
  await page.setViewportSize(DESKTOP);
}

async function visit(page, report) {
  report.pages.push({ title: await page.title(), path: new URL(page.url()).pathname });
}

async function submit(page, selector) {
  await Promise.all([page.waitForNavigation(), page.click(selector)]);
}

async function signIn(page, base, user) {
  await page.goto(`${base}/console/sign-in`);
  await page.fill("#username", user.username);
  await page.fill("#password", user.password);
  await submit(page, "main button[type=submit]");
}

async function adminFlow(context, config, report) {
  const base = config.base_url;
  const app = config.app;
  const page = await context.newPage();

  // A wrong password first: the form comes back with an error and no session.
  await page.goto(`${base}/console/sign-in`);
  await visit(page, report);
  await shot(page, config, report, "sign-in");
  await page.fill("#username", config.admin.username);
  await page.fill("#password", "not the password");
  await submit(page, "main button[type=submit]");
  report.wrong_password = await page.textContent("[role=alert]");

  await signIn(page, base, config.admin);
  await visit(page, report);
  report.after_sign_in = new URL(page.url()).pathname;
  await shot(page, config, report, "apps");

  // Register the app.
  await submit(page, "a[href='/console/apps/new']");
  await visit(page, report);
  await page.fill("#client_id", app.client_id);
  await page.fill("#name", app.name);
  await page.selectOption("#client_type", "public");
  await page.fill("#redirect_uris", app.redirect_uri);
  await page.fill("#launch_uri", app.launch_uri);
  await page.fill("#scope", app.scope);
  await page.fill("#vendor", "Console test vendor");
  await shot(page, config, report, "app-register");
  await submit(page, "form.app-form button[type=submit]");
  await visit(page, report);
  report.registered = {
    path: new URL(page.url()).pathname,
    client_id: await page.textContent("#client-id"),
    notice: await page.textContent("[role=status]"),
  };
  await shot(page, config, report, "app-detail");

  // Activate it at the default site.
  await page.goto(`${base}/console/sites`);
  await visit(page, report);
  await shot(page, config, report, "sites");
  await submit(page, "a[href='/console/sites/default']");
  await submit(page, `button[aria-label='Activate ${app.name}']`);
  await visit(page, report);
  report.activated = await page.textContent("[role=status]");
  report.app_status_at_site = await page.$eval(
    `button[aria-label='Deactivate ${app.name}']`,
    (button) => button.closest("tr").children[2].textContent,
  );

  // Provider portal: search and pick the practitioner and the patient, then launch.
  const portal = new URL(`${base}/console/portal`);
  portal.searchParams.set("practitioner_name", config.practitioner.search);
  portal.searchParams.set("patient_name", config.patient.search);
  await page.goto(portal.toString());
  await visit(page, report);
  await page.check(`input[name=practitioner][value='${config.practitioner.id}']`);
  await page.check(`input[name=patient][value='${config.patient.id}']`);
  await submit(page, "form.portal button[type=submit]");
  report.portal = {
    chosen_patient: await page.textContent("#chosen-patient"),
    apps: await page.$$eval("button[data-client-id]", (buttons) => buttons.map((b) => b.dataset.clientId)),
    encounters: await page.$$eval("input[name=encounter]", (inputs) => inputs.length),
  };
  await shot(page, config, report, "provider-portal");
  await submit(page, `button[data-client-id='${app.client_id}']`);

  // Hearth's authorization pages, as the practitioner.
  await page.waitForSelector("#username");
  await visit(page, report);
  await page.fill("#username", config.practitioner.username);
  await page.fill("#password", config.practitioner.password);
  await submit(page, "button[type=submit]");
  await page.waitForSelector("button[name=decision][value=approve]");
  await visit(page, report);
  await submit(page, "button[name=decision][value=approve]");

  // The app shows the patient.
  await page.waitForSelector("body[data-state=ready], body[data-state=failed]");
  await visit(page, report);
  report.app_page = await appPage(page);
  await shot(page, config, report, "demo-app");

  // Revoke the grant in the console (in another tab), then reload in the app.
  const consolePage = await context.newPage();
  await consolePage.goto(`${base}/console/sites/default`);
  report.grants_before = await grantRows(consolePage);
  const live = report.grants_before.find((g) => g.client_id === app.client_id && g.live);
  if (!live) throw new Error(`no live grant of ${app.client_id} is listed`);
  report.revoked_grant = live.grant_id;
  await submit(consolePage, `button[aria-label='Revoke grant ${live.grant_id}']`);
  report.revoked = await consolePage.textContent("[role=status]");
  report.grants_after = await grantRows(consolePage);
  await shot(consolePage, config, report, "site");

  await page.bringToFront();
  await page.click("#reload");
  await page.waitForSelector("body[data-state=failed], body[data-state=ready]");
  report.after_revoke = await appPage(page);

  // Usage.
  await consolePage.goto(`${base}/console/usage`);
  await consolePage.waitForFunction(() => document.body.dataset.analytics !== undefined);
  report.usage = await usage(consolePage, config);
  await visit(consolePage, report);
  await shot(consolePage, config, report, "usage");

  // Sign out: the session ends and console pages send the browser to sign-in again.
  await submit(consolePage, "form.signout button");
  await consolePage.goto(`${base}/console/apps`);
  report.after_sign_out = new URL(consolePage.url()).pathname;
}

async function grantRows(page) {
  return page.$$eval("section[aria-labelledby=grants-heading] tbody tr", (rows) =>
    rows
      .filter((row) => row.children.length > 1)
      .map((row) => ({
        grant_id: row.dataset.grantId,
        client_id: row.children[1].textContent,
        user: row.children[2].textContent,
        patient: row.children[3].textContent,
        live: row.querySelector("button") !== null,
      })),
  );
}

async function appPage(page) {
  return page.evaluate(() => ({
    state: document.body.dataset.state,
    path: window.location.pathname,
    patient_name: document.getElementById("patient-name").textContent,
    patient_id: document.getElementById("patient-id").textContent,
    fhir_user: document.getElementById("fhir-user").textContent,
    conditions: document.querySelectorAll("#condition-list li").length,
    observations: document.querySelectorAll("#observation-rows tr").length,
    error: document.getElementById("error").hidden ? null : document.getElementById("error").textContent,
  }));
}

// Reads the usage page. With analytics expected, waits (reloading) until the totals
// count a launch, because the sink writes to ClickHouse a moment after the launch.
async function usage(page, config) {
  const read = () =>
    page.evaluate(() => ({
      analytics: document.body.dataset.analytics,
      status: document.getElementById("usage-status").textContent,
      totals: Object.fromEntries(
        [...document.querySelectorAll(".tile")].map((t) => [t.dataset.metric, t.querySelector(".figure").textContent]),
      ),
      charts: Object.fromEntries(
        [...document.querySelectorAll("figure.chart")].map((f) => [f.id, Number(f.dataset.rows || 0)]),
      ),
      csv_links: [...document.querySelectorAll("figure.chart a.csv")].filter((a) => !a.hidden && a.href.startsWith("data:text/csv")).length,
    }));
  const settled = () =>
    page.waitForFunction(() => /\b(ok|error)\b/.test(document.getElementById("usage-status").className));
  await settled();
  let result = await read();
  const deadline = Date.now() + ANALYTICS_WAIT_MS;
  while (config.expect_analytics && Date.now() < deadline && !(Number(result.totals.Launches) >= 1)) {
    await page.waitForTimeout(3000);
    await page.reload();
    await settled();
    result = await read();
  }
  if (result.analytics === "on") {
    await page.click("#chart-launches [data-toggle=table]");
    result.launches_table_rows = await page.$$eval("#chart-launches tbody tr", (rows) => rows.length);
  }
  return result;
}

async function patientFlow(context, config, report) {
  const base = config.base_url;
  const page = await context.newPage();
  await signIn(page, base, config.patient);
  await visit(page, report);
  report.patient_portal = {
    path: new URL(page.url()).pathname,
    apps: await page.$$eval("button[data-client-id]", (buttons) => buttons.map((b) => b.dataset.clientId)),
    nav: await page.$$eval("nav a", (links) => links.map((a) => a.textContent)),
  };
  await shot(page, config, report, "patient-portal");
  await submit(page, "button[data-client-id='hearth-demo-app']");
  await page.waitForSelector("#username");
  await page.fill("#username", config.patient.username);
  await page.fill("#password", config.patient.password);
  await submit(page, "button[type=submit]");
  await page.waitForSelector("button[name=decision][value=approve]");
  await submit(page, "button[name=decision][value=approve]");
  await page.waitForSelector("body[data-state=ready], body[data-state=failed]");
  report.patient_app = await appPage(page);

  // A patient has no console pages beyond its portal.
  const response = await page.goto(`${base}/console/apps`);
  report.patient_apps_status = response.status();
}

main().then((report) => {
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exit(report.error ? 1 : 0);
});
