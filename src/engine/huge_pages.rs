//! Transparent huge pages for the indexes. A lookup touches a random spot
//! of tables tens of MiB large; with 4 KiB pages nearly every touch also
//! misses the TLB.

use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};

const HUGE_PAGE: usize = 2 << 20;

/// Asks for transparent huge pages on the whole 2 MiB pages inside
/// `[ptr, ptr + len)`. Asked before the memory is first touched, the kernel
/// backs it with huge pages from the start.
pub fn advise(ptr: *const u8, len: usize) {
    let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
    let end = (ptr as usize + len) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        // SAFETY: advisory only, on memory this process allocated; it
        // changes no contents. A refusal just leaves small pages.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// The global allocator, asking for huge pages on large blocks.
#[derive(Clone, Copy, Default)]
pub struct HugePages;

// SAFETY: every block comes from and goes back to `Global` unchanged.
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = Global.allocate(layout)?;
        advise(block.as_ptr() as *const u8, block.len());
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller passes a block `allocate` gave out, as `Global` requires.
        unsafe { Global.deallocate(ptr, layout) }
    }
}
