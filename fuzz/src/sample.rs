//! A small valid block, written once per process with the crate's own writers.
//!
//! The structure-aware targets mutate its files, and the seed generator writes them out as
//! corpus entries. It is built with [`BlockWriter`] rather than from bytes kept in the repo so
//! that it always matches what the current writer produces: a format change cannot leave the
//! fuzzers mutating a stale layout.
//!
//! It is kept small (a few hundred bytes of chunks, about a kilobyte of index) so that a
//! 16-bit mutation offset reaches every byte and each execution stays cheap, yet covers what
//! the decoders distinguish: several label names sharing values, a non-ASCII value, series
//! with one and with several chunks, a non-XOR chunk, repeated values, stale markers, every
//! delta-of-delta width, and tombstones.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use strata_model::Labels;
use strata_tsdb::chunks::{ChunkReader, ChunkRef};
use strata_tsdb::meta::{Downsample, ThanosMeta};
use strata_tsdb::tombstones::{Interval, Tombstones};
use strata_tsdb::{BlockMeta, BlockWriter, BlockWriterOptions, Encoding, IndexReader, RawChunk};

use crate::mutate::CrcSpan;

/// The files of the sample block, plus where their checksums are.
#[derive(Debug)]
pub struct SampleBlock {
    pub index: Vec<u8>,
    pub index_spans: Vec<CrcSpan>,
    /// The block's only chunk segment file (`chunks/000001`).
    pub segment: Vec<u8>,
    pub segment_spans: Vec<CrcSpan>,
    pub meta_json: Vec<u8>,
    pub tombstones: Vec<u8>,
    /// The data of every XOR chunk in the segment (no length, encoding or CRC).
    pub xor_chunks: Vec<Vec<u8>>,
    /// The files opened, for targets that damage one part of a block and keep the others.
    pub index_reader: IndexReader,
    pub chunk_reader: ChunkReader,
    pub meta: BlockMeta,
    pub parsed_tombstones: Tombstones,
    /// Every chunk reference in the index.
    pub chunk_refs: Vec<ChunkRef>,
}

/// A Prometheus stale marker: a NaN with a specific payload that must survive bit-exactly.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Fixed so that the seeds are identical from run to run.
const ULID: &str = "01HV5Z3K8Q9W2X4Y6T0R1S2M3N";

const T0: i64 = 1_700_000_000_000;

/// The sample block, built on first use.
pub fn sample_block() -> &'static SampleBlock {
    static BLOCK: OnceLock<SampleBlock> = OnceLock::new();
    BLOCK.get_or_init(|| build().expect("building the sample block"))
}

