//! Giving back the room a burst left in the core's tables (SPEC §7: memory after 1,000,000
//! calls is what it was after 10,000). A `HashMap`, `VecDeque` or `BinaryHeap` never shrinks
//! by itself: without this, every table would keep the capacity of its busiest moment, and
//! lingering transactions alone are the request rate times 32 s.
//!
//! The rule, for every table it is applied to: when its capacity is above twice [`FLOOR`] and
//! more than four times its length, it is shrunk to twice its length (at least [`FLOOR`]).
//! A table rounds its capacity up to less than twice what it is asked for, so after a
//! shrink the rule no longer holds: the length has to halve again first. Checking costs
//! O(1); a shrink costs O(capacity), paid for by the removals that made room, and a table
//! that swings between full and empty is not reallocated back and forth.
//!
//! Memory freed is not memory given back: glibc's allocator returns the top of its heap to
//! the OS, but not free pages below a block still in use, and a burst's transactions,
//! messages and tables are spread all over the heap. [`release_freed_memory`] asks it to
//! (`malloc_trim`), when the core has just freed much, and [`map_large_blocks`] keeps the
//! large tables out of the heap, so that the small blocks left behind do not pin it.
//! Chosen by measurement with `scripts/soak` (BENCHMARKS.md): together they bring the
//! resident size back to within a MiB of the start once a burst's transactions have ended
//! (14.7 MiB at the start, 15.0 after 1,000,000 calls). With mimalloc as the global allocator
//! sipscreen started 12 MiB higher and stayed 20 to 28 MiB above that after each batch of
//! calls; with jemalloc, which purges only as it is used again, 17 to 21 MiB above; and
//! both add a C library to every build (jemalloc's took minutes on two cores).

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

/// The room a table keeps however empty: it is small (about 1 MiB for all the transaction
/// tables), and giving it back would only mean growing again at the next call.
pub(super) const FLOOR: usize = 1024;

/// A table whose capacity can be given back.
pub(super) trait Shrink {
    /// (length, capacity).
    fn occupancy(&self) -> (usize, usize);
    fn shrink_capacity(&mut self, to: usize);
}

/// Applies the rule; returns whether the table was shrunk.
pub(super) fn shrink(table: &mut impl Shrink) -> bool {
    let (len, capacity) = table.occupancy();
    if capacity <= 2 * FLOOR || capacity <= 4 * len {
        return false;
    }
    table.shrink_capacity((2 * len).max(FLOOR));
    true
}

impl<K: Eq + Hash, V, S: BuildHasher> Shrink for HashMap<K, V, S> {
    fn occupancy(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_capacity(&mut self, to: usize) {
        self.shrink_to(to);
    }
}

impl<T> Shrink for VecDeque<T> {
    fn occupancy(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_capacity(&mut self, to: usize) {
        self.shrink_to(to);
    }
}

impl<T: Ord> Shrink for BinaryHeap<T> {
    fn occupancy(&self) -> (usize, usize) {
        (self.len(), self.capacity())
    }
    fn shrink_capacity(&mut self, to: usize) {
        self.shrink_to(to);
    }
}

/// Hands the free pages of the heap back to the OS. It walks the allocator's free lists,
/// so it is called only when much was freed (see [`super::table::Table::sweep`]): about once
/// per 32 s under a steady load, once per halving as the load falls, never per message.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn release_freed_memory() {
    extern "C" {
        /// glibc, `<malloc.h>`: releases free memory at the top of the heap and, since
        /// glibc 2.8, the free pages inside it (`madvise(MADV_DONTNEED)`); returns 1 if any
        /// was released.
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointer, touches only the allocator's own state under its
    // locks, and may be called from any thread at any time.
    unsafe {
        malloc_trim(0);
    }
}

/// Other C libraries' allocators give memory back by themselves (musl's) or have no such
/// call: nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn release_freed_memory() {}

/// Keeps every block of 128 KiB or more (the tables of a busy moment) out of glibc's heap,
/// in a mapping of its own that goes back to the OS when freed. By default glibc raises
/// that threshold each time such a block is freed (up to 32 MiB), after which a burst's
/// tables are carved out of the heap, the small allocations made meanwhile settle between
/// them, and once the tables are freed those small ones pin the pages around them: with
/// the default, 400,000 calls in `scripts/soak` left sipscreen 27.6 MiB resident once
/// quiet, against 11.4 after 100,000; with the threshold fixed, 12.5 and 12.6. Called once
/// per core; the setting is the process's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(super) fn map_large_blocks() {
    extern "C" {
        /// glibc, `<malloc.h>`: sets an allocator parameter; returns 1 on success.
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    /// `M_MMAP_THRESHOLD` in `<malloc.h>`.
    const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
    // SAFETY: mallopt takes no pointer and only sets a parameter of the allocator, under its
    // lock; blocks already allocated are not affected.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// See the glibc version: other allocators have no such setting to make.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(super) fn map_large_blocks() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mostly_empty_table_is_shrunk_to_twice_its_length_and_a_small_one_is_left() {
        let mut m: HashMap<u32, u32> = (0..100_000).map(|i| (i, i)).collect();
        assert!(!shrink(&mut m), "full: left as it is");
        m.retain(|k, _| *k < 30_000);
        assert!(!shrink(&mut m), "a third full: left as it is");
        m.retain(|k, _| *k < 5_000);
        assert!(shrink(&mut m));
        let c = m.capacity();
        assert!((10_000..4 * 5_000).contains(&c), "{c}");
        assert!(!shrink(&mut m), "not again until it has emptied again");
        m.clear();
        assert!(shrink(&mut m));
        let c = m.capacity();
        assert!((FLOOR..=2 * FLOOR).contains(&c), "{c}");
        assert!(!shrink(&mut m), "at the floor: not again");

        let mut q: VecDeque<u8> = VecDeque::with_capacity(1 << 20);
        q.push_back(1);
        assert!(shrink(&mut q));
        assert!(q.capacity() <= 2 * FLOOR, "{}", q.capacity());
        assert!(!shrink(&mut q));
        let mut h: BinaryHeap<u8> = BinaryHeap::with_capacity(1 << 20);
        assert!(shrink(&mut h));
        assert!(h.capacity() <= 2 * FLOOR, "{}", h.capacity());
        assert!(!shrink(&mut h));
    }
}
