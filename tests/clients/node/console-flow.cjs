// Drives Hearth's console, provider portal, patient portal and bundled demo app in
// headless Chromium, the way an administrator, a clinician and a patient would:
//   1. an administrator signs in, registers an app and activates it at a site;
//   2. in the provider portal it picks a practitioner and a patient and launches the app;
//      the practitioner signs in on Hearth's authorization page and approves;
//   3. the app (the demo app's pages) shows the patient;
//   4. the administrator revokes the grant and the app's next FHIR call fails;
//   5. the usage page shows the launch, or says that analytics is not configured;
//   6. a practitioner signs in to the provider portal and launches the demo app, and the
//      authorization page takes the portal session instead of asking for a sign-in;
//      after signing out of the portal it asks again;
//   7. a patient signs in to the patient portal and launches the demo app for itself.
// Every page is audited with axe-core and a keyboard walk at desktop and phone width
// (report.accessibility). With "screenshots" set, it saves each page at both widths as
// PNG files.
//
// Usage: node console-flow.cjs '<JSON config>' with
//   base_url, admin {username, password}, practitioner {username, password, id, search},
//   patient {username, password, id, search}, app {client_id, name, redirect_uri,
//   launch_uri, scope}, expect_analytics (bool), screenshots (directory or null)
//
// Prints one JSON report on stdout and exits 0 when every step ran, else 1 with "error".
// Packages are loaded from HEARTH_TEST_NODE_DIR (the directory holding node_modules).

"use strict";

const path = require("node:path");
const browser = require("./browser.cjs");

const { DESKTOP, PHONE } = browser;
// How long the usage page may take to show a launch that the analytics sink is still
// writing to ClickHouse.
const ANALYTICS_WAIT_MS = 90_000;
// The usage page reloads its data every 15 seconds; a second update must come within this.
const LIVE_REFRESH_WAIT_MS = 40_000;

async function main() {
  const config = JSON.parse(process.argv[2] || "{}");
  const report = {
    pages: [],
    blocked_requests: [],
    console_errors: [],
    screenshots: [],
    accessibility: [],
  };
  const chromium = await browser.launchBrowser();
  try {
    const admin = await newContext(chromium, report);
    await adminFlow(admin, config, report);
    const practitioner = await newContext(chromium, report);
    await practitionerFlow(practitioner, config, report);
    const patient = await newContext(chromium, report);
    await patientFlow(patient, config, report);
  } catch (error) {
    report.error = String(error && error.stack ? error.stack : error);
  } finally {
    await chromium.close();
  }
  return report;
}

async function newContext(chromium, report) {
  const context = await chromium.newContext({ viewport: DESKTOP });
  await browser.blockOtherHosts(context, report);
  context.on("page", (page) => browser.watchConsole(page, report));
  return context;
}

