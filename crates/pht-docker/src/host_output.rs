//! `/output` as a host directory the station mounts itself: a tmpfs capped in bytes and files,
//! bind-mounted into the train, and read back straight from the host file system.
//!
//! Owns: deciding whether this process may do that ([`HostOutputs::probe`]), mounting and
//! unmounting each run's tmpfs under one root directory, removing the mounts a crashed station
//! left, and reading a run's outputs without trusting them ([`collect_dir`]).
//!
//! Why: it is what `DESIGN.md` asks for ("a bind-mounted host directory with a size limit the
//! station enforces"), the kernel enforces the cap however fast the train writes, and it costs a
//! `mount(2)` instead of the output holder container and volume of the fallback (see
//! [`crate::sandbox`]), which is about as expensive as starting the train itself.
//!
//! When: only when the station runs as root in the same mount namespace as `dockerd` and
//! `containerd`, so that the bind mount Docker makes is the tmpfs, not the directory under it.
//! A station in a container, without root, or talking to a remote engine uses the fallback.
//! The mount point itself is owned by root and not writable by the train's user, so if Docker
//! ever saw the directory instead of the tmpfs, the train's writes would fail instead of filling
//! the host's disk.
//!
//! Reading: the walk opens every entry relative to its parent directory's descriptor with
//! `O_NOFOLLOW`, never follows a link, never opens anything but regular files, and streams a tar
//! archive into [`crate::collect::collect_outputs`], the same collector the archive API feeds, so
//! one piece of code judges every output. The train has exited, and the kernel killed every
//! process of its PID namespace with it, so nothing changes the tree while it is read.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::collect::{self, CollectError, CollectLimits, CollectedOutputs};
use crate::spec::OutputSlotSpec;

/// The top directory of the archive [`collect_dir`] builds, as in Docker's archive of `/output`.
const ARCHIVE_ROOT: &str = "output";
/// Directories nested deeper than this are not read: the walk holds one descriptor per level.
const MAX_DEPTH: usize = 64;
/// The name prefix of probe mounts under the root: `.probe-<pid>-<n>`, one per probe, so that
/// stations started at the same time never mount at the same place.
const PROBE_PREFIX: &str = ".probe-";

/// The root under which this station mounts each run's `/output`.
#[derive(Debug, Clone)]
pub struct HostOutputs {
    root: PathBuf,
}

