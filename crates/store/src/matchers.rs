//! `--matcher-cache-size`: the store's compiled regex matchers, kept by their text.
//!
//! Dashboards send the same selectors again and again, and a regex matcher built from a
//! multi-value variable (`instance=~"a|b|c|…"`, hundreds of alternatives) costs far more to
//! compile and analyse than to look up. Only regex matchers are kept: an equality matcher is
//! as cheap to build as to find. At most `capacity` are kept; the oldest goes first. A
//! cached matcher is cloned out cheaply (its compiled form is shared).

use std::collections::VecDeque;
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use strata_model::Matcher;
use strata_storepb::convert::{ConvertError, matcher_to_model, matchers_to_model};
use strata_storepb::thanos::{LabelMatcher, label_matcher};

type Key = (i32, String, String);

#[derive(Debug, Default)]
struct Inner {
    map: FxHashMap<Key, Matcher>,
    order: VecDeque<Key>,
    hits: u64,
}

/// Compiled regex matchers by `(type, name, value)`; capacity 0 keeps none.
#[derive(Debug)]
pub struct MatcherCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl MatcherCache {
    pub fn new(capacity: usize) -> Self {
        MatcherCache {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The request's matchers as model matchers, regex ones from the cache when there.
    pub fn convert(&self, ms: &[LabelMatcher]) -> Result<Vec<Matcher>, ConvertError> {
        if self.capacity == 0 {
            return matchers_to_model(ms);
        }
        let mut out = Vec::with_capacity(ms.len());
        for m in ms {
            let regex = m.r#type == label_matcher::Type::Re as i32
                || m.r#type == label_matcher::Type::Nre as i32;
            if !regex {
                out.push(matcher_to_model(m)?);
                continue;
            }
            let key = (m.r#type, m.name.clone(), m.value.clone());
            if let Some(hit) = {
                let mut g = self.lock();
                let hit = g.map.get(&key).cloned();
                g.hits += u64::from(hit.is_some());
                hit
            } {
                out.push(hit);
                continue;
            }
            // Compiled outside the lock: a large pattern takes a while.
            let built = matcher_to_model(m)?;
            let mut g = self.lock();
            if !g.map.contains_key(&key) {
                while g.map.len() >= self.capacity {
                    let Some(old) = g.order.pop_front() else {
                        break;
                    };
                    g.map.remove(&old);
                }
                g.order.push_back(key.clone());
                g.map.insert(key, built.clone());
            }
            out.push(built);
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Matchers kept.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lookups answered from the cache so far.
    pub fn hits(&self) -> u64 {
        self.lock().hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storepb::convert::label_matcher as lm;

    #[test]
    fn regex_matchers_are_kept_up_to_the_capacity_and_answer_the_same() {
        let re = |v: &str| lm(label_matcher::Type::Re, "instance", v);
        let eq = lm(label_matcher::Type::Eq, "job", "api");
        let c = MatcherCache::new(2);
        let a = c.convert(&[eq.clone(), re("a|b")]).unwrap();
        let b = c.convert(&[eq.clone(), re("a|b")]).unwrap();
        assert_eq!(
            (c.len(), c.hits()),
            (1, 1),
            "the equality matcher is not kept"
        );
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.to_string(), y.to_string());
            for v in ["a", "b", "c", "api", ""] {
                assert_eq!(x.matches(v), y.matches(v), "{x} {v}");
            }
        }
        c.convert(&[re("c.*")]).unwrap();
        c.convert(&[re("d+")]).unwrap();
        assert_eq!(c.len(), 2, "the oldest went");
        c.convert(&[re("a|b")]).unwrap();
        assert_eq!(c.hits(), 1, "a|b was evicted");
        // A bad pattern is an error, cached or not, and is not kept.
        assert!(c.convert(&[re("(")]).is_err());
        assert!(MatcherCache::new(0).convert(&[re("(")]).is_err());
        let none = MatcherCache::new(0);
        none.convert(&[re("a|b")]).unwrap();
        assert!(none.is_empty());
    }
}