// Records the page, audits it for accessibility and saves its screenshots.
async function check(page, config, report, name, options = {}) {
  await visit(page, report);
  await browser.audit(page, report, name);
  if (options.screenshot !== false) await shot(page, config, report, name);
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
  await check(page, config, report, "sign-in");
  await page.fill("#username", config.admin.username);
  await page.fill("#password", "not the password");
  await submit(page, "main button[type=submit]");
  report.wrong_password = await page.textContent("[role=alert]");
  await check(page, config, report, "sign-in-error", { screenshot: false });

  await signIn(page, base, config.admin);
  report.after_sign_in = new URL(page.url()).pathname;
  await check(page, config, report, "apps");

  // Register the app. The form comes back with an error for a javascript: launch URI
  // first.
  await submit(page, "a[href='/console/apps/new']");
  report.form_limits = await page.evaluate(() =>
    Object.fromEntries(
      ["client_id", "name", "launch_uri", "scope", "vendor", "jwks_uri"].map((id) => [id, document.getElementById(id).maxLength]),
    ),
  );
  await page.fill("#client_id", app.client_id);
  await page.fill("#name", app.name);
  await page.selectOption("#client_type", "public");
  await page.fill("#redirect_uris", app.redirect_uri);
  await page.fill("#launch_uri", app.launch_uri);
  await page.fill("#scope", app.scope);
  await page.fill("#vendor", "Console test vendor");
  await check(page, config, report, "app-register");
  await page.fill("#launch_uri", "javascript:alert(document.cookie)");
  await submit(page, "form.app-form button[type=submit]");
  report.bad_launch_uri = {
    error: await page.textContent("[role=alert]"),
    kept_name: await page.inputValue("#name"),
  };
  await page.fill("#launch_uri", app.launch_uri);
  await submit(page, "form.app-form button[type=submit]");
  report.registered = {
    path: new URL(page.url()).pathname,
    client_id: await page.textContent("#client-id"),
    notice: await page.textContent("[role=status]"),
  };
  await check(page, config, report, "app-detail");

  // Create a site backed by an upstream EHR, with every setting the EHR proxy has.
  await page.goto(`${base}/console/sites`);
  await check(page, config, report, "sites");
  if (config.ehr_site) await ehrSite(page, config, report);

  // Users: add a practitioner who uses the provider portal, then disable it.
  if (config.portal_user) await users(page, config, report);

  // Activate the app at the default site.
  await page.goto(`${base}/console/sites`);
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
  await page.check(`input[name=practitioner][value='${config.practitioner.id}']`);
  await page.check(`input[name=patient][value='${config.patient.id}']`);
  await submit(page, "form.portal button[type=submit]");
  report.portal = {
    chosen_patient: await page.textContent("#chosen-patient"),
    apps: await page.$$eval("button[data-client-id]", (buttons) => buttons.map((b) => b.dataset.clientId)),
    encounters: await page.$$eval("input[name=encounter]", (inputs) => inputs.length),
  };
  await check(page, config, report, "provider-portal");
  await submit(page, `button[data-client-id='${app.client_id}']`);

  // Hearth's authorization pages. The administrator's session does not count for a launch
  // created for another user, so the practitioner signs in here.
  await page.waitForSelector("#username, button[name=decision][value=approve]");
  report.admin_launch_asked_sign_in = (await page.$("#username")) !== null;
  await page.waitForSelector("#username");
  await check(page, config, report, "authorize-sign-in");
  await page.fill("#username", config.practitioner.username);
  await page.fill("#password", config.practitioner.password);
  await submit(page, "button[type=submit]");
  await page.waitForSelector("button[name=decision][value=approve]");
  await check(page, config, report, "authorize-approve");
  await submit(page, "button[name=decision][value=approve]");

  // The app shows the patient.
  await page.waitForSelector("body[data-state=ready], body[data-state=failed]");
  report.app_page = await appPage(page);
  await check(page, config, report, "demo-app");

  // Revoke the grant in the console (in another tab), then reload in the app.
  const consolePage = await context.newPage();
  await consolePage.goto(`${base}/console/sites/default`);
  report.grants_before = await grantRows(consolePage);
  report.revoke_all_label = await consolePage.textContent("form input[name=all] ~ button");
  const live = report.grants_before.find((g) => g.client_id === app.client_id && g.live);
  if (!live) throw new Error(`no live grant of ${app.client_id} is listed`);
  report.revoked_grant = live.grant_id;
  await submit(consolePage, `button[aria-label='Revoke grant ${live.grant_id}']`);
  report.revoked = await consolePage.textContent("[role=status]");
  report.grants_after = await grantRows(consolePage);
  await check(consolePage, config, report, "site");

  await page.bringToFront();
  await page.click("#reload");
  await page.waitForSelector("body[data-state=failed], body[data-state=ready]");
  report.after_revoke = await appPage(page);
  await check(page, config, report, "demo-app-failed", { screenshot: false });

  // Usage.
  await consolePage.goto(`${base}/console/usage`);
  await consolePage.waitForFunction(() => document.body.dataset.analytics !== undefined);
  report.usage = await usage(consolePage, config);
  await check(consolePage, config, report, "usage");
  if (report.usage.analytics === "on") {
    report.usage.tables = await showTables(consolePage);
    await check(consolePage, config, report, "usage-table", { screenshot: false });
    // The same page narrowed to the registered app, as its vendor sees it.
    await consolePage.goto(`${base}/console/usage?app=${encodeURIComponent(app.client_id)}`);
    await consolePage.waitForFunction(() => document.body.dataset.analytics !== undefined);
    report.app_usage = await usage(consolePage, config);
  }

  // A page that does not exist gets the console's error page.
  const missing = await consolePage.goto(`${base}/console/sites/no-such-site`);
  report.missing_site_status = missing.status();
  await check(consolePage, config, report, "not-found", { screenshot: false });

  // Sign out: the session ends and console pages send the browser to sign-in again.
  await consolePage.goto(`${base}/console/apps`);
  await submit(consolePage, "form.signout button");
  await consolePage.goto(`${base}/console/apps`);
  report.after_sign_out = new URL(consolePage.url()).pathname;

  // The disabled user cannot sign in.
  if (config.portal_user) {
    await signIn(consolePage, base, config.portal_user);
    report.disabled_user_sign_in = {
      path: new URL(consolePage.url()).pathname,
      alert: await consolePage.textContent("[role=alert]"),
    };
  }
}

