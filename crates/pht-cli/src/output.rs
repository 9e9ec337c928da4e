//! Printing results: human text on stdout, or one JSON document with `--json`; progress bars on
//! stderr only when it is a terminal and JSON was not asked for.

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// How a command prints what it found.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or `human` otherwise.
    pub fn print<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("output values always serialise")
            );
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }

    /// A note for people (stderr), never mixed into JSON on stdout.
    pub fn note(&self, message: impl std::fmt::Display) {
        if !self.json {
            eprintln!("{message}");
        }
    }

    /// A byte progress bar, hidden when printing JSON or when stderr is not a terminal.
    pub fn bytes_bar(&self, total: u64, label: &str) -> ProgressBar {
        let bar = if self.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar
    }
}
