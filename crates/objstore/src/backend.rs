//! Turning a parsed [`BucketConfig`] into an `object_store` client.
//!
//! # Retries
//!
//! The cloud backends (S3, GCS, Azure) retry inside the `object_store` client, configured here
//! through [`RetryConfig`]: a request is retried on connection errors, timeouts, HTTP 5xx, 429
//! (throttling) and 408, and — for S3 — on 200 responses whose body reports `InternalError` or
//! `SlowDown`. Backoff is exponential with jitter, starting at 100 ms and capped at 15 s; a request
//! stops being retried after `max_retries` attempts or 3 minutes, whichever comes first. Thanos
//! treats `max_retries: 0` (its default) as "use the client default", and so do we (10 retries).
//! Client errors (403, 404, 412, …) are not retried: they will not get better. Listing and range
//! reads are plain GETs and are retried like any other request; multipart uploads retry each part.
//! The filesystem backend does not retry: local I/O errors are not transient.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, Certificate, ClientOptions, ObjectStore,
    RetryConfig,
};

use crate::config::{
    AzureConfig, BucketConfig, BucketLookupType, GcsConfig, HttpConfig, MIN_S3_PART_SIZE,
    ProviderConfig, S3Config,
};
use crate::error::{Error, Result};

/// Default multipart part size for S3: Thanos' default, which keeps the part count of a 512 MiB
/// chunk file low while bounding memory per in-flight part.
const DEFAULT_S3_PART_SIZE: usize = 64 * 1024 * 1024;
/// Default part size for the other backends.
pub(crate) const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;

/// How uploads are performed; derived from the provider's upload keys.
#[derive(Clone, Debug)]
pub(crate) struct UploadSettings {
    /// Files larger than this are uploaded in parts of this size.
    pub(crate) part_size: usize,
    /// `disable_multipart: true` forces single-request uploads.
    pub(crate) multipart: bool,
    /// Extra object attributes (S3 `put_user_metadata`).
    pub(crate) attributes: Attributes,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            part_size: DEFAULT_PART_SIZE,
            multipart: true,
            attributes: Attributes::new(),
        }
    }
}

pub(crate) struct Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) upload: UploadSettings,
    /// The same store when it is a FILESYSTEM bucket, whose range reads the bucket does
    /// itself (see `crate::local`).
    pub(crate) local: Option<Arc<LocalFileSystem>>,
}

pub(crate) fn build(config: &BucketConfig) -> Result<Backend> {
    match &config.provider {
        ProviderConfig::Filesystem(c) => {
            let dir = c.directory.as_deref().unwrap_or_default();
            // Thanos creates the directory lazily on first upload; creating it up front lets the
            // store canonicalise its root and makes a permission problem show at startup.
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::build(
                    "FILESYSTEM",
                    format!("cannot create directory `{dir}`: {e}"),
                )
            })?;
            let store = LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| Error::build("FILESYSTEM", e))?
                // Deleting the last object of a directory removes the directory, so that a
                // non-recursive iter does not keep reporting deleted blocks.
                .with_automatic_cleanup(true);
            let store = Arc::new(store);
            Ok(Backend {
                store: store.clone(),
                upload: UploadSettings::default(),
                local: Some(store),
            })
        }
        ProviderConfig::S3(c) => build_s3(c),
        ProviderConfig::Gcs(c) => build_gcs(c),
        ProviderConfig::Azure(c) => build_azure(c),
    }
}

/// Thanos' `max_retries` semantics: zero or unset means the client default.
fn retry_config(max_retries: Option<u32>) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: match max_retries {
            Some(n) if n > 0 => n as usize,
            _ => 10,
        },
        retry_timeout: Duration::from_secs(180),
    }
}

