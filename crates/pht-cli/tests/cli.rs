//! The `pht` executable as a researcher first meets it: `--help` names every command and what it
//! is for, and a mistyped command exits 2 (a usage error) saying how to get help.
//!
//! Also makes `cargo test` build the `pht` executable itself, which the end-to-end tests run.

use std::process::Command;

fn pht(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pht"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pht")
}

#[test]
fn help_names_every_command_and_exits_zero() {
    let output = pht(&["--help"]);
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "key",
        "train",
        "base",
        "submit",
        "status",
        "results",
        "sign-blob",
    ] {
        assert!(
            help.lines()
                .any(|line| line.trim_start().starts_with(&format!("{command} "))),
            "`pht --help` does not list `{command}`:\n{help}"
        );
    }
}

#[test]
fn an_unknown_command_is_a_usage_error_that_points_to_help() {
    let output = pht(&["sumbit"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("sumbit"), "{message}");
    assert!(message.contains("--help"), "{message}");
}
