//! [`Index`]: the hash index from keys to nodes — `2 × N` bucket heads and
//! one `chain` link per node (separate chaining by node index).
//!
//! Two buckets per node keep the load factor at most ½: with keys used
//! uniformly, a lookup that hits compares 1¼ keys on average, one that
//! misses ½ (and finds an empty bucket 60 % of the time), for 2 more bytes
//! per entry than one bucket per node. New nodes are appended to their
//! chain (see [`Index::append`]), which helps skewed streams: on the
//! benchmarks' Zipf stream a `get` visits 1.03 nodes on average (callgrind),
//! against 1.35 when new nodes went to the front. Stable Rust cannot size
//! an array `2 * N`, so the heads are an `[[Idx; 2]; N]`, used flattened.
//!
//! The bucket is picked from the hash's upper 32 bits by a multiply-shift
//! (no division: Cortex-M0 has none); for a power-of-two `N` that folds
//! into a single shift. Keys are hashed by the owner ([`LruCache`]), whose
//! seeded hasher decides the buckets.
//!
//! [`LruCache`]: super::LruCache

use core::borrow::Borrow;

use super::list::{slot, Idx, NIL};
use super::Entry;

/// Bucket heads per node.
const BUCKETS_PER_NODE: usize = 2;

#[derive(Clone)]
pub(super) struct Index<const N: usize> {
    /// The first node of each bucket's chain, `BUCKETS_PER_NODE * N`
    /// buckets once flattened.
    pub(super) heads: [[Idx; BUCKETS_PER_NODE]; N],
    /// The next node in the same bucket; `NIL` for the last one, and for a
    /// node in no bucket.
    pub(super) chain: [Idx; N],
}

impl<const N: usize> Index<N> {
    pub(super) const EMPTY: Self = Self {
        heads: [[NIL; BUCKETS_PER_NODE]; N],
        chain: [NIL; N],
    };

    /// Writes [`EMPTY`](Self::EMPTY) into `this` head by head, never
    /// building the `6 × N`-byte value on the stack.
    ///
    /// # Safety
    ///
    /// * `this` is valid for writes of `Self` and aligned.
    #[cfg(feature = "alloc")]
    pub(super) unsafe fn init(this: *mut Self) {
        // SAFETY: (the caller's contract) every place lies inside `*this`;
        // arrays of `N` elements have room for `N` writes each.
        unsafe {
            let heads = core::ptr::addr_of_mut!((*this).heads).cast::<[Idx; BUCKETS_PER_NODE]>();
            let chain = core::ptr::addr_of_mut!((*this).chain).cast::<Idx>();
            for i in 0..N {
                heads.add(i).write([NIL; BUCKETS_PER_NODE]);
                chain.add(i).write(NIL);
            }
        }
    }

    /// The number of buckets.
    pub(super) const BUCKETS: usize = BUCKETS_PER_NODE * N;

    /// The bucket for `hash`: the upper 32 bits scaled to `0..BUCKETS`
    /// (`(h * B) >> 32 < B` for `h < 2^32`; `B ≤ 131 070` cannot overflow
    /// the product).
    #[inline]
    pub(super) fn bucket(hash: u64) -> usize {
        (((hash >> 32) * Self::BUCKETS as u64) >> 32) as usize
    }

    /// The first node of bucket `b`'s chain.
    #[inline]
    pub(super) fn first(&self, b: usize) -> Idx {
        self.heads.as_flattened()[b]
    }

    /// The node of bucket `b`'s chain whose entry holds `key`, and that
    /// entry.
    #[inline]
    pub(super) fn find<'e, K, V, Q>(
        &self,
        entries: &'e [Option<Entry<K, V>>; N],
        b: usize,
        key: &Q,
    ) -> Option<(Idx, &'e Entry<K, V>)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.search(entries, b, key).ok()
    }

    /// Like [`find`](Self::find), but a miss returns the last node of the
    /// chain (`NIL` if the bucket is empty), where [`append`](Self::append)
    /// adds a new node. Every chained node is occupied; the vacant case
    /// only makes the code total.
    #[inline]
    pub(super) fn search<'e, K, V, Q>(
        &self,
        entries: &'e [Option<Entry<K, V>>; N],
        b: usize,
        key: &Q,
    ) -> Result<(Idx, &'e Entry<K, V>), Idx>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut last = NIL;
        let mut i = self.first(b);
        // `NIL` is out of range (`N ≤ NIL`), so the range check that makes
        // the indexing safe is also the end-of-chain test: one comparison.
        while let Some(node) = entries.get(usize::from(i)) {
            if let Some(entry) = node {
                if entry.key.borrow() == key {
                    return Ok((i, entry));
                }
            }
            last = i;
            i = self.chain[usize::from(i)];
        }
        debug_assert_eq!(i, NIL, "chain link out of range");
        Err(last)
    }

    /// Adds node `i` (in no chain) to bucket `b` after `last`, the chain's
    /// last node (`NIL`: the bucket is empty).
    ///
    /// New nodes go to the end, so a chain runs from its oldest entries to
    /// its newest, and the entries an LRU cache keeps longest are the ones
    /// used most: lookups of hot keys tend to stop at the first node.
    pub(super) fn append(&mut self, b: usize, last: Idx, i: Idx) {
        self.chain[slot::<N>(i)] = NIL;
        if last == NIL {
            self.heads.as_flattened_mut()[b] = i;
        } else {
            self.chain[slot::<N>(last)] = i;
        }
    }

    /// Whether node `i` is in bucket `b`'s chain.
    pub(super) fn holds(&self, b: usize, i: Idx) -> bool {
        let mut j = self.first(b);
        while j != NIL {
            if j == i {
                return true;
            }
            j = self.chain[slot::<N>(j)];
        }
        false
    }

    /// Removes node `i` (which must be in some chain) from its chain:
    /// bucket `b`'s, where its key hashes, or, if that key's hash changed
    /// since it was stored (a logic error in its `Hash`), whichever chain
    /// holds it — a scan of every bucket, O(`N`), only then. So each node
    /// stays in exactly one chain, and every chain ends, whatever the
    /// keys' `Hash` does.
    pub(super) fn remove(&mut self, b: usize, i: Idx) {
        if !self.unlink(b, i) {
            self.unlink_anywhere(i);
        }
        self.chain[slot::<N>(i)] = NIL;
    }

    /// Takes node `i` out of whichever chain holds it: the one head or
    /// link that points at it (each node is in one chain, and a free
    /// node's link is `NIL`: `remove` clears it, as `Index::EMPTY` does).
    #[cold]
    #[inline(never)]
    fn unlink_anywhere(&mut self, i: Idx) {
        let after = self.chain[slot::<N>(i)];
        let pointers = self.heads.as_flattened_mut().iter_mut();
        if let Some(p) = pointers.chain(self.chain.iter_mut()).find(|p| **p == i) {
            *p = after;
        }
    }

    /// Takes node `i` out of bucket `b`'s chain if it is there.
    fn unlink(&mut self, b: usize, i: Idx) -> bool {
        let after = self.chain[slot::<N>(i)];
        let first = &mut self.heads.as_flattened_mut()[b];
        if *first == i {
            *first = after;
            return true;
        }
        let mut j = *first;
        while j != NIL {
            let next = &mut self.chain[slot::<N>(j)];
            if *next == i {
                *next = after;
                return true;
            }
            j = *next;
        }
        false
    }
}
