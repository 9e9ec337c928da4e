#!/usr/bin/env python3
"""ACRO parity peer: ACRO's own disclosure verdicts for synthetic cases, as JSON.

Runs SACRO's ACRO (PyPI package `acro`) on the cases read from stdin and prints what
ACRO itself recorded, so the Rust checker can be compared against it. Run it with the
Python of the venv that scripts/install-deps.sh makes (any other Python reruns the script
under that one, $PHT_TOOLS_DIR/acro or ~/.cache/pht-tools/acro, when it cannot import acro):

    python3 scripts/acro_verdicts.py [-v] < scripts/acro_verdicts.example.json

Input (stdin):

    {"cases": [
      {"name": "t1", "kind": "table",
       "data": [{"g": "a", "cost": 12.5}, ...],
       "group_by": ["g"],               # row variables
       "columns": ["h"],                # optional column variables (see below)
       "value": "cost",                 # ignored for "count" without columns
       "function": "sum" | "mean" | "median" | "count"},
      {"name": "r1", "kind": "regression", "n_obs": 15, "n_params": 5},
      {"name": "r2", "kind": "regression", "data": [...], "formula": "y ~ x1 + x2"}
    ]}

Tables: without "columns", `acro.pivot_table(data, index=group_by, values=value,
aggfunc=function)`; with one group_by variable only observed groups become cells; with
more, ACRO's table (dropna=False) has every combination but its checks see only the
observed ones, so an empty combination is a cell that passes every check. With "columns", `acro.crosstab(index=group_by, columns=columns,
values=value, aggfunc=function)` (values omitted for "count"): ACRO forces dropna=False,
so every combination of row and column values is a cell, including empty ones (count 0,
which is what ACRO's zeros check looks at).

Regressions: with n_obs and n_params, `acro.ols(y, X)` on generated data: X is a constant
column plus n_params-1 standard-normal columns (so n_params counts the intercept and the
residual dof is n_obs - n_params when n_obs >= n_params), y is linear in X plus noise,
from a fixed seed ("seed", default 0). With data and formula, `acro.olsr(formula, data)`.

Output (stdout, pure JSON; ACRO's logging goes to stderr, at WARNING unless -v):

    {"acro_version": "...", "parameters": {...ACRO's loaded config...},
     "cases": [
       {"name": ..., "kind": "table", "method": "pivot_table", "function": "sum",
        "statbarn": "LinearAggregations", "checks_run": [...], "status": "pass|fail|review",
        "check_status": {"MinimumThresholdCheck": "fail", ...},
        "cells": [{"key": {"g": "a"}, "value": 37.5, "acro_outcome": "ok",
                   "threshold": bool, "p-ratio": bool|null, "nk-rule": bool|null,
                   "negative": bool|null, "zeros": bool|null}, ...]},
       {"name": ..., "kind": "regression", "method": "ols", "n_obs": 15, "n_params": 5,
        "dof": 10, "status": "pass", "check_status": {"MinimumDoFCheck": "pass"}, ...}]}

A rule's value is true when ACRO's labelled per-cell outcome (record.outcome, the
"; "-separated names of the checks that flag the cell, "ok" for none) names that check,
false when ACRO ran the check (record.fair["check_status"]) and did not flag the cell,
and null when ACRO does not run that check for
this statistic (ACRO 1.x picks checks from the statistic's "statbarn": count and median
get the zeros check and no dominance checks; sum and mean get dominance checks and no
zeros check). When any contributor in the table is negative, ACRO does not evaluate
dominance at all: its NK and p% checks both become "review" with a mask of the cells
that hold a negative value; that case is reported as "negative": true on those cells
and "nk-rule"/"p-ratio": null on every cell. "negative" is false when the dominance
checks ran normally, null when they were not run. "acro_outcome" is that outcome string.
"sdc_positions_agree" tells whether ACRO's positional masks (record.sdc["cells"], read
through the table's labels) say the same: they do not for a pivot_table over two or more
group_by variables with an unobserved combination, because ACRO's masks then cover only
the observed groups while its table has every combination (the outcome is right).
A case that ACRO rejects gets {"name", "kind", "error": "..."} and the rest still run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from typing import Any

# Table rule name in our output -> ACRO 1.x check name.
RULE_TO_CHECK = {
    "threshold": "MinimumThresholdCheck",
    "p-ratio": "PPercentCheck",
    "nk-rule": "NKCheck",
    "zeros": "PresenceOfZeroCheck",
}

PARAMETER_KEYS = [
    "safe_threshold",
    "safe_dof_threshold",
    "safe_nk_n",
    "safe_nk_k",
    "safe_pratio_p",
    "zeros_are_disclosive",
    "check_missing_values",
]


def plain(value: Any) -> Any:
    """Turn numpy/pandas scalars (and NaN) into JSON-ready Python values."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def as_tuple(label: Any) -> tuple:
    return label if isinstance(label, tuple) else (label,)


def last_record(session: Any) -> Any:
    records = list(session.results.results.values())
    if not records:
        raise RuntimeError("ACRO recorded no output")
    return records[-1]


