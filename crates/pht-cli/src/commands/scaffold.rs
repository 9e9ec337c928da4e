//! The scaffolds of `pht train init`: a train in Rust (a static binary `FROM scratch`), in
//! Python or in R (a script on one of the project's base images, `FROM` it by digest).
//!
//! Owns the files each scaffold writes. Does not validate them (the build does, with the same
//! rules as any train) and does not know which bases exist: the researcher names one by digest.

use pht_core::ImageReference;

/// The language of a train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    R,
}

/// The files of a new train named `name`; `base` is required for Python and R.
pub fn files(
    language: Language,
    name: &str,
    base: Option<&ImageReference>,
) -> Result<Vec<(&'static str, String)>, String> {
    let base = || {
        let base = base.ok_or_else(|| {
            format!(
                "{} train starts FROM a base image by digest: give --base REGISTRY/bases/{}@sha256:… (what `pht base build {}` printed)",
                language.with_article(),
                language.base_name(),
                language.base_name()
            )
        })?;
        if base.digest().is_none() {
            return Err(format!(
                "--base {base}: name the base by digest (REPOSITORY@sha256:…), never by tag, so the signature covers it"
            ));
        }
        Ok(base.to_string())
    };
    Ok(match language {
        Language::Rust => vec![
            ("train.yaml", RUST_TRAIN_YAML.replace("{name}", name)),
            ("Dockerfile", RUST_DOCKERFILE.replace("{name}", name)),
            ("Cargo.toml", RUST_CARGO.replace("{name}", name)),
            ("src/main.rs", RUST_MAIN.to_string()),
            (".gitignore", "/target\n/bin\n".to_string()),
        ],
        Language::Python => vec![
            ("train.yaml", PYTHON_TRAIN_YAML.replace("{name}", name)),
            ("Dockerfile", PYTHON_DOCKERFILE.replace("{base}", &base()?)),
            ("analysis.py", PYTHON_ANALYSIS.to_string()),
            ("requirements.txt", PYTHON_REQUIREMENTS.to_string()),
        ],
        Language::R => vec![
            ("train.yaml", R_TRAIN_YAML.replace("{name}", name)),
            ("Dockerfile", R_DOCKERFILE.replace("{base}", &base()?)),
            ("analysis.R", R_ANALYSIS.to_string()),
        ],
    })
}

impl Language {
    fn with_article(self) -> &'static str {
        match self {
            Language::Rust => "a Rust",
            Language::Python => "a Python",
            Language::R => "an R",
        }
    }

    /// The file with the analysis, for the researcher to edit.
    pub fn program_file(self) -> &'static str {
        match self {
            Language::Rust => "src/main.rs",
            Language::Python => "analysis.py",
            Language::R => "analysis.R",
        }
    }

    fn base_name(self) -> &'static str {
        match self {
            Language::R => "r",
            _ => "python",
        }
    }
}