// Fills the site form from a settings object of the config.
async function fillSiteForm(page, settings) {
  await page.fill("#site_name", settings.name);
  await page.fill("#upstream_base_url", settings.upstream_base_url);
  await page.selectOption("#upstream_fhir_version", settings.upstream_fhir_version);
  await page.check(`input[name=upstream_auth_method][value='${settings.upstream_auth_method}']`);
  await page.fill("#upstream_client_id", settings.upstream_client_id || "");
  await page.fill("#upstream_token_url", settings.upstream_token_url || "");
  await page.fill("#upstream_scope", settings.upstream_scope || "");
  await page.fill("#default_cache_freshness_s", String(settings.default_cache_freshness_s));
  await page.fill("#cache_freshness_s", settings.cache_freshness_lines);
  await page.setChecked("input[name=dynamic_registration]", settings.dynamic_registration);
}

async function siteSettings(page) {
  return page.$$eval("#site-settings dt", (terms) =>
    Object.fromEntries(terms.map((dt) => [dt.textContent, dt.nextElementSibling.textContent])),
  );
}

async function ehrSite(page, config, report) {
  const site = config.ehr_site;
  const result = {};
  report.ehr_site = result;
  await page.fill("#site_id", site.site_id);
  await page.selectOption("#backing", "ehr");
  await fillSiteForm(page, site.create);
  await submit(page, "form.site-form button[type=submit]");
  result.created_path = new URL(page.url()).pathname;
  result.created_notice = await page.textContent("[role=status]").catch(() => null);
  result.created = await siteSettings(page);
  await check(page, config, report, "site-ehr");
  if (!site.update) return;

  await submit(page, "a[href$='/settings']");
  result.form_bearer_hint = await page.textContent("#bearer-hint");
  result.form_values = await page.evaluate(() => ({
    upstream_base_url: document.getElementById("upstream_base_url").value,
    upstream_fhir_version: document.getElementById("upstream_fhir_version").value,
    upstream_auth_method: document.querySelector("input[name=upstream_auth_method]:checked").value,
    upstream_client_id: document.getElementById("upstream_client_id").value,
    default_cache_freshness_s: document.getElementById("default_cache_freshness_s").value,
    cache_freshness_s: document.getElementById("cache_freshness_s").value,
    dynamic_registration: document.querySelector("input[name=dynamic_registration]").checked,
  }));
  await check(page, config, report, "site-settings");
  await fillSiteForm(page, site.update);
  await submit(page, "form.site-form button[type=submit]");
  result.updated_path = new URL(page.url()).pathname;
  result.updated_notice = await page.textContent("[role=status]").catch(() => null);
  result.updated = await siteSettings(page);

  // A rejected form comes back with the error and the values as typed.
  await submit(page, "a[href$='/settings']");
  await page.fill("#cache_freshness_s", "Patient=soon");
  await submit(page, "form.site-form button[type=submit]");
  result.rejected_error = await page.textContent("[role=alert]");
  result.rejected_value = await page.inputValue("#cache_freshness_s");
}

async function users(page, config, report) {
  const user = config.portal_user;
  const result = {};
  report.users = result;
  await page.goto(`${config.base_url}/console/users`);
  await check(page, config, report, "users");
  await page.fill("#new_username", user.username);
  await page.fill("#new_display_name", user.display_name);
  await page.fill("#new_password", user.password);
  await page.fill("#new_fhir_user", user.fhir_user);
  await page.selectOption("#new_role", "");
  await submit(page, "form.user-form button[type=submit]");
  result.created_notice = await page.textContent("[role=status]");
  result.listed = await userRow(page, user.username);
  // The form asks for a confirmation first.
  page.once("dialog", (dialog) => {
    result.confirmation = dialog.message();
    dialog.accept();
  });
  await submit(page, `button[aria-label='Disable ${user.username}']`);
  result.disabled_notice = await page.textContent("[role=status]");
  result.after_disable = await userRow(page, user.username);
  await check(page, config, report, "users-after-disable", { screenshot: false });
}

