"""What every benchmark does with its results: print the Markdown table, and with ``--out
OUT`` write ``OUT.md`` (the table) and ``OUT.json`` (the rows) for benchmarks/results/."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def save(table: str, rows: list, out: Optional[str]) -> str:
    """Print ``table``; with ``out``, write it to OUT.md and ``rows`` to OUT.json."""
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out + ".md").write_text(table + "\n")
        Path(out + ".json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return table
