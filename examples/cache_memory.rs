//! Measures the heap taken by the verified-token cache per entry:
//! `cargo run --release --example cache_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use jwt_guard::cache::TokenCache;
use jwt_guard::claims::Identity;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    for entries in [1024usize, 10_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut cache = TokenCache::new(entries);
        for i in 0..entries {
            // A Better Auth user id is 32 characters.
            let user = format!("{i:032}");
            let identity = Identity {
                user,
                expires: Some(2e9),
                not_before: None,
            };
            // A Better Auth token for "Ada Lovelace" (EdDSA, default payload) was 598
            // bytes in tests/betterauth; the cache keeps the whole token.
            cache.insert(&format!("{i:0600}"), identity);
        }
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "{entries} entries (600-byte tokens, 32-byte user ids): {bytes} bytes, {} bytes \
             per entry",
            bytes / entries
        );
        drop(cache);
    }
}
