#!/usr/bin/env python3
"""Writes COPIES copies of the Synthea sample's patient Bundles with new ids, for
benchmarks that need more patients than the sample has and cannot wait for
generate-patients.sh (about 2.7 s per patient per core).

Every UUID in a patient file is replaced by a UUID derived from it and the copy number,
so the copies are distinct patients with the same clinical content. UUIDs that also occur
in the hospital and practitioner files stay, because patient files reference those
resources by identifier. The hospital and practitioner files are copied once.

Usage: infra/bench/replicate-sample.py COPIES SAMPLE_DIR OUT_DIR
"""

import pathlib
import re
import shutil
import sys
import uuid

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SHARED_PREFIXES = ("hospitalInformation", "practitionerInformation")


def main() -> int:
    if len(sys.argv) != 4 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    copies = int(sys.argv[1])
    sample = pathlib.Path(sys.argv[2])
    out = pathlib.Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)

    shared_files = [p for p in sample.glob("*.json") if p.name.startswith(SHARED_PREFIXES)]
    patient_files = sorted(p for p in sample.glob("*.json") if p not in shared_files)
    keep = set()
    for path in shared_files:
        keep.update(UUID.findall(path.read_text(encoding="utf-8")))
        shutil.copy(path, out / path.name)

    for copy in range(copies):
        namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"hearth-bench-copy-{copy}")

        def replace(match: re.Match) -> str:
            text = match.group(0)
            return text if text in keep else str(uuid.uuid5(namespace, text))

        for path in patient_files:
            text = UUID.sub(replace, path.read_text(encoding="utf-8"))
            (out / f"copy{copy:04d}-{path.name}").write_text(text, encoding="utf-8")

    print(f"{copies * len(patient_files)} patient files in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
