//! Starting the service (the real release binary) and reading its memory from /proc.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The API key every benchmark server is started with (tenant `bench`).
pub const API_KEY: &str = "bench-key-0123456789abcdef";

/// The service binary cargo built next to this bench.
pub fn service_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_insights-connector"))
}

/// A free port on 127.0.0.1 (bound and released; good enough on a quiet loopback).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// One `GET path` over a fresh connection; returns the status code, or `None` when nothing
/// answered (yet).
pub fn raw_get_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_nodelay(true).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Polls `GET /ready` every millisecond until it answers 200; returns how long that took
/// from `since`.
pub fn wait_ready(port: u16, since: Instant, timeout: Duration, child: &mut Child) -> Duration {
    loop {
        if raw_get_status(port, "/ready") == Some(200) {
            return since.elapsed();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited before it was ready: {status}");
        }
        if since.elapsed() > timeout {
            panic!("the server was not ready after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`, …).
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process so far, in seconds (`/proc/<pid>/stat`).
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Field 14 is index 11 after the state field (field 3 is index 0).
    (ticks(11) + ticks(12)) / 100.0
}

/// A running server process.
pub struct Service {
    child: Child,
    pub base: String,
    /// From spawn to the first 200 from `/ready`.
    pub ready_after: Duration,
}

impl Service {
    /// Starts the release binary on a free port over `data_dir` (stderr to `log`), waits for
    /// `/ready`.
    pub fn start(data_dir: &Path, extra_args: &[&str], log: &Path) -> Service {
        Self::start_binary(&service_binary(), data_dir, extra_args, log)
    }

    pub fn start_binary(bin: &Path, data_dir: &Path, extra_args: &[&str], log: &Path) -> Service {
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("log file");
        let started = Instant::now();
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--api-keys")
            .arg(format!("bench:{API_KEY}"))
            .args(extra_args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the service binary starts");
        let ready_after = wait_ready(port, started, Duration::from_secs(900), &mut child);
        Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
            ready_after,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS")
    }

    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid())
    }

    pub fn hwm_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM")
    }

    /// SIGTERM, then waits (the server drains and closes the database); SIGKILL after 60 s.
    pub fn stop(mut self) {
        terminate(&mut self.child, Duration::from_secs(60));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// SIGTERM and wait up to `grace`, then SIGKILL.
pub fn terminate(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
