# Bounded runs of the entry-point property fuzzer (fuzz_entry_points.py): a fixed seed per fault class.
"""Each fault class runs a fixed set of cases in worker processes (a crash
fails the test instead of killing pytest). Classes that fail today are
strict xfails with the issue item that fixes them (KNOWN_FAILING): they fail
here as soon as they pass, so that the marker is removed."""
import os
import subprocess
import sys

import pytest

import fuzz_entry_points as fuzz
from cpu_harness import require_compiler

CASES = 8


def _param(cls):
    if cls in fuzz.KNOWN_FAILING:
        return pytest.param(cls, marks=pytest.mark.xfail(strict=True, reason=fuzz.KNOWN_FAILING[cls]))
    return cls


@pytest.mark.parametrize("cls", [_param(c) for c in fuzz.CLASSES])
def test_fault_class(cls):
    require_compiler()
    seed = 7000 + 100 * fuzz.CLASSES.index(cls)
    results = fuzz.drive(seed, [cls], cases=CASES)
    assert len(results) == CASES
    print(fuzz.summarize(results))
    bad = fuzz.failures(results)
    assert not bad, "\n".join(
        f"{r['outcome']} seed {r['seed']}: {r.get('detail')}; config {r.get('config')}, "
        f"fault {r.get('fault')}, shapes {r.get('shapes')}" for r in bad)


def test_cli_reports_a_summary_and_replays_a_case():
    require_compiler()
    script = os.path.join(os.path.dirname(__file__), "fuzz_entry_points.py")
    out = subprocess.run([sys.executable, script, "--cases", "2", "--seed", "5", "--classes", "valid"],
                         capture_output=True, text=True, check=True).stdout
    assert "2 cases" in out and "valid" in out
    out = subprocess.run([sys.executable, script, "--repro", "5", "--classes", "valid"],
                         capture_output=True, text=True, check=True).stdout
    assert '"outcome": "ok"' in out