impl HostOutputs {
    /// Checks that this process can give trains host-mounted outputs that Docker sees, and
    /// prepares `root` (created with mode 0700). The error says why not, in words for the log.
    pub fn probe(root: &Path) -> Result<HostOutputs, String> {
        if !rustix::process::geteuid().is_root() {
            return Err(
                "the station does not run as root, so it cannot mount a capped tmpfs".to_string(),
            );
        }
        let own_namespace = mount_namespace("self")
            .map_err(|error| format!("cannot read this process's mount namespace: {error}"))?;
        let daemons = processes_named(&["dockerd", "containerd"]);
        if !daemons.iter().any(|(_, name)| name == "dockerd") {
            return Err("no dockerd process is visible from here (the station runs in a container, or Docker is elsewhere)".to_string());
        }
        for (pid, name) in &daemons {
            let namespace = mount_namespace(&pid.to_string()).map_err(|error| {
                format!("cannot read the mount namespace of {name} (pid {pid}): {error}")
            })?;
            if namespace != own_namespace {
                return Err(format!(
                    "{name} (pid {pid}) runs in another mount namespace, so it would not see a tmpfs the station mounts"
                ));
            }
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|error| format!("cannot create {}: {error}", root.display()))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|error| format!("cannot restrict {}: {error}", root.display()))?;
        let outputs = HostOutputs {
            root: std::path::absolute(root)
                .map_err(|error| format!("cannot resolve {}: {error}", root.display()))?,
        };
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let probe = outputs.root.join(format!(
            "{PROBE_PREFIX}{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        outputs
            .mount_at(&probe, "size=4096,nr_inodes=2,mode=0700")
            .map_err(|error| format!("cannot mount a tmpfs at {}: {error}", probe.display()))?;
        outputs
            .release(&probe)
            .map_err(|error| format!("cannot unmount {}: {error}", probe.display()))?;
        Ok(outputs)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `run_id`'s `/output`.
    pub(crate) fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join(run_id)
    }

    /// Mounts a fresh tmpfs at `dir` (a [`run_dir`](Self::run_dir)) for a run's `/output`,
    /// capped as `slot` says and owned by the train's user.
    pub(crate) fn mount(&self, dir: &Path, slot: &OutputSlotSpec) -> io::Result<()> {
        // A directory left by a crashed attempt of the same run holds nothing worth keeping.
        self.release(dir)?;
        // nosuid, nodev and noexec are mount flags here, not options.
        self.mount_at(dir, &slot.tmpfs_options())
    }

    /// Creates `dir` (root-owned, mode 0500: the train's user cannot write to it should the
    /// tmpfs ever be missing) and mounts a tmpfs with `options` on it.
    fn mount_at(&self, dir: &Path, options: &str) -> io::Result<()> {
        std::fs::DirBuilder::new().mode(0o500).create(dir)?;
        let options = std::ffi::CString::new(options).map_err(io::Error::other)?;
        let mounted = rustix::mount::mount(
            "pht-output",
            dir,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            options.as_c_str(),
        );
        if let Err(error) = mounted {
            let _ = std::fs::remove_dir(dir);
            return Err(error.into());
        }
        Ok(())
    }

    /// Unmounts `dir` (if mounted) and removes it (if present).
    pub(crate) fn release(&self, dir: &Path) -> io::Result<()> {
        match rustix::mount::unmount(dir, UnmountFlags::DETACH) {
            // EINVAL: not a mount point; ENOENT: not there at all.
            Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
            Err(error) => return Err(error.into()),
        }
        match std::fs::remove_dir(dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Unmounts and removes the output directories of runs `is_stale` names (by run id), and
    /// probes whose process has ended; a live run's or probe's directory is left alone.
    pub(crate) fn release_stale(
        &self,
        is_stale: &dyn Fn(&str) -> bool,
    ) -> (Vec<String>, Vec<(String, io::Error)>) {
        let mut released = Vec::new();
        let mut failures = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return (released, failures);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = match name.strip_prefix(PROBE_PREFIX) {
                Some(probe) => probe
                    .split('-')
                    .next()
                    .is_none_or(|pid| !Path::new("/proc").join(pid).exists()),
                None => is_stale(&name),
            };
            if !stale {
                continue;
            }
            let dir = entry.path();
            match self.release(&dir) {
                Ok(()) => released.push(dir.display().to_string()),
                Err(error) => failures.push((dir.display().to_string(), error)),
            }
        }
        (released, failures)
    }
}

fn mount_namespace(pid: &str) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
}

/// Processes whose command name is one of `names`, as (pid, name).
fn processes_named(names: &[&str]) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let command = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let command = command.trim_end();
            names.contains(&command).then(|| (pid, command.to_string()))
        })
        .collect()
}

/// Collects the outputs in `dir` as [`collect::collect_outputs`] would from Docker's archive of
/// it: the walk writes a tar stream into a pipe on a thread of its own, the collector reads it.
pub(crate) fn collect_dir(
    dir: &Path,
    limits: &CollectLimits,
) -> Result<CollectedOutputs, CollectError> {
    let walk_error = |source: io::Error| CollectError::Walk {
        dir: dir.display().to_string(),
        source,
    };
    let root = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|error| walk_error(error.into()))?;
    let (reader, writer) = io::pipe().map_err(walk_error)?;
    let walker = std::thread::spawn(move || archive_tree(root, writer));
    let collected = collect::collect_outputs(reader, ARCHIVE_ROOT, limits);
    // The reader is dropped by now: a walker still writing gets a broken pipe and stops.
    let walked = walker
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the output walk panicked")));
    match walked {
        Ok(()) => {}
        // The collector stopped reading at a cap; it says so itself.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        Err(error) => return Err(walk_error(error)),
    }
    collected
}

/// Writes a tar archive of the tree under `root` to `writer`, rooted at [`ARCHIVE_ROOT`].
fn archive_tree(root: OwnedFd, writer: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(writer);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o700);
    header.set_size(0);
    builder.append_data(&mut header, format!("{ARCHIVE_ROOT}/"), io::empty())?;
    let mut walk = TreeWalk {
        builder: &mut builder,
        regular_files_by_inode: HashMap::new(),
    };
    walk.directory(root.as_fd(), Path::new(ARCHIVE_ROOT), 0)?;
    builder.finish()
}

