//! Decoder walks: each drives one decoder through every public entry point and asserts what
//! must hold whatever the input. A panic anywhere in here, the decoder's or an assertion's, is
//! a finding.
//!
//! Work per input is capped (`LIMIT` items per list) so that a large valid-looking input
//! cannot turn one execution into seconds; the caps are far above what the seeds contain.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use strata_model::{MatchOp, Matcher};
use strata_tsdb::chunkenc::ChunkError;
use strata_tsdb::index::{self, IndexReader};
use strata_tsdb::tombstones::Tombstones;
use strata_tsdb::{
    Block, BlockMeta, ChunkReader, ChunkRef, Encoding, RawChunk, XorEncoder, XorIterator,
};

/// Cap on names, values, series, chunks… visited per input.
const LIMIT: usize = 64;

/// What one way of decoding a chunk produced: the samples before the first error, and that
/// error. Values are kept as bits: the format must preserve them exactly (stale markers are
/// NaNs), and `f64` equality would call NaN unequal to itself and -0.0 equal to 0.0.
#[derive(Debug, Default, PartialEq, Eq)]
struct Decoded {
    samples: Vec<(i64, u64)>,
    err: Option<ChunkError>,
}

/// Aggregate chunk bytes: each of the five parts is found or reported absent or corrupt
/// without panicking; XOR parts decode like any XOR chunk; when every part parses, encoding
/// the parts again gives back the same parts; the counter part goes through
/// `CounterResets`, whose output never goes back in time.
pub fn aggr_chunk(data: &[u8]) {
    use strata_tsdb::chunkenc::aggr::{AggrChunk, AggrType, CounterResets, encode_aggr_chunk};
    let c = AggrChunk::new(data);
    let types = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];
    let mut parts: [Option<(Encoding, &[u8])>; 5] = [None; 5];
    let mut all_ok = true;
    for (i, t) in types.into_iter().enumerate() {
        match c.get(t) {
            Ok(p) => {
                parts[i] = p;
                if let Some((Encoding::Xor, bytes)) = p {
                    xor_chunk(bytes);
                }
            }
            Err(_) => all_ok = false,
        }
        let _ = c.samples(t);
    }
    let _ = c.num_samples();
    if all_ok {
        // Lengths may be non-minimal varints in the input, so compare parts, not bytes.
        let again = encode_aggr_chunk(&parts);
        let re = AggrChunk::new(&again);
        for (i, t) in types.into_iter().enumerate() {
            assert_eq!(
                re.get(t).expect("a re-encoded part parses"),
                parts[i],
                "re-encoding changed part {}",
                t.name()
            );
        }
    }
    if let Ok(counter) = c.samples(AggrType::Counter) {
        let mut out = Vec::new();
        let mut resets = CounterResets::new();
        resets.push_stream(&counter, &mut out);
        resets.push_stream(&counter, &mut out);
        assert!(
            out.windows(2).all(|w| w[0].0 < w[1].0),
            "counter-reset output goes back in time"
        );
    }
}

/// XOR chunk bytes: the `Iterator`, `decode_into` and `decode_slices` (in odd batch sizes)
/// must agree on every sample and on the error; a chunk that decodes must re-encode to the
/// same samples, bit for bit.
pub fn xor_chunk(data: &[u8]) {
    xor_chunks(data);
    let Ok(it) = XorIterator::new(data) else {
        return;
    };
    let total = usize::from(it.num_samples());
    let by_iter = decode_iter(it.clone());
    let by_bulk = decode_bulk(it.clone());
    assert_eq!(by_iter, by_bulk, "Iterator and decode_into disagree");
    for sizes in [&[1usize][..], &[3, 1, 7, 2], &[64, 5], &[1000]] {
        let by_slices = decode_batches(it.clone(), sizes);
        assert_eq!(
            by_iter, by_slices,
            "Iterator and decode_slices({sizes:?}) disagree"
        );
    }
    match by_iter.err {
        None => {
            assert_eq!(
                by_iter.samples.len(),
                total,
                "decoded sample count != header"
            );
            round_trip(&by_iter.samples);
        }
        Some(_) => assert!(by_iter.samples.len() < total, "error after the last sample"),
    }
}

