//! A real memcached server (Debian package `memcached`) for the memcached cache tests,
//! started on a free local port and killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{ChildGuard, free_port, settled_count, wait_for_tcp};
use crate::prometheus::find_tool;

/// A running memcached.
#[derive(Debug)]
pub struct MemcachedServer {
    guard: ChildGuard,
    port: u16,
}

impl MemcachedServer {
    /// Starts memcached (`$STRATA_MEMCACHED` or `memcached` on `PATH`) with 64 MiB of memory
    /// on 127.0.0.1 and a free port; waits until it accepts connections.
    pub fn start() -> Result<MemcachedServer> {
        let bin = find_tool("memcached", "STRATA_MEMCACHED").context(
            "memcached is needed for the memcached cache tests: run ./scripts/test.sh, which \
             installs Debian's `memcached` package",
        )?;
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args(["-l", "127.0.0.1", "-U", "0", "-m", "64", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if nix_is_root() {
            cmd.args(["-u", "root"]);
        }
        let guard = ChildGuard::spawn("memcached", &mut cmd)?;
        wait_for_tcp(
            format!("127.0.0.1:{port}").parse().expect("address"),
            Duration::from_secs(10),
        )?;
        Ok(MemcachedServer { guard, port })
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server (its items are gone).
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// Sends one text-protocol command and reads the reply up to a line that is `END`,
    /// `OK`, `STORED` or an error (enough for `stats`, `set`, `flush_all` and
    /// `lru_crawler metadump all`).
    pub fn command(&self, command: &[u8]) -> Result<String> {
        let mut s = TcpStream::connect(self.address())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(command)?;
        let mut r = BufReader::new(s.try_clone()?);
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                bail!("memcached closed the connection; got {out:?}");
            }
            out.push_str(&line);
            let l = line.trim_end();
            if matches!(l, "END" | "OK" | "STORED" | "ERROR")
                || l.starts_with("CLIENT_ERROR")
                || l.starts_with("SERVER_ERROR")
            {
                return Ok(out);
            }
        }
    }

    /// Every key stored now (`lru_crawler metadump all`, which prints them URL-encoded).
    pub fn keys(&self) -> Result<Vec<String>> {
        let dump = self.command(b"lru_crawler metadump all\r\n")?;
        dump.lines()
            .filter_map(|l| l.strip_prefix("key="))
            .map(|l| percent_decode(l.split(' ').next().unwrap_or("")))
            .collect()
    }

    /// Stores `value` under `key` (no expiry).
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let mut c = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        c.extend_from_slice(value);
        c.extend_from_slice(b"\r\n");
        let reply = self.command(&c)?;
        if reply.trim_end() != "STORED" {
            bail!("set {key}: {reply}");
        }
        Ok(())
    }

    /// Waits until the item count stops growing (a client writing its sets in the
    /// background has written them), at most `timeout`; returns the count.
    pub fn settled_items(&self, timeout: Duration) -> Result<u64> {
        settled_count(timeout, || self.stat("curr_items"))
    }

    /// One counter of `stats`.
    pub fn stat(&self, name: &str) -> Result<u64> {
        let stats = self.command(b"stats\r\n")?;
        stats
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("STAT {name} "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .with_context(|| format!("no stat {name} in {stats}"))
    }
}

/// memcached refuses to run as root without `-u`.
fn nix_is_root() -> bool {
    let mut s = String::new();
    std::fs::File::open("/proc/self/status")
        .and_then(|mut f| f.read_to_string(&mut s))
        .is_ok()
        && s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
}

/// Undoes URL encoding (`%3A` for `:`).
fn percent_decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3])?;
            out.push(u8::from_str_radix(hex, 16).with_context(|| format!("bad escape in {s}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out)?)
}