struct TreeWalk<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    /// (device, inode) → archive path of regular files already written, so a second name for
    /// one file becomes a hard-link entry (which the collector refuses) rather than a copy.
    regular_files_by_inode: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> TreeWalk<'_, W> {
    fn directory(
        &mut self,
        dir: std::os::fd::BorrowedFd<'_>,
        path: &Path,
        depth: usize,
    ) -> io::Result<()> {
        if depth >= MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{} is nested more than {MAX_DEPTH} directories deep",
                path.display()
            )));
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        for entry in rustix::fs::Dir::read_from(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        names.sort();
        for name in names {
            let entry_path = path.join(OsStr::from_bytes(&name));
            let stat = rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?;
            let mut header = tar::Header::new_gnu();
            header.set_mode(stat.st_mode & 0o7777);
            header.set_uid(u64::from(stat.st_uid));
            header.set_gid(u64::from(stat.st_gid));
            header.set_mtime(u64::try_from(stat.st_mtime).unwrap_or(0));
            header.set_size(0);
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    header.set_entry_type(tar::EntryType::Directory);
                    let mut dir_path = entry_path.clone().into_os_string();
                    dir_path.push("/");
                    self.builder
                        .append_data(&mut header, dir_path, io::empty())?;
                    let child = rustix::fs::openat(
                        dir,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    self.directory(child.as_fd(), &entry_path, depth + 1)?;
                }
                FileType::RegularFile => {
                    let inode = (stat.st_dev, stat.st_ino);
                    if let Some(first_path) = self.regular_files_by_inode.get(&inode) {
                        header.set_entry_type(tar::EntryType::Link);
                        let first_path = first_path.clone();
                        self.builder
                            .append_link(&mut header, &entry_path, first_path)?;
                        continue;
                    }
                    let file = rustix::fs::openat(
                        dir,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    let opened = rustix::fs::fstat(&file)?;
                    if (opened.st_dev, opened.st_ino) != inode
                        || FileType::from_raw_mode(opened.st_mode) != FileType::RegularFile
                    {
                        return Err(io::Error::other(format!(
                            "{} changed while /output was read",
                            entry_path.display()
                        )));
                    }
                    let size = u64::try_from(opened.st_size).unwrap_or(0);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(size);
                    let content = std::fs::File::from(file).take(size);
                    self.builder
                        .append_data(&mut header, &entry_path, content)?;
                    self.regular_files_by_inode.insert(inode, entry_path);
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, name.as_slice(), Vec::new())?;
                    header.set_entry_type(tar::EntryType::Symlink);
                    self.builder.append_link(
                        &mut header,
                        &entry_path,
                        OsStr::from_bytes(target.to_bytes()),
                    )?;
                }
                special => {
                    let entry_type = match special {
                        FileType::Fifo => tar::EntryType::Fifo,
                        FileType::CharacterDevice => tar::EntryType::Char,
                        FileType::BlockDevice => tar::EntryType::Block,
                        // Docker's archive leaves sockets out too; tar has no type for them.
                        _ => continue,
                    };
                    header.set_entry_type(entry_type);
                    let device = stat.st_rdev;
                    header.set_device_major(rustix::fs::major(device))?;
                    header.set_device_minor(rustix::fs::minor(device))?;
                    self.builder
                        .append_data(&mut header, &entry_path, io::empty())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::{CollectedKind, RefusalReason};
    use std::os::unix::fs::symlink;

    fn limits() -> CollectLimits {
        CollectLimits {
            max_total_bytes: 1024 * 1024,
            max_entries: 100,
        }
    }

    #[test]
    fn concurrent_execs_probe_and_clean_up_without_touching_each_other() {
        // Concurrent `exec`s on one state directory each probe at their own place, and a
        // cleanup releases only stale runs and probes of processes that have ended.
        let dir = tempfile::tempdir().unwrap();
        let outputs = HostOutputs {
            root: dir.path().to_path_buf(),
        };
        let own_probe = format!("{PROBE_PREFIX}{}-0", std::process::id());
        let dead_probe = format!("{PROBE_PREFIX}4294967294-0");
        for name in [
            "run-stale",
            "run-live",
            own_probe.as_str(),
            dead_probe.as_str(),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let (released, failures) = outputs.release_stale(&|run_id| run_id == "run-stale");
        assert!(failures.is_empty(), "{failures:?}");
        let mut released: Vec<String> = released
            .iter()
            .map(|path| {
                Path::new(path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        released.sort();
        assert_eq!(released, [dead_probe.clone(), "run-stale".to_string()]);
        assert!(dir.path().join("run-live").exists() && dir.path().join(&own_probe).exists());
    }

    #[test]
    fn a_tree_is_collected_as_the_archive_api_would_give_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("counts.csv"), "group,n\na,12\n").expect("writable");
        std::fs::create_dir(dir.path().join("tables")).expect("writable");
        std::fs::write(dir.path().join("tables/b.csv"), "x\n").expect("writable");
        symlink("/etc/passwd", dir.path().join("passwd")).expect("writable");
        std::fs::hard_link(dir.path().join("counts.csv"), dir.path().join("z-copy.csv"))
            .expect("writable");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("pipe"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("a fifo");
        std::os::unix::net::UnixListener::bind(dir.path().join("socket")).expect("a socket");

        let outputs = collect_dir(dir.path(), &limits()).expect("collected");
        let listing: Vec<String> = outputs
            .files
            .iter()
            .map(|file| format!("{} {:?}", file.path, file.kind))
            .collect();
        expect_test::expect![[r#"
            [
                "counts.csv Regular(13 bytes)",
                "passwd Symlink(\"/etc/passwd\")",
                "pipe Special(\"fifo\")",
                "tables/b.csv Regular(2 bytes)",
                "z-copy.csv Special(\"hard link to \\\"output/counts.csv\\\"\")",
            ]
        "#]]
        .assert_debug_eq(&listing);
        assert_eq!(
            outputs.regular_file("counts.csv"),
            Some(&b"group,n\na,12\n"[..])
        );
        assert!(outputs
            .refused
            .iter()
            .any(|refused| matches!(refused.reason, RefusalReason::SpecialFile { .. })));
        assert!(!outputs.truncated);
    }

    #[test]
    fn collection_stops_at_the_caps() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for idx in 0..20 {
            std::fs::write(dir.path().join(format!("{idx:02}.txt")), vec![b'x'; 1000])
                .expect("writable");
        }
        let outputs = collect_dir(
            dir.path(),
            &CollectLimits {
                max_total_bytes: 5000,
                max_entries: 100,
            },
        )
        .expect("collected");
        assert!(outputs.truncated);
        assert_eq!(outputs.total_bytes, 5000);

        let outputs = collect_dir(
            dir.path(),
            &CollectLimits {
                max_total_bytes: 1024 * 1024,
                max_entries: 3,
            },
        )
        .expect("collected");
        assert!(outputs.truncated);
        assert_eq!(outputs.files.len(), 3);
    }

    #[test]
    fn a_symlinked_directory_is_recorded_not_entered() {
        let outside = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(outside.path().join("secret.csv"), "id\n1\n").expect("writable");
        let dir = tempfile::tempdir().expect("a temporary directory");
        symlink(outside.path(), dir.path().join("data")).expect("writable");
        let outputs = collect_dir(dir.path(), &limits()).expect("collected");
        assert_eq!(outputs.files.len(), 1);
        assert!(matches!(
            outputs.files[0].kind,
            CollectedKind::Symlink { .. }
        ));
    }

    #[test]
    fn a_tree_nested_too_deep_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut path = dir.path().to_path_buf();
        for _ in 0..=MAX_DEPTH {
            path.push("d");
        }
        std::fs::create_dir_all(&path).expect("writable");
        let error = collect_dir(dir.path(), &limits()).expect_err("too deep");
        assert!(error.to_string().contains("nested more than"), "{error}");
    }

    #[test]
    fn a_directory_that_is_a_symlink_is_refused_as_the_root() {
        let outside = tempfile::tempdir().expect("a temporary directory");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let link = dir.path().join("link");
        symlink(outside.path(), &link).expect("writable");
        assert!(collect_dir(&link, &limits()).is_err());
    }
}
