//! Thanos `objstore.yml` parsing.
//!
//! The file has the shape
//!
//! ```yaml
//! type: S3            # FILESYSTEM | S3 | GCS | AZURE, case-insensitive
//! prefix: tenant-a    # optional: every key lives under this path
//! config:
//!   bucket: metrics
//!   endpoint: s3.eu-west-1.amazonaws.com
//! ```
//!
//! Strata must load the files existing Thanos deployments already have, so every key Thanos knows
//! is accepted. Keys that the `object_store` backends cannot honour are reported by
//! [`BucketConfig::ignored_keys`] (and logged as warnings when a bucket is opened). Keys Thanos does
//! *not* know are errors naming the key: a typo such as `acces_key` must not silently fall back to
//! other credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use crate::duration::parse_duration;
use crate::envsubst::expand_env;
use crate::error::{Error, Result};

/// A secret config value (key, password, service-account JSON). Its `Debug` output is redacted so
/// that logging a config never leaks credentials.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a backend client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(\"\")")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

/// Deserializes an optional Go-syntax duration (`90s`, `1m30s`).
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// Thanos' `http_config` section (shared by S3, GCS and Azure).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct HttpConfig {
    #[serde(default, deserialize_with = "de_duration")]
    pub idle_conn_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub response_header_timeout: Option<Duration>,
    pub insecure_skip_verify: Option<bool>,
    #[serde(default, deserialize_with = "de_duration")]
    pub tls_handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub expect_continue_timeout: Option<Duration>,
    pub max_idle_conns: Option<u64>,
    pub max_idle_conns_per_host: Option<u64>,
    pub max_conns_per_host: Option<u64>,
    pub tls_config: Option<TlsConfig>,
    pub disable_compression: Option<bool>,
}

/// Thanos' `http_config.tls_config` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct TlsConfig {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

/// `type: FILESYSTEM`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Root directory of the bucket.
    pub directory: Option<String>,
}

/// S3 `trace` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// Log every request (minio-go tracing); not available here.
    pub enable: Option<bool>,
}

/// S3 `sse_config` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseConfig {
    /// `SSE-S3`, `SSE-KMS` or `SSE-C`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// KMS key for `SSE-KMS`.
    pub kms_key_id: Option<String>,
    /// KMS encryption context for `SSE-KMS`.
    pub kms_encryption_context: Option<BTreeMap<String, String>>,
    /// Path of a file holding the 32-byte customer key for `SSE-C`.
    pub encryption_key: Option<String>,
}

/// `type: S3`. Field names are Thanos'.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct S3Config {
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub aws_sdk_auth: Option<bool>,
    pub access_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub insecure: Option<bool>,
    pub signature_version2: Option<bool>,
    pub disable_dualstack: Option<bool>,
    pub put_user_metadata: Option<BTreeMap<String, String>>,
    pub http_config: Option<HttpConfig>,
    pub trace: Option<TraceConfig>,
    pub list_objects_version: Option<String>,
    pub bucket_lookup_type: Option<BucketLookupType>,
    pub send_content_md5: Option<bool>,
    pub disable_multipart: Option<bool>,
    pub part_size: Option<u64>,
    pub sse_config: Option<SseConfig>,
    pub sts_endpoint: Option<String>,
    pub max_retries: Option<u32>,
}

/// How the S3 bucket is addressed in request URLs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum BucketLookupType {
    /// Virtual-hosted style for AWS and Aliyun endpoints, path style for everything else
    /// (MinIO, Ceph, moto, …), which is what those servers support out of the box.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// `https://bucket.endpoint/key`.
    #[serde(rename = "virtual-hosted")]
    VirtualHosted,
    /// `https://endpoint/bucket/key`.
    #[serde(rename = "path")]
    Path,
}

/// `type: GCS`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct GcsConfig {
    pub bucket: Option<String>,
    /// The service account JSON itself (not a path), as in Thanos.
    pub service_account: Option<Secret>,
    pub use_grpc: Option<bool>,
    pub grpc_conn_pool_size: Option<u64>,
    pub http_config: Option<HttpConfig>,
    pub chunk_size_bytes: Option<u64>,
    pub max_retries: Option<u32>,
}

/// Azure `pipeline_config` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AzurePipelineConfig {
    pub max_tries: Option<u32>,
    #[serde(default, deserialize_with = "de_duration")]
    pub try_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub retry_delay: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    pub max_retry_delay: Option<Duration>,
}

