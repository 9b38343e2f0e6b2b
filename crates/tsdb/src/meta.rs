//! `meta.json`: Prometheus' block metadata plus Thanos' `thanos` section.
//!
//! Parsing is tolerant the way Go's `encoding/json` is: unknown fields are accepted — and kept,
//! so that reading and re-writing a meta written by a newer Prometheus or Thanos does not drop
//! what we do not understand. Values that Prometheus and Thanos refuse (a meta version other
//! than 1, a Thanos section version other than 0 or 1) are refused here too.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use ulid::Ulid;

use crate::error::{Error, Result};

/// The file name of block metadata.
pub const META_FILENAME: &str = "meta.json";
/// Downsampling resolutions, in milliseconds.
pub const RES_RAW: i64 = 0;
pub const RES_5M: i64 = 300_000;
pub const RES_1H: i64 = 3_600_000;

/// A block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub ulid: Ulid,
    /// Inclusive, in milliseconds.
    #[serde(rename = "minTime")]
    pub min_time: i64,
    /// Exclusive, in milliseconds.
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: Compaction,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
    /// Fields this version does not know, preserved on re-write.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// Go encodes a nil slice or map as `null`; treat it as empty.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `stats`: every field omitted when zero, as Go writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero_u64")]
    pub num_samples: u64,
    #[serde(
        rename = "numFloatSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_float_samples: u64,
    #[serde(
        rename = "numHistogramSamples",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub num_histogram_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero_u64")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero_u64")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero_u64")]
    pub num_tombstones: u64,
}

/// `compaction`: lineage of the block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compaction {
    #[serde(default)]
    pub level: u32,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<Ulid>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hints: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A direct input of a compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// Thanos' section of meta.json (`pkg/block/metadata/meta.go`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub version: u32,
    /// External labels. Always written, even when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    #[serde(default)]
    pub source: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segment_files: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub files: Vec<FileMeta>,
    /// Kept verbatim: produced by `thanos tools bucket rewrite`.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rewrites: Vec<Value>,
    /// A Go struct, so Thanos always writes it (possibly `{}`).
    #[serde(default)]
    pub index_stats: IndexStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    /// RFC 3339; Go writes its zero time as `0001-01-01T00:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_time: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    /// Milliseconds: 0 (raw), 300000 (5m) or 3600000 (1h).
    #[serde(default)]
    pub resolution: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
}

/// One file of the block, as listed in `thanos.files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub rel_path: String,
    /// Omitted for meta.json itself.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ObjectHash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHash {
    #[serde(rename = "hashFunc")]
    pub func: String,
    pub value: String,
}

