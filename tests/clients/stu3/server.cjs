// An FHIR STU3 (3.0.1) server for the EHR proxy tests.
//
// node-fhir-server-core (npm, MIT) provides the STU3 REST layer: the /3_0_1 routes, the
// STU3 CapabilityStatement, STU3 search parameter definitions and OperationOutcome
// errors. This file provides its storage: the resources of Synthea STU3 transaction
// Bundles, held in memory, each passed through the library's STU3 model classes, which
// keep only STU3 elements. It serves read, update (of STU3 content only) and search by
// `_id`, `patient`, `subject`, the encounter parameters and Patient `name`, with `_count` and `_offset`
// paging. Other search parameters are ignored, as a lenient server does.
//
// Usage: node server.cjs PORT BUNDLE_FILE... (listens on 127.0.0.1; base /3_0_1).
// It prints "listening" on standard output once it accepts requests.

'use strict';

const fs = require('fs');
const { initialize, resolveSchema, ServerError, loggers } = require('@asymmetrik/node-fhir-server-core');

const VERSION = '3_0_1';
const TYPES = [
  'Patient',
  'Encounter',
  'Condition',
  'Observation',
  'MedicationRequest',
  'AllergyIntolerance',
  'Procedure',
  'Immunization',
  'DiagnosticReport',
  'Practitioner',
  'Organization',
];

const [port, ...files] = process.argv.slice(2);
if (!port || files.length === 0) {
  console.error('usage: node server.cjs PORT BUNDLE_FILE...');
  process.exit(2);
}

// STU3 search parameters on the element `context` (the encounter) by type. STU3's
// MedicationRequest has only `context`, which R4 renamed to `encounter`.
const ENCOUNTER_PARAMS = {
  Condition: ['encounter', 'context'],
  Procedure: ['encounter', 'context'],
  Observation: ['encounter', 'context'],
  DiagnosticReport: ['encounter', 'context'],
  MedicationRequest: ['context'],
};

// Resources by type and id, as STU3 JSON with relative references.
const store = new Map(TYPES.map((type) => [type, new Map()]));

function load(paths) {
  const bundles = paths.map((path) => JSON.parse(fs.readFileSync(path, 'utf8')));
  const targets = new Map();
  for (const bundle of bundles) {
    for (const entry of bundle.entry || []) {
      const { resourceType, id } = entry.resource;
      if (entry.fullUrl && id) {
        targets.set(entry.fullUrl, `${resourceType}/${id}`);
      }
    }
  }
  for (const bundle of bundles) {
    for (const entry of bundle.entry || []) {
      const resource = entry.resource;
      if (!store.has(resource.resourceType)) {
        continue;
      }
      const text = JSON.stringify(resource).replace(
        /"reference":"(urn:uuid:[^"]+)"/g,
        (match, url) => (targets.has(url) ? `"reference":"${targets.get(url)}"` : match),
      );
      const Model = model(resource.resourceType);
      store.get(resource.resourceType).set(resource.id, new Model(JSON.parse(text)).toJSON());
    }
  }
}

// The library's STU3 indexes (2.2.5) of model classes, search parameters and controllers
// leave out AllergyIntolerance, whose files exist beside the others. Adding them to the
// indexes before the server starts enables its routes like any other type's.
const STU3_DIR = `@asymmetrik/node-fhir-server-core/dist/server/resources/${VERSION}`;
const MISSING = {
  schemas: 'allergyintolerance',
  parameters: 'allergyintolerance.parameters',
  controllers: 'allergyintolerance.controller',
};
for (const [index, file] of Object.entries(MISSING)) {
  const entries = require(`${STU3_DIR}/${index}`);
  if (!entries.allergyintolerance) {
    entries.allergyintolerance = require(`${STU3_DIR}/${index}/${file}`);
  }
}

function model(type) {
  return resolveSchema(VERSION, type.toLowerCase());
}

function notFound(type, id) {
  return new ServerError(`${type}/${id} is not known`, {
    statusCode: 404,
    issue: [{ severity: 'error', code: 'not-found', diagnostics: `${type}/${id} is not known` }],
  });
}

function referenceMatches(reference, wanted) {
  if (!reference || !wanted) {
    return false;
  }
  return reference === wanted || reference === `Patient/${wanted}`;
}

function nameMatches(patient, wanted) {
  const prefix = wanted.toLowerCase();
  return (patient.name || []).some((name) =>
    [name.family, ...(name.given || []), name.text]
      .filter((part) => typeof part === 'string')
      .some((part) => part.toLowerCase().startsWith(prefix)),
  );
}

