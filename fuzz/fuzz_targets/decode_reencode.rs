//! Whatever decodes re-encodes, and decodes to the same event: single frames and
//! batches, with the default encoder and with checksum and JSON options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbus::codec::{decode, decode_batch, ContentType, Encoder};

fuzz_target!(|data: &[u8]| {
    let encoders = [
        Encoder::new(),
        // An unknown even tag (4 is the store position, FORMAT.md §5).
        Encoder::new().checksum(true).extension(6, b"x"),
    ];
    if let Ok((e, _)) = decode::<serde_json::Value>(data) {
        for enc in &encoders {
            let mut buf = Vec::new();
            enc.encode(&e, &mut buf)
                .expect("a decoded event re-encodes");
            let (again, n) = decode::<serde_json::Value>(&buf).expect("and decodes");
            assert_eq!(n, buf.len());
            assert_eq!(again, e);
        }
        // JSON holds every decoded value too, but may read floats back one ULP
        // off; check the envelope only.
        let mut buf = Vec::new();
        if Encoder::new()
            .content_type(ContentType::JSON)
            .encode(&e, &mut buf)
            .is_ok()
        {
            let (again, _) = decode::<serde_json::Value>(&buf).expect("JSON re-decodes");
            assert_eq!(
                (again.id, again.event_type, again.timestamp),
                (e.id, e.event_type, e.timestamp)
            );
        }
    }
    if let Ok((events, _)) = decode_batch::<serde_json::Value>(data) {
        for enc in &encoders {
            let mut buf = Vec::new();
            enc.encode_batch(&events, &mut buf)
                .expect("a decoded batch re-encodes");
            let (again, n) = decode_batch::<serde_json::Value>(&buf).expect("and decodes");
            assert_eq!(n, buf.len());
            assert_eq!(again, events);
        }
    }
});