/// Many chunks decoded together (`XorIterator::decode_chunks_into`, lockstep groups of 16 and
/// 8 where the CPU has AVX-512) must give exactly what decoding them one by one gives: the same
/// samples, the same failing chunk and error, the same partial output. The groups are the
/// input cut shorter by 0..16 bytes (lanes that run out of data at different samples), the
/// input 24 times, and the input split into up to 24 pieces.
fn xor_chunks(data: &[u8]) {
    let n = data.first().map_or(1, |b| usize::from(b % 24) + 1);
    let rest = data.get(1..).unwrap_or(&[]);
    let pieces: Vec<&[u8]> = rest.chunks(rest.len().div_ceil(n).max(1)).collect();
    let groups: [Vec<&[u8]>; 3] = [
        (0..16)
            .map(|i| &data[..data.len().saturating_sub(i)])
            .collect(),
        vec![data; 24],
        pieces,
    ];
    for chunks in groups {
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        let mut want_err = None;
        for (i, c) in chunks.iter().enumerate() {
            if let Err(e) = XorIterator::new(c).and_then(|mut it| it.decode_into(&mut ts, &mut vs))
            {
                want_err = Some((i, e));
                break;
            }
        }
        let (mut got_ts, mut got_vs) = (Vec::new(), Vec::new());
        let got_err = XorIterator::decode_chunks_into(&chunks, &mut got_ts, &mut got_vs).err();
        assert_eq!(got_err, want_err, "decode_chunks_into fails differently");
        assert_eq!(got_ts, ts, "decode_chunks_into timestamps differ");
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got_vs), bits(&vs), "decode_chunks_into values differ");
    }
}

fn decode_iter(mut it: XorIterator<'_>) -> Decoded {
    let total = usize::from(it.num_samples());
    let mut out = Decoded::default();
    loop {
        let left = total - out.samples.len();
        assert_eq!(it.size_hint().1, Some(left), "size_hint upper bound");
        match it.next() {
            None => {
                assert_eq!(left, 0, "iterator ended early without an error");
                break;
            }
            Some(Ok((t, v))) => out.samples.push((t, v.to_bits())),
            Some(Err(e)) => {
                out.err = Some(e);
                assert!(it.next().is_none(), "iterator yields after an error");
                break;
            }
        }
    }
    out
}

fn decode_bulk(mut it: XorIterator<'_>) -> Decoded {
    // A sentinel in front checks that decode_into appends instead of overwriting.
    let (mut ts, mut vs) = (vec![i64::MIN], vec![f64::from_bits(7)]);
    let err = it.decode_into(&mut ts, &mut vs).err();
    assert_eq!(
        ts.len(),
        vs.len(),
        "decode_into left vectors of different lengths"
    );
    assert_eq!(
        (ts[0], vs[0].to_bits()),
        (i64::MIN, 7),
        "decode_into overwrote"
    );
    let samples = ts[1..]
        .iter()
        .zip(&vs[1..])
        .map(|(&t, v)| (t, v.to_bits()))
        .collect();
    // Once done or failed there is nothing more to decode.
    let (mut t2, mut v2) = (Vec::new(), Vec::new());
    assert!(it.decode_into(&mut t2, &mut v2).is_ok() && t2.is_empty());
    Decoded { samples, err }
}

/// Decodes in batches of the given sizes, cycling; the value slice is one longer than the
/// timestamp slice, which `decode_slices` must tolerate by decoding the shorter length.
fn decode_batches(mut it: XorIterator<'_>, sizes: &[usize]) -> Decoded {
    let total = usize::from(it.num_samples());
    let mut out = Decoded::default();
    for &n in sizes.iter().cycle() {
        let (mut ts, mut vs) = (vec![0i64; n], vec![0f64; n + 1]);
        match it.decode_slices(&mut ts, &mut vs) {
            Ok(k) => {
                assert!(k <= n);
                out.samples
                    .extend(ts[..k].iter().zip(&vs[..k]).map(|(&t, v)| (t, v.to_bits())));
                if k < n {
                    assert_eq!(out.samples.len(), total, "short batch before the end");
                    break;
                }
            }
            Err((k, e)) => {
                assert!(k < n, "error reported after a full batch");
                out.samples
                    .extend(ts[..k].iter().zip(&vs[..k]).map(|(&t, v)| (t, v.to_bits())));
                out.err = Some(e);
                assert_eq!(
                    it.decode_slices(&mut ts, &mut vs),
                    Ok(0),
                    "decodes after error"
                );
                break;
            }
        }
    }
    out
}