function matches(resource, query) {
  if (query._id && !query._id.split(',').includes(resource.id)) {
    return false;
  }
  // `patient` and `subject` must both match when both are given.
  for (const name of ['patient', 'subject']) {
    const wanted = query[name];
    if (!wanted) {
      continue;
    }
    const reference = (resource.patient || resource.subject || {}).reference;
    const self = resource.resourceType === 'Patient' && referenceMatches(`Patient/${resource.id}`, wanted);
    if (!self && !referenceMatches(reference, wanted)) {
      return false;
    }
  }
  if (query.name && resource.resourceType === 'Patient' && !nameMatches(resource, query.name)) {
    return false;
  }
  for (const name of ENCOUNTER_PARAMS[resource.resourceType] || []) {
    const wanted = query[name];
    const reference = (resource.context || {}).reference;
    if (wanted && reference !== wanted && reference !== `Encounter/${wanted}`) {
      return false;
    }
  }
  return true;
}

// Returns the paths of elements that the STU3 model class dropped from `body`: elements
// that STU3 does not have, such as R4's Condition.encounter or Condition.recordedDate.
function nonStu3Elements(body, kept, path) {
  if (Array.isArray(body)) {
    return body.flatMap((item, i) => nonStu3Elements(item, (kept || [])[i], `${path}[${i}]`));
  }
  if (body === null || typeof body !== 'object') {
    return [];
  }
  return Object.keys(body).flatMap((key) =>
    kept && key in kept ? nonStu3Elements(body[key], kept[key], `${path}.${key}`) : [`${path}.${key}`],
  );
}

function invalid(diagnostics) {
  return new ServerError(diagnostics, {
    statusCode: 400,
    issue: [{ severity: 'error', code: 'structure', diagnostics }],
  });
}

function single(value) {
  return Array.isArray(value) ? value[0] : value;
}

function searchBundle(type, req) {
  const query = {};
  for (const [name, value] of Object.entries(req.query)) {
    query[name] = single(value);
  }
  const count = Math.max(0, Math.min(Number.parseInt(query._count || '10', 10) || 10, 100));
  const offset = Math.max(0, Number.parseInt(query._offset || '0', 10) || 0);
  const found = [...store.get(type).values()].filter((resource) => matches(resource, query));
  const page = found.slice(offset, offset + count);

  const base = `http://${req.get('host')}/${VERSION}`;
  const pageUrl = (start) => {
    const params = new URLSearchParams({ ...query, _offset: String(start) });
    return `${base}/${type}?${params}`;
  };
  const link = [{ relation: 'self', url: pageUrl(offset) }];
  if (offset + count < found.length) {
    link.push({ relation: 'next', url: pageUrl(offset + count) });
  }
  const Bundle = model('Bundle');
  return new Bundle({
    resourceType: 'Bundle',
    type: 'searchset',
    total: found.length,
    link,
    entry: page.map((resource) => ({
      fullUrl: `${base}/${type}/${resource.id}`,
      resource,
      search: { mode: 'match' },
    })),
  }).toJSON();
}

function service(type) {
  return {
    searchById: async (args) => {
      const resource = store.get(type).get(args.id);
      if (!resource) {
        throw notFound(type, args.id);
      }
      return resource;
    },
    search: async (args, { req }) => searchBundle(type, req),
    // Replaces a resource, accepting only STU3 content: a body with elements the STU3
    // model does not know gets 400, so a write that was not converted from R4 fails.
    update: async (args, { req }) => {
      const body = req.body || {};
      if (body.resourceType !== type || body.id !== args.id) {
        throw invalid(`the body must be a ${type} with id ${args.id}`);
      }
      const kept = new (model(type))(body).toJSON();
      const unknown = nonStu3Elements(body, kept, type);
      if (unknown.length > 0) {
        throw invalid(`elements that STU3 does not define: ${unknown.join(', ')}`);
      }
      const created = !store.get(type).has(args.id);
      store.get(type).set(args.id, kept);
      return { id: args.id, created };
    },
  };
}

load(files);
loggers.get('default').level = 'error';

const profiles = {};
for (const type of TYPES) {
  profiles[type.toLowerCase()] = { service: service(type), versions: [VERSION] };
}
const server = initialize({ profiles, logging: { level: 'error' } });
server.listen(Number(port), '127.0.0.1', () => {
  const counts = TYPES.map((type) => `${type} ${store.get(type).size}`).join(', ');
  console.log(`listening on 127.0.0.1:${port} with ${counts}`);
});
