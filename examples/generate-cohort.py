#!/usr/bin/env python3
"""Writes small synthetic cohort datasets, one per example station. No real people: every value
is drawn from a seeded random generator, so the files are the same on every run.

Usage: python3 examples/generate-cohort.py [OUT_DIR]   (default: examples/data)
"""
import csv
import os
import random
import sys

STATIONS = {"station-a": (1, 400), "station-b": (2, 300), "station-c": (3, 250)}
DIAGNOSES = ["diabetes", "hypertension", "asthma", "copd", "none"]


def write_cohort(path, seed, n_rows):
    rng = random.Random(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["patient_id", "age", "sex", "bmi", "smoker", "diagnosis", "region"])
        for row_idx in range(n_rows):
            # A rare diagnosis in a handful of rows makes small counts that output checks catch.
            diagnosis = "rare-disease" if row_idx % 97 == 13 else rng.choice(DIAGNOSES)
            writer.writerow([
                f"S{seed}-{row_idx:05d}",
                rng.randint(18, 90),
                rng.choice(["F", "M"]),
                round(rng.uniform(17.0, 40.0), 1),
                rng.choice(["yes", "no"]),
                diagnosis,
                rng.choice(["north", "east", "south", "west"]),
            ])


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data")
    for station, (seed, n_rows) in STATIONS.items():
        write_cohort(os.path.join(out_dir, station, "cohort", "cohort.csv"), seed, n_rows)
    print(f"wrote synthetic cohorts for {', '.join(STATIONS)} under {out_dir}")


if __name__ == "__main__":
    main()