/// Azure `reader_config` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureReaderConfig {
    /// Retries of a broken download stream (azblob's reader retries).
    pub max_retry_requests: Option<u32>,
}

/// `type: AZURE`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AzureConfig {
    pub storage_account: Option<String>,
    pub storage_account_key: Option<Secret>,
    pub storage_connection_string: Option<Secret>,
    pub container: Option<String>,
    pub storage_create_container: Option<bool>,
    /// Storage domain suffix, default `blob.core.windows.net`.
    pub endpoint: Option<String>,
    pub az_tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub user_assigned_id: Option<String>,
    pub msi_resource: Option<String>,
    pub max_retries: Option<u32>,
    pub pipeline_config: Option<AzurePipelineConfig>,
    pub reader_config: Option<AzureReaderConfig>,
    pub http_config: Option<HttpConfig>,
}

/// The provider-specific part of a bucket config.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderConfig {
    /// `type: FILESYSTEM`.
    Filesystem(FilesystemConfig),
    /// `type: S3`.
    S3(S3Config),
    /// `type: GCS`.
    Gcs(GcsConfig),
    /// `type: AZURE`.
    Azure(AzureConfig),
}

impl ProviderConfig {
    /// Thanos' spelling of the type: `FILESYSTEM`, `S3`, `GCS`, `AZURE`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderConfig::Filesystem(_) => "FILESYSTEM",
            ProviderConfig::S3(_) => "S3",
            ProviderConfig::Gcs(_) => "GCS",
            ProviderConfig::Azure(_) => "AZURE",
        }
    }
}

/// A parsed objstore.yml.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketConfig {
    /// Backend and its settings.
    pub provider: ProviderConfig,
    /// Path prefix inside the bucket, without leading or trailing `/`; empty for none.
    pub prefix: String,
}

/// A key that is accepted for compatibility with Thanos but not acted upon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredKey {
    /// Dotted key path inside `config`, e.g. `http_config.max_conns_per_host`.
    pub key: &'static str,
    /// Why it has no effect here.
    pub reason: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    config: IgnoredAny,
    #[allow(dead_code)]
    prefix: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<C> {
    #[serde(rename = "type")]
    #[allow(dead_code)]
    kind: IgnoredAny,
    config: Option<C>,
    prefix: Option<String>,
}

impl BucketConfig {
    /// Parses objstore.yml text, expanding `${VAR}` / `$(VAR)` from the process environment first.
    pub fn from_yaml(text: &str) -> Result<Self> {
        Self::from_yaml_with_env(text, |name| std::env::var(name).ok())
    }

