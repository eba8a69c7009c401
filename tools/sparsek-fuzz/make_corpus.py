#!/usr/bin/env python3
"""Writes the seed corpus of sparsek-fuzz: every split of every .mlir file
under the given folders (lit's `// -----`), once per harness action that the
file's RUN lines exercise, plus once for parse-and-verify alone. A seed is the
action's selector byte followed by the MLIR text (see sparsek-fuzz.cpp).

usage: make_corpus.py OUT_DIR SOURCE_DIR...
"""
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def harness_actions():
    """The harness's action table, read from its source: the pipeline string
    of each entry, in selector order."""
    src = open(os.path.join(HERE, "sparsek-fuzz.cpp")).read()
    table = src[src.index("kActions[] = {"):]
    table = table[:table.index("\n};")]
    entries = re.findall(r'\{((?:\s*"[^"]*")+)\s*,\s*(?:true|false)\s*\}', table)
    return ["".join(re.findall(r'"([^"]*)"', e)) for e in entries]


def pass_names(pipeline):
    """The pass names of a pipeline string, without their options and the
    op anchors they nest in."""
    names = re.split(r"[,()]", re.sub(r"\{[^}]*\}", "", pipeline))
    return [p for p in names if p and p not in ("func.func", "builtin.module")]


def actions_for(text, actions):
    """Selectors of the actions whose last pass the file's RUN lines name
    (sparsek-compile runs the CPU pipeline); 0 (parse and verify) always."""
    run = " ".join(re.findall(r"RUN:(.*)", text))
    if "sparsek-compile" in run:
        run += " sparsek-cpu-pipeline"
    chosen = {0}
    for i, pipeline in enumerate(actions):
        names = pass_names(pipeline)
        if names and names[-1] in run:
            chosen.add(i)
    if not run:  # an example: every action
        chosen = set(range(len(actions)))
    return sorted(chosen)


def main():
    out, sources = sys.argv[1], sys.argv[2:]
    actions = harness_actions()
    os.makedirs(out, exist_ok=True)
    count = 0
    for root in sources:
        for dirpath, _, files in sorted(os.walk(root)):
            for name in sorted(files):
                if not name.endswith(".mlir"):
                    continue
                text = open(os.path.join(dirpath, name), encoding="utf-8").read()
                for chunk in re.split(r"^// -----.*$", text, flags=re.M):
                    for sel in actions_for(text, actions):
                        data = bytes([sel]) + chunk.encode()
                        digest = hashlib.sha1(data).hexdigest()
                        with open(os.path.join(out, digest), "wb") as f:
                            f.write(data)
                        count += 1
    print(f"make_corpus: {count} seeds over {len(actions)} actions in {out}")


if __name__ == "__main__":
    main()
