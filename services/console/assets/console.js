// The console's only script: confirmation of destructive forms, loading a JWKS file into
// its field, and the usage charts, drawn as SVG from /console/usage/data. Pages work
// without it except for the charts, whose data also downloads as CSV.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // Colors with at least 4.5:1 contrast on white.
  const COLORS = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c"];
  const REFRESH_MS = 15000;

  function confirmForms() {
    for (const form of document.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    }
  }

  function fileFields() {
    for (const input of document.querySelectorAll("input[type=file][data-fill]")) {
      input.addEventListener("change", async () => {
        const target = document.getElementById(input.dataset.fill);
        const file = input.files && input.files[0];
        if (target && file) target.value = await file.text();
      });
    }
  }

  // Rows of a report grouped by `keys`, with `metrics` summed per group.
  function group(rows, keys, metrics) {
    const groups = new Map();
    for (const row of rows) {
      const label = keys.map((k) => (row[k] === "" || row[k] === undefined ? "(none)" : row[k])).join(" / ");
      const sums = groups.get(label) || Object.fromEntries(metrics.map((m) => [m, 0]));
      for (const m of metrics) sums[m] += Number(row[m] || 0);
      groups.set(label, sums);
    }
    return groups;
  }

  // Turns a chart's data-series spec and report rows into labels and series.
  function shape(spec, rows) {
    const [kind, first, second] = spec.split(":");
    if (kind === "time") {
      const metrics = first.split(",");
      const groups = group(rows, ["bucket"], metrics);
      const labels = [...groups.keys()].sort();
      return {
        kind: "line",
        labels,
        series: metrics.map((m) => ({ name: m, values: labels.map((l) => groups.get(l)[m]) })),
      };
    }
    if (kind === "group") {
      const metrics = second.split(",");
      const groups = group(rows, first.split("+"), metrics);
      let labels = [...groups.keys()];
      if (first === "hour_of_day" || first === "day_of_week") {
        labels.sort((a, b) => Number(a) - Number(b));
      } else {
        labels.sort((a, b) => groups.get(b)[metrics[0]] - groups.get(a)[metrics[0]]);
        labels = labels.slice(0, 15);
      }
      return {
        kind: "bar",
        labels,
        series: metrics.map((m) => ({ name: m, values: labels.map((l) => groups.get(l)[m]) })),
      };
    }
    // Latency: quantiles cannot be summed, so each row is its own bar group.
    const keys = first.split("+");
    const sorted = rows.slice().sort((a, b) => b.calls - a.calls).slice(0, 12);
    const labels = sorted.map((r) => keys.map((k) => r[k] || "(none)").join(" / ") + (r.site_id ? ` @ ${r.site_id}` : ""));
    return {
      kind: "bar",
      labels,
      series: ["p50_us", "p95_us", "p99_us"].map((m) => ({
        name: m.replace("_us", " ms"),
        values: sorted.map((r) => Math.round(Number(r[m] || 0) / 10) / 100),
      })),
    };
  }

  function el(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceMax(value) {
    if (value <= 0) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * power) return step * power;
    }
    return 10 * power;
  }

  function shortLabel(label) {
    const text = String(label);
    // Buckets are RFC 3339 times: keep month, day and hour.
    if (/^\d{4}-\d{2}-\d{2}T/.test(text)) return text.slice(5, 13).replace("T", " ") + "h";
    return text.length > 28 ? text.slice(0, 27) + "…" : text;
  }

  function legend(svg, series, width) {
    let x = 8;
    series.forEach((s, i) => {
      svg.append(el("rect", { x, y: 6, width: 12, height: 12, fill: COLORS[i % COLORS.length] }));
      svg.append(el("text", { x: x + 16, y: 16, class: "legend" }, s.name));
      x += 24 + s.name.length * 7.5;
      if (x > width - 60) x = width - 60;
    });
  }

  function axis(svg, left, top, plotWidth, plotHeight, max) {
    for (let i = 0; i <= 4; i++) {
      const y = top + plotHeight - (plotHeight * i) / 4;
      svg.append(el("line", { x1: left, x2: left + plotWidth, y1: y, y2: y, class: "grid" }));
      svg.append(el("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, String(Math.round((max * i) / 4 * 100) / 100)));
    }
  }

  function lineChart(data, title) {
    const width = 640, height = 260, left = 48, top = 28, bottom = 42, right = 12;
    const plotWidth = width - left - right, plotHeight = height - top - bottom;
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
    const max = niceMax(Math.max(0, ...data.series.flatMap((s) => s.values)));
    axis(svg, left, top, plotWidth, plotHeight, max);
    const n = data.labels.length;
    const x = (i) => left + (n <= 1 ? plotWidth / 2 : (plotWidth * i) / (n - 1));
    const y = (v) => top + plotHeight - (plotHeight * v) / max;
    data.series.forEach((s, si) => {
      const color = COLORS[si % COLORS.length];
      const points = s.values.map((v, i) => `${x(i)},${y(v)}`).join(" ");
      svg.append(el("polyline", { points, fill: "none", stroke: color, "stroke-width": 2.5 }));
      s.values.forEach((v, i) => {
        const dot = el("circle", { cx: x(i), cy: y(v), r: 3.5, fill: color });
        dot.append(el("title", {}, `${s.name} ${data.labels[i]}: ${v}`));
        svg.append(dot);
      });
    });
    const step = Math.max(1, Math.ceil(n / 6));
    data.labels.forEach((label, i) => {
      if (i % step === 0) {
        svg.append(el("text", { x: x(i), y: height - bottom + 16, "text-anchor": "middle", class: "tick" }, shortLabel(label)));
      }
    });
    legend(svg, data.series, width);
    return svg;
  }

  function barChart(data, title) {
    const width = 640, left = 190, right = 40, top = 28, barHeight = 12, gap = 10;
    const groupHeight = data.series.length * barHeight + gap;
    const height = top + Math.max(1, data.labels.length) * groupHeight + 20;
    const plotWidth = width - left - right;
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
    const max = niceMax(Math.max(0, ...data.series.flatMap((s) => s.values)));
    data.labels.forEach((label, li) => {
      const y0 = top + li * groupHeight;
      svg.append(el("text", { x: left - 8, y: y0 + (data.series.length * barHeight) / 2 + 4, "text-anchor": "end", class: "tick" }, shortLabel(label)));
      data.series.forEach((s, si) => {
        const value = s.values[li];
        const w = (plotWidth * value) / max;
        const bar = el("rect", { x: left, y: y0 + si * barHeight, width: Math.max(w, 0.5), height: barHeight - 2, fill: COLORS[si % COLORS.length] });
        bar.append(el("title", {}, `${s.name} ${label}: ${value}`));
        svg.append(bar);
        svg.append(el("text", { x: left + w + 4, y: y0 + si * barHeight + barHeight - 3, class: "value" }, String(value)));
      });
    });
    legend(svg, data.series, width);
    return svg;
  }

  function table(data, title) {
    const node = document.createElement("table");
    const caption = document.createElement("caption");
    caption.textContent = title;
    node.append(caption);
    const head = node.createTHead().insertRow();
    for (const name of ["", ...data.series.map((s) => s.name)]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name || "label";
      head.append(th);
    }
    const body = node.createTBody();
    data.labels.forEach((label, i) => {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      row.append(th);
      for (const s of data.series) row.insertCell().textContent = String(s.values[i]);
    });
    return node;
  }

  function csv(data) {
    const quote = (value) => {
      let text = String(value);
      if (/^[=+\-@]/.test(text) && isNaN(Number(text))) text = "'" + text;
      return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
    };
    const lines = [["label", ...data.series.map((s) => s.name)].map(quote).join(",")];
    data.labels.forEach((label, i) => {
      lines.push([label, ...data.series.map((s) => s.values[i])].map(quote).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }

  function filters() {
    const form = document.getElementById("usage-filters");
    const params = new URLSearchParams();
    for (const name of ["range", "site", "app"]) {
      const value = form.elements[name] && form.elements[name].value;
      if (value) params.set(name, value);
    }
    return params;
  }

  async function fetchReport(report, extra) {
    const params = filters();
    params.set("report", report);
    for (const [key, value] of new URLSearchParams(extra)) params.set(key, value);
    const response = await fetch(`/console/usage/data?${params}`, { credentials: "same-origin" });
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok && body.configured !== false) {
      throw new Error(body.error || `HTTP ${response.status}`);
    }
    return body;
  }

  function renderFigure(figure, data) {
    const title = figure.querySelector("figcaption").textContent;
    const body = figure.querySelector(".chart-body");
    const showTable = figure.querySelector("[data-toggle=table]").getAttribute("aria-pressed") === "true";
    body.replaceChildren();
    if (data.labels.length === 0) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No data in this range.";
      body.append(p);
    } else if (showTable) {
      // A named region and a Tab stop, so keyboard users can scroll a wide table.
      const wrap = document.createElement("div");
      wrap.className = "table-wrap";
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", `${title}, table`);
      wrap.tabIndex = 0;
      wrap.append(table(data, title));
      body.append(wrap);
    } else {
      body.append(data.kind === "line" ? lineChart(data, title) : barChart(data, title));
    }
    const link = figure.querySelector("a.csv");
    link.href = "data:text/csv;charset=utf-8," + encodeURIComponent(csv(data));
    link.hidden = false;
    figure.dataset.rows = String(data.labels.length);
    figure.chartData = data;
  }

  function renderTotals(rows) {
    const sum = (m) => rows.reduce((total, r) => total + Number(r[m] || 0), 0);
    const calls = sum("calls");
    const tiles = [
      ["Launches", sum("launches")],
      ["Token grants", sum("token_grants")],
      ["API calls", calls],
      ["Error rate", calls ? `${Math.round((sum("errors") / calls) * 1000) / 10} %` : "0 %"],
    ];
    const box = document.getElementById("usage-totals");
    box.replaceChildren();
    for (const [label, value] of tiles) {
      const tile = document.createElement("div");
      tile.className = "tile";
      tile.dataset.metric = label;
      tile.innerHTML = `<span class="label"></span><span class="figure"></span>`;
      tile.querySelector(".label").textContent = label;
      tile.querySelector(".figure").textContent = String(value);
      box.append(tile);
    }
  }

  async function refreshUsage() {
    const status = document.getElementById("usage-status");
    const figures = [...document.querySelectorAll("figure.chart")];
    const cache = new Map();
    const load = (report, params) => {
      const key = `${report}?${params}`;
      if (!cache.has(key)) cache.set(key, fetchReport(report, params));
      return cache.get(key);
    };
    try {
      const totals = await load("usage", "bucket=total");
      if (totals.configured === false) {
        status.className = "notice error";
        status.textContent = `Usage charts are unavailable: ${totals.reason}.`;
        document.body.dataset.analytics = "off";
        for (const figure of figures) {
          figure.querySelector(".chart-body").innerHTML = "<p class=\"empty\">Analytics not configured.</p>";
        }
        return;
      }
      document.body.dataset.analytics = "on";
      renderTotals(totals.rows || []);
      await Promise.all(
        figures.map(async (figure) => {
          const data = await load(figure.dataset.report, figure.dataset.params);
          renderFigure(figure, shape(figure.dataset.series, data.rows || []));
        }),
      );
      status.className = "notice ok";
      status.textContent = `Updated ${new Date().toLocaleTimeString()} (${totals.from} to ${totals.to}, UTC).`;
    } catch (error) {
      status.className = "notice error";
      status.textContent = `Loading usage failed: ${error.message}`;
    }
  }

  function usagePage() {
    if (!document.getElementById("usage-charts")) return;
    for (const button of document.querySelectorAll("[data-toggle=table]")) {
      button.addEventListener("click", () => {
        const pressed = button.getAttribute("aria-pressed") !== "true";
        button.setAttribute("aria-pressed", String(pressed));
        button.textContent = pressed ? "Show chart" : "Show table";
        const figure = button.closest("figure");
        if (figure.chartData) renderFigure(figure, figure.chartData);
      });
    }
    refreshUsage();
    window.setInterval(() => {
      const live = document.getElementById("live");
      if (live && live.checked && !document.hidden) refreshUsage();
    }, REFRESH_MS);
  }

  confirmForms();
  fileFields();
  usagePage();
})();
