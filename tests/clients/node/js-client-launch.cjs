// Runs a SMART app built on the SMART JavaScript client (npm fhirclient) in headless
// Chromium against a running Hearth. It opens the app's launch URL, signs in on Hearth's
// sign-in page, picks the patient when Hearth shows its patient picker, approves, and
// reads what the app page shows. With "refresh", it then presses the app's refresh
// button, which calls client.refresh() and reads again with the new token.
//
// Usage: node js-client-launch.cjs '<JSON config>'
//   launch_url      the app's launch page with iss (and launch for an EHR launch)
//   username, password
//   patient_search  text for the picker's name search (standalone launches)
//   patient_id      the patient to pick
//   refresh         true to refresh the access token after the first reads
//
// Prints one JSON object on stdout, and exits 0 when the app reached its result page.
// Otherwise the object has "error" (with the steps done so far) and the exit code is 1.
// browser.cjs starts Chromium and loads the packages from HEARTH_TEST_NODE_DIR.

"use strict";

const browser = require("./browser.cjs");

async function main() {
  const config = JSON.parse(process.argv[2] || "{}");
  for (const name of ["launch_url", "username", "password"]) {
    if (!config[name]) throw new Error(`the config has no ${name}`);
  }

  const { context, close } = await browser.launchPersistent();
  const report = { pages: [], blocked_requests: [], console_errors: [] };
  try {
    await browser.blockOtherHosts(context, report);
    const page = context.pages()[0] || (await context.newPage());
    browser.watchConsole(page, report);
    page.on("response", (response) => recordFailure(response, report));
    await runFlow(page, config, report);
  } catch (error) {
    report.error = String(error && error.stack ? error.stack : error);
  } finally {
    await close();
  }
  return report;
}

// Records an error response (status 400 and above) with the start of its body.
async function recordFailure(response, report) {
  if (response.status() < 400) return;
  const body = await response.text().catch(() => "");
  report.failed_responses = report.failed_responses || [];
  report.failed_responses.push({
    method: response.request().method(),
    url: withoutQuery(response.url()),
    status: response.status(),
    body: body.slice(0, 500),
  });
}

async function runFlow(page, config, report) {
  await page.goto(config.launch_url);

  await page.waitForSelector("#username");
  report.pages.push({ title: await page.title(), url: withoutQuery(page.url()) });
  await page.fill("#username", config.username);
  await page.fill("#password", config.password);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);

  if (await page.$("button[name=patient], input#name")) {
    report.picker = await pickPatient(page, config, report);
  }

  await page.waitForSelector("button[name=decision][value=approve]");
  report.pages.push({ title: await page.title(), url: withoutQuery(page.url()) });
  report.approval = {
    heading: await page.textContent("h1"),
    permissions: await page.$$eval("main ul li", (items) => items.map((i) => i.textContent)),
    patient: await page.$eval("main", (main) => {
      const strong = main.querySelector("p strong");
      return strong ? strong.textContent : null;
    }),
  };
  await Promise.all([
    page.waitForNavigation(),
    page.click("button[name=decision][value=approve]"),
  ]);

  report.app = await waitForApp(page, "ready", "#result");
  report.pages.push({ title: await page.title(), url: withoutQuery(page.url()) });
  report.shown = await shownValues(page);

  if (config.refresh) {
    await page.click("#refresh");
    report.refresh = await waitForApp(page, "refreshed", "#refresh-result");
    report.shown_after_refresh = await page.textContent("#refresh-status");
  }
}

// Searches the picker by name, records the patients it lists and picks the configured one.
async function pickPatient(page, config, report) {
  report.pages.push({ title: await page.title(), url: withoutQuery(page.url()) });
  const picker = {};
  if (config.patient_search) {
    await page.fill("#name", config.patient_search);
    await Promise.all([page.waitForNavigation(), page.click("button[name=search]")]);
    picker.search = config.patient_search;
  }
  picker.choices = await page.$$eval("button[name=patient]", (buttons) =>
    buttons.map((b) => ({ id: b.value, name: b.textContent })),
  );
  if (!config.patient_id) throw new Error("Hearth showed its patient picker but the config has no patient_id");
  const button = await page.$(`button[name=patient][value="${config.patient_id}"]`);
  if (!button) {
    throw new Error(`the picker does not list patient ${config.patient_id}: ${JSON.stringify(picker.choices)}`);
  }
  await Promise.all([page.waitForNavigation(), button.click()]);
  return picker;
}

// Waits until the app page reaches `state` and returns the JSON it wrote into `selector`.
async function waitForApp(page, state, selector) {
  await page.waitForFunction(
    (expected) => [expected, "failed"].includes(document.body && document.body.dataset.state),
    state,
  );
  const reached = await page.evaluate(() => document.body.dataset.state);
  if (reached === "failed") {
    throw new Error(`the app failed: ${await page.textContent("#error")}`);
  }
  return JSON.parse(await page.textContent(selector));
}

// The text the app page shows to its user.
async function shownValues(page) {
  const text = (selector) => page.textContent(selector).then((t) => (t || "").trim());
  const banner = await page.$("#patient-banner");
  return {
    patient_name: await text("#patient-name"),
    patient_id: await text("#patient-id"),
    encounter: await text("#encounter"),
    need_patient_banner: await text("#need-patient-banner"),
    banner: (await banner.isVisible()) ? await text("#patient-banner") : null,
    intent: await text("#intent"),
    style_highlight: await text("#style-highlight"),
    fhir_user: await text("#fhir-user"),
    observation_count: await text("#observation-count"),
    visible_patient_count: await text("#visible-patient-count"),
  };
}

// Strips query and fragment, which carry codes and state.
function withoutQuery(url) {
  const parsed = new URL(url);
  return parsed.origin + parsed.pathname;
}

main().then(
  (report) => {
    process.stdout.write(JSON.stringify(report) + "\n");
    process.exitCode = report.error ? 1 : 0;
  },
  (error) => {
    process.stdout.write(JSON.stringify({ error: String(error && error.stack ? error.stack : error) }) + "\n");
    process.exit(1);
  },
);
