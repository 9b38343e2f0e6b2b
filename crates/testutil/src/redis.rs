//! A real Redis server (Debian package `redis-server`) for the Redis cache tests, started on
//! a free local port without persistence, and killed when dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{ChildGuard, free_port, settled_count, wait_for_tcp};
use crate::prometheus::find_tool;

/// A running Redis.
#[derive(Debug)]
pub struct RedisServer {
    guard: ChildGuard,
    port: u16,
    /// The TLS port, for a server from [`RedisServer::start_tls`].
    tls_port: Option<u16>,
    password: Option<String>,
    /// The database the helpers' commands use (`SELECT`ed after connecting).
    db: i64,
}

/// One RESP reply, as far as the tests need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl RedisServer {
    /// Starts `redis-server` (`$STRATA_REDIS_SERVER` or on `PATH`) on 127.0.0.1 and a free
    /// port, nothing saved to disk; waits until it accepts connections.
    pub fn start() -> Result<RedisServer> {
        Self::start_with(None)
    }

    /// The same, requiring `password` (`requirepass`: the `default` user's password).
    pub fn start_with(password: Option<&str>) -> Result<RedisServer> {
        Self::spawn(password, &[])
    }

    /// A server that also speaks TLS on [`RedisServer::tls_address`] with `cert`/`key`,
    /// asking clients for a certificate signed by `ca` when `client_ca` is given. The
    /// helpers' commands keep using the plain port.
    pub fn start_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<RedisServer> {
        let tls_port = free_port();
        let mut args: Vec<OsString> = vec![
            "--tls-port".into(),
            tls_port.to_string().into(),
            "--tls-cert-file".into(),
            cert.into(),
            "--tls-key-file".into(),
            key.into(),
        ];
        match client_ca {
            Some(ca) => args.extend(["--tls-ca-cert-file".into(), ca.into()]),
            None => args.extend(["--tls-auth-clients".into(), "no".into()]),
        }
        let mut s = Self::spawn(None, &args)?;
        wait_for_tcp(
            format!("127.0.0.1:{tls_port}").parse().expect("address"),
            Duration::from_secs(10),
        )?;
        s.tls_port = Some(tls_port);
        Ok(s)
    }

    /// A replica of the server on `master_port` (`--replicaof`).
    pub fn start_replica_of(master_port: u16) -> Result<RedisServer> {
        Self::spawn(
            None,
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                master_port.to_string().into(),
            ],
        )
    }

    /// A Redis Sentinel (`redis-server <config> --sentinel`) monitoring the master on
    /// `master_port` as `name`, with a quorum of one and short timeouts (down after 1 s,
    /// failover timeout 3 s), its config file (which a sentinel rewrites) in `dir`. Its
    /// [`RedisServer::command`] talks to the sentinel.
    pub fn start_sentinel(dir: &Path, name: &str, master_port: u16) -> Result<RedisServer> {
        let bin = find_tool("redis-server", "STRATA_REDIS_SERVER").context(
            "redis-server is needed for the Redis Sentinel tests: run ./scripts/test.sh",
        )?;
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 3000\n"
            ),
        )
        .context("writing the sentinel's config")?;
        let mut cmd = Command::new(bin);
        cmd.arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self::launch("redis-sentinel", &mut cmd, port, None)
    }

    /// Starts `cmd` and waits until it accepts connections on `port`.
    fn launch(
        name: &str,
        cmd: &mut Command,
        port: u16,
        password: Option<&str>,
    ) -> Result<RedisServer> {
        let guard = ChildGuard::spawn(name, cmd)?;
        wait_for_tcp(
            format!("127.0.0.1:{port}").parse().expect("address"),
            Duration::from_secs(10),
        )?;
        Ok(RedisServer {
            guard,
            port,
            tls_port: None,
            password: password.map(str::to_string),
            db: 0,
        })
    }

    /// A Redis Cluster of `n` masters (no replicas), each slot assigned by
    /// `redis-cli --cluster create`, their `nodes.conf` files in `dir`; returns once every
    /// node reports `cluster_state:ok`.
    pub fn start_cluster(dir: &Path, n: usize) -> Result<Vec<RedisServer>> {
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let conf = dir.join(format!("nodes-{}.conf", nodes.len()));
            nodes.push(Self::spawn(
                None,
                &[
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    conf.into_os_string(),
                ],
            )?);
        }
        let cli = find_tool("redis-cli", "STRATA_REDIS_CLI")
            .context("redis-cli (Debian's redis-tools) is needed for the Redis Cluster tests")?;
        let out = Command::new(cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(RedisServer::address))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let start = std::time::Instant::now();
        for node in &nodes {
            loop {
                if let Ok(Reply::Bulk(Some(info))) = node.command(&[b"CLUSTER", b"INFO"])
                    && String::from_utf8_lossy(&info).contains("cluster_state:ok")
                {
                    break;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("the Redis Cluster did not reach cluster_state:ok");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(nodes)
    }

    /// The plain port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<TLS port>` of a server from [`RedisServer::start_tls`].
    pub fn tls_address(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.tls_port.expect("a server started with start_tls")
        )
    }

    fn spawn(password: Option<&str>, extra: &[OsString]) -> Result<RedisServer> {
        let bin = find_tool("redis-server", "STRATA_REDIS_SERVER").context(
            "redis-server is needed for the Redis cache tests: run ./scripts/test.sh, which \
             installs Debian's `redis-server` package",
        )?;
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--port",
        ])
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        cmd.args(extra);
        Self::launch("redis-server", &mut cmd, port, password)
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the server (its keys are gone).
    pub fn kill(&mut self) {
        self.guard.kill();
    }

    /// Makes the helpers use database `db` from now on.
    pub fn select(&mut self, db: i64) {
        self.db = db;
    }

    /// Sends one command (authenticated first when the server has a password, in the
    /// selected database) and reads its reply.
    pub fn command(&self, args: &[&[u8]]) -> Result<Reply> {
        let mut s = TcpStream::connect(self.address())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut r = BufReader::new(s.try_clone()?);
        if let Some(p) = &self.password {
            s.write_all(&encode(&[b"AUTH", p.as_bytes()]))?;
            if let Reply::Error(e) = read_reply(&mut r)? {
                bail!("AUTH: {e}");
            }
        }
        if self.db != 0 {
            s.write_all(&encode(&[b"SELECT", self.db.to_string().as_bytes()]))?;
            if let Reply::Error(e) = read_reply(&mut r)? {
                bail!("SELECT: {e}");
            }
        }
        s.write_all(&encode(args))?;
        read_reply(&mut r)
    }

    /// Every key stored now.
    pub fn keys(&self) -> Result<Vec<String>> {
        match self.command(&[b"KEYS", b"*"])? {
            Reply::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Reply::Bulk(Some(k)) => Ok(String::from_utf8_lossy(&k).into_owned()),
                    other => bail!("KEYS answered {other:?}"),
                })
                .collect(),
            other => bail!("KEYS answered {other:?}"),
        }
    }

    /// Stores `value` under `key` (no expiry).
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        match self.command(&[b"SET", key.as_bytes(), value])? {
            Reply::Status(s) if s == "OK" => Ok(()),
            other => bail!("SET {key}: {other:?}"),
        }
    }

    /// The milliseconds `key` has left to live (`PTTL`: -1 without expiry, -2 missing).
    pub fn pttl(&self, key: &str) -> Result<i64> {
        match self.command(&[b"PTTL", key.as_bytes()])? {
            Reply::Integer(n) => Ok(n),
            other => bail!("PTTL {key}: {other:?}"),
        }
    }

    /// Waits until the key count stops growing (a client writing its sets in the background
    /// has written them), at most `timeout`; returns the count.
    pub fn settled_keys(&self, timeout: Duration) -> Result<u64> {
        settled_count(timeout, || match self.command(&[b"DBSIZE"])? {
            Reply::Integer(n) => Ok(n as u64),
            other => bail!("DBSIZE answered {other:?}"),
        })
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("redis closed the connection");
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(rest.parse().context("integer reply")?),
        "$" => {
            let n: i64 = rest.parse().context("bulk length")?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        }
        "*" => {
            let n: i64 = rest.parse().context("array length")?;
            let mut items = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        _ => bail!("not a RESP reply: {line:?}"),
    })
}
