//! Free ports, child-process guards and readiness probes for tests that start real servers.
//!
//! Every server a test starts binds 127.0.0.1 on a port from [`free_port`] and lives inside a
//! [`ChildGuard`], which kills it when the guard drops — including when the test panics — so no
//! test leaves a server running.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// A child process whose stderr goes to `<dir>/<name>.log` (its stdout is dropped), killed on
/// drop: for tests that read a server's log when something goes wrong.
#[derive(Debug)]
pub struct LoggedProcess {
    pub guard: ChildGuard,
    log: std::path::PathBuf,
}

impl LoggedProcess {
    /// Starts `cmd` as `name`.
    ///
    /// # Panics
    ///
    /// If the log file cannot be created or the process cannot start.
    pub fn start(dir: &std::path::Path, name: &str, cmd: &mut Command) -> LoggedProcess {
        let log = dir.join(format!("{name}.log"));
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("creating the process log"));
        LoggedProcess {
            guard: ChildGuard::spawn(name, cmd).expect("starting the process"),
            log,
        }
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and releasing it, so another process could take it before
/// the caller binds it; callers that start servers retry on a bind failure.
///
/// # Panics
///
/// When no loopback port can be bound at all, which means the machine is unusable for tests.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// Owns a child process and kills it (SIGKILL, to its whole process group) and reaps it on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
    own_group: bool,
}

impl ChildGuard {
    /// Spawns `command` in a new process group, so that dropping the guard also kills any
    /// processes it starts (wrapper scripts such as pyenv shims, worker processes).
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> Result<ChildGuard> {
        let name = name.into();
        command.stdin(Stdio::null()).process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {name} ({command:?})"))?;
        Ok(ChildGuard {
            child,
            name,
            own_group: true,
        })
    }

    /// Guards an already spawned child (only that process is killed on drop).
    pub fn new(name: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            child,
            name: name.into(),
            own_group: false,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn time, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mutable access to the child, e.g. to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// `Some(status)` if the child has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking whether {} is still running", self.name))
    }

    /// Fails if the child has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.try_wait()? {
            Some(status) => bail!("{} exited unexpectedly with {status}", self.name),
            None => Ok(()),
        }
    }

    /// Waits until `url` answers HTTP (any status), failing early if the child exits.
    pub fn wait_for_http(&mut self, url: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            let last = match http_request("GET", url, &[]) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(last.context(format!(
                    "{} did not answer HTTP at {url} within {timeout:?}",
                    self.name
                )));
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Kills the child (and its process group) now and reaps it.
    pub fn kill(&mut self) {
        if self.own_group {
            // A negative pid addresses the process group that `spawn` created.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `count` every 300 ms until it returns the same value twice in a row (say, a
/// client writing in the background has written everything), at most `timeout`; returns the
/// last value.
pub fn settled_count(timeout: Duration, mut count: impl FnMut() -> Result<u64>) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut last = u64::MAX;
    loop {
        sleep(Duration::from_millis(300));
        let now = count()?;
        if now == last || Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Waits until something accepts TCP connections at `addr`.
pub fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow!(e)
                    .context(format!("nothing accepted TCP at {addr} within {timeout:?}")));
            }
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
}

/// Waits until `url` (`http://host:port/path`) answers HTTP with any status.
pub fn wait_for_http(url: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match http_request("GET", url, &[]) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("{url} did not answer HTTP within {timeout:?}")));
            }
            Err(_) => sleep(Duration::from_millis(100)),
        }
    }
}

/// A response from [`http_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The status line and headers as received, CRLF-separated.
    pub headers: String,
    /// Body bytes, with chunked transfer encoding decoded.
    pub body: Vec<u8>,
}

/// A minimal blocking HTTP/1.1 request over plain TCP, enough to poke test servers without an
/// HTTP client dependency. Only `http://` URLs are supported.
pub fn http_request(method: &str, url: &str, body: &[u8]) -> Result<HttpResponse> {
    http_request_with_headers(method, url, &[], body)
}

/// [`http_request`] with extra request headers, e.g. a `Content-Type`.
pub fn http_request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported, got {url}"))?;
    let (host_port, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {host_port}"))?
        .next()
        .ok_or_else(|| anyhow!("{host_port} resolved to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response to {method} {url}"))?;
    let header_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("incomplete HTTP response from {url}"))?;
    let head = String::from_utf8_lossy(&raw[..header_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| head.starts_with("HTTP/1."))
        .ok_or_else(|| anyhow!("not an HTTP response from {url}: {head:?}"))?;
    let body = &raw[header_end + 4..];
    let chunked = head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked");
    Ok(HttpResponse {
        status,
        headers: head,
        body: if chunked {
            dechunk(body).with_context(|| format!("decoding the chunked body from {url}"))?
        } else {
            body.to_vec()
        },
    })
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("chunk size line without CRLF"))?;
        let size = std::str::from_utf8(&rest[..nl])?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let len =
            usize::from_str_radix(size, 16).with_context(|| format!("chunk size {size:?}"))?;
        rest = &rest[nl + 2..];
        if len == 0 {
            return Ok(out);
        }
        if rest.len() < len + 2 {
            return Err(anyhow!("body ends inside a chunk"));
        }
        out.extend_from_slice(&rest[..len]);
        rest = &rest[len + 2..];
    }
}

/// Polls `f` every 200 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Percent-encodes everything but ASCII letters, digits and `-_.`: a query parameter value
/// (a PromQL expression) for a test's URL.
pub fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("port from free_port can be bound");
    }

    #[test]
    fn http_request_against_a_tiny_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            req
        });
        let resp = http_request("PUT", &format!("http://{addr}/bucket"), b"").unwrap();
        assert_eq!((resp.status, resp.body), (201, b"ok".to_vec()));
        assert!(
            resp.headers.contains("\r\nContent-Length: 2"),
            "{}",
            resp.headers
        );
        let req = server.join().unwrap();
        assert!(req.starts_with("PUT /bucket HTTP/1.1\r\n"), "{req}");
    }

    #[test]
    fn wait_for_tcp_sees_listener_and_times_out_without_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        wait_for_tcp(listener.local_addr().unwrap(), Duration::from_secs(5)).unwrap();
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let err = wait_for_tcp(addr, Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("nothing accepted TCP"), "{err:#}");
    }

    #[test]
    fn guard_kills_child_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let guard = ChildGuard::spawn("sleep", &mut cmd).unwrap();
        let pid = guard.id();
        drop(guard);
        // Reaped and gone: /proc has no entry for it any more.
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} survived"
        );
    }

    #[test]
    fn wait_for_http_fails_when_child_exits() {
        let mut cmd = Command::new("true");
        let mut guard = ChildGuard::spawn("true", &mut cmd).unwrap();
        let port = free_port();
        let err = guard
            .wait_for_http(
                &format!("http://127.0.0.1:{port}/"),
                Duration::from_secs(10),
            )
            .unwrap_err();
        assert!(err.to_string().contains("exited"), "{err:#}");
    }
}
