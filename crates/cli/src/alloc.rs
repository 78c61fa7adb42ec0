//! The process's allocator: mimalloc (per-thread free lists, no arena
//! trimming; glibc's allocator cost about a seventh of the edge's
//! user-space instructions per request and shrank its heaps with an
//! `mprotect` every few requests).
//!
//! The `mimalloc` crate's own `GlobalAlloc` asks for every block through
//! mimalloc's aligned entry points, which check the alignment, and the
//! block's, before they reach the same free list. Nearly every Rust
//! allocation needs no more alignment than any block of its size has, as
//! for C's `malloc` (16 bytes from 16 bytes up), so those go to `mi_malloc`
//! directly; only the rest take the aligned path. The function worker (this
//! same program) and its isolates, whose engine allocates through Rust's
//! allocator, use it too.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment of every block of at least this many bytes from
/// `mi_malloc` (mimalloc's `MI_MAX_ALIGN_SIZE`, `max_align_t` on x86-64 and
/// aarch64); a smaller block is aligned to its size rounded to a word.
const PLAIN_ALIGN: usize = 16;

/// Whether a block of `size` bytes from `mi_malloc` is aligned for `align`.
fn plain(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

pub(crate) struct Mimalloc;

// SAFETY: every method returns what mimalloc returned for a request of the
// layout's size and at least its alignment (`plain` holds only where
// mi_malloc's blocks are aligned enough; otherwise the aligned entry points
// are used), or null when mimalloc has no memory. Blocks from either kind
// of entry point may be freed and reallocated by `mi_free`/`mi_realloc*`,
// which mimalloc documents; `dealloc` and `realloc` receive only pointers
// this allocator returned, as `GlobalAlloc` guarantees.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls taking a size (and an alignment, a power
        // of two as `Layout` guarantees).
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if plain(layout.size(), layout.align()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (GlobalAlloc's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new
        // block keeps the alignment, as `alloc` would give it.
        unsafe {
            if plain(new_size, layout.align()) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_asked_for() {
        // Every size and alignment pair around the plain path's edges,
        // through the allocator itself (it is the test binary's too).
        let a = Mimalloc;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [
                1usize, 2, 3, 7, 8, 9, 15, 16, 17, 24, 31, 48, 100, 1000, 70_000,
            ] {
                let layout = Layout::from_size_align(size, align).expect("a layout");
                // SAFETY: a non-zero size; each block is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alloc({size}, {align})");
                    p.write_bytes(0xa5, size);
                    let q = a.realloc(p, layout, size * 3);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc({size}, {align})");
                    assert_eq!(*q.add(size - 1), 0xa5, "realloc kept the bytes");
                    let grown = Layout::from_size_align(size * 3, align).expect("a layout");
                    a.dealloc(q, grown);
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "alloc_zeroed({size}, {align})");
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
