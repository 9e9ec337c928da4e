//! Scenarios in which the hostile program attacks the sandbox and must be contained: the
//! network, DNS, the pids, memory and wall-clock limits, read-only data and root file system, a
//! noexec `/tmp`, no Docker socket, no root and no capabilities.
//!
//! Does not check outputs beyond what an attack could leak through them (`outputs.rs` does).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure};

use crate::support::*;

pub(crate) async fn tcp_to_a_container_on_a_docker_network_is_unreachable(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let target = vec![
        ("host", Param::from(suite.listener_ip.clone())),
        ("port", LISTENER_PORT.into()),
    ];
    let (outcome, report) = suite
        .run_hostile("nettcp", small_limits(), &with_mode("net-tcp", target))
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("tcp_connect", "unreachable")?;
    let listener_logs = suite.container_logs(&suite.listener_container).await?;
    ensure!(
        !listener_logs.contains("accepted="),
        "the listener saw a connection from the sandbox: {listener_logs}"
    );

    // Control: the same program outside the sandbox reaches the listener, and it says so.
    let control_logs = suite
        .run_control(
            "nettcp",
            &with_mode(
                "net-tcp",
                vec![
                    ("host", suite.listener_ip.clone().into()),
                    ("port", LISTENER_PORT.into()),
                ],
            ),
        )
        .await?;
    ensure!(
        control_logs.contains("tcp_connect=connected"),
        "control: {control_logs}"
    );
    wait_for(
        Duration::from_secs(10),
        "the listener to log the control",
        || async {
            Ok(suite
                .container_logs(&suite.listener_container)
                .await?
                .contains("accepted="))
        },
    )
    .await
}

