"""The README's examples run, and print what the README says they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart_output_matches_the_readme(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- quickstart-output -->\n```\n(.*?)```", readme, re.S)
    assert block, "the README lost its quick-start output block"
    assert _run("quickstart.py", tmp_path) == block.group(1)
    # Running it again reopens the store: the stamped turn replays, and the output is the same.
    assert _run("quickstart.py", tmp_path) == block.group(1)


def test_quickstart_code_in_the_readme_is_the_example(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S).group(1)
    example = (ROOT / "examples" / "quickstart.py").read_text()
    body = example.split('"""', 2)[2].strip()
    # The README groups the imports on fewer lines; every other line is the example's.
    strip = lambda s: [line for line in s.splitlines() if line.strip() and not line.startswith(("from lashstore import", "    ", ")"))]  # noqa: E731
    assert strip(code) == strip(body)


def test_async_quickstart_runs(tmp_path):
    assert _run("quickstart_async.py", tmp_path) == "revision 1 nodes ['u1']\n"


def test_durable_calls_output_matches_the_readme(tmp_path):
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- durable-output -->\n```\n(.*?)```", readme, re.S).group(1)
    first, second = block.split("---\n")
    assert _run("durable_calls.py", tmp_path) == first
    assert _run("durable_calls.py", tmp_path) == second
