"""Where benchmark results go: benchmarks/results/<name>.json, .png and .md, each written whole."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the figures were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(name: str, data: dict, markdown: str, figure, out: Path = RESULTS) -> Path:
    """``name``.json (data + machine), .md (a table to paste) and .png (the figure)."""
    from ukd_compress.files import write_json, write_text
    from ukd_compress.report import save_figure

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", {"benchmark": name, "machine": machine(), **data})
    write_text(out / f"{name}.md", markdown)
    save_figure(figure, out / f"{name}.png")
    return out / f"{name}.json"
