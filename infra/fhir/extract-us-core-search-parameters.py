#!/usr/bin/env python3
"""Extract the US Core search parameters that the R4 core specification lacks.

Usage: extract-us-core-search-parameters.py SEARCH_PARAMETER_DIR R4_SEARCH_PARAMETERS OUT_FILE

SEARCH_PARAMETER_DIR contains the SearchParameter resources of US Core 6.1.0 as JSON files,
from the package hl7.fhir.us.core#6.1.0 or from input/resources at tag 6.1.0 of the IG's
source (github.com/HL7/US-Core). R4_SEARCH_PARAMETERS is the r4-search-parameters.json
that extract-r4-definitions.py wrote. OUT_FILE receives, in the same compact shape, each
US Core parameter whose code is not already defined for its base type by R4 (such as
Patient `race` or Encounter `discharge-disposition`). US Core's copies of core
parameters are left out, because the core definitions already serve those codes.
"""

import glob
import json
import os
import sys

KEYS = ("expression", "target", "modifier", "comparator", "multipleOr", "multipleAnd")


def main(source_dir, core_file, out_file):
    with open(core_file, encoding="utf-8") as f:
        core = json.load(f)
    defined = {(base, param["code"]) for param in core for base in param["base"]}
    defined |= {("Resource", param["code"]) for param in core if "Resource" in param["base"]}

    params = []
    for path in sorted(glob.glob(os.path.join(source_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            resource = json.load(f)
        if resource.get("resourceType") != "SearchParameter":
            continue
        code = resource["code"]
        bases = [
            base
            for base in resource["base"]
            if (base, code) not in defined and ("Resource", code) not in defined
        ]
        if not bases:
            continue
        param = {
            "url": resource["url"],
            "code": code,
            "base": bases,
            "type": resource["type"],
        }
        for key in KEYS:
            if key in resource:
                param[key] = resource[key]
        params.append(param)
    params.sort(key=lambda p: (p["code"], p["url"]))
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(params, f, indent=0, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