def run_table(acro_mod: Any, case: dict) -> dict:
    import pandas as pd

    data = pd.DataFrame(case["data"])
    group_by = list(case["group_by"])
    columns = list(case.get("columns") or [])
    function = case.get("function", "sum")
    value = case.get("value")

    session = acro_mod.ACRO(suppress=False)
    if columns:
        kwargs: dict[str, Any] = {}
        if function != "count":
            kwargs = {"values": data[value], "aggfunc": function}
        session.crosstab(
            [data[g] for g in group_by], [data[c] for c in columns], **kwargs
        )
    else:
        session.pivot_table(
            data, index=group_by, values=value if value else group_by[0],
            aggfunc=function,
        )
    record = last_record(session)
    table = record.output[0]
    outcome = record.outcome
    sdc_cells = record.sdc.get("cells", {})
    check_status = dict(record.fair.get("check_status", {}))

    if outcome.shape != table.shape:
        raise RuntimeError(f"ACRO outcome {outcome.shape} and table {table.shape} differ")
    ran = set(check_status)
    negative_branch = check_status.get("NKCheck") == "review"
    # Positions in sdc["cells"] index ACRO's per-check masks, which for a pivot_table
    # hold only the observed groups, while the table (dropna=False) holds every
    # combination; so positions are mapped through the table's labels only as a
    # cross-check, and the cell verdicts come from ACRO's labelled outcome.
    by_position = {
        check: {tuple(pos) for pos in positions}
        for check, positions in sdc_cells.items()
    }
    positions_agree = True

    cells = []
    for r, row_label in enumerate(table.index):
        for c, col_label in enumerate(table.columns):
            key = dict(zip(group_by, map(plain, as_tuple(row_label))))
            if columns:
                key.update(zip(columns, map(plain, as_tuple(col_label))))
            text = str(outcome.iat[r, c])
            flagged = {part.strip() for part in text.split(";")} - {"", "ok"}
            cell: dict[str, Any] = {
                "key": key,
                "value": plain(table.iat[r, c]),
                "acro_outcome": text,
            }
            for rule, check in RULE_TO_CHECK.items():
                if check not in ran:
                    cell[rule] = None
                elif negative_branch and rule in ("p-ratio", "nk-rule"):
                    cell[rule] = None
                else:
                    cell[rule] = check in flagged
            if "NKCheck" not in ran:
                cell["negative"] = None
            else:
                cell["negative"] = negative_branch and "NKCheck" in flagged
            for check, positions in by_position.items():
                if ((r, c) in positions) != (check in flagged):
                    positions_agree = False
            cells.append(cell)

    return {
        "name": case.get("name"),
        "kind": "table",
        "method": record.properties.get("method"),
        "function": function,
        "statbarn": record.fair.get("statbarn"),
        "checks_run": list(record.fair.get("checks_needed", [])),
        "status": record.status,
        "check_status": check_status,
        "summary": record.summary,
        "sdc_positions_agree": positions_agree,
        "cells": cells,
    }


def run_regression(acro_mod: Any, case: dict) -> dict:
    import numpy as np
    import pandas as pd

    session = acro_mod.ACRO(suppress=False)
    out: dict[str, Any] = {"name": case.get("name"), "kind": "regression"}
    if "formula" in case:
        session.olsr(case["formula"], data=pd.DataFrame(case["data"]))
        out["method"] = "olsr"
        out["formula"] = case["formula"]
    else:
        n_obs, n_params = int(case["n_obs"]), int(case["n_params"])
        rng = np.random.default_rng(int(case.get("seed", 0)))
        x = np.column_stack(
            [np.ones(n_obs), rng.standard_normal((n_obs, max(n_params - 1, 0)))]
        )
        y = x @ np.arange(1, n_params + 1) + rng.standard_normal(n_obs)
        session.ols(y, x)
        out.update(method="ols", n_obs=n_obs, n_params=n_params)
    record = last_record(session)
    out["dof"] = plain(record.properties.get("dof"))
    out["status"] = record.status
    out["statbarn"] = record.fair.get("statbarn")
    out["check_status"] = dict(record.fair.get("check_status", {}))
    out["summary"] = record.summary
    return out


def reexec_in_acro_venv() -> None:
    """Without acro importable here, rerun under the venv that install-deps.sh makes."""
    try:
        import acro  # noqa: F401
    except ImportError:
        tools = os.environ.get("PHT_TOOLS_DIR") or os.path.expanduser("~/.cache/pht-tools")
        venv = os.path.join(tools, "acro")
        python = os.path.join(venv, "bin", "python")
        if os.path.exists(python) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])
        sys.exit(f"acro is not installed here nor in {python}: run scripts/install-deps.sh")


def main() -> int:
    reexec_in_acro_venv()
    verbose = "-v" in sys.argv[1:]
    request = json.load(sys.stdin)
    real_stdout = sys.stdout
    results = []
    # Anything ACRO, pandas or statsmodels prints goes to stderr, never into our JSON.
    with contextlib.redirect_stdout(sys.stderr):
        import acro as acro_mod  # its import calls logging.basicConfig(INFO) on stderr

        logging.getLogger("acro").setLevel(logging.INFO if verbose else logging.WARNING)
        logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
        config = acro_mod.ACRO(suppress=False).config
        for case in request.get("cases", []):
            try:
                if case.get("kind", "table") == "regression":
                    results.append(run_regression(acro_mod, case))
                else:
                    results.append(run_table(acro_mod, case))
            except Exception as err:  # report and go on with the other cases
                results.append(
                    {
                        "name": case.get("name"),
                        "kind": case.get("kind", "table"),
                        "error": f"{type(err).__name__}: {err}",
                    }
                )
    import importlib.metadata

    document = {
        "acro_version": importlib.metadata.version("acro"),
        "parameters": {k: plain(config.get(k)) for k in PARAMETER_KEYS},
        "cases": results,
    }
    json.dump(document, real_stdout, indent=2)
    real_stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
