//! Arbitrary bytes through the borrowed view and its on-demand payload decoding;
//! the view and the owned decoder agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbus::codec::{decode, DecodeError, EventRef, Frames};
use ringbus::NameError;

fuzz_target!(|data: &[u8]| {
    let owned = decode::<serde_json::Value>(data);
    match EventRef::decode(data) {
        Ok((v, used)) => {
            assert!(used <= data.len());
            let _ = v.extensions().count();
            let _ = v.to_event_raw();
            let _ = v.lookup_event_type();
            let _ = v.data::<Vec<u8>>();
            match (v.data::<serde_json::Value>(), &owned) {
                (Ok(d), Ok((e, n))) => {
                    assert_eq!(*n, used);
                    assert_eq!(&e.data, &d);
                    assert_eq!(e.id, v.id());
                    assert_eq!(e.event_type.name(), v.event_type());
                    assert_eq!(e.source.name(), v.source());
                    assert_eq!(e.subject.as_ref().map(|s| s.as_str()), v.subject());
                }
                (Err(a), Err(b)) => assert_eq!(&a, b),
                // Names are interned only by the owned decoder: once the
                // process-wide table is full, new names fail there alone.
                (
                    Ok(_),
                    Err(DecodeError::InvalidName {
                        error: NameError::TooManyNames,
                        ..
                    }),
                ) => {}
                (a, b) => panic!("view payload {a:?} but owned decode {b:?}"),
            }
        }
        Err(e) => assert_eq!(owned.unwrap_err(), e),
    }
    for f in Frames::new(data).take(64) {
        let _ = f;
    }
});
