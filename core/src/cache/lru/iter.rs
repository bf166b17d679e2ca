//! [`Iter`]: the entries of an [`LruCache`] in recency order.

use core::fmt;
use core::iter::FusedIterator;

use super::{Idx, LruCache, Node};

/// The entries of an [`LruCache`] from most to least recently used; from
/// [`LruCache::iter`]. Double-ended and exact-size.
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
    pub(super) nodes: &'a [Node<K, V>],
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
        let node = self.nodes.get(usize::from(self.front))?;
        self.len -= 1;
        self.front = node.next;
        node.entry.as_ref().map(|e| (&e.key, &e.value))
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
        let node = self.nodes.get(usize::from(self.back))?;
        self.len -= 1;
        self.back = node.prev;
        node.entry.as_ref().map(|e| (&e.key, &e.value))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Self {
            nodes: self.nodes,
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

// The documented size, checked by every build, the thumb targets included.
const _: () = assert!(core::mem::size_of::<LruCache<u32, u32, 32>>() == 1_160);
const _: () = assert!(core::mem::size_of::<Node<u32, u32>>() == 32);