pub(crate) async fn tcp_to_the_hosts_loopback_is_unreachable(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let (outcome, report) = suite
        .run_hostile(
            "netlo",
            small_limits(),
            &[("mode", "net-loopback".into()), ("port", port.into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("tcp_connect", "Connection refused")?;
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => bail!("the host listener saw a connection from the sandbox: {other:?}"),
    }
    // Control: the listener does accept connections that reach it.
    let _client = std::net::TcpStream::connect(("127.0.0.1", port))?;
    wait_for(
        Duration::from_secs(5),
        "the host listener to accept",
        || async { Ok(listener.accept().is_ok()) },
    )
    .await
}

pub(crate) async fn dns_resolution_fails(suite: Arc<Suite>) -> anyhow::Result<()> {
    let name = suite.listener_container.clone();
    let (outcome, report) = suite
        .run_hostile(
            "dns",
            small_limits(),
            &[("mode", "dns".into()), ("name", name.clone().into())],
        )
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("dns", "")?;

    // Control: on the network, outside the sandbox, the name resolves.
    let control_logs = suite
        .run_control("dns", &[("mode", "dns".into()), ("name", name.into())])
        .await?;
    ensure!(
        control_logs.contains(&format!("dns=resolved {}", suite.listener_ip)),
        "control: {control_logs}"
    );
    Ok(())
}

pub(crate) async fn forkbomb_hits_the_pids_limit(suite: Arc<Suite>) -> anyhow::Result<()> {
    let limits = small_limits();
    let pids_limit = limits.pids;
    let (outcome, report) = suite
        .run_hostile("forkbomb", limits, &[("mode", "forkbomb".into())])
        .await?;
    ensure_contained(&outcome)?;
    let threads_spawned: u64 = report.get("threads_spawned")?.parse()?;
    ensure!(
        threads_spawned > 0 && threads_spawned < pids_limit,
        "{threads_spawned} threads against a limit of {pids_limit}"
    );
    ensure!(
        report
            .get("thread_error")?
            .contains("Resource temporarily unavailable"),
        "{}",
        report.text
    );
    report.expect_failed("process_spawn", "Resource temporarily unavailable")?;
    Ok(())
}

pub(crate) async fn memory_hog_is_oom_killed(suite: Arc<Suite>) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile(
            "memhog",
            small_limits(),
            &[("mode", "memhog".into()), ("max_mib", 2048u64.into())],
        )
        .await?;
    ensure!(outcome.oom_killed, "{outcome:?}");
    ensure!(!outcome.timed_out, "{outcome:?}");
    ensure!(outcome.exit_code == Some(137), "{outcome:?}");
    ensure!(
        report.text.contains("allocated_mib=16"),
        "it did allocate: {}",
        report.text
    );
    ensure!(
        !report.text.contains("memhog=not killed"),
        "{}",
        report.text
    );
    Ok(())
}

pub(crate) async fn spinning_train_is_killed_at_the_wall_clock(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let mut limits = small_limits();
    limits.wall_clock = Duration::from_secs(3);
    let (outcome, report) = suite
        .run_hostile("spin", limits, &[("mode", "spin".into())])
        .await?;
    ensure!(outcome.timed_out, "{outcome:?}");
    ensure!(outcome.exit_code == Some(137), "{outcome:?}");
    ensure!(
        outcome.duration >= Duration::from_secs(3) && outcome.duration < Duration::from_secs(60),
        "{outcome:?}"
    );
    ensure!(report.get("spin")? == "started", "{}", report.text);
    Ok(())
}

pub(crate) async fn datasets_are_read_only(suite: Arc<Suite>) -> anyhow::Result<()> {
    let dataset_file = suite.dataset_directory.path().join(DATASET_FILE);
    let dataset_before = std::fs::read(&dataset_file)?;
    let (outcome, report) = suite
        .run_hostile(
            "writedata",
            small_limits(),
            &with_mode("write-data", dataset_params()),
        )
        .await?;
    ensure_contained(&outcome)?;
    for key in [
        "write_data_create",
        "write_data_append",
        "write_data_remove",
    ] {
        report.expect_failed(key, "Read-only file system")?;
    }
    ensure!(std::fs::read(&dataset_file)? == dataset_before);
    ensure!(!suite.dataset_directory.path().join("x").exists());
    Ok(())
}

pub(crate) async fn root_filesystem_and_params_are_read_only_and_tmp_is_noexec(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let mut limits = small_limits();
    // Room in /tmp for a copy of the hostile program, so that only noexec can stop it running.
    limits.tmp_bytes = 16 * 1024 * 1024;
    let (outcome, report) = suite
        .run_hostile("writeroot", limits, &[("mode", "write-root".into())])
        .await?;
    ensure_contained(&outcome)?;
    report.expect_failed("write_root", "Read-only file system")?;
    report.expect_failed("write_input", "Read-only file system")?;
    ensure!(report.get("tmp_write")? == "ok", "{}", report.text);
    report.expect_failed("tmp_exec", "Permission denied")?;
    Ok(())
}

pub(crate) async fn docker_socket_is_absent(suite: Arc<Suite>) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile("sock", small_limits(), &[("mode", "docker-socket".into())])
        .await?;
    ensure_contained(&outcome)?;
    for key in ["docker_sock_var_run", "docker_sock_run"] {
        ensure!(report.get(key)? == "absent", "{}", report.text);
        report.expect_failed(&format!("{key}_connect"), "")?;
    }
    Ok(())
}

pub(crate) async fn train_runs_as_nobody_without_capabilities(
    suite: Arc<Suite>,
) -> anyhow::Result<()> {
    let (outcome, report) = suite
        .run_hostile("whoami", small_limits(), &[("mode", "whoami".into())])
        .await?;
    ensure_contained(&outcome)?;
    let expected = [
        ("Uid", "65534 65534 65534 65534"),
        ("Gid", "65534 65534 65534 65534"),
        ("CapInh", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("CapEff", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        // 2: a seccomp filter is in force (Docker's default profile).
        ("Seccomp", "2"),
    ];
    for (key, value) in expected {
        ensure!(
            report.get(key)? == value,
            "{key} should be {value:?}; logs:\n{}",
            report.text
        );
    }
    report.expect_failed("root_fs_writable", "Read-only file system")?;
    Ok(())
}
