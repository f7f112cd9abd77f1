#!/usr/bin/env python3
"""Fails when a workspace crate declares a `rust-version` older than what its
normal and build dependencies (the locked tree, as `cargo metadata` resolves it
for the host) declare. Dev-dependencies (tests, benches, examples) are left out:
the rust-version is the promise for building the crate, not its test suite.

Usage: python3 .ci/tools/msrv.py            # check
       python3 .ci/tools/msrv.py --report   # print each crate's floor
"""
import json
import subprocess
import sys


def version(s):
    """`1.88` and `1.88.0` are the same version."""
    parts = [int(x) for x in s.split(".")] if s else [0]
    return tuple((parts + [0, 0, 0])[:3])


def main():
    meta = json.loads(
        subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"])
    )
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    bad = []
    for member in meta["workspace_members"]:
        own = pkgs[member]
        declared = version(own.get("rust_version"))
        seen, stack, floor, why = set(), [member], (0, 0, 0), None
        while stack:
            nid = stack.pop()
            for d in nodes[nid]["deps"]:
                kinds = {k["kind"] for k in d["dep_kinds"]}
                if not kinds & {None, "build"}:
                    continue
                if d["pkg"] in seen:
                    continue
                seen.add(d["pkg"])
                stack.append(d["pkg"])
                p = pkgs[d["pkg"]]
                v = version(p.get("rust_version"))
                if v > floor:
                    floor, why = v, f'{p["name"]} {p["version"]}'
        name = own["name"]
        shown = ".".join(map(str, floor))
        if "--report" in sys.argv:
            print(f'{name}: declares {own.get("rust_version")}, dependencies need {shown} ({why})')
        if floor > declared:
            bad.append(f'{name} declares rust-version {own.get("rust_version")} but {why} needs {shown}')
    if bad:
        print("\n".join(bad))
        sys.exit(1)
    print("rust-version: every crate declares at least what its dependencies need")


main()