/// Maps Thanos' `http_config` onto the HTTP client options.
fn client_options(
    provider: &'static str,
    http: Option<&HttpConfig>,
    allow_http: bool,
) -> Result<ClientOptions> {
    let default = HttpConfig::default();
    let h = http.unwrap_or(&default);
    let mut options = ClientOptions::new()
        .with_allow_http(allow_http)
        // No overall request deadline: downloading a 512 MiB chunk file legitimately takes long.
        // A stalled connection is caught by the read timeout instead.
        .with_timeout_disabled()
        // Thanos' defaults: 10 s TLS handshake, 2 m response header, 90 s idle, 100 idle conns.
        // The connect timeout covers TCP connect plus TLS handshake.
        .with_connect_timeout(h.tls_handshake_timeout.unwrap_or(Duration::from_secs(10)))
        .with_read_timeout(
            h.response_header_timeout
                .unwrap_or(Duration::from_secs(120)),
        )
        .with_pool_idle_timeout(h.idle_conn_timeout.unwrap_or(Duration::from_secs(90)))
        .with_pool_max_idle_per_host(h.max_idle_conns_per_host.unwrap_or(100) as usize);
    let tls = h.tls_config.as_ref();
    if h.insecure_skip_verify == Some(true)
        || tls.and_then(|t| t.insecure_skip_verify) == Some(true)
    {
        options = options.with_allow_invalid_certificates(true);
    }
    if let Some(ca_file) = tls
        .and_then(|t| t.ca_file.as_deref())
        .filter(|f| !f.is_empty())
    {
        let pem = std::fs::read(ca_file).map_err(|e| {
            Error::build(
                provider,
                format!("cannot read http_config.tls_config.ca_file `{ca_file}`: {e}"),
            )
        })?;
        let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::build(
                provider,
                format!("http_config.tls_config.ca_file `{ca_file}`: {e}"),
            )
        })?;
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    Ok(options)
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Splits an endpoint that may or may not carry a scheme into (scheme, host[:port][/path]).
fn split_endpoint(endpoint: &str, insecure: bool) -> (&'static str, &str) {
    let endpoint = endpoint.trim().trim_end_matches('/');
    if let Some(rest) = endpoint.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        ("http", rest)
    } else if insecure {
        ("http", endpoint)
    } else {
        ("https", endpoint)
    }
}

/// The region in an AWS endpoint such as `s3.eu-west-1.amazonaws.com` or
/// `s3-eu-west-1.amazonaws.com`; `None` for the global `s3.amazonaws.com`.
fn aws_endpoint_region(host: &str) -> Option<&str> {
    let name = host.strip_suffix(".amazonaws.com")?;
    let region = name
        .strip_prefix("s3.dualstack.")
        .or_else(|| name.strip_prefix("s3."))
        .or_else(|| name.strip_prefix("s3-"))?;
    (!region.is_empty() && !region.contains('.')).then_some(region)
}

fn build_s3(c: &S3Config) -> Result<Backend> {
    let bucket = non_empty(&c.bucket).unwrap_or_default();
    let insecure = c.insecure == Some(true);
    // Start from the environment (AWS_REGION, AWS_ACCESS_KEY_ID, web identity, ECS/EKS
    // credentials …) the way Thanos' credential chain falls back to it; explicit keys override.
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let lookup = c.bucket_lookup_type.unwrap_or_default();
    let mut allow_http = false;
    let mut region = non_empty(&c.region).map(str::to_string);
    match non_empty(&c.endpoint) {
        Some(endpoint) => {
            let (scheme, host) = split_endpoint(endpoint, insecure);
            allow_http = scheme == "http";
            let is_aws = host == "s3.amazonaws.com" || aws_endpoint_region(host).is_some();
            if is_aws && scheme == "https" {
                // Let the client derive the regional endpoint; it knows AWS' URL layout.
                if region.is_none() {
                    region = aws_endpoint_region(host).map(str::to_string);
                }
                b = b.with_virtual_hosted_style_request(lookup != BucketLookupType::Path);
            } else {
                let virtual_hosted = match lookup {
                    BucketLookupType::VirtualHosted => true,
                    BucketLookupType::Path => false,
                    BucketLookupType::Auto => host.ends_with(".aliyuncs.com"),
                };
                let url = if virtual_hosted {
                    format!("{scheme}://{bucket}.{host}")
                } else {
                    format!("{scheme}://{host}")
                };
                b = b
                    .with_endpoint(url)
                    .with_virtual_hosted_style_request(virtual_hosted);
                // S3-compatible servers ignore the region but the signature needs one.
                if region.is_none() {
                    region = Some("us-east-1".to_string());
                }
            }
        }
        None => {
            b = b.with_virtual_hosted_style_request(lookup != BucketLookupType::Path);
        }
    }
    if let Some(region) = region {
        b = b.with_region(region);
    }
    if let (Some(key), Some(secret)) = (&c.access_key, &c.secret_key)
        && !key.expose().is_empty()
    {
        b = b
            .with_access_key_id(key.expose())
            .with_secret_access_key(secret.expose());
        if let Some(token) = c.session_token.as_ref().filter(|t| !t.expose().is_empty()) {
            b = b.with_token(token.expose());
        }
    }
    if let Some(sts) = non_empty(&c.sts_endpoint) {
        b = b.with_config(AmazonS3ConfigKey::StsEndpoint, sts);
    }
    if let Some(sse) = &c.sse_config {
        match sse.kind.as_deref().unwrap_or("") {
            "SSE-S3" => {
                // The encryption key enum is not exported; its documented string name is.
                let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                    .parse()
                    .map_err(|e| Error::build("S3", e))?;
                b = b.with_config(key, "AES256");
            }
            "SSE-KMS" => {
                b = b.with_sse_kms_encryption(sse.kms_key_id.as_deref().unwrap_or_default());
            }
            "SSE-C" => {
                let path = sse.encryption_key.as_deref().unwrap_or_default();
                let key = std::fs::read(path).map_err(|e| {
                    Error::build(
                        "S3",
                        format!("cannot read sse_config.encryption_key `{path}`: {e}"),
                    )
                })?;
                if key.len() != 32 {
                    return Err(Error::build(
                        "S3",
                        format!(
                            "sse_config.encryption_key `{path}` holds {} bytes; SSE-C needs exactly 32",
                            key.len()
                        ),
                    ));
                }
                b = b.with_ssec_encryption(base64_encode(&key));
            }
            _ => {}
        }
    }
    let options = client_options("S3", c.http_config.as_ref(), allow_http)?;
    let store = b
        .with_client_options(options)
        .with_retry(retry_config(c.max_retries))
        .build()
        .map_err(|e| Error::build("S3", e))?;

    let mut attributes = Attributes::new();
    for (k, v) in c.put_user_metadata.iter().flatten() {
        attributes.insert(
            Attribute::Metadata(k.clone().into()),
            AttributeValue::from(v.clone()),
        );
    }
    Ok(Backend {
        store: Arc::new(store),
        local: None,
        upload: UploadSettings {
            part_size: match c.part_size {
                Some(n) if n >= MIN_S3_PART_SIZE => usize::try_from(n).unwrap_or(usize::MAX),
                _ => DEFAULT_S3_PART_SIZE,
            },
            multipart: c.disable_multipart != Some(true),
            attributes,
        },
    })
}

