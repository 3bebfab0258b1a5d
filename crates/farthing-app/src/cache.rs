//! What the service keeps in memory from the store, dropped when it changes.
//!
//! A [`NewsCache`] holds values read from the store until news says they changed: a change made
//! through this instance (after its commit), or one another instance on a shared database
//! announced (`farthing_store::instances`). While news could go unheard (a listener is away),
//! the cache is not trusted: every caller reads the store, and nothing read then is kept.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Values by key, read through on a miss.
///
/// A value read while the cache was told to forget is not kept: every forgetting raises a
/// generation, and a value is kept only if the generation is the one its read began in. So a
/// read that saw the store just before a change never outlives the news of that change.
pub(crate) struct NewsCache<K, V> {
    entries: Mutex<HashMap<K, V>>,
    /// Raised (under the entries' lock) by every forgetting.
    generation: AtomicU64,
    /// Set while news of changes may be missed: nothing is used or kept.
    untrusted: AtomicBool,
    /// Entries kept at most; past it the cache starts again empty (memory stays bounded
    /// whatever the number of keys).
    limit: usize,
}

impl<K: Eq + Hash, V: Clone> NewsCache<K, V> {
    /// An empty, trusted cache of at most `limit` entries.
    pub(crate) fn new(limit: usize) -> Self {
        NewsCache {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            untrusted: AtomicBool::new(false),
            limit,
        }
    }

    /// The value of `key`: from memory, or from `read` (kept when nothing was forgotten
    /// meanwhile and the cache is trusted).
    pub(crate) fn get_or_read<E>(
        &self,
        key: K,
        read: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if self.untrusted.load(Ordering::Acquire) {
            return read();
        }
        let generation = {
            let entries = self.lock();
            if let Some(value) = entries.get(&key) {
                return Ok(value.clone());
            }
            self.generation.load(Ordering::Acquire)
        };
        let value = read()?;
        let mut entries = self.lock();
        if self.generation.load(Ordering::Acquire) == generation
            && !self.untrusted.load(Ordering::Acquire)
        {
            if entries.len() >= self.limit {
                entries.clear();
            }
            entries.insert(key, value.clone());
        }
        Ok(value)
    }

    /// Drops `key`'s value, and keeps no value whose read is under way.
    pub(crate) fn forget(&self, key: &K) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key);
    }

    /// Drops every value, and keeps none whose read is under way.
    pub(crate) fn forget_all(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// Whether values may be used and kept. Call [`NewsCache::forget_all`] before trusting
    /// the cache again: what changed while it was untrusted is unknown.
    pub(crate) fn trust(&self, trusted: bool) {
        self.untrusted.store(!trusted, Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, V>> {
        // Each change of the map is one insert, removal or clear: a panic elsewhere while the
        // lock was held leaves it consistent, so a poisoned lock is still safe to use.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::NewsCache;
    use std::convert::Infallible;

    fn read(value: u32) -> impl FnOnce() -> Result<u32, Infallible> {
        move || Ok(value)
    }

    fn get(cache: &NewsCache<&'static str, u32>, key: &'static str, value: u32) -> u32 {
        match cache.get_or_read(key, read(value)) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }

    #[test]
    fn a_value_is_read_once_and_kept_until_forgotten() {
        let cache = NewsCache::new(10);
        assert_eq!(get(&cache, "a", 1), 1);
        assert_eq!(get(&cache, "a", 2), 1, "kept from the first read");
        assert_eq!(get(&cache, "b", 3), 3);
        cache.forget(&"a");
        assert_eq!(get(&cache, "a", 4), 4, "read again after forgetting");
        assert_eq!(get(&cache, "b", 5), 3, "another key is kept");
        cache.forget_all();
        assert_eq!(get(&cache, "b", 6), 6);
    }

    #[test]
    fn a_read_that_a_forgetting_overtook_is_not_kept() {
        let cache = NewsCache::new(10);
        // The read saw the store before a change whose news came while it ran.
        let stale = cache.get_or_read("a", || {
            cache.forget(&"a");
            Ok::<_, Infallible>(1)
        });
        assert_eq!(stale, Ok(1), "the caller gets what it read");
        assert_eq!(get(&cache, "a", 2), 2, "but it was not kept");
        // Forgetting another key also keeps the read out (the generation is the cache's).
        let _ = cache.get_or_read("c", || {
            cache.forget(&"b");
            Ok::<_, Infallible>(7)
        });
        assert_eq!(get(&cache, "c", 8), 8);
    }

    #[test]
    fn an_untrusted_cache_neither_answers_nor_keeps() {
        let cache = NewsCache::new(10);
        assert_eq!(get(&cache, "a", 1), 1);
        cache.trust(false);
        assert_eq!(get(&cache, "a", 2), 2, "not answered from memory");
        assert_eq!(get(&cache, "b", 3), 3);
        cache.forget_all();
        cache.trust(true);
        assert_eq!(get(&cache, "b", 4), 4, "nothing was kept while untrusted");
        assert_eq!(get(&cache, "b", 5), 4);
        // A read that began trusted and ended untrusted is not kept either.
        let _ = cache.get_or_read("d", || {
            cache.trust(false);
            Ok::<_, Infallible>(9)
        });
        cache.trust(true);
        assert_eq!(get(&cache, "d", 10), 10);
    }

    #[test]
    fn the_cache_stays_within_its_limit() {
        let cache = NewsCache::new(2);
        get(&cache, "a", 1);
        get(&cache, "b", 2);
        get(&cache, "c", 3);
        assert!(cache.lock().len() <= 2);
        assert_eq!(get(&cache, "c", 4), 3);
    }

    #[test]
    fn a_failed_read_keeps_nothing() {
        let cache: NewsCache<&str, u32> = NewsCache::new(10);
        assert_eq!(cache.get_or_read("a", || Err("down")), Err("down"));
        assert_eq!(cache.get_or_read("a", || Ok::<_, &str>(1)), Ok(1));
    }
}