/// Samples that came out of a chunk must go back in and come out unchanged, and the encoder
/// must be deterministic: re-encoding what its own output decodes to gives the same bytes.
fn round_trip(samples: &[(i64, u64)]) {
    let floats = || samples.iter().map(|&(t, v)| (t, f64::from_bits(v)));
    let enc = XorEncoder::encode(floats()).expect("at most 65535 samples always encode");
    let again = decode_iter(XorIterator::new(&enc).expect("encoder output has a header"));
    assert_eq!(again.err, None, "encoder output does not decode");
    assert_eq!(again.samples, samples, "samples do not round-trip");
    assert_eq!(decode_bulk(XorIterator::new(&enc).unwrap()), again);
    let enc2 = XorEncoder::encode(floats()).unwrap();
    assert_eq!(enc, enc2, "encoder is not deterministic");
    // The encoder hands out its bytes mid-stream and keeps appending: each snapshot must
    // decode to the samples appended so far. Checked on a prefix, as it is quadratic.
    let mut e = XorEncoder::new();
    for (i, (t, v)) in floats().take(12).enumerate() {
        e.append(t, v).unwrap();
        let b = e.bytes();
        assert_eq!(b.len(), e.len_bytes(), "len_bytes disagrees with bytes()");
        let d = decode_iter(XorIterator::new(&b).unwrap());
        assert_eq!(
            (d.err, &d.samples[..]),
            (None, &samples[..=i]),
            "snapshot {i}"
        );
    }
}

/// A chunk as it comes out of a segment: XOR chunks get the full walk, others must be refused
/// by `xor_iter` with `UnsupportedEncoding`, not misread.
pub fn raw_chunk(c: &RawChunk) {
    let header = (c.data.len() >= 2).then(|| u16::from_be_bytes([c.data[0], c.data[1]]));
    match c.encoding {
        Encoding::Xor => {
            assert_eq!(c.num_samples(), header);
            xor_chunk(&c.data);
            let direct = XorIterator::new(&c.data).map(|it| it.num_samples());
            assert_eq!(c.xor_iter().map(|it| it.num_samples()), direct);
            if let Ok(s) = strata_tsdb::block::decode_xor(c) {
                assert_eq!(Some(s.len()), header.map(usize::from));
            }
        }
        other => {
            let _ = c.num_samples();
            assert!(
                matches!(c.xor_iter(), Err(ChunkError::UnsupportedEncoding(e)) if e == other),
                "non-XOR chunk not refused"
            );
        }
    }
}

/// A chunk reader: scans every segment, and every chunk the scan finds must read back the same
/// by reference; then reads the chunks at `probes` (references taken from the input, so the
/// caller bounds how many).
pub fn chunk_reader(r: &ChunkReader, probes: impl IntoIterator<Item = ChunkRef>) {
    let sizes = r.segment_sizes();
    assert_eq!(sizes.len(), r.num_segments());
    for (seg, &size) in sizes.iter().enumerate() {
        let mut scan = r.scan_segment(seg);
        let mut prev = None;
        for _ in 0..LIMIT {
            match scan.next() {
                None => break,
                Some(Ok((at, c))) => {
                    assert!(prev.is_none_or(|p| at > p), "scan offsets do not increase");
                    assert!(u64::from(at) >= 8 && u64::from(at) < size);
                    prev = Some(at);
                    let by_ref = r
                        .chunk(ChunkRef::new(seg as u32, at))
                        .expect("a scanned chunk must read by reference");
                    assert_eq!(by_ref, c, "scan and chunk() disagree at {at}");
                    raw_chunk(&c);
                }
                Some(Err(_)) => {
                    assert!(scan.next().is_none(), "scan yields after an error");
                    break;
                }
            }
        }
    }
    for p in probes {
        if let Ok(c) = r.chunk(p) {
            raw_chunk(&c);
        }
    }
}

