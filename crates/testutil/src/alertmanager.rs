//! A real Alertmanager (Debian package `prometheus-alertmanager`) for the ruler's notifier
//! tests: started on 127.0.0.1 and a free port, without clustering (no gossip port), its state
//! in a temporary directory, and killed when dropped.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;

use crate::process::{ChildGuard, free_port, http_request_with_headers};
use crate::prometheus::find_tool;

/// The Alertmanager configuration: every alert to one receiver that notifies nobody, so alerts
/// stay visible on `GET /api/v2/alerts` and nothing is sent anywhere.
const CONFIG: &str =
    "route:\n  receiver: blackhole\n  group_wait: 1h\nreceivers:\n  - name: blackhole\n";

/// A running Alertmanager.
#[derive(Debug)]
pub struct AlertmanagerServer {
    guard: ChildGuard,
    port: u16,
    /// `Authorization` header value when the server requires basic auth.
    auth: Option<String>,
    _dir: tempfile::TempDir,
}

impl AlertmanagerServer {
    /// Starts `prometheus-alertmanager` (`$STRATA_ALERTMANAGER` or on `PATH`) and waits until
    /// it answers `/-/ready`.
    pub fn start() -> Result<AlertmanagerServer> {
        Self::start_inner(None, None)
    }

    /// The same behind basic authentication: `user` with `password`, the server given
    /// `bcrypt_hash` of the password in its `--web.config.file` (`basic_auth_users`);
    /// [`AlertmanagerServer::alerts_json`] then authenticates.
    pub fn start_with_basic_auth(
        user: &str,
        password: &str,
        bcrypt_hash: &str,
    ) -> Result<AlertmanagerServer> {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        Self::start_inner(
            Some(&format!("basic_auth_users:\n  {user}: '{bcrypt_hash}'\n")),
            Some(header),
        )
    }

    /// The same with any exporter-toolkit web configuration (`tls_server_config`, …) as
    /// `--web.config.file`. Behind TLS, [`AlertmanagerServer::alerts_json`] cannot read it (its
    /// client speaks plain HTTP).
    pub fn start_with_web_config(web_config: &str) -> Result<AlertmanagerServer> {
        Self::start_inner(Some(web_config), None)
    }

    fn start_inner(
        web_config: Option<&str>,
        auth_header: Option<String>,
    ) -> Result<AlertmanagerServer> {
        let bin = find_tool("prometheus-alertmanager", "STRATA_ALERTMANAGER").context(
            "prometheus-alertmanager is needed for the notifier tests: run ./scripts/test.sh, \
             which installs Debian's `prometheus-alertmanager` package",
        )?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG)?;
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no cluster, so no gossip port to collide and no peers to wait for.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(web) = web_config {
            let path = dir.path().join("web.yml");
            std::fs::write(&path, web)?;
            cmd.arg(format!("--web.config.file={}", path.display()));
        }
        let header = auth_header;
        let mut guard = ChildGuard::spawn("prometheus-alertmanager", &mut cmd)?;
        // Any HTTP answer (a 401 behind basic auth, a 400 to plain HTTP on a TLS port) means it
        // is serving.
        guard.wait_for_http(
            &format!("http://127.0.0.1:{port}/-/ready"),
            Duration::from_secs(20),
        )?;
        Ok(AlertmanagerServer {
            guard,
            port,
            auth: header,
            _dir: dir,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address())
    }

    /// The process id (to stop it in a test).
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// Stops the server now.
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// `GET /api/v2/alerts` with the given query (`""`, or `active=false&silenced=false` …):
    /// the JSON array of alerts Alertmanager holds, as text.
    pub fn alerts_json(&self, query: &str) -> Result<String> {
        let mut url = format!("{}/api/v2/alerts", self.url());
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        let headers: Vec<(&str, &str)> = self
            .auth
            .as_deref()
            .map(|h| vec![("Authorization", h)])
            .unwrap_or_default();
        let resp = http_request_with_headers("GET", &url, &headers, &[])?;
        if resp.status != 200 {
            bail!(
                "GET {url}: status {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        String::from_utf8(resp.body).context("alerts are not UTF-8")
    }

    /// Polls [`AlertmanagerServer::alerts_json`] (all alerts, resolved ones included) until
    /// `done` accepts the answer, at most `timeout`; returns the last answer.
    pub fn wait_for_alerts(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = self.alerts_json("")?;
            if done(&text) || std::time::Instant::now() >= deadline {
                return Ok(text);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
