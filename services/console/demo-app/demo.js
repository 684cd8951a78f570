// The Hearth demo SMART app. launch.html starts the authorization with the SMART
// JavaScript client (window.FHIR from fhir-client.js); index.html is the redirect URI,
// where the client completes it and the app reads the patient's record.
"use strict";

const CLIENT_ID = "hearth-demo-app";
const READ_SCOPES = "openid fhirUser patient/Patient.rs patient/Condition.rs patient/Observation.rs";
const OBSERVATIONS_SHOWN = 10;

function byId(id) {
  return document.getElementById(id);
}

function showError(error) {
  const status = error && error.status ? ` (HTTP ${error.status})` : "";
  byId("status").hidden = true;
  byId("error").hidden = false;
  byId("error").textContent = `The request failed${status}: ${error && error.message ? error.message : error}`;
  document.body.dataset.state = "failed";
}

// An EHR launch carries `launch`; without it this is a standalone launch, where Hearth
// asks the user to pick the patient. Another registered app may reuse these pages with a
// launch URI of launch.html?client_id=its-id.
function authorize() {
  const params = new URLSearchParams(window.location.search);
  const launchScope = params.get("launch") ? "launch" : "launch/patient";
  return FHIR.oauth2.authorize({
    clientId: params.get("client_id") || CLIENT_ID,
    scope: `${launchScope} ${READ_SCOPES}`,
    redirectUri: "./",
  });
}

function humanName(resource) {
  const name = (resource.name || [])[0] || {};
  const parts = [].concat(name.given || [], name.family ? [name.family] : []);
  return name.text || parts.join(" ") || resource.id;
}

function codeText(concept) {
  if (!concept) return "";
  if (concept.text) return concept.text;
  const coding = (concept.coding || [])[0] || {};
  return coding.display || coding.code || "";
}

function observationValue(observation) {
  const quantity = observation.valueQuantity;
  if (quantity) {
    const value = Math.round(quantity.value * 100) / 100;
    return `${value} ${quantity.unit || quantity.code || ""}`.trim();
  }
  if (observation.valueCodeableConcept) return codeText(observation.valueCodeableConcept);
  if (observation.valueString) return observation.valueString;
  const parts = (observation.component || []).map(
    (c) => `${codeText(c.code)}: ${c.valueQuantity ? observationValue(c) : ""}`,
  );
  return parts.join("; ");
}

function observationDate(observation) {
  return observation.effectiveDateTime || observation.issued || (observation.effectivePeriod || {}).start || "";
}

async function latestObservations(client, patientId) {
  const query = `Observation?patient=${encodeURIComponent(patientId)}&_sort=-date&_count=${OBSERVATIONS_SHOWN}`;
  let observations;
  try {
    observations = await client.request(query, { flat: true });
  } catch (error) {
    // A server without _sort support: read a larger page and sort here.
    if (error.status !== 400) throw error;
    observations = await client.request(
      `Observation?patient=${encodeURIComponent(patientId)}&_count=200`,
      { flat: true },
    );
  }
  return observations
    .sort((a, b) => observationDate(b).localeCompare(observationDate(a)))
    .slice(0, OBSERVATIONS_SHOWN);
}

function renderPatient(client, patient) {
  byId("patient-name").textContent = humanName(patient);
  byId("patient-id").textContent = patient.id;
  byId("patient-gender").textContent = patient.gender || "unknown";
  byId("patient-birth-date").textContent = patient.birthDate || "unknown";
  byId("fhir-user").textContent = client.getFhirUser() || "not shared";
  byId("patient").hidden = false;
}

function renderConditions(conditions) {
  const list = byId("condition-list");
  list.replaceChildren();
  for (const condition of conditions) {
    const item = document.createElement("li");
    const status = codeText(condition.clinicalStatus);
    const onset = (condition.onsetDateTime || "").slice(0, 10);
    item.textContent = `${codeText(condition.code)}${onset ? `, since ${onset}` : ""}`;
    if (status && status !== "active") {
      item.textContent += ` (${status})`;
      item.className = "status-inactive";
    }
    list.append(item);
  }
  if (conditions.length === 0) list.innerHTML = "<li>No conditions recorded.</li>";
  byId("conditions").hidden = false;
}

function renderObservations(observations) {
  const rows = byId("observation-rows");
  rows.replaceChildren();
  for (const observation of observations) {
    const row = document.createElement("tr");
    for (const text of [
      observationDate(observation).slice(0, 10),
      codeText(observation.code),
      observationValue(observation),
    ]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    rows.append(row);
  }
  byId("observations").hidden = false;
}

async function showRecord(client) {
  const patient = await client.patient.read();
  renderPatient(client, patient);
  const conditions = await client.request(
    `Condition?patient=${encodeURIComponent(patient.id)}&_count=100`,
    { flat: true },
  );
  renderConditions(conditions);
  renderObservations(await latestObservations(client, patient.id));
  byId("status").textContent = `Showing the record of ${humanName(patient)}.`;
  document.body.dataset.state = "ready";
}

// Reads the patient again with the current access token, so a revoked grant shows here.
async function reload(client) {
  document.body.dataset.state = "loading";
  byId("error").hidden = true;
  byId("status").hidden = false;
  byId("status").textContent = "Reloading…";
  try {
    await showRecord(client);
  } catch (error) {
    showError(error);
  }
}

function start() {
  if (document.body.dataset.page === "launch") {
    authorize().catch(showError);
    return;
  }
  FHIR.oauth2
    .ready()
    .then((client) => {
      byId("reload").addEventListener("click", () => reload(client));
      return showRecord(client);
    })
    .catch((error) => {
      showError(error);
      byId("help").hidden = false;
    });
}

start();
