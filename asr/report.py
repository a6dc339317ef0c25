"""Plain-text tables of results for the terminal and the README."""

from __future__ import annotations

from typing import Any, Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats printed with 2 decimals (percentages) unless already strings."""
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def print_results(results: dict[str, float]) -> None:
    """Print the test WER/CER of each test set (in percent) for the best checkpoint (``test/``) and the
    final weights (``test_final/``), and the best validation WER."""
    weights = {"test": "best by validation WER", "test_final": "final"}
    rows = []
    for prefix, label in weights.items():
        sets = sorted({k.split("/")[1] for k in results if k.startswith(f"{prefix}/") and k.endswith("/wer")})
        rows += [[s, label, 100 * results[f"{prefix}/{s}/wer"], 100 * results[f"{prefix}/{s}/cer"]] for s in sets]
    if rows:
        print(format_table(["test set", "weights", "WER %", "CER %"], rows))
    if "val/wer_best" in results:
        print(f"best validation WER: {100 * results['val/wer_best']:.2f}%")
