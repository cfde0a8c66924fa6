"""What every benchmark does with its results: print the Markdown table, and with ``--out
OUT`` write ``OUT.md`` (the table) and ``OUT.json`` (the rows) for benchmarks/results/."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple


def save(table: str, rows: list, out: Optional[str]) -> str:
    """Print ``table``; with ``out``, write it to OUT.md and ``rows`` to OUT.json."""
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out + ".md").write_text(table + "\n")
        Path(out + ".json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return table


def md_table(lead: Sequence[str], cols: Sequence[Tuple[str, str, int]], rows: list) -> List[str]:
    """The Markdown table lines of ``rows`` (dicts): first the ``lead`` keys as they are (``run``,
    ``seed``, ``steps``: missing ones blank), then one column per ``(key, header, decimals)``
    of ``cols``, a value with ``decimals`` places and ``± <key>_sd`` when the row has one."""
    out = ["| " + " | ".join(list(lead) + [h for _, h, _ in cols]) + " |",
           "|" + "---|" * (len(lead) + len(cols))]
    for r in rows:
        cells = [str(r.get(k, "")) for k in lead]
        for k, _, d in cols:
            v, sd = r.get(k), r.get(f"{k}_sd")
            cells.append("" if v is None else f"{v:.{d}f}" + (f" ± {sd:.{d}f}" if sd is not None else ""))
        out.append("| " + " | ".join(cells) + " |")
    return out