fn build_gcs(c: &GcsConfig) -> Result<Backend> {
    let bucket = non_empty(&c.bucket).unwrap_or_default();
    // from_env: GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS, then the gcloud
    // application-default file, then the metadata server — Google's usual default chain.
    let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    if let Some(sa) = c
        .service_account
        .as_ref()
        .filter(|s| !s.expose().trim().is_empty())
    {
        b = b.with_service_account_key(sa.expose());
    }
    let options = client_options("GCS", c.http_config.as_ref(), false)?;
    let store = b
        .with_client_options(options)
        .with_retry(retry_config(c.max_retries))
        .build()
        .map_err(|e| Error::build("GCS", e))?;
    Ok(Backend {
        store: Arc::new(store),
        local: None,
        upload: UploadSettings {
            // GCS' XML multipart API shares S3's 5 MiB minimum part size.
            part_size: match c.chunk_size_bytes {
                Some(n) if n > 0 => usize::try_from(n.max(MIN_S3_PART_SIZE)).unwrap_or(usize::MAX),
                _ => DEFAULT_PART_SIZE,
            },
            ..UploadSettings::default()
        },
    })
}

/// The parts of an Azure storage connection string we use.
#[derive(Default)]
struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    blob_endpoint: Option<String>,
    protocol: Option<String>,
    suffix: Option<String>,
    emulator: bool,
}

fn parse_connection_string(text: &str) -> Result<ConnectionString> {
    let mut cs = ConnectionString::default();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            // Do not echo the part: it may be the account key.
            Error::config(
                "AZURE `storage_connection_string` has a part without `=`; expected `Key=Value;…`",
            )
        })?;
        let v = v.to_string();
        match k {
            "AccountName" => cs.account = Some(v),
            "AccountKey" => cs.key = Some(v),
            "SharedAccessSignature" => cs.sas = Some(v),
            "BlobEndpoint" => cs.blob_endpoint = Some(v),
            "DefaultEndpointsProtocol" => cs.protocol = Some(v),
            "EndpointSuffix" => cs.suffix = Some(v),
            "UseDevelopmentStorage" => cs.emulator = v.eq_ignore_ascii_case("true"),
            _ => {} // QueueEndpoint, TableEndpoint, …: not relevant to blobs.
        }
    }
    Ok(cs)
}

