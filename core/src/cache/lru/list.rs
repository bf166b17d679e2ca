//! [`List`]: which nodes are in use and in what order — the recency list,
//! the free list and the never-used tail — as links by index, apart from
//! the entries themselves.
//!
//! Keeping the links in their own array (4 bytes a node) leaves them dense:
//! a promotion touches the links of up to four nodes, and for a few
//! thousand nodes the whole array stays in the L1 cache.
//!
//! The invariants every method keeps, and the hot paths rely on:
//!
//! * every index held in a link, `head`, `tail` or `free` is [`NIL`] or
//!   `< fresh ≤ N`;
//! * the recency list runs from `head` (most recently used, `prev == NIL`)
//!   to `tail` (least recently used, `next == NIL`) and holds `len` nodes:
//!   exactly the occupied ones. So the only listed node whose `prev` is
//!   `NIL` is `head`; any other listed node has a predecessor;
//! * vacant nodes below `fresh` are on the free list (linked by `next`);
//!   nodes `fresh..N` have never been used and are on no list.

/// A node index. `NIL` marks "no node".
pub(super) type Idx = u16;
pub(super) const NIL: Idx = Idx::MAX;

/// The array position of node `i`, which must not be `NIL`.
///
/// For a power-of-two `N` the index is masked to `0..N`: the mask changes
/// nothing (`i < N` by the invariants) but proves the range to the
/// compiler, which then drops the bounds check of every array access. Other
/// capacities keep an ordinary checked index (a `% N` would cost more than
/// the check, and Cortex-M0 has no divider).
#[inline]
pub(super) fn slot<const N: usize>(i: Idx) -> usize {
    let i = usize::from(i);
    debug_assert!(i < N, "node index {i} out of range");
    if N.is_power_of_two() {
        i & (N - 1)
    } else {
        i
    }
}

/// A node's place in the recency list (or, vacant, in the free list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Links {
    /// Towards the most recently used end; `NIL` at the head.
    pub(super) prev: Idx,
    /// Towards the least recently used end; `NIL` at the tail. For a
    /// vacant node on the free list: the next free node.
    pub(super) next: Idx,
}

impl Links {
    pub(super) const NONE: Self = Self {
        prev: NIL,
        next: NIL,
    };
}

#[derive(Clone)]
pub(super) struct List<const N: usize> {
    pub(super) links: [Links; N],
    /// Most recently used.
    pub(super) head: Idx,
    /// Least recently used.
    pub(super) tail: Idx,
    /// Vacated nodes, linked through `next`.
    pub(super) free: Idx,
    /// Nodes `fresh..N` have never been used (and are on no list).
    pub(super) fresh: Idx,
    /// Nodes on the recency list.
    pub(super) len: Idx,
}

impl<const N: usize> List<N> {
    pub(super) const EMPTY: Self = Self {
        links: [Links::NONE; N],
        head: NIL,
        tail: NIL,
        free: NIL,
        fresh: 0,
        len: 0,
    };

    /// Writes [`EMPTY`](Self::EMPTY) into `this` link by link, never
    /// building the `4 × N`-byte value on the stack.
    ///
    /// # Safety
    ///
    /// * `this` is valid for writes of `Self` and aligned.
    #[cfg(feature = "alloc")]
    pub(super) unsafe fn init(this: *mut Self) {
        // SAFETY: (the caller's contract) every place lies inside `*this`;
        // an array of `N` links has room for `N` writes.
        unsafe {
            let links = core::ptr::addr_of_mut!((*this).links).cast::<Links>();
            for i in 0..N {
                links.add(i).write(Links::NONE);
            }
            core::ptr::addr_of_mut!((*this).head).write(NIL);
            core::ptr::addr_of_mut!((*this).tail).write(NIL);
            core::ptr::addr_of_mut!((*this).free).write(NIL);
            core::ptr::addr_of_mut!((*this).fresh).write(0);
            core::ptr::addr_of_mut!((*this).len).write(0);
        }
    }

    #[inline]
    pub(super) fn at(&self, i: Idx) -> &Links {
        &self.links[slot::<N>(i)]
    }

    #[inline]
    fn at_mut(&mut self, i: Idx) -> &mut Links {
        &mut self.links[slot::<N>(i)]
    }

    /// Sets the `prev` link of node `i`, or `tail` if `i` is `NIL`.
    ///
    /// `NIL` is out of range (`N ≤ NIL`), so the range check of the
    /// indexing is also the `NIL` test: one comparison, no separate
    /// bounds check, for every capacity.
    #[inline]
    fn set_prev(&mut self, i: Idx, prev: Idx) {
        match self.links.get_mut(usize::from(i)) {
            Some(links) => links.prev = prev,
            None => self.tail = prev,
        }
    }

    /// Sets the `next` link of node `i`, or `head` if `i` is `NIL` (see
    /// [`set_prev`](Self::set_prev)).
    #[inline]
    fn set_next(&mut self, i: Idx, next: Idx) {
        match self.links.get_mut(usize::from(i)) {
            Some(links) => links.next = next,
            None => self.head = next,
        }
    }

    /// Removes node `i` from the recency list.
    fn unlink(&mut self, i: Idx) {
        let Links { prev, next } = *self.at(i);
        self.set_next(prev, next);
        self.set_prev(next, prev);
    }

    /// Makes node `i` (on no list) the most recently used.
    fn push_front(&mut self, i: Idx) {
        let old = self.head;
        *self.at_mut(i) = Links {
            prev: NIL,
            next: old,
        };
        self.set_prev(old, i);
        self.head = i;
    }

    /// Makes node `i` (on the recency list) the most recently used.
    ///
    /// Nothing to do if it already is; otherwise it has a predecessor and
    /// the list has a head (see the invariants), so of the general unlink
    /// and push only the "is it the tail" test is left.
    #[inline]
    pub(super) fn promote(&mut self, i: Idx) {
        let head = self.head;
        if i == head {
            return;
        }
        let Links { prev, next } = *self.at(i);
        debug_assert!(prev != NIL && head != NIL, "node {i} is not listed");
        self.at_mut(prev).next = next;
        if next == NIL {
            self.tail = prev;
        } else {
            self.at_mut(next).prev = prev;
        }
        *self.at_mut(i) = Links {
            prev: NIL,
            next: head,
        };
        self.at_mut(head).prev = i;
        self.head = i;
    }

    /// Takes a node on no list (there must be one: `len < N`) and makes it
    /// the most recently used.
    pub(super) fn acquire(&mut self) -> Idx {
        let i = if self.free == NIL {
            let i = self.fresh;
            self.fresh += 1;
            i
        } else {
            let i = self.free;
            self.free = self.at(i).next;
            i
        };
        self.push_front(i);
        self.len += 1;
        i
    }

    /// Moves listed node `i` to the free list.
    pub(super) fn release(&mut self, i: Idx) {
        self.unlink(i);
        *self.at_mut(i) = Links {
            prev: NIL,
            next: self.free,
        };
        self.free = i;
        self.len -= 1;
    }
}