const RUST_TRAIN_YAML: &str = "\
# The train's contract with the stations that run it (validated by `pht train build`).
name: {name}
version: 0.1.0
description: Describe what this analysis computes.
authors: [\"Your Name <you@example.org>\"]
purpose: aggregate statistics
datasets: [cohort]
parameters: []
outputs:
  - path: result.csv
    kind: table
    count_columns: [n]
resources:
  cpus: 1
  memory: 128MiB
  wall_clock: 5m
entrypoint: [\"/{name}\"]
";

const RUST_DOCKERFILE: &str = "\
# Built offline: a static binary in an empty image. `pht train build` compiles bin/{name} first.
FROM scratch
COPY bin/{name} /{name}
USER 65534:65534
ENTRYPOINT [\"/{name}\"]
";

const RUST_CARGO: &str = "\
[package]
name = \"{name}\"
version = \"0.1.0\"
edition = \"2021\"
publish = false

# A train is its own workspace; `pht train build` compiles it as a static binary.
[workspace]

[profile.release]
strip = true
";

const RUST_MAIN: &str = r#"//! A train: reads the mounted dataset, writes aggregate results to /output.

use std::fs;

fn main() -> std::io::Result<()> {
    let mut n_rows = 0u64;
    for entry in fs::read_dir("/data/cohort")? {
        let text = fs::read_to_string(entry?.path())?;
        n_rows += text.lines().skip(1).filter(|line| !line.trim().is_empty()).count() as u64;
    }
    fs::write("/output/result.csv", format!("measure,n\nrows,{n_rows}\n"))
}
"#;

const PYTHON_TRAIN_YAML: &str = "\
# The train's contract with the stations that run it (validated by `pht train build`).
name: {name}
version: 0.1.0
description: Counts patients and their mean BMI by a grouping column; small groups suppressed.
authors: [\"Your Name <you@example.org>\"]
purpose: aggregate statistics
datasets: [cohort]
parameters:
  - name: group_by
    type: string
    default: sex
    description: The dataset column to group patients by.
outputs:
  - path: counts.csv
    kind: table
    count_columns: [n]
resources:
  cpus: 1
  memory: 512MiB
  wall_clock: 5m
entrypoint: [\"python3\", \"/train/analysis.py\"]
";

const PYTHON_DOCKERFILE: &str = "\
# On the project's Python base, by digest: Debian's python3 with numpy, pandas, scipy,
# statsmodels and scikit-learn. Extras come from requirements.txt, every one pinned with
# --hash, installed here at build time (the station never gives a train network).
FROM {base}
COPY requirements.txt /train/requirements.txt
USER 0:0
RUN if grep -qvE '^[[:space:]]*(#|$)' /train/requirements.txt; then \\
      python3 -m pip install --no-cache-dir --require-hashes --no-deps --target /train/lib -r /train/requirements.txt; \\
    fi
COPY analysis.py /train/analysis.py
ENV PYTHONPATH=/train/lib
USER 65534:65534
ENTRYPOINT [\"python3\", \"/train/analysis.py\"]
";

const PYTHON_ANALYSIS: &str = r#""""A train: reads the mounted dataset with pandas, writes aggregate results to /output."""

import json
import pathlib

import pandas as pd

# Groups smaller than this are suppressed here; the station checks again whatever the train does.
MIN_CELL = 10

params = json.loads(pathlib.Path("/input/params.json").read_text())
group_by = params.get("group_by", "sex")

frames = [pd.read_csv(path) for path in sorted(pathlib.Path("/data/cohort").glob("*.csv"))]
cohort = pd.concat(frames, ignore_index=True)

table = cohort.groupby(group_by).agg(n=("bmi", "size"), mean_bmi=("bmi", "mean")).reset_index()
table = table[table["n"] >= MIN_CELL]
table["mean_bmi"] = table["mean_bmi"].round(1)
table.to_csv("/output/counts.csv", index=False)
"#;

const PYTHON_REQUIREMENTS: &str = "\
# Extra Python packages, beyond the base's, each pinned with its hash, for example:
#   tabulate==0.9.0 --hash=sha256:024ca478df22e9340661486f85298cff5f6dcdba14f3813e8830015b9ed1948f
# (`pip hash FILE`, or `pip-compile --generate-hashes`). A line without --hash is refused.
";

const R_TRAIN_YAML: &str = "\
# The train's contract with the stations that run it (validated by `pht train build`).
name: {name}
version: 0.1.0
description: Counts patients by a grouping column with R; small groups suppressed.
authors: [\"Your Name <you@example.org>\"]
purpose: aggregate statistics
datasets: [cohort]
parameters:
  - name: group_by
    type: string
    default: sex
    description: The dataset column to group patients by.
outputs:
  - path: counts.csv
    kind: table
    count_columns: [n]
resources:
  cpus: 1
  memory: 512MiB
  wall_clock: 5m
entrypoint: [\"Rscript\", \"/train/analysis.R\"]
";

const R_DOCKERFILE: &str = "\
# On the project's R base, by digest: Debian's r-base-core with survival, data.table and the
# recommended packages.
FROM {base}
COPY analysis.R /train/analysis.R
USER 65534:65534
ENTRYPOINT [\"Rscript\", \"/train/analysis.R\"]
";

const R_ANALYSIS: &str = r#"# A train: reads the mounted dataset, writes aggregate results to /output.

# Groups smaller than this are suppressed here; the station checks again whatever the train does.
min_cell <- 10

# params.json without a JSON package: the one string parameter this train takes.
params <- local({
  text <- paste(readLines("/input/params.json", warn = FALSE), collapse = "")
  value <- regmatches(text, regexec('"group_by"\\s*:\\s*"([^"]*)"', text))[[1]]
  list(group_by = if (length(value) == 2) value[2] else "sex")
})

files <- sort(list.files("/data/cohort", pattern = "\\.csv$", full.names = TRUE))
cohort <- do.call(rbind, lapply(files, read.csv))
counts <- as.data.frame(table(cohort[[params$group_by]]), stringsAsFactors = FALSE)
names(counts) <- c(params$group_by, "n")
counts <- counts[counts$n >= min_cell, ]
write.csv(counts, "/output/counts.csv", row.names = FALSE, quote = FALSE)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the Python scaffold's docstring opened with two quotes, so every train made
    /// by `pht train init --lang python` failed at its first line with a SyntaxError.
    #[test]
    fn the_python_scaffold_is_valid_python() {
        let base: ImageReference =
            format!("127.0.0.1:5000/bases/python@sha256:{}", "ab".repeat(32))
                .parse()
                .unwrap();
        let files = files(Language::Python, "counts", Some(&base)).unwrap();
        let (_, analysis) = files
            .iter()
            .find(|(path, _)| *path == "analysis.py")
            .unwrap();
        assert!(analysis.starts_with("\"\"\"A train"), "{analysis}");
        let mut python = std::process::Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (install-deps checks it)");
        std::io::Write::write_all(python.stdin.as_mut().unwrap(), analysis.as_bytes()).unwrap();
        drop(python.stdin.take());
        assert!(python.wait().unwrap().success(), "{analysis}");
    }
}
