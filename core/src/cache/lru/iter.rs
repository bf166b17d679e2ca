//! [`Iter`]: the entries of an [`LruCache`] in recency order.
//!
//! [`LruCache`]: super::LruCache

use core::fmt;
use core::iter::FusedIterator;

use super::list::Links;
use super::{Entry, Idx};

/// The entries of an [`LruCache`] from most to least recently used; from
/// [`LruCache::iter`]. Double-ended and exact-size.
///
/// [`LruCache`]: super::LruCache
/// [`LruCache::iter`]: super::LruCache::iter
///
/// # Examples
///
/// ```
/// use fusebox::LruCache;
///
/// let mut cache: LruCache<u8, u8, 4> = LruCache::new();
/// for k in 1..=4 {
///     cache.put(k, k * 10);
/// }
/// let mut it = cache.iter();
/// assert_eq!(it.next(), Some((&4, &40)));       // most recent
/// assert_eq!(it.next_back(), Some((&1, &10)));  // least recent
/// assert_eq!(it.len(), 2);
/// ```
pub struct Iter<'a, K, V> {
    pub(super) links: &'a [Links],
    pub(super) entries: &'a [Option<Entry<K, V>>],
    pub(super) front: Idx,
    pub(super) back: Idx,
    pub(super) len: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.len == 0 {
            return None;
        }
        let i = usize::from(self.front);
        let entry = self.entries.get(i)?.as_ref()?;
        self.len -= 1;
        self.front = self.links.get(i)?.next;
        Some((&entry.key, &entry.value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.len == 0 {
            return None;
        }
        let i = usize::from(self.back);
        let entry = self.entries.get(i)?.as_ref()?;
        self.len -= 1;
        self.back = self.links.get(i)?.prev;
        Some((&entry.key, &entry.value))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Self {
            links: self.links,
            entries: self.entries,
            front: self.front,
            back: self.back,
            len: self.len,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}