    /// Like [`BucketConfig::from_yaml`] with a custom environment lookup (tests, or callers that
    /// resolve secrets elsewhere).
    pub fn from_yaml_with_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let text = expand_env(text, lookup)?;
        if text.trim().is_empty() {
            return Err(Error::config(
                "objstore.yml is empty; it needs at least `type:` and `config:`",
            ));
        }
        let header: Header =
            serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(&e, "top-level"))?;
        let kind = header
            .kind
            .ok_or_else(|| Error::config("missing `type:` (one of FILESYSTEM, S3, GCS, AZURE)"))?;
        let (provider, prefix) = match kind.trim().to_ascii_uppercase().as_str() {
            "FILESYSTEM" => {
                let (c, p) = parse_doc::<FilesystemConfig>(&text, "FILESYSTEM")?;
                (ProviderConfig::Filesystem(c), p)
            }
            "S3" => {
                let (c, p) = parse_doc::<S3Config>(&text, "S3")?;
                (ProviderConfig::S3(c), p)
            }
            "GCS" => {
                let (c, p) = parse_doc::<GcsConfig>(&text, "GCS")?;
                (ProviderConfig::Gcs(c), p)
            }
            "AZURE" => {
                let (c, p) = parse_doc::<AzureConfig>(&text, "AZURE")?;
                (ProviderConfig::Azure(c), p)
            }
            "SWIFT" | "COS" | "ALIYUNOSS" | "BOS" | "OCI" | "OBS" => {
                return Err(Error::config(format!(
                    "bucket type `{kind}` is a Thanos type that Strata does not support; \
                     use FILESYSTEM, S3, GCS or AZURE (most of these providers offer an S3 API)"
                )));
            }
            _ => {
                return Err(Error::config(format!(
                    "unknown bucket type `{kind}`; use FILESYSTEM, S3, GCS or AZURE"
                )));
            }
        };
        let config = BucketConfig {
            provider,
            prefix: normalize_prefix(&prefix.unwrap_or_default()),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that can be checked without contacting the backend.
    fn validate(&self) -> Result<()> {
        fn required(value: &Option<String>, key: &str, section: &str) -> Result<()> {
            match value.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() => Ok(()),
                _ => Err(Error::config(format!(
                    "missing `{key}` in {section} config"
                ))),
            }
        }
        match &self.provider {
            ProviderConfig::Filesystem(c) => required(&c.directory, "directory", "FILESYSTEM"),
            ProviderConfig::S3(c) => {
                required(&c.bucket, "bucket", "S3")?;
                if let Some(v) = c.list_objects_version.as_deref()
                    && !matches!(v, "" | "v1" | "v2")
                {
                    return Err(Error::config(format!(
                        "S3 `list_objects_version` is `{v}`; it must be `v1` or `v2`"
                    )));
                }
                if c.access_key.is_some() != c.secret_key.is_some() {
                    return Err(Error::config(
                        "S3 `access_key` and `secret_key` must be set together",
                    ));
                }
                if let Some(size) = c.part_size
                    && size != 0
                    && size < MIN_S3_PART_SIZE
                {
                    return Err(Error::config(format!(
                        "S3 `part_size` is {size} bytes; S3 requires at least {MIN_S3_PART_SIZE} (5 MiB)"
                    )));
                }
                if let Some(sse) = &c.sse_config {
                    match sse.kind.as_deref().unwrap_or("") {
                        "" | "SSE-S3" => {}
                        "SSE-KMS" => {
                            if sse.kms_key_id.as_deref().unwrap_or("").is_empty() {
                                return Err(Error::config(
                                    "S3 `sse_config.type: SSE-KMS` needs `sse_config.kms_key_id`",
                                ));
                            }
                        }
                        "SSE-C" => {
                            if sse.encryption_key.as_deref().unwrap_or("").is_empty() {
                                return Err(Error::config(
                                    "S3 `sse_config.type: SSE-C` needs `sse_config.encryption_key` \
                                     (path of a file with the 32-byte key)",
                                ));
                            }
                        }
                        other => {
                            return Err(Error::config(format!(
                                "S3 `sse_config.type` is `{other}`; use SSE-S3, SSE-KMS or SSE-C"
                            )));
                        }
                    }
                }
                Ok(())
            }
            ProviderConfig::Gcs(c) => required(&c.bucket, "bucket", "GCS"),
            ProviderConfig::Azure(c) => {
                if c.storage_connection_string.is_none() {
                    required(&c.storage_account, "storage_account", "AZURE")?;
                }
                required(&c.container, "container", "AZURE")
            }
        }
    }

    /// The bucket name used in metrics and logs: the S3/GCS bucket, the Azure container, or the
    /// filesystem directory.
    pub fn bucket_name(&self) -> String {
        match &self.provider {
            ProviderConfig::Filesystem(c) => c.directory.clone().unwrap_or_default(),
            ProviderConfig::S3(c) => c.bucket.clone().unwrap_or_default(),
            ProviderConfig::Gcs(c) => c.bucket.clone().unwrap_or_default(),
            ProviderConfig::Azure(c) => c.container.clone().unwrap_or_default(),
        }
    }

    /// Keys present in the config that Thanos knows but this crate cannot honour. They are
    /// accepted so existing manifests load; opening the bucket logs a warning for each.
    ///
    /// A key is reported only when its value asks for something we do not do: full manifests
    /// often spell out Thanos' defaults (`max_idle_conns: 100`, `expect_continue_timeout: 1s`,
    /// empty `server_name`), and warning about those on every start would bury real warnings.
    pub fn ignored_keys(&self) -> Vec<IgnoredKey> {
        let mut out = Vec::new();
        let mut push = |present: bool, key: &'static str, reason: &'static str| {
            if present {
                out.push(IgnoredKey { key, reason });
            }
        };
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let http_keys =
            |http: &Option<HttpConfig>, push: &mut dyn FnMut(bool, &'static str, &'static str)| {
                let Some(h) = http else { return };
                push(
                    h.expect_continue_timeout
                        .is_some_and(|d| d != Duration::from_secs(1)),
                    "http_config.expect_continue_timeout",
                    "the HTTP client never sends `Expect: 100-continue`",
                );
                push(
                    h.max_idle_conns.is_some_and(|n| n != 100),
                    "http_config.max_idle_conns",
                    "only a per-host idle limit exists (max_idle_conns_per_host is applied)",
                );
                push(
                    h.max_conns_per_host.is_some_and(|n| n > 0),
                    "http_config.max_conns_per_host",
                    "the HTTP client has no per-host connection cap",
                );
                if let Some(tls) = &h.tls_config {
                    push(
                        set(&tls.cert_file) || set(&tls.key_file),
                        "http_config.tls_config.cert_file/key_file",
                        "TLS client certificates are not supported by the object_store HTTP client",
                    );
                    push(
                        set(&tls.server_name),
                        "http_config.tls_config.server_name",
                        "the TLS server name is always the endpoint's host name",
                    );
                }
            };
        match &self.provider {
            ProviderConfig::Filesystem(_) => {}
            ProviderConfig::S3(c) => {
                push(
                    c.aws_sdk_auth == Some(true),
                    "aws_sdk_auth",
                    "credentials come from the environment, web identity, ECS or instance \
                     metadata; shared ~/.aws config and credential files are not read",
                );
                push(
                    c.signature_version2 == Some(true),
                    "signature_version2",
                    "only AWS signature version 4 is supported",
                );
                push(
                    c.trace.as_ref().is_some_and(|t| t.enable == Some(true)),
                    "trace.enable",
                    "per-request HTTP tracing is not available; use RUST_LOG=object_store=debug",
                );
                push(
                    c.list_objects_version.as_deref() == Some("v1"),
                    "list_objects_version",
                    "listing always uses ListObjectsV2",
                );
                push(
                    c.send_content_md5 == Some(true),
                    "send_content_md5",
                    "Content-MD5 headers are not sent; object-lock buckets need another checksum",
                );
                push(
                    c.sse_config.as_ref().is_some_and(|s| {
                        s.kms_encryption_context
                            .as_ref()
                            .is_some_and(|m| !m.is_empty())
                    }),
                    "sse_config.kms_encryption_context",
                    "a KMS encryption context cannot be sent",
                );
                http_keys(&c.http_config, &mut push);
            }
            ProviderConfig::Gcs(c) => {
                push(
                    c.use_grpc == Some(true),
                    "use_grpc",
                    "only the GCS JSON/XML HTTP API is supported",
                );
                push(
                    c.grpc_conn_pool_size.is_some_and(|n| n > 0),
                    "grpc_conn_pool_size",
                    "only the GCS JSON/XML HTTP API is supported",
                );
                http_keys(&c.http_config, &mut push);
            }
            ProviderConfig::Azure(c) => {
                push(
                    c.storage_create_container == Some(true),
                    "storage_create_container",
                    "containers are never created; the container must already exist",
                );
                push(
                    set(&c.msi_resource),
                    "msi_resource",
                    "managed identity tokens are always requested for Azure Storage",
                );
                push(
                    c.reader_config
                        .as_ref()
                        .is_some_and(|r| r.max_retry_requests.is_some_and(|n| n > 0)),
                    "reader_config.max_retry_requests",
                    "broken downloads are not resumed; whole requests are retried instead",
                );
                http_keys(&c.http_config, &mut push);
            }
        }
        out
    }
}