fn strictly_increasing<T: PartialOrd>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

/// An opened index: symbols, label names and values, every postings list, every series
/// (labels and chunk metas), and matcher selection built from what the index contains.
/// `probe` is fuzzer bytes used as extra series references and fed to the free-standing
/// decoders.
pub fn index(ix: &IndexReader, probe: &[u8]) {
    let _ = (
        ix.file(),
        ix.version(),
        ix.toc(),
        ix.size(),
        ix.bytes().len(),
    );

    let nsym = ix.num_symbols();
    let syms: Vec<&str> = ix.symbols().take(LIMIT).collect();
    assert_eq!(syms.len(), nsym.min(LIMIT));
    assert!(strictly_increasing(&syms), "symbols accepted unsorted");
    for (i, s) in syms.iter().enumerate() {
        assert_eq!(ix.symbol(i as u32).ok(), Some(*s));
    }
    assert!(ix.symbol(nsym as u32).is_err() || nsym >= u32::MAX as usize);
    let _ = ix.symbol(u32::MAX);

    let names = ix.label_names();
    assert!(strictly_increasing(&names), "label names unsorted");
    let mut ids = BTreeSet::new();
    for name in names.iter().take(LIMIT) {
        let values = ix.label_values(name);
        assert_eq!(values.len(), ix.num_label_values(name));
        assert!(strictly_increasing(&values), "values of {name} unsorted");
        for v in values.iter().take(LIMIT) {
            let p = ix.postings(name, v);
            if let Ok(p) = &p {
                assert!(strictly_increasing(p), "postings of {name}={v} unsorted");
                ids.extend(p.iter().take(LIMIT));
            }
            if let (Ok(a), Ok(b)) = (&p, ix.postings_for_values(name, &[v])) {
                assert_eq!(*a, b, "postings_for_values({name}, [{v}])");
            }
        }
        let vals: Vec<&str> = values.iter().take(8).copied().collect();
        let union = ix.postings_for_values(name, &vals);
        let prefix = vals.first().map_or("", |v| &v[..v.len().min(1)]);
        let _ = ix.postings_matching(name, prefix, &mut |v| v.len() % 2 == 0);
        if let (Ok(a), Ok(b)) = (
            union,
            ix.postings_matching(name, "", &mut |v| vals.contains(&v)),
        ) {
            assert_eq!(
                a, b,
                "postings_for_values and postings_matching disagree on {name}"
            );
        }
    }
    assert!(ix.label_values("\u{10FFFF}no such label").is_empty());
    assert_eq!(ix.postings("no such label", "x").ok(), Some(Vec::new()));

    if let Ok(all) = ix.all_postings() {
        assert!(strictly_increasing(&all), "all-postings unsorted");
        ids.extend(all.iter().take(LIMIT));
    }
    // Fuzzer-chosen references: misaligned, past the end, inside other sections.
    ids.extend(
        probe
            .chunks_exact(4)
            .take(8)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap())),
    );
    ids.extend([0, 1, u32::MAX]);
    let (mut refs, mut chunks) = (Vec::new(), Vec::new());
    for &id in ids.iter().take(2 * LIMIT) {
        let raw = ix.series_raw(id, &mut refs, &mut chunks);
        let resolved = raw.as_ref().ok().map(|()| ix.resolve_labels(&refs));
        match ix.series(id) {
            Ok((labels, metas)) => {
                assert!(matches!(resolved, Some(Ok(ref l)) if *l == labels));
                assert_eq!(metas, chunks);
            }
            Err(_) => assert!(!matches!(resolved, Some(Ok(_)))),
        }
    }

    matchers(ix, &names);

    let _ = index::decode_postings(probe);
    let _ = index::decode_series_entry(probe, &mut refs, &mut chunks);
}

