#!/usr/bin/env python3
"""Checks schema/workflow.schema.json against the examples: every example is valid, and a few
documents the worker refuses are refused by the schema too (so the schema is not vacuous)."""
import glob
import json
import sys

import jsonschema

schema = json.load(open("schema/workflow.schema.json"))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)

failed = 0
examples = sorted(glob.glob("examples/*.json"))
for path in examples:
    errors = list(validator.iter_errors(json.load(open(path))))
    for e in errors:
        print(f"{path}: {e.json_path}: {e.message}")
    failed += bool(errors)

node = {"id": "l", "tool": "limit", "input": "x", "n": 1}
refused = {
    "unknown field in a node": {**node, "colour": "red"},
    "unknown tool": {**node, "tool": "fliter"},
    "bad id": {**node, "id": "no spaces"},
    "missing field": {"id": "l", "tool": "limit", "input": "x"},
    "wrong type": {**node, "n": "ten"},
}
for name, bad in refused.items():
    if validator.is_valid({"version": 1, "nodes": [bad]}):
        print(f"schema accepts a document the worker refuses: {name}")
        failed += 1
if not validator.is_valid({"version": 1, "nodes": [node]}):
    print("schema refuses a valid node")
    failed += 1

print(f"{len(examples)} examples, {len(refused)} refusals checked, {failed} failures")
sys.exit(1 if failed else 0)