/// Samples that between them hit every branch of the XOR encoder.
fn series() -> Vec<(Labels, Vec<(i64, f64)>)> {
    let up =
        |inst: &str| Labels::from_pairs(&[("__name__", "up"), ("instance", inst), ("job", "api")]);
    let stale = f64::from_bits(STALE_NAN);
    let mut counter = Vec::new();
    let (mut t, mut v) = (T0 + 7, 0.0);
    for i in 0..13i64 {
        // Irregular scrape times and a counter reset half way.
        t += 15_000 + (i * 37) % 500 - 250;
        v = if i == 6 { 2.0 } else { v + (i as f64) * 1.5 };
        counter.push((t, v));
    }
    let mut out = vec![
        (
            up("a:9090"),
            (0..12).map(|i| (T0 + i * 15_000, 1.0)).collect(),
        ),
        (
            up("b:9090"),
            vec![
                (T0, 1.0),
                (T0 + 15_000, 0.0),
                (T0 + 30_000, 1.0),
                (T0 + 45_000, stale),
                (T0 + 60_000, 1.0),
                (T0 + 75_000, 1.0),
                (T0 + 90_000, 0.0),
            ],
        ),
        (
            Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("instance", "a:9090"),
                ("job", "api"),
            ]),
            counter,
        ),
        (
            Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("code", "500"),
                ("instance", "a:9090"),
                ("job", "web"),
                ("zone", "eu-ü"),
            ]),
            vec![(T0 + 1, 0.5), (T0 + 2, -0.0), (T0 + 3, f64::INFINITY)],
        ),
        (
            Labels::from_pairs(&[("__name__", "temperature"), ("job", "iot"), ("sensor", "x")]),
            // Deltas of delta in every bucket, including the 64-bit one.
            vec![
                (T0 - 1_000_000, 21.5),
                (T0 - 999_000, -3.25),
                (T0 - 990_000, f64::MAX),
                (T0 - 900_000, 1e-300),
                (T0 + 1_000_000, f64::MIN_POSITIVE),
                (T0 + 50_000_000_000, 21.5),
            ],
        ),
    ];
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn build() -> Result<SampleBlock, String> {
    let parent = std::env::temp_dir().join(format!("strata-fuzz-sample-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&parent);
    let res = write_and_read(&parent);
    let _ = std::fs::remove_dir_all(&parent);
    res
}

fn write_and_read(parent: &Path) -> Result<SampleBlock, String> {
    let e = |e: strata_tsdb::Error| e.to_string();
    let mut thanos = ThanosMeta {
        source: "fuzz".into(),
        downsample: Downsample { resolution: 0 },
        ..Default::default()
    };
    thanos.labels.insert("replica".into(), "a".into());
    let opts = BlockWriterOptions {
        samples_per_chunk: 5,
        ulid: ULID.parse().ok(),
        thanos: Some(thanos),
        ..Default::default()
    };
    let mut w = BlockWriter::new(parent, opts).map_err(e)?;
    let mut all = series();
    // A non-XOR chunk: carried through as raw bytes, refused when asked for samples.
    let hist = Labels::from_pairs(&[("__name__", "latency"), ("job", "api")]);
    let hist_chunk = RawChunk::new(Encoding::Histogram, vec![0u8, 1, 0x42, 0x10, 0, 7]);
    all.push((hist.clone(), Vec::new()));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (labels, samples) in &all {
        if *labels == hist {
            w.add_series_chunks(labels, &[(T0, T0 + 10, hist_chunk.clone())])
                .map_err(e)?;
        } else {
            w.add_series(labels, samples).map_err(e)?;
        }
    }
    let meta = w.finish().map_err(e)?;
    let dir: PathBuf = parent.join(meta.ulid.to_string());
    let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()));
    let index = read(dir.join("index"))?;
    let segment = read(dir.join("chunks").join("000001"))?;
    let meta_json = read(dir.join("meta.json"))?;

    let ix = IndexReader::from_bytes("index", Bytes::from(index.clone())).map_err(e)?;
    let refs = ix.all_postings().map_err(e)?;
    let mut tombstones = Tombstones::default();
    tombstones.add(
        u64::from(refs[0]),
        Interval {
            min: T0 + 15_000,
            max: T0 + 30_000,
        },
    );
    tombstones.add(
        u64::from(refs[refs.len() - 1]),
        Interval {
            min: i64::MIN,
            max: T0 - 999_000,
        },
    );
    tombstones.add(u64::from(refs[1]), Interval { min: T0, max: T0 });

    let chunks = ChunkReader::from_segments(vec![("000001".into(), Bytes::from(segment.clone()))])
        .map_err(e)?;
    let mut segment_spans = Vec::new();
    let mut xor_chunks = Vec::new();
    for item in chunks.scan_segment(0) {
        let (at, c) = item.map_err(e)?;
        segment_spans.push(CrcSpan::UvarintChunk(at as usize));
        if c.encoding == Encoding::Xor {
            xor_chunks.push(c.data.to_vec());
        }
    }
    let index_spans = index_spans(&ix, &index, &refs);
    let mut chunk_refs = Vec::new();
    for &r in &refs {
        let (_, metas) = ix.series(r).map_err(e)?;
        chunk_refs.extend(metas.iter().map(|m| m.chunk_ref));
    }
    Ok(SampleBlock {
        index,
        index_spans,
        segment,
        segment_spans,
        meta_json,
        tombstones: tombstones.encode(),
        xor_chunks,
        index_reader: ix,
        chunk_reader: chunks,
        meta,
        parsed_tombstones: tombstones,
        chunk_refs,
    })
}

/// Every checksummed structure of a valid index, in file order, with the TOC last (its CRC
/// covers nothing the others change, but a repaired TOC is the gate to all of them).
fn index_spans(ix: &IndexReader, index: &[u8], series: &[u32]) -> Vec<CrcSpan> {
    let toc = ix.toc();
    let mut spans = vec![CrcSpan::Be32Body(toc.symbols as usize)];
    spans.extend(
        series
            .iter()
            .map(|&r| CrcSpan::UvarintBody(r as usize * 16)),
    );
    let mut lists = postings_list_offsets(index, toc.postings_table as usize);
    lists.sort_unstable();
    lists.dedup();
    spans.extend(lists.into_iter().map(CrcSpan::Be32Body));
    spans.push(CrcSpan::Be32Body(toc.postings_table as usize));
    spans.push(CrcSpan::IndexToc);
    spans
}

/// The postings list offsets named by the postings offset table at `at`. The reader does not
/// expose them, so the table is walked here; the index is known valid, so the walk is simple.
fn postings_list_offsets(index: &[u8], at: usize) -> Vec<usize> {
    let uvarint = |pos: &mut usize| {
        let (v, n) = strata_tsdb::encoding::read_uvarint(&index[*pos..]).expect("valid index");
        *pos += n;
        v as usize
    };
    let count = u32::from_be_bytes(index[at + 4..at + 8].try_into().expect("4 bytes"));
    let mut pos = at + 8;
    let mut out = Vec::new();
    for _ in 0..count {
        let _keys = uvarint(&mut pos);
        for _ in 0..2 {
            let len = uvarint(&mut pos);
            pos += len;
        }
        out.push(uvarint(&mut pos));
    }
    out
}