/// Escapes a literal for use in a regex matcher.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A regex matcher, compiled once per process for each distinct (op, name, pattern).
///
/// Compiling dominates an execution otherwise (a dozen regexes per input, each slow under the
/// sanitizer), and the structure-aware targets see the same few names and values over and
/// over. The cache only saves time: a matcher is an input to selection, not under test.
fn regex_matcher(op: MatchOp, name: &str, pattern: String) -> Option<Matcher> {
    type Key = (MatchOp, String, String);
    thread_local! {
        static CACHE: RefCell<HashMap<Key, Option<Matcher>>> = RefCell::new(HashMap::new());
    }
    CACHE.with_borrow_mut(|cache| {
        // Random indexes bring endless fresh strings; bound the memory they can take.
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache
            .entry((op, name.to_string(), pattern))
            .or_insert_with_key(|(op, name, pat)| {
                Matcher::new(*op, name.as_str(), pat.as_str()).ok()
            })
            .clone()
    })
}

/// Matcher selection over the index, with matchers of every kind built from names and values
/// it contains, so that selection walks real postings rather than returning empty at once.
fn matchers(ix: &IndexReader, names: &[&str]) {
    let mut sets: Vec<Vec<Matcher>> = vec![vec![Matcher::equal("no such label", "x")]];
    let mut firsts = Vec::new();
    for name in names.iter().take(4) {
        let values = ix.label_values(name);
        let Some(&v) = values.first() else { continue };
        let v2 = values.last().copied().unwrap_or(v);
        firsts.push((*name, v));
        // Selecting with one equality matcher must give exactly that value's postings.
        if !v.is_empty()
            && let (Ok(a), Ok(b)) = (
                index::postings_for_matchers(ix, &[Matcher::equal(*name, v)]),
                ix.postings(name, v),
            )
        {
            assert_eq!(
                a, b,
                "{name}=\"{v}\" selects something other than its postings"
            );
        }
        let re = |op, pat: String| regex_matcher(op, name, pat);
        let candidates = [
            Some(Matcher::not_equal(*name, v)),
            Some(Matcher::equal(*name, "")),
            re(MatchOp::RegexMatch, format!("{}.*", regex_escape(v))),
            re(
                MatchOp::RegexMatch,
                format!("{}|{}", regex_escape(v), regex_escape(v2)),
            ),
            re(MatchOp::RegexMatch, ".+".into()),
            re(MatchOp::RegexMatch, ".*".into()),
            re(MatchOp::RegexNoMatch, format!("{}.+", regex_escape(v))),
            re(MatchOp::RegexNoMatch, String::new()),
        ];
        sets.extend(candidates.into_iter().flatten().map(|m| vec![m]));
    }
    if let [(n1, v1), (n2, v2), ..] = firsts[..] {
        sets.push(vec![Matcher::equal(n1, v1), Matcher::not_equal(n2, v2)]);
        sets.push(vec![Matcher::equal(n1, v1), Matcher::equal(n2, v2)]);
    }
    for ms in &sets {
        if let Ok(sel) = index::postings_for_matchers(ix, ms) {
            assert!(strictly_increasing(&sel), "selection unsorted for {ms:?}");
        }
    }
}

/// A whole block assembled from (possibly damaged) parts: samples per series in the full
/// range and in narrower ones, and a query. Whatever comes out must respect the tombstones.
pub fn block(index: IndexReader, chunks: ChunkReader, tombstones: Tombstones, meta: BlockMeta) {
    let (mint, maxt) = (meta.min_time, meta.max_time);
    let b = Block::from_parts(PathBuf::from("fuzz-block"), meta, index, chunks, tombstones);
    let ids = b.index().all_postings().unwrap_or_default();
    let mid = mint / 2 + maxt / 2;
    for &id in ids.iter().take(LIMIT) {
        for (lo, hi) in [(i64::MIN, i64::MAX), (mint + 20_000, mid), (mid, mid)] {
            if let Ok(s) = b.series_samples(id, lo, hi) {
                check_series_samples(&b, id, &s.timestamps, s.values.len());
            }
        }
    }
    let names = b.index().label_names();
    if let Some(name) = names.first()
        && let Some(v) = b.index().label_values(name).first()
        && let Ok(it) = b.query(&[Matcher::equal(*name, *v)], mint, maxt)
    {
        for s in it.take(LIMIT).flatten() {
            assert_eq!(s.timestamps.len(), s.values.len());
        }
    }
}

