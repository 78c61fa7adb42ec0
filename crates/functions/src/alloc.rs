//! The isolate's allocator: Rust's allocator (through rquickjs's
//! `RustAllocator`) with a byte budget. It enforces the memory limit itself,
//! so it knows exactly when an allocation was refused (QuickJS cannot always
//! even build its "out of memory" error then) and what is in use (without
//! walking the heap).

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rquickjs::allocator::{Allocator, RustAllocator};

/// What an isolate's allocator reports.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    refused: AtomicBool,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
        })
    }

    /// Bytes currently allocated by the engine.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether an allocation was refused since the last [`Budget::reset_refused`].
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    pub(crate) fn reset_refused(&self) {
        self.refused.store(false, Ordering::Relaxed);
    }

    /// Counts `bytes` the engine does not allocate itself but holds for
    /// JavaScript (a quick `Response`'s fields, in Rust), if they fit under
    /// the limit; false (a refusal, as the allocator's) if not.
    pub(crate) fn charge(&self, bytes: usize) -> bool {
        if !self.fits(bytes) {
            return false;
        }
        self.used.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    /// Counts `bytes` whether or not they fit (the invocation's own request
    /// and context, which it must get): past the limit, that is recorded
    /// as a refusal, so the isolate is not kept.
    pub(crate) fn charge_anyway(&self, bytes: usize) {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed);
        if used.saturating_add(bytes) > self.limit {
            self.refused.store(true, Ordering::Relaxed);
        }
    }

    /// Gives back bytes counted by [`Budget::charge`].
    pub(crate) fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Reserves `size` more bytes, or records a refusal.
    fn fits(&self, size: usize) -> bool {
        if self.used().saturating_add(size) > self.limit {
            self.refused.store(true, Ordering::Relaxed);
            false
        } else {
            true
        }
    }
}

pub(crate) struct LimitedAllocator {
    inner: RustAllocator,
    budget: Arc<Budget>,
}

impl LimitedAllocator {
    pub(crate) fn new(budget: Arc<Budget>) -> LimitedAllocator {
        LimitedAllocator {
            inner: RustAllocator,
            budget,
        }
    }
}

// SAFETY: every method delegates to `RustAllocator`, which implements the
// contract (pointers it returns carry their size in a header, `usable_size`
// and `dealloc` accept exactly the pointers it returned); this wrapper only
// refuses some requests (returning null, which QuickJS handles as out of
// memory) and keeps a byte count. Null pointers and zero sizes, which
// `RustAllocator` does not expect in `dealloc`/`realloc`, are handled here.
unsafe impl Allocator for LimitedAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.budget.fits(size) {
            return std::ptr::null_mut();
        }
        let ptr = self.inner.alloc(size);
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by `RustAllocator::alloc`.
            let usable = unsafe { RustAllocator::usable_size(ptr) };
            self.budget.used.fetch_add(usable, Ordering::Relaxed);
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        // `RustAllocator::calloc` panics on overflow: refuse instead.
        let Some(total) = count.checked_mul(size) else {
            return std::ptr::null_mut();
        };
        if total == 0 || !self.budget.fits(total) {
            return std::ptr::null_mut();
        }
        let ptr = self.inner.calloc(count, size);
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by `RustAllocator::calloc`.
            let usable = unsafe { RustAllocator::usable_size(ptr) };
            self.budget.used.fetch_add(usable, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: QuickJS frees only pointers this allocator returned, which
        // came from `RustAllocator`.
        let usable = unsafe { RustAllocator::usable_size(ptr) };
        self.budget.used.fetch_sub(usable, Ordering::Relaxed);
        // SAFETY: as above; the pointer is not used after this.
        unsafe { self.inner.dealloc(ptr) }
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.alloc(new_size);
        }
        if new_size == 0 {
            // SAFETY: `ptr` came from this allocator (see `dealloc`).
            unsafe { self.dealloc(ptr) };
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from this allocator, hence from `RustAllocator`.
        let old = unsafe { RustAllocator::usable_size(ptr) };
        if new_size > old && !self.budget.fits(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `RustAllocator`; on failure it stays valid
        // and owned by QuickJS, as with C's realloc.
        let new = unsafe { self.inner.realloc(ptr, new_size) };
        if !new.is_null() {
            // SAFETY: `new` was just returned by `RustAllocator::realloc`.
            let usable = unsafe { RustAllocator::usable_size(new) };
            self.budget.used.fetch_sub(old, Ordering::Relaxed);
            self.budget.used.fetch_add(usable, Ordering::Relaxed);
        }
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: QuickJS asks only about pointers this allocator returned.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
