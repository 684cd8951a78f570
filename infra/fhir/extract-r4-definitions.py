#!/usr/bin/env python3
"""Extract the FHIR R4 definitions Hearth compiles in from the official package.

Usage: extract-r4-definitions.py PACKAGE_DIR OUT_DIR

PACKAGE_DIR is the unpacked npm package hl7.fhir.r4.examples@4.0.1
(`npm pack hl7.fhir.r4.examples@4.0.1 && tar xzf hl7.fhir.r4.examples-4.0.1.tgz`).
Writes compact JSON files to OUT_DIR:

- r4-resource-types.json: the names of every concrete R4 resource type.
- r4-search-parameters.json: every SearchParameter of the core specification
  (code, base, type, expression, target, modifier, comparator, component).
- r4-patient-compartment.json: for each resource type, the search parameters
  that put a resource into a Patient's compartment.
- r4-summary-elements.json: for each resource type, its top-level elements marked
  isSummary, those with a minimum cardinality of 1 (which `_summary` and
  `_elements` keep) and its choice elements.
- r4-elements.json: the elements of every resource, complex data type and backbone
  element, each with its types and whether it repeats, for structural validation.
- r4-rules.json: per type and backbone element, the elements with a minimum cardinality
  of 1 and the `code`, Coding and CodeableConcept elements with a required binding, with
  the codes of those value sets by code system where the package lists them in full.
"""

import glob
import json
import os
import sys


def resource_types(package):
    names = set()
    for path in glob.glob(os.path.join(package, "StructureDefinition-*.json")):
        with open(path, encoding="utf-8") as f:
            definition = json.load(f)
        if (
            definition.get("kind") == "resource"
            and definition.get("derivation") == "specialization"
            and not definition.get("abstract", False)
        ):
            names.add(definition["type"])
    return sorted(names)


def search_parameters(package):
    with open(os.path.join(package, "Bundle-searchParams.json"), encoding="utf-8") as f:
        bundle = json.load(f)
    params = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        param = {
            "url": resource["url"],
            "code": resource["code"],
            "base": resource["base"],
            "type": resource["type"],
        }
        for key in ("expression", "target", "modifier", "comparator", "multipleOr", "multipleAnd"):
            if key in resource:
                param[key] = resource[key]
        if "component" in resource:
            param["component"] = [
                {"definition": c["definition"], "expression": c["expression"]}
                for c in resource["component"]
            ]
        params.append(param)
    params.sort(key=lambda p: (p["code"], p["url"]))
    return params


def patient_compartment(package):
    with open(os.path.join(package, "CompartmentDefinition-patient.json"), encoding="utf-8") as f:
        definition = json.load(f)
    return {
        r["code"]: r.get("param", [])
        for r in definition["resource"]
    }


def summary_elements(package):
    elements = {}
    for path in glob.glob(os.path.join(package, "StructureDefinition-*.json")):
        with open(path, encoding="utf-8") as f:
            definition = json.load(f)
        if (
            definition.get("kind") != "resource"
            or definition.get("derivation") != "specialization"
            or definition.get("abstract", False)
        ):
            continue
        summary, mandatory, choices = [], [], []
        for element in definition["snapshot"]["element"]:
            parts = element["path"].split(".")
            if len(parts) != 2:
                continue
            if element.get("isSummary", False):
                summary.append(parts[1])
            if element.get("min", 0) >= 1:
                mandatory.append(parts[1])
            if parts[1].endswith("[x]"):
                choices.append(parts[1][:-3])
        elements[definition["type"]] = {
            "summary": summary,
            "mandatory": mandatory,
            "choices": choices,
        }
    return elements


SYSTEM_TYPE_PREFIX = "http://hl7.org/fhirpath/System."


def element_types(element, by_path):
    """Returns the type names of one element: data types, or the path of the backbone
    element that defines its children (for BackboneElement, Element and contentReference).
    """
    if "contentReference" in element:
        return [element["contentReference"].lstrip("#")]
    path = element["path"]
    codes = []
    for kind in element.get("type", []):
        code = kind["code"]
        if code.startswith(SYSTEM_TYPE_PREFIX):
            code = "string"
        if code in ("BackboneElement", "Element") and path in by_path:
            code = path
        codes.append(code)
    return codes


