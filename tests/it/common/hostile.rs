//! Helpers for the hostile-input suite: starting the daemon with a changed command (another
//! user, extra environment), CPU time of a process, folder permissions, a small tmpfs that
//! can be filled, and the files a test leaves outside the inbox and outbox.

use super::{Daemon, Setup, files_under};
use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The user and group an unprivileged daemon runs as when the tests run as root (`nobody`).
pub const NOBODY: u32 = 65534;

/// Whether the tests run as root, where permission bits do not apply.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no failure mode.
    unsafe { libc::geteuid() == 0 }
}

/// `drawdrop run` in the background with `configure` applied to its command (environment,
/// user); stopped (SIGTERM, then kill) when dropped, as [`Setup::start_daemon`].
pub fn start_daemon_with(setup: &Setup, configure: impl FnOnce(&mut Command)) -> Daemon {
    let log = setup
        .dir
        .path()
        .join(format!("daemon-{}.stderr", fastrand::u32(..)));
    let stderr = fs::File::create(&log).expect("stderr file");
    let mut command = setup.command();
    command.arg("run").stdout(Stdio::null()).stderr(stderr);
    configure(&mut command);
    let child = command.spawn().expect("start drawdrop");
    Daemon {
        child: Some(child),
        stderr: log,
    }
}

/// Puts a file into the inbox whole, as [`Setup::drop_file`] does, but written beside the
/// inbox (on its file system, wherever that is) before it is renamed in.
pub fn drop_beside_inbox(setup: &Setup, relative: &str, bytes: &[u8]) -> PathBuf {
    let path = setup.inbox.join(relative);
    fs::create_dir_all(path.parent().expect("parent")).expect("create folders");
    let staging = setup.inbox.with_file_name(".staging-beside-inbox");
    fs::create_dir_all(&staging).expect("staging");
    let temporary = staging.join(path.file_name().expect("name"));
    fs::write(&temporary, bytes).expect("write");
    fs::rename(&temporary, &path).expect("rename into the inbox");
    path
}

/// Makes `command` run as `nobody` when the tests run as root (so that permission bits
/// apply to it), and opens the setup's folder to it. Without root, nothing changes: the
/// daemon is the same user as the test, and plain `chmod` works on it.
pub fn unprivileged(setup: &Setup, command: &mut Command) {
    if is_root() {
        fs::set_permissions(setup.dir.path(), fs::Permissions::from_mode(0o777))
            .expect("open the temp dir to nobody");
        // std drops root's supplementary groups when a uid is set.
        command.uid(NOBODY).gid(NOBODY);
    }
}

/// CPU time (user + system, all threads) a process used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')').expect("stat format") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf(3) with a valid name.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / per_second
}

/// Sets `mode` on `root` and every folder under it (not files), returning what they had.
pub fn chmod_folders(root: &Path, mode: u32) -> Vec<(PathBuf, u32)> {
    let mut folders = vec![root.to_path_buf()];
    let mut index = 0;
    while index < folders.len() {
        if let Ok(entries) = fs::read_dir(&folders[index]) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    folders.push(entry.path());
                }
            }
        }
        index += 1;
    }
    let mut previous = Vec::new();
    for folder in folders.into_iter().rev() {
        let old = fs::metadata(&folder)
            .expect("folder mode")
            .permissions()
            .mode()
            & 0o7777;
        fs::set_permissions(&folder, fs::Permissions::from_mode(mode)).expect("chmod");
        previous.push((folder, old));
    }
    previous
}

/// Gives folders back the modes [`chmod_folders`] returned.
pub fn restore_modes(previous: &[(PathBuf, u32)]) {
    for (folder, mode) in previous.iter().rev() {
        fs::set_permissions(folder, fs::Permissions::from_mode(*mode)).expect("restore mode");
    }
}

/// A tmpfs mounted on a folder for the length of a test; detached when dropped, also when
/// the test fails.
pub struct TmpfsMount {
    target: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (as `mount -o size=...` takes it, e.g. `2m`) on `target`,
    /// creating it. Fails without the right to mount (not root, no CAP_SYS_ADMIN).
    pub fn new(target: &Path, size: &str) -> io::Result<TmpfsMount> {
        fs::create_dir_all(target)?;
        let c_target = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let options = CString::new(format!("size={size},mode=0755")).map_err(io::Error::other)?;
        // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
        let result = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c_target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TmpfsMount {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.target.as_os_str().as_bytes()) {
            // SAFETY: umount2(2) with a NUL-terminated path; a lazy detach works even while
            // a process still has files open there.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Writes `path` until the file system is full (`ENOSPC`). Returns the bytes written.
pub fn fill_up(path: &Path) -> u64 {
    let mut file = fs::File::create(path).expect("create the filler");
    let block = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
    // Tail bytes of a last page, if any.
    while let Ok(n) = file.write(&[0x5a]) {
        if n == 0 {
            break;
        }
        written += 1;
    }
    written
}

/// The device a path is on.
pub fn device_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .dev()
}

/// Every file under the setup's temp dir outside its inbox and outbox, relative.
pub fn files_beside(setup: &Setup) -> BTreeSet<String> {
    files_under(setup.dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("Inbox/") && !f.starts_with("Outbox/"))
        .collect()
}

/// Lines of `text` that do not start like a log line (`2026-11-25 22:15:03 ...`): what a
/// name with a newline would produce if it were not escaped.
pub fn stray_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| {
            let bytes = line.as_bytes();
            !(bytes.len() > 19
                && bytes[..4].iter().all(u8::is_ascii_digit)
                && bytes[4] == b'-'
                && bytes[13] == b':')
        })
        .map(str::to_owned)
        .collect()
}
