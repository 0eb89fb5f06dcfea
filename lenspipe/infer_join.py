"""The infer_join rule: every estimator's summary of the observed images (lenspipe.infer's output folders) joined
into one table, CSV and Markdown, in the order of the estimators given."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lenspipe import atomic
from lenspipe.errors import DataError


def infer_join(
    *,
    folders: Sequence[str | os.PathLike[str]],
    csv: str | os.PathLike[str],
    md: str | os.PathLike[str],
) -> Any:
    """The summary tables of `folders` (the infer rule's outputs) joined into one; returns it (pandas)."""
    import pandas as pd

    from lenspipe.infer import markdown

    tables = []
    for folder in folders:
        path = Path(folder) / "summary.csv"
        if not path.is_file():
            raise DataError(path, "no summary table (expected the infer rule's output)")
        tables.append(pd.read_csv(path, keep_default_na=False))
    table = pd.concat(tables, ignore_index=True)
    table["ood_flag"] = table["ood_flag"].astype(str).str.lower().eq("true")
    atomic.write_text(csv, table.to_csv(index=False, float_format="%.6g"))
    atomic.write_text(md, markdown(table))
    return table
