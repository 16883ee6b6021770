"""Which heavy modules a piece of code imports, measured in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence


def modules_imported_by(code: str, watched: Sequence[str]) -> list[str]:
    """Run `code` in a fresh Python process; the names in `watched` that are in sys.modules afterwards."""
    report = f"print(json.dumps(sorted(m for m in {list(watched)!r} if m in sys.modules)))"
    probe = f"{code}\nimport json, sys\n{report}\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])
