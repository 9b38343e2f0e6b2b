//! `--http.config` (the exporter-toolkit web configuration file) over real processes and a real
//! HTTPS client (reqwest with rustls): `strata query` serving TLS with a test CA's certificate
//! and a bcrypt basic-auth user (plain HTTP refused, 401 without or with wrong credentials,
//! 200 with the right ones), then requiring a client certificate the CA signed
//! (`RequireAndVerifyClientCert`); every other component's HTTP server behind the same file;
//! and a bad file failing start-up with the flag and the file named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_testutil::process::free_port;
use strata_testutil::tls::{CaSigned, ca_signed_certificates};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";

use strata_testutil::process::LoggedProcess as Proc;

/// The web configuration file: TLS with the test CA's server certificate, `extra` TLS
/// settings, and one basic-auth user (bcrypt at the lowest cost, to keep the test fast).
fn web_config(dir: &Path, certs: &CaSigned, extra_tls: &str) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra_tls}\
             basic_auth_users:\n  {USER}: '{hash}'\n",
            certs.server_cert.display(),
            certs.server_key.display(),
        ),
    )
    .unwrap();
    path
}

/// A client trusting the test CA only, presenting the CA-signed client certificate if
/// `with_cert`.
fn https_client(certs: &CaSigned, with_cert: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10));
    if with_cert {
        let mut pem = std::fs::read(&certs.client_cert).unwrap();
        pem.extend(std::fs::read(&certs.client_key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// GET `url`: status, `WWW-Authenticate`, body; Err when no HTTP answer comes (TLS refused).
fn get(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Result<(u16, Option<String>, String), reqwest::Error> {
    rt.block_on(async {
        let mut req = client.get(url);
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let www = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.text().await?;
        Ok((status, www, body))
    })
}

/// Waits until `url` answers 200 to `client` with the user's credentials.
fn wait_ready(rt: &tokio::runtime::Runtime, proc: &mut Proc, client: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        if let Ok((200, _, _)) = get(rt, client, url, Some((USER, PASSWORD))) {
            return;
        }
        proc.guard
            .ensure_running()
            .unwrap_or_else(|e| panic!("{e:#}\n{}", proc.log()));
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} not ready\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_query(dir: &Path, name: &str, web_config: &Path) -> (Proc, u16) {
    let (http, grpc) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("query")
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg(format!("--http.config={}", web_config.display()));
    (Proc::start(dir, name, &mut cmd), http)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn query_serves_https_behind_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca_signed_certificates(tmp.path());
    let config = web_config(tmp.path(), &certs, "");
    let (mut q, port) = start_query(tmp.path(), "query", &config);
    let rt = runtime();
    let client = https_client(&certs, false);
    let base = format!("https://127.0.0.1:{port}");
    wait_ready(&rt, &mut q, &client, &format!("{base}/-/ready"));
    let query = format!("{base}/api/v1/query?query=1");

    // Plain HTTP gets no answer from a TLS port.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = get(
        &rt,
        &plain,
        &format!("http://127.0.0.1:{port}/api/v1/query?query=1"),
        None,
    );
    assert!(r.is_err(), "plain HTTP answered: {r:?}");

    // HTTPS without credentials, with a wrong password, with an unknown user: 401.
    for auth in [None, Some((USER, "wrong")), Some(("bob", PASSWORD))] {
        let (status, www, _) = get(&rt, &client, &query, auth).unwrap();
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(www.as_deref(), Some("Basic"), "{auth:?}");
    }
    // The probes and /metrics are guarded too, as in the exporter-toolkit.
    for path in ["/metrics", "/-/healthy", "/-/ready"] {
        let (status, ..) = get(&rt, &client, &format!("{base}{path}"), None).unwrap();
        assert_eq!(status, 401, "{path}");
    }

    // The right credentials: the query is answered.
    let (status, _, body) = get(&rt, &client, &query, Some((USER, PASSWORD))).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    assert_eq!(v["data"]["result"][1], "1", "{body}");
    let (status, _, metrics) = get(
        &rt,
        &client,
        &format!("{base}/metrics"),
        Some((USER, PASSWORD)),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("# EOF"), "{metrics}");
    assert!(
        q.log().contains("listening for HTTPS"),
        "the start-up log says TLS is on: {}",
        q.log()
    );
}

#[test]
fn query_requires_a_client_certificate_the_ca_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca_signed_certificates(tmp.path());
    let config = web_config(
        tmp.path(),
        &certs,
        // Relative to the web configuration's directory, as in the exporter-toolkit.
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let (mut q, port) = start_query(tmp.path(), "query", &config);
    let rt = runtime();
    let with_cert = https_client(&certs, true);
    let without_cert = https_client(&certs, false);
    let base = format!("https://127.0.0.1:{port}");
    wait_ready(&rt, &mut q, &with_cert, &format!("{base}/-/ready"));
    let query = format!("{base}/api/v1/query?query=1");

    let r = get(&rt, &without_cert, &query, Some((USER, PASSWORD)));
    assert!(
        r.is_err(),
        "a client without a certificate was served: {r:?}"
    );
    // A certificate from another CA is refused as well.
    let other_dir = tmp.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = ca_signed_certificates(&other_dir);
    let foreign = {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
        let mut pem = std::fs::read(&other.client_cert).unwrap();
        pem.extend(std::fs::read(&other.client_key).unwrap());
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(reqwest::Identity::from_pem(&pem).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let r = get(&rt, &foreign, &query, Some((USER, PASSWORD)));
    assert!(
        r.is_err(),
        "a foreign client certificate was accepted: {r:?}"
    );

    // The certificate does not replace the password: both are needed.
    let (status, ..) = get(&rt, &with_cert, &query, None).unwrap();
    assert_eq!(status, 401);
    let (status, _, body) = get(&rt, &with_cert, &query, Some((USER, PASSWORD))).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"success\""), "{body}");
}

/// Every component's HTTP server is behind the file: `/metrics` answers 401 without
/// credentials and 200 with them, over TLS.
#[test]
fn every_component_serves_behind_the_web_config() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca_signed_certificates(tmp.path());
    let config = web_config(tmp.path(), &certs, "");
    let bucket = format!(
        "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}",
        tmp.path().join("bucket").display()
    );
    std::fs::create_dir(tmp.path().join("bucket")).unwrap();
    let rt = runtime();
    let client = https_client(&certs, false);
    let dead_prometheus = format!("--prometheus.url=http://127.0.0.1:{}", free_port());
    let tsdb = format!("--tsdb.path={}", tmp.path().join("tsdb").display());
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("store", vec!["store".into(), bucket.clone()]),
        (
            "compact",
            vec!["compact".into(), bucket.clone(), "--wait".into()],
        ),
        ("sidecar", vec!["sidecar".into(), dead_prometheus, tsdb]),
        (
            "tools-bucket-web",
            vec![
                "tools".into(),
                "bucket".into(),
                "web".into(),
                bucket.clone(),
            ],
        ),
        (
            "tools-bucket-downsample",
            vec![
                "tools".into(),
                "bucket".into(),
                "downsample".into(),
                bucket.clone(),
            ],
        ),
    ];
    for (name, args) in cases {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let (http, grpc) = (free_port(), free_port());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(&args)
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--http.config={}", config.display()));
        if matches!(name, "store" | "sidecar") {
            cmd.arg(format!("--grpc-address=127.0.0.1:{grpc}"));
        }
        if name != "sidecar" && name != "tools-bucket-web" {
            cmd.arg(format!("--data-dir={}", dir.join("data").display()));
        }
        let mut proc = Proc::start(&dir, name, &mut cmd);
        let metrics = format!("https://127.0.0.1:{http}/metrics");
        wait_ready(&rt, &mut proc, &client, &metrics);
        let (status, www, _) = get(&rt, &client, &metrics, None).unwrap();
        assert_eq!((status, www.as_deref()), (401, Some("Basic")), "{name}");
        let plain = format!("http://127.0.0.1:{http}/metrics");
        let r = rt.block_on(reqwest::get(&plain));
        assert!(r.is_err(), "{name}: plain HTTP answered: {r:?}");
    }
}

/// A file that cannot be read, or says what Strata cannot do, stops the component before it
/// serves anything, naming the flag, the file and the key.
#[test]
fn a_bad_web_config_fails_start_up_naming_the_flag_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = ca_signed_certificates(tmp.path());
    let missing = tmp.path().join("missing.yml");
    let unknown_key = tmp.path().join("unknown.yml");
    std::fs::write(&unknown_key, "basic_auth_user:\n  alice: x\n").unwrap();
    let bad_hash = tmp.path().join("bad-hash.yml");
    std::fs::write(&bad_hash, "basic_auth_users:\n  alice: plaintext\n").unwrap();
    let p521 = tmp.path().join("p521.yml");
    std::fs::write(
        &p521,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  curve_preferences: [CurveP521]\n",
            certs.server_cert.display(),
            certs.server_key.display()
        ),
    )
    .unwrap();
    let no_key = tmp.path().join("no-key.yml");
    std::fs::write(
        &no_key,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: gone.key\n",
            certs.server_cert.display(),
        ),
    )
    .unwrap();
    let bucket = format!(
        "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}",
        tmp.path().display()
    );
    let data_dir = format!("--data-dir={}", tmp.path().join("data").display());
    // The address cannot be bound: the file is checked before.
    let http = "--http-address=256.0.0.1:1";
    let commands: &[&[&str]] = &[
        &["query", "--grpc-address=127.0.0.1:0"],
        &["store", &bucket, &data_dir],
        &["compact", &bucket, &data_dir],
        &["sidecar"],
        &["tools", "bucket", "downsample", &bucket, &data_dir],
        &["tools", "bucket", "web", &bucket],
    ];
    let files: &[(&Path, &str)] = &[
        (&missing, "reading"),
        (&unknown_key, "unknown field `basic_auth_user`"),
        (&bad_hash, "alice\\\" is not a bcrypt hash"),
        (&p521, "CurveP521 is not implemented by rustls"),
        (&no_key, "gone.key"),
    ];
    for args in commands {
        for (file, why) in files {
            let out = Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(*args)
                .arg(http)
                .arg(format!("--http.config={}", file.display()))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {file:?}: {err}");
            assert!(
                err.contains("--http.config") && err.contains(&file.display().to_string()),
                "{args:?}: {err}"
            );
            assert!(err.contains(why), "{args:?} {file:?}: {err}");
            assert!(!err.contains("--http-address"), "{args:?}: {err}");
        }
    }
}
