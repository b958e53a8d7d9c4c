//! The in-process cache in front of a KV backend: LRU, bounded in bytes,
//! with a deadline per entry.
//!
//! Every method takes the current [`Instant`] from its caller, so the tests
//! drive a deterministic clock and the store passes `Instant::now()`.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::CacheStats;

/// What an entry costs besides its key and value bytes: the slot, the map's
/// bucket and the shared key's header. An estimate, so that a flood of
/// negative (empty) entries is bounded too.
pub(crate) const ENTRY_OVERHEAD: usize = 96;

/// Write-generation counters, one per stripe of the key space. A reader
/// notes its stripe's counter when it misses and fills only if no write
/// touched the stripe meanwhile; otherwise a value read before a write could
/// be cached after that write and outlive it.
const STRIPES: usize = 64;

const NIL: usize = usize::MAX;

/// The outcome of [`Cache::lookup`].
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup {
    /// A live entry: the value, or `None` for a cached absence.
    Hit(Option<Bytes>),
    /// Not cached; pass the stamp to [`Cache::fill`].
    Miss(u64),
}

struct Slot {
    key: Arc<[u8]>,
    value: Option<Bytes>,
    expires: Option<Instant>,
    prev: usize,
    next: usize,
}

impl Slot {
    fn cost(&self) -> usize {
        entry_cost(&self.key, self.value.as_ref())
    }
}

fn entry_cost(key: &[u8], value: Option<&Bytes>) -> usize {
    key.len() + value.map_or(0, Bytes::len) + ENTRY_OVERHEAD
}

/// An LRU map from encoded keys to values (or cached absences).
///
/// A doubly linked list threaded through a slab keeps every operation O(1):
/// `head` is the most recently used slot, `tail` the next to evict.
pub(crate) struct Cache {
    capacity: usize,
    bytes: usize,
    map: HashMap<Arc<[u8]>, usize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    stripes: [u64; STRIPES],
    hasher: RandomState,
    hits: u64,
    misses: u64,
}

impl Cache {
    /// An empty cache holding at most `capacity` bytes of entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            bytes: 0,
            map: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            stripes: [0; STRIPES],
            hasher: RandomState::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// Looks `key` up, counting a hit or a miss. An expired entry is dropped
    /// and counts as a miss.
    pub(crate) fn lookup(&mut self, key: &[u8], now: Instant) -> Lookup {
        if let Some(&index) = self.map.get(key) {
            if self.slots[index].expires.is_some_and(|at| at <= now) {
                self.remove_slot(index);
            } else {
                self.hits += 1;
                self.unlink(index);
                self.push_front(index);
                return Lookup::Hit(self.slots[index].value.clone());
            }
        }
        self.misses += 1;
        Lookup::Miss(self.stripes[self.stripe(key)])
    }

    /// Caches what a read that missed with `stamp` fetched, unless a write
    /// to the same stripe happened since (see [`STRIPES`]).
    pub(crate) fn fill(
        &mut self,
        key: &[u8],
        value: Option<Bytes>,
        expires: Option<Instant>,
        stamp: u64,
        now: Instant,
    ) {
        if self.stripes[self.stripe(key)] == stamp {
            self.insert(key, value, expires, now);
        }
    }

    /// Records the result of a write the caller has just committed, in
    /// commit order.
    pub(crate) fn store(
        &mut self,
        key: &[u8],
        value: Option<Bytes>,
        expires: Option<Instant>,
        now: Instant,
    ) {
        self.bump(key);
        self.insert(key, value, expires, now);
    }

    /// Forgets `key` after a write whose result is not known here.
    pub(crate) fn invalidate(&mut self, key: &[u8]) {
        self.bump(key);
        if let Some(&index) = self.map.get(key) {
            self.remove_slot(index);
        }
    }

