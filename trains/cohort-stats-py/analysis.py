"""cohort-stats-py: patients and their mean BMI by a grouping column, with pandas.

Reads every *.csv under /data/cohort/, the parameter `group_by` from /input/params.json and,
on a sequential route, the previous stop's running totals from /input/state/state.csv
(group, n, sum_bmi). Writes /output/counts.csv (group, n, mean_bmi) and /output/state.csv.

Groups with fewer than MIN_CELL patients are left out of both files: the station checks the
outputs again, whatever the train does, and state leaving for the next station is checked like
any output, so a small group would fail the stop. On a sequential route a group small at one stop
therefore starts again from zero at the next.
"""

import json
import pathlib
import sys

import pandas as pd

MIN_CELL = 10


def main():
    params_path = pathlib.Path("/input/params.json")
    params = json.loads(params_path.read_text()) if params_path.exists() else {}
    group_by = params.get("group_by", "sex")

    files = sorted(pathlib.Path("/data/cohort").glob("*.csv"))
    if not files:
        sys.exit("cohort-stats-py: no CSV file in /data/cohort")
    cohort = pd.concat([pd.read_csv(path, dtype={group_by: str}) for path in files], ignore_index=True)
    if group_by not in cohort.columns:
        sys.exit(f"cohort-stats-py: column `{group_by}` not in the dataset")
    cohort[group_by] = cohort[group_by].fillna("unknown")

    local = cohort.groupby(group_by).agg(n=("bmi", "size"), sum_bmi=("bmi", "sum"))
    state_path = pathlib.Path("/input/state/state.csv")
    if state_path.exists():
        previous = pd.read_csv(state_path, dtype={group_by: str}).set_index(group_by)
        totals = local.add(previous[["n", "sum_bmi"]], fill_value=0)
    else:
        totals = local
    totals["n"] = totals["n"].astype(int)
    totals = totals[totals["n"] >= MIN_CELL].sort_index()

    counts = pd.DataFrame({"n": totals["n"], "mean_bmi": (totals["sum_bmi"] / totals["n"]).round(2)})
    counts.reset_index().to_csv("/output/counts.csv", index=False)
    state = pd.DataFrame({"n": totals["n"], "sum_bmi": totals["sum_bmi"].round(1)})
    state.reset_index().to_csv("/output/state.csv", index=False)
    print(f"cohort-stats-py: {len(counts)} groups of {group_by} from {len(files)} file(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
