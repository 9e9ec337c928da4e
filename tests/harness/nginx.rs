//! Debian's nginx as the load balancer in front of hub replicas, on a free loopback port, with
//! its configuration, logs and temporary files in a temporary directory; stopped when dropped.
//!
//! The configuration is `examples/hub/nginx.conf`'s, with the test's ports and paths: the
//! settings a hub behind a load balancer needs are tested, not retyped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, workspace_root};

#[derive(Debug)]
pub struct Nginx {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub url: String,
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!(
                "nginx is missing: install Debian's `nginx` package (scripts/install-deps.sh does)"
            )
        })
}

/// `examples/hub/nginx.conf` with the test's upstreams, port and directories.
pub fn configuration(dir: &Path, port: u16, replicas: &[&str]) -> String {
    let example = std::fs::read_to_string(workspace_root().join("examples/hub/nginx.conf"))
        .expect("read examples/hub/nginx.conf");
    let servers: String = replicas
        .iter()
        .map(|address| format!("    server {address} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    let start = example
        .find("    # replicas: begin\n")
        .expect("examples/hub/nginx.conf marks its replicas");
    let end = example
        .find("    # replicas: end\n")
        .expect("examples/hub/nginx.conf marks its replicas");
    let mut text = format!("{}{servers}{}", &example[..start], &example[end..]);
    // The test runs nginx in the foreground as the user running the tests, with every file in
    // its directory, and without TLS (loopback only).
    let replacements = [
        ("user www-data;", ""),
        (
            "pid /run/nginx-pht-hub.pid;",
            "pid {dir}/nginx.pid;\ndaemon off;",
        ),
        ("/var/log/nginx/pht-hub.error.log", "{dir}/error.log"),
        ("/var/log/nginx/pht-hub.access.log", "{dir}/access.log"),
        ("/var/lib/nginx/pht-hub", "{dir}/tmp"),
        ("listen 443 ssl;", "listen 127.0.0.1:{port};"),
    ];
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "examples/hub/nginx.conf has no `{from}`"
        );
        let to = to
            .replace("{dir}", &dir.display().to_string())
            .replace("{port}", &port.to_string());
        text = text.replace(from, &to);
    }
    // TLS lines: the certificate is the operator's; the test speaks plain HTTP on loopback.
    text.lines()
        .filter(|line| !line.trim_start().starts_with("ssl_"))
        .map(|line| format!("{line}\n"))
        .collect()
}

impl Nginx {
    /// nginx balancing over `replicas` (`host:port` each), ready to proxy.
    pub fn start(replicas: &[&str]) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("pht-nginx-")
            .tempdir()
            .expect("make a directory for nginx");
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        // Run as root, nginx's workers drop to `nobody`, which must reach its temporary files.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let config = dir.path().join("nginx.conf");
        std::fs::write(&config, configuration(dir.path(), port, replicas)).unwrap();
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-c")
            .arg(&config)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            dir,
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
        };
        nginx.wait_until_listening(port);
        nginx
    }

    fn wait_until_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("nginx exited ({status}): {}", self.logs());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not listen on {port}: {}", self.logs());
    }

    /// nginx's error log and stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    /// The access log: one line per request, with the replica that answered it.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
