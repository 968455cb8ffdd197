//! Arbitrary bytes through the batch decoders: `Ok` or `Err`, never a panic, and
//! the owned and borrowed decoders agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbus::codec::{decode_batch, BatchRef};

fuzz_target!(|data: &[u8]| {
    let owned = decode_batch::<serde_json::Value>(data);
    match BatchRef::decode(data) {
        Ok((batch, used)) => {
            assert!(used <= data.len());
            assert_eq!(batch.iter().len(), batch.len());
            let views: Vec<_> = batch.iter().collect();
            assert_eq!(views.len(), batch.len());
            if let Ok((events, n)) = &owned {
                assert_eq!(*n, used);
                assert_eq!(events.len(), views.len());
                for (e, v) in events.iter().zip(&views) {
                    assert_eq!(e.id, v.id());
                    assert_eq!(e.event_type.name(), v.event_type());
                    assert_eq!(e.timestamp, v.timestamp());
                    assert_eq!(&e.data, &v.data::<serde_json::Value>().unwrap());
                }
            }
        }
        Err(_) => assert!(
            owned.is_err(),
            "owned batch decode accepted what BatchRef refused"
        ),
    }
});
