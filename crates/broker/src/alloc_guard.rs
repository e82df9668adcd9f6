//! The global allocator guard against hostile array counts in request decoding.
//!
//! # The hazard
//! `kafka-protocol` 0.18 decodes `Array` and `CompactArray` fields with
//! `Vec::with_capacity(n)` where `n` is the element count the *peer* declared, before reading a
//! single element. A 4-byte Metadata v0 body `7f ff ff ff` declares 2^31-1 topics; with a
//! ~70-byte element that is a ~150 GB request to the allocator, which fails and aborts the whole
//! process (`handle_alloc_error`). Any client could kill the broker with one frame. A flexible
//! version's compact array takes an unsigned varint up to 2^32-1, so the request can be larger.
//!
//! # The mitigation
//! We keep the crate (its codecs are correct and complete) and change what such a request costs.
//! This module is a [`GlobalAlloc`] that forwards every allocation to the system allocator,
//! except allocations of at least [`GUARD_THRESHOLD_BYTES`] (1 GiB). Those are served by an
//! anonymous private `mmap` with `MAP_NORESERVE`: the kernel hands out address space only, no
//! physical page and no commit charge until a page is touched. The decoder then tries to read
//! the first element, finds the bytes missing, returns an error, the `Vec` is dropped and the
//! mapping is unmapped. Cost: two syscalls; memory touched: none.
//!
//! The threshold is safe because no legitimate allocation in the broker comes near it:
//! requests are capped by `socket.request.max.bytes` (at most
//! [`crate::limits::REQUEST_BYTES_MAX_CEILING`], 512 MiB) before any buffer is allocated, and
//! decoded messages are at most a small multiple of the frame. Even if one did, it would still
//! be served correctly (an mmap is ordinary zeroed memory), only through a different path.
//!
//! # Why not something else
//! - Pre-validating counts against the remaining bytes needs a full schema walk per API and
//!   version: a second decoder, i.e. copying the crate's generated code. Rejected.
//! - Forking/vendoring the crate is excluded by the project rules.
//! - `catch_unwind` does not help: allocation failure aborts, it does not unwind.
//!
//! # Limits of the mitigation (documented, tested where possible)
//! - With `vm.overcommit_memory = 2` (strict accounting) Linux ignores `MAP_NORESERVE`; the
//!   mmap then fails and the process aborts as before. Run with the default heuristic mode 0
//!   or mode 1. A `RLIMIT_AS` below ~1 TiB has the same effect.
//! - Counts that fit below the threshold but whose elements decode from zero bytes would be
//!   *filled*, touching real memory; see `codec` tests for the element types checked.
//! - Amplification remains: a frame of N bytes of minimal elements decodes to roughly
//!   N/min_element_bytes * size_of::<Element>() bytes. `codec::NON_PRODUCE_REQUEST_BYTES_MAX` (1 MiB)
//!   bounds this for every API except Produce, whose large payload is zero-copy `Bytes`.
//!
//! This is the one module allowed `unsafe` code (`GlobalAlloc` is an unsafe trait).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Allocations at least this large are served reserve-only from `mmap(MAP_NORESERVE)`.
/// 1 GiB: twice the largest request frame the broker can be configured to accept
/// ([`crate::limits::REQUEST_BYTES_MAX_CEILING`]), so normal operation never reaches it.
pub const GUARD_THRESHOLD_BYTES: usize = 1 << 30;

/// Page size assumed for alignment: mmap returns page-aligned memory, and no Rust type in the
/// broker needs more than 4096-byte alignment.
const MMAP_ALIGN_MAX: usize = 4096;

static GUARDED_ALLOCATIONS_TOTAL: AtomicU64 = AtomicU64::new(0);
static GUARDED_BYTES_MAPPED: AtomicU64 = AtomicU64::new(0);

/// The broker's global allocator. See the module doc.
pub struct GuardedAllocator;

/// How many allocations were ever served by the guard (for tests and the stats log).
pub fn guarded_allocations_total() -> u64 {
    GUARDED_ALLOCATIONS_TOTAL.load(Ordering::Relaxed)
}

/// Bytes of address space currently reserved by the guard (should be 0 between requests).
pub fn guarded_bytes_mapped() -> u64 {
    GUARDED_BYTES_MAPPED.load(Ordering::Relaxed)
}

fn is_guarded(size: usize) -> bool {
    size >= GUARD_THRESHOLD_BYTES
}