/// S3's minimum multipart part size (the last part may be smaller).
pub(crate) const MIN_S3_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Removes leading/trailing slashes and collapses empty segments, so `/a//b/` means `a/b`.
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    prefix
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn parse_doc<C: for<'de> Deserialize<'de> + Default>(
    text: &str,
    provider: &'static str,
) -> Result<(C, Option<String>)> {
    let doc: Document<C> = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(&e, provider))?;
    Ok((doc.config.unwrap_or_default(), doc.prefix))
}

/// Turns a serde_yaml error into our error, recognising serde's unknown-field message so the key
/// and its section are reported precisely.
fn yaml_error(err: &serde_yaml_ng::Error, provider: &str) -> Error {
    let text = err.to_string();
    if let Some(pos) = text.find("unknown field `") {
        let rest = &text[pos + "unknown field `".len()..];
        if let Some(end) = rest.find('`') {
            let key = rest[..end].to_string();
            // serde_yaml prefixes the dotted path of the map holding the key: `config.http_config: `.
            let path = text[..pos].trim_end().trim_end_matches(':');
            let section = match path.strip_prefix("config") {
                _ if provider == "top-level" || path.is_empty() || path == "." => {
                    "top-level".to_string()
                }
                Some("") => provider.to_string(),
                Some(sub) => format!("{provider} {}", sub.trim_start_matches('.')),
                None => format!("{provider} {path}"),
            };
            return Error::UnknownKey { key, section };
        }
    }
    Error::config(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_normalized() {
        assert_eq!(normalize_prefix("/a//b/"), "a/b");
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
