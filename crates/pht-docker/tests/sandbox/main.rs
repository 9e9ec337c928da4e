//! End-to-end tests of the sandbox against the real Docker engine.
//!
//! Owns: building the hostile test program (`tests/hostile`) as a static binary and a
//! `FROM scratch` image of it, a Docker network with a TCP listener for the network scenarios,
//! the scenarios themselves (each runs one attack through [`DockerSandbox`] and checks that it
//! was contained and that nothing of the run is left in Docker), and removing everything it
//! created once the last scenario is done.
//!
//! The scenarios live in modules of this one test binary, grouped by what they check:
//! `containment.rs` (attacks that must be contained), `outputs.rs` (what comes back from a run)
//! and `leftovers.rs` (what a failed or dropped run leaves behind); the shared set-up is
//! `support.rs`, the runner `runner.rs`. One binary, not one per
//! file: every test binary is linked against bollard and tokio, which costs CI time, and the
//! image, network and listener are built once for all scenarios.
//!
//! It runs under its own small runner (`harness = false` in Cargo.toml) rather than libtest, so
//! that the shared image, network and listener are built once and removed after the last
//! scenario; the scenarios run concurrently. Name filters work as with libtest
//! (`cargo test -p pht-docker --test sandbox -- forkbomb`). It never skips: without Docker, or
//! without the static toolchain, it fails and says why.

mod containment;
mod leftovers;
mod outputs;
mod runner;
mod support;

use std::process::ExitCode;

use runner::Scenario;

/// A scenario named after its function, as libtest names a test.
macro_rules! scenario {
    ($module:ident :: $name:ident) => {
        Scenario {
            name: stringify!($name),
            body: |suite| Box::pin($module::$name(suite)),
        }
    };
}

fn scenarios() -> Vec<Scenario> {
    vec![
        scenario!(outputs::well_behaved_train_reads_its_dataset_and_its_outputs_are_collected),
        scenario!(outputs::exit_code_and_stderr_of_a_failing_train_are_reported),
        scenario!(containment::tcp_to_a_container_on_a_docker_network_is_unreachable),
        scenario!(containment::tcp_to_the_hosts_loopback_is_unreachable),
        scenario!(containment::dns_resolution_fails),
        scenario!(containment::forkbomb_hits_the_pids_limit),
        scenario!(containment::memory_hog_is_oom_killed),
        scenario!(containment::spinning_train_is_killed_at_the_wall_clock),
        scenario!(containment::datasets_are_read_only),
        scenario!(containment::root_filesystem_and_params_are_read_only_and_tmp_is_noexec),
        scenario!(outputs::big_output_is_cut_at_the_output_cap),
        scenario!(outputs::symlink_to_etc_passwd_is_recorded_not_followed),
        scenario!(outputs::symlink_to_a_dataset_file_is_recorded_not_followed),
        scenario!(containment::docker_socket_is_absent),
        scenario!(containment::train_runs_as_nobody_without_capabilities),
        scenario!(outputs::log_flood_is_capped_and_marked_truncated),
        scenario!(outputs::volumes_declared_by_the_image_get_a_capped_tmpfs),
        scenario!(leftovers::a_missing_image_fails_and_leaves_nothing),
        scenario!(leftovers::a_missing_entrypoint_exits_127_and_leaves_nothing),
        scenario!(leftovers::an_unknown_runtime_fails_and_leaves_nothing),
        scenario!(leftovers::a_missing_dataset_directory_fails_and_leaves_nothing),
        scenario!(leftovers::a_dropped_run_is_cleaned_up_in_the_background),
        scenario!(leftovers::cleanup_stale_removes_only_this_stations_leftovers),
        scenario!(outputs::in_a_volume_outputs_are_collected_capped_and_links_not_followed),
        scenario!(outputs::warm_spare_slots_are_claimed_empty_and_removed),
    ]
}

fn main() -> ExitCode {
    runner::run(scenarios())
}