def elements(package):
    """Maps each complex type, resource and backbone path to its elements:
    {name: [repeats, type, ...]}, where a name ending in [x] is a choice."""
    result = {}
    for path in glob.glob(os.path.join(package, "StructureDefinition-*.json")):
        with open(path, encoding="utf-8") as f:
            definition = json.load(f)
        # Profiles (constraints) add no elements. Abstract bases such as Element have no
        # derivation, and the `_name` companions of primitives are Elements.
        if definition.get("derivation") == "constraint":
            continue
        if definition.get("kind") not in ("resource", "complex-type"):
            continue
        snapshot = definition["snapshot"]["element"]
        parents = {e["path"].rsplit(".", 1)[0] for e in snapshot if "." in e["path"]}
        for element in snapshot:
            element_path = element["path"]
            if "." not in element_path:
                continue
            parent, name = element_path.rsplit(".", 1)
            types = element_types(element, parents)
            if not types:
                continue
            repeats = element.get("max", "1") != "1" and element.get("max") != "0"
            result.setdefault(parent, {})[name] = [repeats] + types
    return result


def load_all(package, prefix):
    """Maps the canonical URL of every resource in files `prefix-*.json` to the resource."""
    result = {}
    for path in glob.glob(os.path.join(package, prefix + "-*.json")):
        with open(path, encoding="utf-8") as f:
            resource = json.load(f)
        if "url" in resource:
            result[resource["url"]] = resource
    return result


def concept_codes(concepts):
    """The codes of a CodeSystem's concepts, nested concepts included."""
    codes = []
    for concept in concepts:
        codes.append(concept["code"])
        codes.extend(concept_codes(concept.get("concept", [])))
    return codes


def expand(url, value_sets, code_systems):
    """Returns the codes of value set `url` by code system, {system: sorted codes}, or None
    when they cannot be listed from the package alone (filters, imported value sets,
    external or partial code systems)."""
    value_set = value_sets.get(url)
    if value_set is None:
        return None
    compose = value_set.get("compose", {})
    codes = {}
    for include in compose.get("include", []):
        if "filter" in include or "valueSet" in include or "system" not in include:
            return None
        listed = codes.setdefault(include["system"], set())
        if "concept" in include:
            listed.update(c["code"] for c in include["concept"])
            continue
        system = code_systems.get(include["system"])
        if system is None or system.get("content") != "complete":
            return None
        listed.update(concept_codes(system.get("concept", [])))
    for exclude in compose.get("exclude", []):
        if "concept" not in exclude or "filter" in exclude:
            return None
        codes.get(exclude.get("system"), set()).difference_update(
            c["code"] for c in exclude["concept"]
        )
    if not any(codes.values()):
        return None
    return {system: sorted(listed) for system, listed in codes.items()}


def rules(package):
    """The rules that structure alone does not show, per type, resource and backbone path:
    elements with a minimum cardinality of 1 or more, and `code`, Coding and
    CodeableConcept elements bound to a value set with strength `required` whose codes
    the package lists in full.
    {"required": {path: [name]}, "bindings": {path: {name: url}},
     "valueSets": {url: {system: [code]}}}
    """
    value_sets = load_all(package, "ValueSet")
    code_systems = load_all(package, "CodeSystem")
    required, bindings, expanded = {}, {}, {}
    for path in glob.glob(os.path.join(package, "StructureDefinition-*.json")):
        with open(path, encoding="utf-8") as f:
            definition = json.load(f)
        if definition.get("derivation") == "constraint":
            continue
        if definition.get("kind") not in ("resource", "complex-type"):
            continue
        for element in definition["snapshot"]["element"]:
            element_path = element["path"]
            if "." not in element_path:
                continue
            parent, name = element_path.rsplit(".", 1)
            if element.get("min", 0) >= 1:
                required.setdefault(parent, []).append(name)
            binding = element.get("binding", {})
            codes = [kind["code"] for kind in element.get("type", [])]
            if binding.get("strength") != "required" or codes not in (
                ["code"],
                ["Coding"],
                ["CodeableConcept"],
            ):
                continue
            url = binding.get("valueSet", "").split("|")[0]
            if url not in expanded:
                expanded[url] = expand(url, value_sets, code_systems)
            if expanded[url] is not None:
                bindings.setdefault(parent, {})[name] = url
    for names in required.values():
        names.sort()
    return {
        "required": required,
        "bindings": bindings,
        "valueSets": {url: codes for url, codes in expanded.items() if codes is not None},
    }


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    package, out = sys.argv[1], sys.argv[2]
    outputs = {
        "r4-resource-types.json": resource_types(package),
        "r4-search-parameters.json": search_parameters(package),
        "r4-patient-compartment.json": patient_compartment(package),
        "r4-summary-elements.json": summary_elements(package),
        "r4-elements.json": elements(package),
        "r4-rules.json": rules(package),
    }
    for name, value in outputs.items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            json.dump(value, f, indent=0, sort_keys=True, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
