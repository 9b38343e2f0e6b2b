//! Redis Cluster for the Redis client: the slot map from `CLUSTER SLOTS`, a connection per
//! master, and lookups and stores split by the node that owns each key's slot.
//!
//! A cache can afford to be simple here. Keys are spread over every slot (they are hashes),
//! so an `MGET` would fail with `CROSSSLOT`; each node gets a pipeline of `GET`s (or `SET`s)
//! for its keys instead, all nodes at once. A redirection (`MOVED`, `ASK`), a cluster that
//! is down or a node that went away fails the operation (its keys are misses) and drops the
//! whole topology: the next operation asks a seed address for the slot map again. Reshards
//! and failovers thus cost one failed operation, never a wrong answer.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, RedisResult, Value};

/// The number of hash slots of a Redis Cluster.
pub(super) const SLOTS: u16 = 16384;

/// The slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the first `{` and the
/// next `}`, when not empty) or of the whole key, modulo 16384, as Redis computes it.
pub(super) fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(len) = rest.iter().position(|&b| b == b'}')
            && len > 0
        {
            return &rest[..len];
        }
    }
    key
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Which master serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SlotMap {
    /// `(first slot, last slot, index into masters)`, sorted by first slot.
    ranges: Vec<(u16, u16, usize)>,
    /// The masters' `host:port`, each once.
    pub(super) masters: Vec<String>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` answer. A node listed without a host (an empty or `?`
    /// endpoint) is on `asked_host`, the host the answer came from, as Redis means it.
    pub(super) fn parse(v: &Value, asked_host: &str) -> Result<SlotMap, String> {
        let Value::Array(entries) = v else {
            return Err(format!("CLUSTER SLOTS answered {v:?}, not a list"));
        };
        let int = |v: &Value| match v {
            Value::Int(i) => u16::try_from(*i).ok().filter(|s| *s < SLOTS),
            _ => None,
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        let mut ranges = Vec::with_capacity(entries.len());
        let mut masters: Vec<String> = Vec::new();
        for e in entries {
            let Value::Array(parts) = e else {
                return Err(format!("a CLUSTER SLOTS entry is {e:?}, not a list"));
            };
            let (Some(start), Some(end), Some(Value::Array(node))) = (
                parts.first().and_then(int),
                parts.get(1).and_then(int),
                parts.get(2),
            ) else {
                return Err(format!(
                    "a CLUSTER SLOTS entry without a range and a node: {parts:?}"
                ));
            };
            let host = node.first().and_then(text).unwrap_or_default();
            let port = match node.get(1) {
                Some(Value::Int(p)) => u16::try_from(*p).ok(),
                _ => None,
            }
            .ok_or_else(|| format!("a CLUSTER SLOTS node without a port: {node:?}"))?;
            let host = if host.is_empty() || host == "?" {
                asked_host.to_owned()
            } else {
                host
            };
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let at = match masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    masters.push(addr);
                    masters.len() - 1
                }
            };
            if start > end {
                return Err(format!("a CLUSTER SLOTS range {start}-{end} is backwards"));
            }
            ranges.push((start, end, at));
        }
        if ranges.is_empty() {
            return Err("CLUSTER SLOTS lists no slot: the cluster has none assigned yet".into());
        }
        ranges.sort_unstable();
        Ok(SlotMap { ranges, masters })
    }

    /// The master serving `slot`, if any serves it.
    pub(super) fn node_of(&self, slot: u16) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.0 <= slot);
        let (start, end, node) = *self.ranges.get(i.checked_sub(1)?)?;
        (start <= slot && slot <= end).then_some(node)
    }
}

/// A cluster's slot map and a connection to each of its masters.
#[derive(Clone)]
pub(super) struct Cluster {
    map: Arc<SlotMap>,
    conns: Arc<Vec<MultiplexedConnection>>,
}

impl Cluster {
    /// `conns` in the order of `map.masters`.
    pub(super) fn new(map: SlotMap, conns: Vec<MultiplexedConnection>) -> Cluster {
        debug_assert_eq!(map.masters.len(), conns.len());
        Cluster {
            map: Arc::new(map),
            conns: Arc::new(conns),
        }
    }

    /// A pipeline per master holding `keys` (`add` puts the command for key `i` in), with
    /// the indices it holds and its master's connection; an error when a slot has no master
    /// (the cluster is being set up or repaired).
    fn pipelines<'a>(
        &self,
        keys: impl Iterator<Item = &'a [u8]>,
        add: impl Fn(&mut redis::Pipeline, usize),
    ) -> RedisResult<Vec<(Vec<usize>, MultiplexedConnection, redis::Pipeline)>> {
        let mut per_node = vec![Vec::new(); self.conns.len()];
        for (i, k) in keys.enumerate() {
            let slot = key_slot(k);
            let node = self.map.node_of(slot).ok_or_else(|| {
                RedisError::from(std::io::Error::other(format!(
                    "no node serves slot {slot}: the cluster's slot map is incomplete"
                )))
            })?;
            per_node[node].push(i);
        }
        Ok(per_node
            .into_iter()
            .enumerate()
            .filter(|(_, idx)| !idx.is_empty())
            .map(|(node, idx)| {
                let mut pipe = redis::pipe();
                for &i in &idx {
                    add(&mut pipe, i);
                }
                (idx, self.conns[node].clone(), pipe)
            })
            .collect())
    }

    /// The values of `keys`, in their order: each master is sent a pipeline of `GET`s for
    /// its keys, all at once.
    pub(super) async fn get(&self, keys: &[String]) -> RedisResult<Vec<Option<Vec<u8>>>> {
        let pipes = self.pipelines(keys.iter().map(|k| k.as_bytes()), |p, i| {
            p.cmd("GET").arg(&keys[i]);
        })?;
        let calls = pipes.into_iter().map(|(idx, mut conn, pipe)| async move {
            let values: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
            Ok::<_, RedisError>((idx, values))
        });
        let mut out = vec![None; keys.len()];
        for r in futures::future::join_all(calls).await {
            let (idx, values) = r?;
            if values.len() != idx.len() {
                return Err(RedisError::from(std::io::Error::other(format!(
                    "{} GETs answered {} values",
                    idx.len(),
                    values.len()
                ))));
            }
            for (i, v) in idx.into_iter().zip(values) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Runs `SET key value PX ms` for each `(key, value, ms)`, a pipeline per master, all
    /// masters at once.
    pub(super) async fn set(&self, ops: &[(&str, &[u8], u64)]) -> RedisResult<()> {
        let pipes = self.pipelines(ops.iter().map(|o| o.0.as_bytes()), |p, i| {
            let (key, value, ms) = ops[i];
            p.cmd("SET").arg(key).arg(value).arg("PX").arg(ms).ignore();
        })?;
        let calls = pipes
            .into_iter()
            .map(|(_, mut conn, pipe)| async move { pipe.query_async::<()>(&mut conn).await });
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_slots() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b""), 0);
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn slot_maps_are_read_from_cluster_slots() {
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("10.0.0.2", 7001),
                node("10.0.0.5", 7004),
            ]),
            Value::Array(vec![Value::Int(0), Value::Int(5460), node("", 7000)]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("10.0.0.2", 7001),
            ]),
        ]);
        let m = SlotMap::parse(&v, "seed.example").unwrap();
        assert_eq!(m.masters, vec!["10.0.0.2:7001", "seed.example:7000"]);
        assert_eq!(m.node_of(0), Some(1));
        assert_eq!(m.node_of(5460), Some(1));
        assert_eq!(m.node_of(5461), Some(0));
        assert_eq!(m.node_of(16383), Some(0));

        let gap = Value::Array(vec![Value::Array(vec![
            Value::Int(100),
            Value::Int(200),
            node("a", 1),
        ])]);
        let m = SlotMap::parse(&gap, "x").unwrap();
        assert_eq!(m.node_of(99), None);
        assert_eq!(m.node_of(150), Some(0));
        assert_eq!(m.node_of(201), None);

        for bad in [
            Value::Nil,
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(99999),
                node("a", 1),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(9),
                Value::Int(1),
                node("a", 1),
            ])]),
            Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(1),
                Value::Array(vec![Value::BulkString(b"a".to_vec())]),
            ])]),
        ] {
            assert!(SlotMap::parse(&bad, "x").is_err(), "{bad:?}");
        }
    }
}