async function userRow(page, username) {
  return page.$eval(`tr[data-username='${username}']`, (row) => ({
    fhir_user: row.children[2].textContent,
    roles: row.children[3].textContent,
    status: row.children[5].textContent,
  }));
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
  if (result.analytics !== "on") return result;
  // Live refresh: the status line changes again while the page stays loaded.
  await page.evaluate(() => {
    window.hearthTestMarker = true;
  });
  const before = await page.textContent("#usage-status");
  result.live_refresh = await page
    .waitForFunction(
      (text) => document.getElementById("usage-status").textContent !== text && window.hearthTestMarker === true,
      before,
      { timeout: LIVE_REFRESH_WAIT_MS },
    )
    .then(() => true, () => false);

  // The CSV download of the launches chart.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#chart-launches a.csv")]);
  const file = await download.path();
  result.launches_csv = {
    name: download.suggestedFilename(),
    lines: require("node:fs").readFileSync(file, "utf8").trim().split(/\r?\n/),
  };
  return result;
}

// Opens the authorization page of an app launch and returns which page Hearth showed
// first: "sign-in", "picker" or "approve".
async function firstAuthorizationPage(page) {
  await page.waitForSelector("#username, button[name=patient], input#name, button[name=decision][value=approve]");
  if (await page.$("#username")) return "sign-in";
  if (await page.$("button[name=decision][value=approve]")) return "approve";
  return "picker";
}

// Posts the approval form of the page with its CSRF value replaced, from inside the page,
// and returns the response status. Hearth must reject it.
async function forgedApproval(page) {
  return page.evaluate(async () => {
    const form = document.querySelector("button[name=decision]").form;
    const data = new URLSearchParams(new FormData(form));
    data.set("csrf", "forged");
    data.set("decision", "approve");
    const response = await fetch(form.action, { method: "POST", body: data, redirect: "manual" });
    return response.status;
  });
}

// Switches every chart of the usage page to its table view and returns, per chart, the
// rows its data has and the body rows its table shows.
async function showTables(page) {
  for (const button of await page.$$("figure.chart [data-toggle=table]")) {
    await button.click();
  }
  return page.$$eval("figure.chart", (figures) =>
    Object.fromEntries(
      figures.map((f) => [
        f.id,
        {
          rows: Number(f.dataset.rows || 0),
          table_rows: f.querySelectorAll(".chart-body table tbody tr").length,
          pressed: f.querySelector("[data-toggle=table]").getAttribute("aria-pressed"),
        },
      ]),
    ),
  );
}

async function practitionerFlow(context, config, report) {
  const base = config.base_url;
  const page = await context.newPage();
  const result = {};
  report.practitioner_session = result;

  await signIn(page, base, config.practitioner);
  result.start_page = new URL(page.url()).pathname;
  const portal = new URL(`${base}/console/portal`);
  portal.searchParams.set("patient_name", config.patient.search);
  await page.goto(portal.toString());
  await page.check(`input[name=patient][value='${config.patient.id}']`);
  await submit(page, "form.portal button[type=submit]");
  await check(page, config, report, "provider-portal-practitioner", { screenshot: false });
  await submit(page, "button[data-client-id='hearth-demo-app']");

  result.launch_first_page = await firstAuthorizationPage(page);
  result.forged_approval_status = await forgedApproval(page);
  await page.waitForSelector("button[name=decision][value=approve]");
  await submit(page, "button[name=decision][value=approve]");
  await page.waitForSelector("body[data-state=ready], body[data-state=failed]");
  result.app = await appPage(page);

  // A standalone launch of the demo app takes the same session.
  await page.goto(`${base}/demo-app/launch.html?iss=${encodeURIComponent(`${base}/fhir`)}`);
  result.standalone_first_page = await firstAuthorizationPage(page);

  // After signing out of the portal, the authorization page asks for a sign-in again.
  await page.goto(`${base}/console/portal`);
  await submit(page, "form.signout button");
  await page.goto(`${base}/demo-app/launch.html?iss=${encodeURIComponent(`${base}/fhir`)}`);
  result.after_sign_out_first_page = await firstAuthorizationPage(page);
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
  await check(page, config, report, "patient-portal");
  await submit(page, "button[data-client-id='hearth-demo-app']");
  report.patient_launch_first_page = await firstAuthorizationPage(page);
  await page.waitForSelector("button[name=decision][value=approve]");
  await submit(page, "button[name=decision][value=approve]");
  await page.waitForSelector("body[data-state=ready], body[data-state=failed]");
  report.patient_app = await appPage(page);

  // A patient has no console pages beyond its portal.
  const response = await page.goto(`${base}/console/apps`);
  report.patient_apps_status = response.status();
  await check(page, config, report, "forbidden", { screenshot: false });
}

main().then((report) => {
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exit(report.error ? 1 : 0);
});