impl BlockMeta {
    /// A level-1 meta for a new block that is its own source.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: Compaction {
                level: 1,
                sources: vec![ulid],
                ..Default::default()
            },
            version: 1,
            thanos: None,
            extra: Map::new(),
        }
    }

    /// Parses and validates meta.json bytes. `file` names the source in errors.
    pub fn parse(file: &str, data: &[u8]) -> Result<Self> {
        let meta: BlockMeta = serde_json::from_slice(data).map_err(|e| Error::Meta {
            file: file.to_string(),
            detail: e.to_string(),
        })?;
        meta.validate(file)?;
        Ok(meta)
    }

    fn validate(&self, file: &str) -> Result<()> {
        let bad = |detail: String| Error::Meta {
            file: file.to_string(),
            detail,
        };
        if self.version != 1 {
            return Err(bad(format!(
                "unexpected meta file version {} (want 1)",
                self.version
            )));
        }
        if let Some(t) = &self.thanos
            && t.version > 1
        {
            return Err(bad(format!(
                "unexpected thanos section version {} (want 1)",
                t.version
            )));
        }
        Ok(())
    }

    /// Reads `<dir>/meta.json`.
    pub fn read_from_dir(dir: &std::path::Path) -> Result<Self> {
        let path = dir.join(META_FILENAME);
        let data = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        Self::parse(&path.display().to_string(), &data)
    }

    /// The JSON Prometheus writes: tab-indented.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser)
            .expect("serializing a BlockMeta cannot fail");
        out.push(b'\n');
        out
    }

    /// Writes `<dir>/meta.json` atomically: to a temporary file, fsynced, then renamed.
    pub fn write_to_dir(&self, dir: &std::path::Path) -> Result<()> {
        let path = dir.join(META_FILENAME);
        let tmp = dir.join("meta.json.tmp");
        crate::write_file_synced(&tmp, &self.to_json())?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
        crate::sync_dir(dir)
    }

    /// Downsampling resolution in ms (0 without a Thanos section).
    pub fn resolution(&self) -> i64 {
        self.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
    }

    /// External labels (empty without a Thanos section).
    pub fn external_labels(&self) -> BTreeMap<String, String> {
        self.thanos
            .as_ref()
            .map(|t| t.labels.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THANOS_FIXTURE: &str = r#"{
	"ulid": "01DRBP4RNVZ94135ZA6B10EMRR",
	"minTime": 1570766415000,
	"maxTime": 1570939215001,
	"stats": {"numSamples": 115210000, "numSeries": 10000, "numChunks": 990000},
	"compaction": {"level": 1, "sources": ["01DRBP4RNVZ94135ZA6B10EMRR"]},
	"version": 1,
	"thanos": {
		"labels": {"ext1": "1", "replica": "a"},
		"downsample": {"resolution": 0},
		"source": "blockgen",
		"segment_files": ["000001"],
		"files": [{"rel_path": "chunks/000001", "size_bytes": 3751}, {"rel_path": "index", "size_bytes": 401},
		          {"rel_path": "meta.json", "hash": {"hashFunc": "SHA256", "value": "ab"}}],
		"index_stats": {},
		"upload_time": "0001-01-01T00:00:00Z",
		"future_field": [1, 2]
	},
	"someNewPrometheusField": {"x": true}
}"#;

    #[test]
    fn parses_thanos_meta_and_keeps_unknown_fields() {
        let m = BlockMeta::parse("meta.json", THANOS_FIXTURE.as_bytes()).unwrap();
        assert_eq!(m.ulid.to_string(), "01DRBP4RNVZ94135ZA6B10EMRR");
        assert_eq!(m.stats.num_series, 10000);
        assert_eq!(m.compaction.level, 1);
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(t.labels.get("replica").map(String::as_str), Some("a"));
        assert_eq!(t.files.len(), 3);
        assert_eq!(t.files[2].hash.as_ref().unwrap().func, "SHA256");
        assert!(t.extra.contains_key("future_field"));
        assert!(m.extra.contains_key("someNewPrometheusField"));

        // Round trip keeps everything, unknown fields included.
        let again = BlockMeta::parse("x", &m.to_json()).unwrap();
        assert_eq!(again, m);
        let text = String::from_utf8(m.to_json()).unwrap();
        assert!(text.contains("\t\"ulid\""), "tab indentation: {text}");
        assert!(
            text.contains("\"index_stats\": {}"),
            "index_stats always written: {text}"
        );
        assert!(!text.contains("numTombstones"), "zero stats omitted");
    }

    /// Regression (fuzz/regressions/meta_json): unknown numeric fields must survive a
    /// rewrite bit for bit, which needs serde_json's exact float parsing.
    #[test]
    fn unknown_float_fields_round_trip_exactly() {
        let saved = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/regressions/meta_json/float-drift-1.03e50.json"
        ))
        .unwrap();
        let m = BlockMeta::parse("m", &saved).unwrap();
        let again = BlockMeta::parse("m", &m.to_json()).unwrap();
        assert_eq!(again, m);
        assert_eq!(again.extra["x"].as_f64(), Some(1.03e50));
    }

    #[test]
    fn go_nulls_and_plain_prometheus_meta() {
        let m = BlockMeta::parse(
            "m",
            br#"{"ulid":"01DRBP4RNVZ94135ZA6B10EMRR","minTime":0,"maxTime":7200000,
                "stats":{},"compaction":{"level":1,"sources":null,"parents":null},"version":1,
                "thanos":{"labels":null,"downsample":{"resolution":300000},"source":"sidecar"}}"#,
        )
        .unwrap();
        assert!(m.compaction.sources.is_empty());
        assert_eq!(m.resolution(), RES_5M);
        assert!(m.external_labels().is_empty());
    }

    #[test]
    fn rejects_bad_versions_and_garbage() {
        let v2 = THANOS_FIXTURE.replace("\"version\": 1", "\"version\": 2");
        let err = BlockMeta::parse("b/meta.json", v2.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version 2") && err.contains("b/meta.json"),
            "{err}"
        );
        let tv = THANOS_FIXTURE.replace("\"labels\": {", "\"version\": 7, \"labels\": {");
        assert!(BlockMeta::parse("m", tv.as_bytes()).is_err());
        assert!(BlockMeta::parse("m", b"{").is_err());
        assert!(BlockMeta::parse("m", b"").is_err());
        assert!(
            BlockMeta::parse(
                "m",
                br#"{"ulid":"nope","minTime":0,"maxTime":1,"version":1}"#
            )
            .is_err()
        );
        assert!(BlockMeta::parse("m", br#"{"minTime":0,"maxTime":1,"version":1}"#).is_err());
    }
}
