//! A server-side cache of hot reads (`GET /v1/policies/{id}`), checked against the store on
//! every use, so a read after a committed change never returns the old version.
//!
//! Building a policy's detail reads its current version's record and its claims; checking
//! an entry reads one small stamp (the policy's version and its claims' versions and times),
//! which every change moves. The stamp is read before the detail, so an entry is never
//! newer-stamped than its content: a change between the two reads makes the next check
//! miss and rebuild.
//!
//! Entries hold the unscoped detail; scope is applied to what leaves the cache, the same
//! rule the store's queries apply (carrier, and book by producer).

use carrierhub_store::{PolicyDetail, Scope, Store, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

struct Entry {
    stamp: String,
    detail: Arc<PolicyDetail>,
}

struct Entries {
    map: HashMap<i64, Entry>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<i64>,
}

/// The cache; cheap to clone.
#[derive(Clone)]
pub struct ReadCache {
    entries: Arc<Mutex<Entries>>,
    capacity: usize,
}

impl ReadCache {
    /// A cache of at most `capacity` policies; 0 turns it off.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                order: VecDeque::new(),
            })),
            capacity,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Policy `id` as `scope` sees it: from the cache when its stamp is current, else read.
    pub async fn policy(
        &self,
        store: &dyn Store,
        id: i64,
        scope: &Scope,
    ) -> Result<Option<Arc<PolicyDetail>>, StoreError> {
        if !self.is_enabled() {
            return Ok(store.get_policy(id, scope).await?.map(Arc::new));
        }
        let Some(stamp) = store.policy_stamp(id).await? else {
            return Ok(None);
        };
        let cached = {
            let entries = self.entries.lock().expect("cache lock");
            entries
                .map
                .get(&id)
                .filter(|e| e.stamp == stamp)
                .map(|e| e.detail.clone())
        };
        let detail = match cached {
            Some(detail) => {
                metrics::counter!("carrierhub_cache_requests_total", "cache" => "policy", "outcome" => "hit").increment(1);
                detail
            }
            None => {
                metrics::counter!("carrierhub_cache_requests_total", "cache" => "policy", "outcome" => "miss").increment(1);
                let Some(detail) = store.get_policy(id, &Scope::all()).await? else {
                    return Ok(None);
                };
                let detail = Arc::new(detail);
                self.insert(id, stamp, detail.clone());
                detail
            }
        };
        let visible = scope.allows_carrier(&detail.summary.carrier)
            && scope.allows_book(detail.summary.producer.as_deref());
        Ok(visible.then_some(detail))
    }

    fn insert(&self, id: i64, stamp: String, detail: Arc<PolicyDetail>) {
        let mut entries = self.entries.lock().expect("cache lock");
        if entries.map.insert(id, Entry { stamp, detail }).is_none() {
            entries.order.push_back(id);
        }
        while entries.map.len() > self.capacity {
            match entries.order.pop_front() {
                Some(oldest) => {
                    entries.map.remove(&oldest);
                }
                None => break,
            }
        }
    }
}
