// Shared parts of the scripts that drive Hearth's pages in headless Chromium: starting
// Debian's Chromium through playwright-core, keeping it on 127.0.0.1, recording console
// errors, and auditing a page for accessibility with axe-core plus a keyboard check.
//
// Packages are loaded from HEARTH_TEST_NODE_DIR (the directory holding node_modules),
// else from this script's directory.

"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { createRequire } = require("node:module");

const nodeDir = process.env.HEARTH_TEST_NODE_DIR || __dirname;
const requireDependency = createRequire(path.join(nodeDir, "package.json"));
const { chromium } = requireDependency("playwright-core");

const CHROMIUM = "/usr/bin/chromium";

// Chromium runs as root in CI, so it runs without its sandbox. The networking flags keep
// it from contacting anything but the test's own servers.
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

// The axe-core rule tags the audit runs: WCAG 2.0, 2.1 and 2.2 at levels A and AA, plus
// axe's best practices (landmarks, one main, heading order, and the like).
const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"];

// Starts Chromium with its own fresh profile.
async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
}

// Starts Chromium with a persistent profile in a new temporary directory. The returned
// close() stops it and deletes the profile.
async function launchPersistent() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "hearth-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
  });
  const close = async () => {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}

// Aborts every request that does not go to the loopback address, and records it in
// report.blocked_requests.
async function blockOtherHosts(context, report) {
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === "127.0.0.1" || url.protocol === "data:") {
      return route.continue();
    }
    report.blocked_requests.push(url.origin + url.pathname);
    return route.abort();
  });
}

// Sets the step timeout of a page and records its console errors in report.console_errors.
function watchConsole(page, report) {
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on("console", (message) => {
    if (message.type() === "error") report.console_errors.push(message.text());
  });
}

// Runs axe-core on the page as it is and returns its violations, each with the CSS
// selectors of the offending elements.
async function axeViolations(page) {
  const loaded = await page.evaluate(() => typeof window.axe === "object");
  if (!loaded) {
    await page.addScriptTag({ path: requireDependency.resolve("axe-core/axe.min.js") });
  }
  const results = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] }),
    AXE_TAGS,
  );
  return results.violations.map((v) => ({
    rule: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
  }));
}

// Presses Tab through the page and checks that focus starts at the skip link, reaches
// every focusable control in document order (one stop per radio group), and is drawn
// with a visible outline. Returns the number of Tab stops and a list of problems, empty
// when the page passes.
async function keyboardWalk(page) {
  const expected = await page.evaluate(() => {
    const selector = "a[href], button, input, select, textarea, summary, [tabindex]";
    const seenRadioGroups = new Set();
    const stops = [];
    for (const element of document.querySelectorAll(selector)) {
      if (element.disabled || element.type === "hidden" || element.tabIndex < 0) continue;
      if (element.closest("[hidden], [inert]") || element.getClientRects().length === 0) continue;
      if (element.type === "radio") {
        const group = element.form ? `${element.name}@form` : element.name;
        if (seenRadioGroups.has(group)) continue;
        const members = [...document.querySelectorAll(`input[type=radio][name="${CSS.escape(element.name)}"]`)];
        const checked = members.find((m) => m.checked);
        if (checked && checked !== element) {
          // Tab stops at the checked radio of a group, wherever it sits.
          seenRadioGroups.add(group);
          checked.dataset.auditStop = String(stops.length);
          stops.push(describe(checked));
          continue;
        }
        seenRadioGroups.add(group);
      }
      element.dataset.auditStop = String(stops.length);
      stops.push(describe(element));
    }
    return stops;

    function describe(element) {
      const name = element.id || element.getAttribute("name") || element.getAttribute("aria-label") || element.textContent.trim().slice(0, 40);
      return `${element.tagName.toLowerCase()} ${name}`;
    }
  });

  const problems = [];
  const hasNavigation = await page.evaluate(() => document.querySelector("nav") !== null);
  // Focus goes to a temporary element at the start of the body, which is no Tab stop
  // itself, so the first Tab moves to the first stop of the document.
  await page.evaluate(() => {
    const start = document.createElement("span");
    start.tabIndex = -1;
    start.id = "audit-start";
    document.body.prepend(start);
    start.focus();
  });
  for (let i = 0; i < expected.length; i += 1) {
    await page.keyboard.press("Tab");
    const focus = await page.evaluate(() => {
      const element = document.activeElement;
      if (!element || element === document.body) return null;
      const style = window.getComputedStyle(element);
      const outlined = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2;
      return { stop: element.dataset.auditStop, outlined, tag: element.tagName.toLowerCase(), id: element.id };
    });
    if (!focus) {
      problems.push(`Tab ${i + 1} left focus on the page body; expected ${expected[i]}`);
      break;
    }
    if (focus.stop !== String(i)) {
      problems.push(`Tab ${i + 1} focused ${focus.tag}#${focus.id} (stop ${focus.stop}); expected ${expected[i]}`);
      break;
    }
    if (!focus.outlined) problems.push(`${expected[i]} has no visible focus outline`);
  }
  const skipFirst = await page.evaluate(() => {
    const first = document.querySelector("[data-audit-stop='0']");
    return first !== null && first.matches("a[href^='#']");
  });
  if (expected.length > 0 && hasNavigation && !skipFirst) {
    problems.push(`the first Tab stop is ${expected[0]}, not a link that skips the navigation`);
  }
  await page.evaluate(() => {
    for (const element of document.querySelectorAll("[data-audit-stop]")) delete element.dataset.auditStop;
    document.getElementById("audit-start").remove();
    if (document.activeElement) document.activeElement.blur();
  });
  return { stops: expected.length, problems };
}

// Returns null when the page fits the viewport's width, else the page's scroll width and
// the elements that stick out past the right edge (at most five), so a long unbroken name
// that widens the page is named.
async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const root = document.documentElement;
    if (root.scrollWidth <= root.clientWidth) return null;
    const wide = [];
    for (const element of document.body.querySelectorAll("*")) {
      const box = element.getBoundingClientRect();
      if (box.right > root.clientWidth + 1 && !element.closest(".table-wrap, .chart-body")) {
        wide.push(`${element.tagName.toLowerCase()}${element.id ? "#" + element.id : ""} ${Math.round(box.right)}px`);
        if (wide.length === 5) break;
      }
    }
    return { scroll_width: root.scrollWidth, client_width: root.clientWidth, elements: wide };
  });
}

// Audits the current page at desktop and phone width and appends one entry per width to
// report.accessibility: the page's name, width, axe violations, Tab stops, keyboard
// problems and, when the page scrolls sideways, its overflow (see horizontalOverflow).
// The viewport is back at desktop width afterwards.
async function audit(page, report, name) {
  for (const [label, size] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(size);
    const entry = { page: name, width: label, path: new URL(page.url()).pathname };
    entry.overflow = await horizontalOverflow(page);
    entry.violations = await axeViolations(page);
    const walk = await keyboardWalk(page);
    entry.tab_stops = walk.stops;
    entry.keyboard = walk.problems;
    report.accessibility.push(entry);
  }
  await page.setViewportSize(DESKTOP);
}

module.exports = {
  DESKTOP,
  PHONE,
  STEP_TIMEOUT_MS,
  audit,
  blockOtherHosts,
  launchBrowser,
  launchPersistent,
  requireDependency,
  watchConsole,
};
