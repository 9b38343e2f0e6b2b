//! A real S3-compatible server for tests: moto's `moto_server`.
//!
//! Object storage code is only trustworthy when it has talked to a server that signs, lists and
//! does multipart uploads like S3. `moto_server` (`pip install 'moto[server]'`, done by
//! `scripts/test.sh`) is such a server, small enough to start per test. Tests must not skip
//! silently when it is missing: [`MotoServer::start`] fails with instructions instead.

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{ChildGuard, free_port, http_request};

/// How long moto (a Python program that imports a lot) may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `moto_server` on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    guard: ChildGuard,
    port: u16,
    /// Holds moto's stdout and stderr; removed on drop.
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Starts `moto_server -H 127.0.0.1 -p <free port>` and waits until it answers HTTP.
    ///
    /// The binary is `$MOTO_SERVER` if set, else `moto_server` on `PATH` (or in the usual pip /
    /// pyenv locations). On failure the error includes moto's output.
    pub fn start() -> Result<MotoServer> {
        let binary = find_moto_server()?;
        // Another process can grab the free port between probing and binding; try a few times.
        let mut last_err = None;
        for _ in 0..3 {
            match Self::start_once(&binary) {
                Ok(server) => return Ok(server),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("moto_server did not start")))
    }

    fn start_once(binary: &Path) -> Result<MotoServer> {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().context("creating a log file for moto_server")?;
        let stdout = log.reopen().context("opening moto_server's log file")?;
        let stderr = log.reopen().context("opening moto_server's log file")?;
        let mut cmd = Command::new(binary);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            // Keep moto from looking for real AWS credentials or config.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1");
        let mut guard = ChildGuard::spawn("moto_server", &mut cmd)?;
        let url = format!("http://127.0.0.1:{port}/");
        if let Err(e) = guard.wait_for_http(&url, STARTUP_TIMEOUT) {
            let output = read_log(log.path());
            bail!(
                "{e:#}\n--- moto_server output ({}) ---\n{output}\n--- end of moto_server output ---",
                binary.display()
            );
        }
        Ok(MotoServer { guard, port, log })
    }

    /// `127.0.0.1:<port>`, the form Thanos' S3 `endpoint` key takes.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a bucket with an unsigned `PUT /<name>`, which moto accepts.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let url = format!("{}/{name}", self.url());
        let resp = http_request("PUT", &url, &[])
            .with_context(|| format!("creating bucket {name} on moto at {}", self.url()))?;
        if resp.status != 200 {
            bail!(
                "creating bucket {name} on moto: HTTP {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        Ok(())
    }

    /// An objstore.yml for `bucket` on this server: `type: S3`, path-style, plain HTTP, dummy keys.
    pub fn objstore_yml(&self, bucket: &str) -> String {
        format!(
            "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: {}\n  region: us-east-1\n  \
             access_key: testing\n  secret_key: testing\n  insecure: true\n  \
             bucket_lookup_type: path\n",
            self.endpoint()
        )
    }

    /// Everything moto has printed so far, for diagnosing a failing test.
    pub fn output(&self) -> String {
        read_log(self.log.path())
    }

    /// Fails if the server has exited (it should live as long as this value).
    pub fn ensure_running(&mut self) -> Result<()> {
        self.guard.ensure_running()
    }
}

fn read_log(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        // The tail is what explains a failure.
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)));
        let _ = f.read_to_string(&mut text);
    }
    text
}

/// Locates `moto_server`, or explains how to install it.
fn find_moto_server() -> Result<PathBuf> {
    find_moto_server_in(
        std::env::var_os("MOTO_SERVER"),
        std::env::var_os("PATH"),
        std::env::var_os("HOME"),
    )
}

fn find_moto_server_in(
    explicit: Option<OsString>,
    path: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf> {
    if let Some(explicit) = explicit {
        let explicit = PathBuf::from(explicit);
        if explicit.is_file() {
            return Ok(explicit);
        }
        bail!(
            "MOTO_SERVER is set to {} but that file does not exist",
            explicit.display()
        );
    }
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = home {
        let home = PathBuf::from(home);
        dirs.push(home.join(".local/bin"));
        dirs.push(home.join(".pyenv/shims"));
    }
    dirs.iter()
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .context(
            "moto_server (the S3-compatible test server) is not installed: run `scripts/test.sh`, \
             which installs it, or `pip install 'moto[server]'`; set MOTO_SERVER to its path if it \
             is installed somewhere unusual",
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::wait_for_tcp;

    #[test]
    fn missing_moto_server_says_how_to_install_it() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_moto_server_in(None, Some(empty.path().into()), None).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("scripts/test.sh") && msg.contains("moto[server]"),
            "{msg}"
        );
        let err = find_moto_server_in(Some("/nonexistent/moto".into()), None, None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/moto"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("moto_server"), "").unwrap();
        let found = find_moto_server_in(None, Some(dir.path().into()), None).unwrap();
        assert_eq!(found, dir.path().join("moto_server"));
    }

    #[test]
    fn moto_starts_serves_and_dies_on_drop() {
        let server = MotoServer::start().expect("start moto_server");
        server
            .create_bucket("testutil-bucket")
            .expect("create bucket");
        let listing = http_request("GET", &format!("{}/", server.url()), &[]).unwrap();
        assert_eq!(listing.status, 200);
        assert!(
            String::from_utf8_lossy(&listing.body).contains("testutil-bucket"),
            "bucket listing lacks the new bucket"
        );
        let addr = ([127, 0, 0, 1], server.port()).into();
        drop(server);
        assert!(
            wait_for_tcp(addr, Duration::from_millis(300)).is_err(),
            "moto still accepts connections after drop"
        );
    }
}
