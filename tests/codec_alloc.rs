//! Allocation counts of the codec, measured with a counting global allocator (in
//! its own test binary: the allocator is global to the binary).

mod codec_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use codec_support::*;
use ringbus::codec::{decode, encode, encode_batch, BatchRef, Encoder, EventRef};
use serde_json::Value;

struct Counting;

thread_local! {
    /// Allocations and bytes allocated by this thread while counting is on.
    static COUNT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

// SAFETY: delegates to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNT.try_with(|c| {
            if let Some((n, bytes)) = c.get() {
                c.set(Some((n + 1, bytes + layout.size())));
            }
        });
        // SAFETY: the caller's duties for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = COUNT.try_with(|c| {
            if let Some((n, bytes)) = c.get() {
                c.set(Some((n + 1, bytes + new_size)));
            }
        });
        // SAFETY: the caller's duties for `realloc` are passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the allocations (count, bytes) it made
/// on this thread.
fn counting<T>(f: impl FnOnce() -> T) -> (T, (usize, usize)) {
    COUNT.with(|c| c.set(Some((0, 0))));
    let r = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap();
    (r, n)
}

#[test]
fn the_counter_counts() {
    let (v, (n, bytes)) = counting(|| vec![0u8; 100]);
    assert_eq!((n, bytes), (1, 100));
    drop(v);
}

#[test]
fn event_ref_decoding_allocates_nothing() {
    let mut frames = Vec::new();
    encode(&user_registered(), &mut frames).unwrap();
    let single_len = frames.len();
    everything_encoder()
        .encode(&everything(), &mut frames)
        .unwrap();
    let mut batch = Vec::new();
    encode_batch(&three_events(), &mut batch).unwrap();
    // Warm up: thread-locals, the name table.
    let _ = EventRef::decode(&frames).unwrap();

    let (seen, (n, bytes)) = counting(|| {
        let mut seen = 0;
        let (a, used) = EventRef::decode(&frames).unwrap();
        assert_eq!(used, single_len);
        let (b, _) = EventRef::decode(&frames[used..]).unwrap();
        seen += usize::from(a.event_type() == "user.registered");
        seen += usize::from(b.subject() == Some("k"));
        seen += b.extensions().count();
        let (batch, _) = BatchRef::decode(&batch).unwrap();
        for v in &batch {
            seen += usize::from(!v.payload().is_empty());
        }
        seen
    });
    assert_eq!(seen, 6);
    assert_eq!((n, bytes), (0, 0), "EventRef/BatchRef decoding allocated");
}

#[test]
fn encoding_into_a_buffer_with_room_allocates_nothing() {
    let e = user_registered();
    let all = everything();
    let enc = everything_encoder();
    let mut buf = Vec::with_capacity(4096);
    encode(&e, &mut buf).unwrap(); // warm up the name caches
    buf.clear();
    let ptr = buf.as_ptr();
    let (_, (n, _)) = counting(|| {
        for _ in 0..10 {
            encode(&e, &mut buf).unwrap();
            enc.encode(&all, &mut buf).unwrap();
        }
    });
    assert_eq!(n, 0, "encode allocated with capacity to spare");
    assert_eq!(buf.as_ptr(), ptr);
    // The dynamic payload, too.
    let dynamic = e.clone().map(|d| serde_json::to_value(d).unwrap());
    buf.clear();
    let (_, (n, _)) = counting(|| Encoder::new().encode(&dynamic, &mut buf).unwrap());
    assert_eq!(n, 0);
}

#[test]
fn hostile_inputs_allocate_a_small_multiple_of_their_length() {
    // Short inputs that declare huge things: lengths, counts, collections.
    let mut body = vec![0u8; 16];
    body.extend_from_slice(&[1, b'a', 1, b's']);
    body.extend_from_slice(&[0; 8]);
    body.push(1);
    body.push(1); // MessagePack
    let with_payload = |payload: &[u8]| {
        let mut b = body.clone();
        b.push(payload.len() as u8);
        b.extend_from_slice(payload);
        let mut f = vec![0xeb, 0x52, 0x01, 0x00, b.len() as u8];
        f.extend_from_slice(&b);
        f
    };
    let inputs = [
        with_payload(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]), // array of 2^32-1
        with_payload(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0]), // map of 2^32-1
        with_payload(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']), // str of 2^32-1
        with_payload(&[0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f, 0x9f]), // arrays of 15
        with_payload(&[
            0xdc, 0x00, 0x08, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0,
        ]),
        vec![0xeb, 0x52, 0x01, 0x20, 0x05, 0xff, 0xff, 0xff, 0xff, 0x0f], // batch count
        vec![0xeb, 0x52, 0x01, 0x20, 0x04, 0x00, 0xff, 0xff, 0x03],       // dictionary size
    ];
    for input in inputs {
        let _ = decode::<Value>(&input); // warm up thread-locals
        let (_, (_, bytes)) = counting(|| {
            let _ = decode::<Value>(&input);
            let _ = decode::<Vec<Vec<u64>>>(&input);
            let _ = ringbus::codec::decode_batch::<Value>(&input);
        });
        // Error messages and the decoded values themselves: bounded by a small
        // multiple of the input, never by the lengths it declares.
        assert!(
            bytes <= 64 * input.len() + 1024,
            "{bytes} bytes allocated decoding {} bytes: {input:02x?}",
            input.len()
        );
    }
}