/// Reserves `size` bytes of address space; null on failure (the caller then aborts, as for any
/// allocation failure).
fn map_reserve(layout: Layout) -> *mut u8 {
    if layout.align() > MMAP_ALIGN_MAX {
        return std::ptr::null_mut();
    }
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; we check
    // the MAP_FAILED result before using the pointer.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    GUARDED_ALLOCATIONS_TOTAL.fetch_add(1, Ordering::Relaxed);
    GUARDED_BYTES_MAPPED.fetch_add(layout.size() as u64, Ordering::Relaxed);
    ptr.cast()
}

/// # Safety
/// `ptr` must come from [`map_reserve`] with this same `size`.
unsafe fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: guaranteed by the caller: exactly the mapping we created.
    let rc = unsafe { libc::munmap(ptr.cast(), size) };
    // munmap of a mapping we own can only fail on a broken invariant; leaking address space
    // silently would hide it.
    assert_eq!(rc, 0, "munmap of a guarded allocation failed");
    GUARDED_BYTES_MAPPED.fetch_sub(size as u64, Ordering::Relaxed);
}

// SAFETY: every method routes by the layout's size, consistently: a block is mmap'd if and only
// if its size is >= GUARD_THRESHOLD_BYTES, and freed/reallocated by the same rule, so each block
// is always returned to the allocator that produced it. mmap memory is page aligned (we refuse
// larger alignments) and zero-filled, which satisfies `alloc_zeroed`.
unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_guarded(layout.size()) {
            map_reserve(layout)
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_guarded(layout.size()) {
            map_reserve(layout) // anonymous mappings are zero-filled
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_guarded(layout.size()) {
            // SAFETY: a block of this size was produced by map_reserve with the same size.
            unsafe { unmap(ptr, layout.size()) }
        } else {
            // SAFETY: a block of this size was produced by System.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_guarded = is_guarded(layout.size());
        let new_guarded = is_guarded(new_size);
        if !old_guarded && !new_guarded {
            // SAFETY: both sides are System blocks; caller's guarantees forwarded.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Crossing the threshold (or growing a guarded block): allocate by the new size's rule,
        // copy, free by the old size's rule. Rare by construction, so the copy does not matter.
        // SAFETY: new_size is non-zero and does not overflow isize when rounded (caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: valid non-zero layout.
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are valid for min(old, new) bytes and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

/// Resident set size of this process in bytes, from /proc/self/statm (Linux), for tests and
/// logs that prove a hostile request touched no memory.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// RSS is process-wide: other tests running in parallel in the same test binary (brokers,
/// logs, coordinators) can grow it by more than an RSS test's bound. An RSS test starts with
/// `if !measured_alone("module::tests::name") { return; }`: in the test binary's process it
/// re-runs that one test alone in a child process of the same binary and requires it to pass
/// (returning false); in the child it returns true and the measured body runs.
#[cfg(test)]
pub(crate) fn measured_alone(test: &str) -> bool {
    const CHILD: &str = "JOSEFINE_RSS_TEST_CHILD";
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary path"))
        .args([test, "--exact", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("test binary re-runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test}, run alone in a child process, did not pass:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_with_capacity_reserves_address_space_only() {
        if !measured_alone("alloc_guard::tests::huge_with_capacity_reserves_address_space_only") {
            return;
        }
        let before_total = guarded_allocations_total();
        let rss_before = resident_bytes().unwrap();
        {
            // 200 GiB: far more than this machine has; would abort under the System allocator.
            let v: Vec<[u8; 64]> = Vec::with_capacity((200usize << 30) / 64);
            assert!(v.capacity() >= (200usize << 30) / 64);
            assert!(guarded_allocations_total() > before_total);
        }
        let rss_after = resident_bytes().unwrap();
        assert!(
            rss_after < rss_before + (64 << 20),
            "RSS grew from {rss_before} to {rss_after} bytes"
        );
    }

    #[test]
    fn guarded_memory_is_usable_and_realloc_crosses_the_threshold_both_ways() {
        // Crossing the threshold copies the whole old block (GlobalAlloc::realloc's contract),
        // touching ~1 GiB: RSS-measuring tests run in child processes (`measured_alone`).
        let mut v: Vec<u8> = Vec::with_capacity(GUARD_THRESHOLD_BYTES - 16);
        v.extend_from_slice(b"hello");
        v.reserve(GUARD_THRESHOLD_BYTES); // grows past the threshold: System -> mmap, copied
        assert_eq!(&v[..], b"hello");
        v.push(b'!');
        v.shrink_to_fit(); // mmap -> System, copied
        assert_eq!(&v[..], b"hello!");
        let zeroed = vec![0u8; GUARD_THRESHOLD_BYTES];
        assert!(zeroed[GUARD_THRESHOLD_BYTES - 1] == 0 && zeroed[0] == 0);
    }
}