fn build_azure(c: &AzureConfig) -> Result<Backend> {
    let container = non_empty(&c.container).unwrap_or_default();
    // from_env: AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, … (workload identity) as fallbacks.
    let mut b = MicrosoftAzureBuilder::from_env().with_container_name(container);
    let mut account = non_empty(&c.storage_account).map(str::to_string);
    let mut key = c
        .storage_account_key
        .as_ref()
        .map(|k| k.expose().to_string())
        .filter(|k| !k.is_empty());
    let mut endpoint_url = None;
    let mut allow_http = false;
    if let Some(cs) = c
        .storage_connection_string
        .as_ref()
        .filter(|s| !s.expose().is_empty())
    {
        let cs = parse_connection_string(cs.expose())?;
        if cs.emulator {
            b = b.with_use_emulator(true);
            allow_http = true;
        }
        account = cs.account.or(account);
        key = cs.key.or(key);
        if let Some(sas) = cs.sas {
            b = b.with_config(object_store::azure::AzureConfigKey::SasKey, sas);
        }
        if let Some(blob) = cs.blob_endpoint {
            endpoint_url = Some(blob);
        } else if let (Some(acc), Some(suffix)) = (&account, &cs.suffix) {
            let protocol = cs.protocol.as_deref().unwrap_or("https");
            endpoint_url = Some(format!("{protocol}://{acc}.blob.{suffix}"));
        }
    }
    if endpoint_url.is_none()
        && let (Some(acc), Some(suffix)) = (&account, non_empty(&c.endpoint))
    {
        endpoint_url = Some(format!("https://{acc}.{}", suffix.trim_end_matches('/')));
    }
    if let Some(url) = endpoint_url {
        allow_http |= url.starts_with("http://");
        b = b.with_endpoint(url);
    }
    if let Some(acc) = account {
        b = b.with_account(acc);
    }
    if let Some(key) = key {
        b = b.with_access_key(key);
    }
    if let Some(tenant) = non_empty(&c.az_tenant_id) {
        b = b.with_tenant_id(tenant);
    }
    match (non_empty(&c.client_id), &c.client_secret) {
        (Some(id), Some(secret)) if !secret.expose().is_empty() => {
            b = b.with_client_id(id).with_client_secret(secret.expose());
        }
        (Some(id), _) => b = b.with_client_id(id),
        (None, _) => {
            // A user-assigned managed identity is selected by its client id.
            if let Some(id) = non_empty(&c.user_assigned_id) {
                b = b.with_client_id(id);
            }
        }
    }
    let pipeline = c.pipeline_config.clone().unwrap_or_default();
    let mut retry = retry_config(c.max_retries);
    if let Some(tries) = pipeline.max_tries.filter(|n| *n > 0) {
        // max_tries counts the first attempt.
        retry.max_retries = (tries - 1) as usize;
    }
    if let Some(d) = pipeline.retry_delay.filter(|d| !d.is_zero()) {
        retry.backoff.init_backoff = d;
    }
    if let Some(d) = pipeline.max_retry_delay.filter(|d| !d.is_zero()) {
        retry.backoff.max_backoff = d;
    }
    let mut options = client_options("AZURE", c.http_config.as_ref(), allow_http)?;
    if let Some(t) = pipeline.try_timeout.filter(|d| !d.is_zero()) {
        options = options.with_timeout(t);
    }
    let store = b
        .with_client_options(options)
        .with_retry(retry)
        .build()
        .map_err(|e| Error::build("AZURE", e))?;
    Ok(Backend {
        store: Arc::new(store),
        local: None,
        upload: UploadSettings::default(),
    })
}

/// Standard base64 with padding; only needed for the SSE-C key, so not worth a dependency.
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
    }

    #[test]
    fn aws_region_from_endpoint() {
        assert_eq!(
            aws_endpoint_region("s3.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            aws_endpoint_region("s3-us-west-2.amazonaws.com"),
            Some("us-west-2")
        );
        assert_eq!(
            aws_endpoint_region("s3.dualstack.ap-south-1.amazonaws.com"),
            Some("ap-south-1")
        );
        assert_eq!(aws_endpoint_region("s3.amazonaws.com"), None);
        assert_eq!(aws_endpoint_region("minio.local:9000"), None);
    }

    #[test]
    fn endpoint_scheme() {
        assert_eq!(
            split_endpoint("127.0.0.1:9000", true),
            ("http", "127.0.0.1:9000")
        );
        assert_eq!(split_endpoint("minio:9000", false), ("https", "minio:9000"));
        assert_eq!(
            split_endpoint("http://minio:9000/", false),
            ("http", "minio:9000")
        );
    }

    #[test]
    fn retries_follow_thanos_zero_means_default() {
        assert_eq!(retry_config(None).max_retries, 10);
        assert_eq!(retry_config(Some(0)).max_retries, 10);
        assert_eq!(retry_config(Some(3)).max_retries, 3);
    }

    #[test]
    fn connection_string_parts() {
        let cs = parse_connection_string(
            "DefaultEndpointsProtocol=https;AccountName=acc;AccountKey=a2V5;EndpointSuffix=core.windows.net",
        )
        .unwrap();
        assert_eq!(cs.account.as_deref(), Some("acc"));
        assert_eq!(cs.key.as_deref(), Some("a2V5"));
        assert_eq!(cs.suffix.as_deref(), Some("core.windows.net"));
        assert!(parse_connection_string("garbage").is_err());
    }
}