/// The range is deliberately not asserted: like Prometheus, the block trusts the index's chunk
/// times and only trims chunks whose metadata crosses the range, so a chunk whose samples
/// disagree with its metadata (possible here, the CRCs being repaired) leaks samples. That is
/// garbage in, garbage out, not a decoder failure.
fn check_series_samples(b: &Block, id: u32, ts: &[i64], nvals: usize) {
    assert_eq!(ts.len(), nvals, "timestamps and values differ in length");
    let deleted = b.tombstones().get(u64::from(id));
    assert!(
        ts.iter().all(|t| !deleted.iter().any(|iv| iv.contains(*t))),
        "deleted sample returned"
    );
}

/// Bytes as a Prometheus remote read answer, both ways one can arrive:
/// - a `STREAMED_XOR_CHUNKS` body: frames are taken off the front until the bytes run out or
///   one is refused; each taken frame consumed exactly its header, checksum and message, and
///   its message is decoded as a `ChunkedReadResponse` whose XOR chunks go through the XOR
///   walk;
/// - a `SAMPLES` body: snappy, then a `ReadResponse`; whatever decodes re-encodes stably.
pub fn remote_read(data: &[u8]) {
    use bytes::BytesMut;
    use prost::Message;
    use strata_prompb::{ChunkedReadResponse, decode_samples_response, take_frame};

    let mut buf = BytesMut::from(data);
    for _ in 0..LIMIT {
        let before = buf.len();
        match take_frame(&mut buf) {
            Ok(Some(msg)) => {
                let used = before - buf.len();
                assert!(
                    used >= msg.len() + 5 && used <= msg.len() + 14,
                    "a frame of {} bytes consumed {used}",
                    msg.len()
                );
                if let Ok(resp) = ChunkedReadResponse::decode(msg) {
                    for s in resp.chunked_series.iter().take(LIMIT) {
                        for c in s.chunks.iter().take(LIMIT) {
                            // Prometheus' chunk encoding 1 is XOR.
                            if c.r#type == 1 {
                                xor_chunk(&c.data);
                            }
                        }
                    }
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }

    if let Ok(resp) = decode_samples_response(data, 1 << 20) {
        // Compared as bytes: values may be NaN, which `PartialEq` calls unequal to itself.
        let once = resp.encode_to_vec();
        let again = strata_prompb::ReadResponse::decode(once.as_slice())
            .expect("our own encoding decodes")
            .encode_to_vec();
        assert_eq!(
            once, again,
            "re-encoding a decoded ReadResponse is not stable"
        );
    }
}

/// Arbitrary bytes as a Snappy framed stream and as a stream of gRPC messages compressed with
/// it (what a peer sends with `grpc-encoding: snappy`):
/// - whatever decompresses re-compresses and decompresses back to the same bytes;
/// - the message rewriter gives the same answer however the input is split into body chunks,
///   and never more output than its limit allows.
pub fn grpc_snappy(data: &[u8]) {
    use crate::grpc_snappy::{FrameTransformer, compress_framed, decompress_framed};
    use bytes::{Bytes, BytesMut};

    const LIMIT_BYTES: usize = 1 << 20;
    if let Ok(plain) = decompress_framed(data, LIMIT_BYTES) {
        assert!(plain.len() <= LIMIT_BYTES, "output over the limit");
        let mut again = BytesMut::new();
        compress_framed(&plain, &mut again).expect("compressing our own output");
        let back = decompress_framed(&again, LIMIT_BYTES).expect("our own framing decodes");
        assert_eq!(back, plain, "a round trip changed the data");
    }

    let run = |cut: usize| -> Result<Vec<u8>, String> {
        let mut t = FrameTransformer::decompressor(LIMIT_BYTES);
        let mut out = Vec::new();
        let cut = cut.min(data.len());
        for part in [&data[..cut], &data[cut..]] {
            let o = t
                .push(Bytes::copy_from_slice(part))
                .map_err(|e| e.to_string())?;
            out.extend_from_slice(&o);
        }
        t.finish().map_err(|e| e.to_string())?;
        Ok(out)
    };
    let whole = run(data.len());
    let split = run(data.first().map_or(0, |&b| usize::from(b)));
    assert_eq!(
        whole.is_ok(),
        split.is_ok(),
        "splitting the body changed the outcome: {whole:?} vs {split:?}"
    );
    if let (Ok(a), Ok(b)) = (&whole, &split) {
        assert_eq!(a, b, "splitting the body changed the messages");
    }
}

/// Arbitrary bytes as a Series answer's body: its first two bytes say where to split the rest
/// into three pieces (as DATA frames split it), and the cutter must give the messages a plain
/// parser of the whole body gives, and fail where that parser fails.
pub fn grpc_messages(data: &[u8]) {
    use crate::grpc_messages::{MessageCutter, PREFIX};
    use bytes::Bytes;

    const MAX: usize = 4096;
    let (cuts, body) = data.split_at(data.len().min(2));
    let whole = || -> Option<Vec<&[u8]>> {
        let (mut rest, mut out) = (body, Vec::new());
        while !rest.is_empty() {
            let prefix = rest.get(..PREFIX)?;
            let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
            if prefix[0] != 0 || len > MAX {
                return None;
            }
            let msg = rest.get(PREFIX..PREFIX + len)?;
            out.push(msg);
            rest = &rest[PREFIX + len..];
        }
        Some(out)
    };
    let a = usize::from(cuts.first().copied().unwrap_or(0)).min(body.len());
    let b = (a + usize::from(cuts.get(1).copied().unwrap_or(0))).min(body.len());
    let mut cutter = MessageCutter::new(MAX);
    let mut got: Vec<Bytes> = Vec::new();
    let mut cut = || -> Result<(), crate::grpc_messages::CutError> {
        for piece in [&body[..a], &body[a..b], &body[b..]] {
            cutter.push(Bytes::copy_from_slice(piece));
            while let Some(m) = cutter.next_message()? {
                got.push(m);
            }
        }
        cutter.finish()
    };
    let outcome = cut();
    match whole() {
        Some(want) => {
            assert_eq!(outcome, Ok(()), "the cutter failed on a well-formed body");
            let got: Vec<&[u8]> = got.iter().map(|m| &m[..]).collect();
            assert_eq!(got, want, "the cutter's messages differ");
        }
        None => assert!(outcome.is_err(), "the cutter took a malformed body"),
    }
}

/// A Series frame (see `fuzz_targets/series_frame.rs`).
pub fn series_frame(data: &[u8]) {
    use crate::series_frame::{by_prost, decode::decode_series_response};
    let ours = decode_series_response(bytes::Bytes::copy_from_slice(data));
    match (ours, by_prost(data)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the decoders disagree"),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("one decoder failed: ours {a:?}, prost {b:?}"),
    }
}

/// A range query answer as the query frontend reads it: whatever parses is written back as
/// JSON that parses again to the same bytes; cutting it and joining it with itself never
/// panics, and what they give is written as JSON that parses.
pub fn frontend_matrix(data: &[u8]) {
    use crate::frontend_response::Matrix;
    let Ok(m) = Matrix::parse(data) else {
        return;
    };
    let json = m.to_json();
    let again = Matrix::parse(&json).expect("what the frontend writes reads back");
    assert_eq!(again.to_json(), json, "written again, the same bytes");
    // Bounds from the input, so that cuts fall inside, across and outside its samples.
    let a = (data.len() as i64 % 11 - 5) * 1000;
    let b = a + (data.first().copied().unwrap_or(0) as i64) * 250;
    if let Ok(cut) = m.cut(a, b) {
        Matrix::parse(&cut.to_json()).expect("a cut answer reads back");
    }
    if let Ok(joined) = Matrix::merge(vec![m.clone(), again]) {
        let j = Matrix::parse(&joined.to_json()).expect("a joined answer reads back");
        assert_eq!(j.series.len(), m.series.len(), "joined with itself: the same series");
    }
}