    /// Counters and sizes.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.map.len(),
            bytes: self.bytes,
        }
    }

    fn stripe(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
    }

    fn bump(&mut self, key: &[u8]) {
        let stripe = self.stripe(key);
        self.stripes[stripe] = self.stripes[stripe].wrapping_add(1);
    }

    fn insert(&mut self, key: &[u8], value: Option<Bytes>, expires: Option<Instant>, now: Instant) {
        if let Some(&index) = self.map.get(key) {
            self.remove_slot(index);
        }
        if expires.is_some_and(|at| at <= now) || entry_cost(key, value.as_ref()) > self.capacity {
            return;
        }
        let key: Arc<[u8]> = Arc::from(key);
        let slot = Slot {
            key: Arc::clone(&key),
            value,
            expires,
            prev: NIL,
            next: NIL,
        };
        self.bytes += slot.cost();
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.map.insert(key, index);
        self.push_front(index);
        while self.bytes > self.capacity && self.tail != NIL {
            self.remove_slot(self.tail);
        }
    }

    fn remove_slot(&mut self, index: usize) {
        self.unlink(index);
        let slot = &mut self.slots[index];
        self.bytes -= slot.cost();
        self.map.remove(&slot.key);
        // Release the value's memory now; the slot itself is reused.
        slot.value = None;
        slot.key = Arc::from(&[][..]);
        self.free.push(index);
    }

    fn unlink(&mut self, index: usize) {
        let (prev, next) = (self.slots[index].prev, self.slots[index].next);
        match prev {
            NIL => self.head = next,
            prev => self.slots[prev].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.slots[next].prev = prev,
        }
        self.slots[index].prev = NIL;
        self.slots[index].next = NIL;
    }

    fn push_front(&mut self, index: usize) {
        self.slots[index].next = self.head;
        match self.head {
            NIL => self.tail = index,
            head => self.slots[head].prev = index,
        }
        self.head = index;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn value(text: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn fill(cache: &mut Cache, key: &[u8], v: Option<Bytes>, now: Instant) {
        let Lookup::Miss(stamp) = cache.lookup(key, now) else {
            panic!("{key:?} was already cached");
        };
        cache.fill(key, v, None, stamp, now);
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let now = Instant::now();
        // Room for exactly three one-byte entries with one-byte keys.
        let mut cache = Cache::new(3 * (2 + ENTRY_OVERHEAD));
        fill(&mut cache, b"a", value("1"), now);
        fill(&mut cache, b"b", value("2"), now);
        fill(&mut cache, b"c", value("3"), now);
        // Touch "a" so that "b" is now the least recently used.
        assert_eq!(cache.lookup(b"a", now), Lookup::Hit(value("1")));
        fill(&mut cache, b"d", value("4"), now);

        assert!(matches!(cache.lookup(b"b", now), Lookup::Miss(_)));
        assert_eq!(cache.lookup(b"a", now), Lookup::Hit(value("1")));
        assert_eq!(cache.lookup(b"c", now), Lookup::Hit(value("3")));
        assert_eq!(cache.lookup(b"d", now), Lookup::Hit(value("4")));
        assert_eq!(cache.stats().entries, 3);
    }

    #[test]
    fn stays_within_its_byte_bound() {
        let now = Instant::now();
        let capacity = 10_000;
        let mut cache = Cache::new(capacity);
        for i in 0..1_000u32 {
            let key = i.to_be_bytes();
            let v = Bytes::from(vec![0u8; (i % 200) as usize]);
            cache.store(&key, Some(v), None, now);
            let stats = cache.stats();
            assert!(stats.bytes <= capacity, "{} bytes cached", stats.bytes);
            assert_eq!(
                stats.bytes,
                cache.slots_in_use_cost(),
                "byte count drifted from the entries"
            );
        }
        // Negative entries are bounded by the same budget.
        for i in 0..1_000u32 {
            cache.store(&(i + 5_000).to_be_bytes(), None, None, now);
        }
        assert!(cache.stats().bytes <= capacity);
        assert_eq!(cache.stats().entries, capacity / (4 + ENTRY_OVERHEAD));
    }

    #[test]
    fn never_caches_an_entry_larger_than_the_whole_cache() {
        let now = Instant::now();
        let mut cache = Cache::new(200);
        cache.store(b"small", value("x"), None, now);
        cache.store(b"big", Some(Bytes::from(vec![0u8; 300])), None, now);
        assert!(matches!(cache.lookup(b"big", now), Lookup::Miss(_)));
        assert_eq!(cache.lookup(b"small", now), Lookup::Hit(value("x")));
    }

    #[test]
    fn entries_expire_at_their_deadline() {
        let start = Instant::now();
        let mut cache = Cache::new(1 << 20);
        let deadline = start + Duration::from_millis(200);
        cache.store(b"k", value("v"), Some(deadline), start);
        cache.store(b"forever", value("v"), None, start);

        let just_before = deadline - Duration::from_millis(1);
        assert_eq!(cache.lookup(b"k", just_before), Lookup::Hit(value("v")));
        assert!(matches!(cache.lookup(b"k", deadline), Lookup::Miss(_)));
        assert_eq!(cache.stats().entries, 1, "the expired entry was dropped");
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(
            cache.lookup(b"forever", much_later),
            Lookup::Hit(value("v"))
        );
        // Something already expired is not stored at all.
        cache.store(b"late", value("v"), Some(start), much_later);
        assert!(matches!(cache.lookup(b"late", much_later), Lookup::Miss(_)));
    }

    #[test]
    fn caches_absence() {
        let now = Instant::now();
        let mut cache = Cache::new(1 << 20);
        fill(&mut cache, b"missing", None, now);
        assert_eq!(cache.lookup(b"missing", now), Lookup::Hit(None));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
    }

    #[test]
    fn a_write_between_miss_and_fill_wins() {
        let now = Instant::now();
        let mut cache = Cache::new(1 << 20);
        let Lookup::Miss(stamp) = cache.lookup(b"k", now) else {
            panic!("empty cache hit");
        };
        // A writer commits and invalidates while the reader is fetching the
        // old value from the backend.
        cache.invalidate(b"k");
        cache.fill(b"k", value("old"), None, stamp, now);
        assert!(matches!(cache.lookup(b"k", now), Lookup::Miss(_)));

        let Lookup::Miss(stamp) = cache.lookup(b"k", now) else {
            panic!("invalidated entry hit");
        };
        cache.store(b"k", value("new"), None, now);
        cache.fill(b"k", value("old"), None, stamp, now);
        assert_eq!(cache.lookup(b"k", now), Lookup::Hit(value("new")));
    }

    #[test]
    fn replacing_and_invalidating_keep_the_list_consistent() {
        let now = Instant::now();
        let mut cache = Cache::new(1 << 20);
        for round in 0..3 {
            for i in 0..50u8 {
                cache.store(&[i], Some(Bytes::from(vec![round; i as usize])), None, now);
            }
            for i in (0..50u8).step_by(3) {
                cache.invalidate(&[i]);
            }
        }
        assert_eq!(cache.stats().entries, 50 - 17);
        assert_eq!(cache.stats().bytes, cache.slots_in_use_cost());
        let mut walked = 0;
        let mut index = cache.head;
        while index != NIL {
            walked += 1;
            index = cache.slots[index].next;
        }
        assert_eq!(walked, cache.stats().entries);
    }

    impl Cache {
        fn slots_in_use_cost(&self) -> usize {
            self.map
                .values()
                .map(|&index| self.slots[index].cost())
                .sum()
        }
    }
}
