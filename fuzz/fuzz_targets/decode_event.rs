//! Arbitrary bytes through the owned event decoder (typed and dynamic payloads)
//! and the streaming reader: `Ok` or `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbus::codec::{decode, Decoder, FrameReader, Limits};

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct Typed {
    user_id: String,
    email: String,
    name: Option<String>,
    n: Option<Vec<i64>>,
}

fuzz_target!(|data: &[u8]| {
    if let Ok((e, used)) = decode::<serde_json::Value>(data) {
        assert!(used <= data.len());
        // What decodes with the defaults decodes under looser limits too.
        let loose = Decoder::new(Limits::new().max_depth(100));
        assert_eq!(loose.decode::<serde_json::Value>(data).unwrap().0, e);
    }
    let _ = decode::<Typed>(data);
    let _ = decode::<Vec<u8>>(data);
    let _ = decode::<String>(data);

    // The same bytes as a stream, fed in two pieces.
    let mut r = FrameReader::new();
    let mid = data.len() / 2;
    r.feed(&data[..mid]);
    for _ in 0..4 {
        if !matches!(r.next_frame(), Ok(Some(_))) {
            break;
        }
    }
    r.feed(&data[mid..]);
    for _ in 0..data.len() + 1 {
        match r.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
