//! Event ids (UUID v7) and timestamps, made without a syscall per event.
//!
//! An id is a UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then a
//! counter, then per-thread random bits. Each thread keeps its own generator
//! (seeded once, from the standard library's randomly keyed hasher), so making an id
//! costs a few arithmetic instructions — no `getrandom` per id, no shared atomic.
//! Within a thread ids are strictly increasing (RFC 9562 method 1, "fixed-length
//! dedicated counter"); across threads they are unique with overwhelming probability
//! (a 42-bit random counter start per millisecond plus 20 random bits fixed per
//! thread).
//!
//! # Two clocks
//! [`Timestamp::now`] reads the precise real-time clock (`clock_gettime(CLOCK_REALTIME)`
//! through the vDSO: nanoseconds, about 30 ns on a KVM guest). [`Event::new`]
//! (crate::Event::new) stamps events from the *coarse* real-time clock instead
//! ([`Timestamp::now_coarse`]: `CLOCK_REALTIME_COARSE`, the time of the kernel's last
//! tick, about 3 ns to read, resolution [`Timestamp::coarse_resolution`], 1–4 ms on
//! Linux): the clock read was 90 % of the cost of making an event. Within a thread
//! those stamps are made strictly increasing (a stamp that would not move forward is
//! the previous one plus 1 ns), so they order one producer's events like their ids.
//! On other platforms, and under Miri, the coarse clock is the precise one.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: nanoseconds since the Unix epoch, UTC.
///
/// Serialized in JSON as an RFC 3339 string with nanoseconds
/// (`"2024-05-01T12:00:00.123456789Z"`, what Go's `time.Time` produces); an integer
/// (nanoseconds) is accepted when deserializing too.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Now, read from the system clock.
    #[inline]
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(d.as_nanos() as u64)
    }

    /// Now, read from the coarse real-time clock: the time of the kernel's last tick
    /// (Linux `CLOCK_REALTIME_COARSE`), behind the precise clock by less than
    /// [`Timestamp::coarse_resolution`] and about ten times cheaper to read. Where
    /// there is no coarse clock it is [`Timestamp::now`].
    #[inline]
    pub fn now_coarse() -> Self {
        Timestamp(clock::coarse_nanos().unwrap_or_else(|| Self::now().0))
    }

    /// The resolution of [`Timestamp::now_coarse`] — the kernel's tick, 1 ms to 4 ms
    /// on Linux (`clock_getres(CLOCK_REALTIME_COARSE)`); 1 ns where the coarse clock
    /// is the precise one.
    pub fn coarse_resolution() -> Duration {
        clock::coarse_resolution().unwrap_or(Duration::from_nanos(1))
    }

    /// A timestamp `nanos` nanoseconds after the Unix epoch.
    #[inline]
    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    #[inline]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Milliseconds since the Unix epoch.
    #[inline]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }

    /// From a [`SystemTime`]; times before the epoch clamp to it and times after
    /// the year 2554 (the end of `u64` nanoseconds) clamp to that.
    pub fn from_system_time(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_rfc3339_nanos(self.to_system_time()), f)
    }
}

/// The unique id of an event: a time-ordered UUID (version 7).
///
/// # Examples
/// ```
/// use ringbus::EventId;
/// let a = EventId::new();
/// let b = EventId::new();
/// assert!(a < b); // strictly increasing within a thread
/// assert_eq!(a.as_uuid().get_version_num(), 7);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A new id for the current time.
    #[inline]
    pub fn new() -> Self {
        Self::at(Timestamp::now())
    }

    /// A new id whose time part is `ts` (to share one clock read between the id
    /// and the event's timestamp).
    #[inline]
    pub fn at(ts: Timestamp) -> Self {
        GENERATOR.with(|g| g.next(ts.as_millis()))
    }

    /// Wraps an existing UUID (of any version).
    #[inline]
    pub const fn from_uuid(uuid: uuid::Uuid) -> Self {
        EventId(uuid)
    }

    /// The UUID.
    #[inline]
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }

    /// The 16 bytes, big-endian (RFC 9562 byte order).
    #[inline]
    pub const fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    /// From 16 bytes, big-endian.
    #[inline]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        EventId(uuid::Uuid::from_bytes(bytes))
    }

    /// The nil id (all zeros).
    pub const fn nil() -> Self {
        EventId(uuid::Uuid::nil())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl serde::Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        uuid::Uuid::deserialize(d).map(EventId)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 UTC time or nanoseconds since the Unix epoch")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                u64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("timestamp before the Unix epoch"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                humantime::parse_rfc3339(v)
                    .map(Timestamp::from_system_time)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Per-thread UUID v7 generator state.
struct Generator {
    /// The last stamp [`Generator::stamp`] gave (nanoseconds since the epoch).
    last_stamp: Cell<u64>,
    /// The millisecond of the last id; ids never go back in time within a thread.
    last_ms: Cell<u64>,
    /// 42-bit counter: 12 bits in `rand_a`, 30 bits at the top of `rand_b`.
    counter: Cell<u64>,
    /// xorshift64* state, never zero.
    rng: Cell<u64>,
    /// 32 random bits fixed for this thread (the bottom of `rand_b`).
    tail: u32,
}

/// How far back the clock may step before [`Generator::stamp`] follows it back
/// rather than counting on from the last stamp: 1 s.
const STEP_BACK: u64 = 1_000_000_000;

const COUNTER_BITS: u32 = 42;
const COUNTER_MASK: u64 = (1 << COUNTER_BITS) - 1;

impl Generator {
    fn new() -> Self {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(Timestamp::now().as_nanos());
        let seed = h.finish() | 1;
        let g = Generator {
            last_stamp: Cell::new(0),
            last_ms: Cell::new(0),
            counter: Cell::new(0),
            rng: Cell::new(seed),
            tail: 0,
        };
        let tail = g.random() as u32;
        Generator { tail, ..g }
    }

    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A timestamp from the coarse clock, strictly after this thread's previous
    /// stamp, and an id carrying its millisecond.
    ///
    /// A stamp that would not move forward (same tick, or a clock stepped back by
    /// less than [`STEP_BACK`]) is the previous one plus 1 ns; after a larger step
    /// back the stamps follow the clock again (the ids stay increasing regardless:
    /// [`Generator::next`] never goes back in time).
    fn stamp(&self) -> (Timestamp, EventId) {
        self.stamp_at(Timestamp::now_coarse().0)
    }

    fn stamp_at(&self, now: u64) -> (Timestamp, EventId) {
        let last = self.last_stamp.get();
        let ts = if now > last || now.saturating_add(STEP_BACK) < last {
            now
        } else {
            last + 1
        };
        self.last_stamp.set(ts);
        (Timestamp(ts), self.next(ts / 1_000_000))
    }

    fn next(&self, now_ms: u64) -> EventId {
        let mut ms = self.last_ms.get();
        let counter;
        if now_ms > ms {
            ms = now_ms;
            // Start each millisecond at a random point in the lower half, leaving
            // room to count up without overflowing.
            counter = self.random() & (COUNTER_MASK >> 1);
        } else {
            let c = self.counter.get() + 1;
            if c > COUNTER_MASK {
                // 2^41+ ids in one millisecond: borrow the next millisecond.
                ms += 1;
                counter = self.random() & (COUNTER_MASK >> 1);
            } else {
                counter = c;
            }
        }
        self.last_ms.set(ms);
        self.counter.set(counter);

        let ms48 = ms & 0xFFFF_FFFF_FFFF;
        let rand_a = (counter >> 30) & 0xFFF; // 12 bits
        let high = (ms48 << 16) | (0x7 << 12) | rand_a;
        let rand_b = ((counter & 0x3FFF_FFFF) << 32) | u64::from(self.tail); // 62 bits used
        let low = (0b10 << 62) | (rand_b & 0x3FFF_FFFF_FFFF_FFFF);
        EventId(uuid::Uuid::from_u64_pair(high, low))
    }
}

thread_local! {
    static GENERATOR: Generator = Generator::new();
}

/// A coarse timestamp, strictly after the previous one this thread made, and an id
/// for it: what [`Event::new`](crate::Event::new) stamps events with.
#[inline]
pub(crate) fn stamp() -> (Timestamp, EventId) {
    GENERATOR.with(Generator::stamp)
}

/// The coarse real-time clock (Linux, not under Miri). Its one `unsafe` is the
/// foreign call: with `lseek` in `store/vfs.rs`, the crate's only ones outside
/// the ring.
#[cfg(all(target_os = "linux", not(miri)))]
#[allow(unsafe_code)]
mod clock {
    use std::time::Duration;

    fn read(
        id: libc::clockid_t,
        f: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
    ) -> Option<libc::timespec> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable `timespec` for the duration of the
        // call, which writes nothing else.
        let rc = unsafe { f(id, &mut ts) };
        (rc == 0).then_some(ts)
    }

    /// `CLOCK_REALTIME_COARSE` in nanoseconds since the epoch (`None` before the
    /// epoch or if the kernel has no such clock).
    #[inline]
    pub(super) fn coarse_nanos() -> Option<u64> {
        let ts = read(libc::CLOCK_REALTIME_COARSE, libc::clock_gettime)?;
        let secs = u64::try_from(ts.tv_sec).ok()?;
        Some(
            secs.wrapping_mul(1_000_000_000)
                .wrapping_add(ts.tv_nsec as u64),
        )
    }

    pub(super) fn coarse_resolution() -> Option<Duration> {
        let ts = read(libc::CLOCK_REALTIME_COARSE, libc::clock_getres)?;
        Some(Duration::new(
            u64::try_from(ts.tv_sec).ok()?,
            ts.tv_nsec as u32,
        ))
    }
}

/// No coarse clock here: [`Timestamp::now_coarse`] is the precise clock.
#[cfg(not(all(target_os = "linux", not(miri))))]
mod clock {
    use std::time::Duration;

    #[inline]
    pub(super) fn coarse_nanos() -> Option<u64> {
        None
    }

    pub(super) fn coarse_resolution() -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v7_and_increasing() {
        let mut prev = EventId::new();
        for _ in 0..10_000 {
            let id = EventId::new();
            assert!(id > prev);
            assert_eq!(id.as_uuid().get_version_num(), 7);
            assert_eq!(id.as_uuid().get_variant(), uuid::Variant::RFC4122);
            prev = id;
        }
    }

    #[test]
    fn id_carries_the_timestamp_millis() {
        let ts = Timestamp::from_nanos(1_700_000_000_123_456_789);
        let id = EventId::at(ts);
        let (secs, nanos) = id.as_uuid().get_timestamp().unwrap().to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, ts.as_millis());
    }

    #[test]
    fn stamps_increase_within_a_thread_and_ids_carry_their_millisecond() {
        let (mut prev_ts, mut prev_id) = stamp();
        for _ in 0..100_000 {
            let (ts, id) = stamp();
            assert!(ts > prev_ts, "{ts:?} after {prev_ts:?}");
            assert!(id > prev_id);
            let (secs, nanos) = id.as_uuid().get_timestamp().unwrap().to_unix();
            assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, ts.as_millis());
            (prev_ts, prev_id) = (ts, id);
        }
    }

    #[test]
    fn stamps_count_on_within_a_tick_and_follow_a_large_step_back() {
        let g = Generator::new();
        let t0 = 1_700_000_000_000_000_000;
        assert_eq!(g.stamp_at(t0).0.as_nanos(), t0);
        // Same tick: 1 ns on.
        assert_eq!(g.stamp_at(t0).0.as_nanos(), t0 + 1);
        assert_eq!(g.stamp_at(t0).0.as_nanos(), t0 + 2);
        // The next tick.
        assert_eq!(g.stamp_at(t0 + 4_000_000).0.as_nanos(), t0 + 4_000_000);
        // A small step back (NTP): still forward.
        assert_eq!(g.stamp_at(t0).0.as_nanos(), t0 + 4_000_001);
        // A step back by more than a second: the clock again; ids still increase.
        let (before_ts, before_id) = g.stamp_at(t0 + 4_000_000);
        let (ts, id) = g.stamp_at(t0 - 5_000_000_000);
        assert_eq!(ts.as_nanos(), t0 - 5_000_000_000);
        assert!(ts < before_ts);
        assert!(id > before_id);
    }

    #[test]
    fn the_coarse_clock_is_never_ahead_of_the_precise_one() {
        for _ in 0..1000 {
            let coarse = Timestamp::now_coarse();
            let precise = Timestamp::now();
            assert!(coarse <= precise, "{coarse} after {precise}");
            // Behind by at most its resolution (plus a generous allowance for this
            // thread being descheduled between the two reads).
            let behind = Duration::from_nanos(precise.as_nanos() - coarse.as_nanos());
            assert!(behind < Timestamp::coarse_resolution() + Duration::from_secs(1));
        }
        assert!(Timestamp::coarse_resolution() >= Duration::from_nanos(1));
    }

    #[test]
    fn timestamp_rfc3339() {
        let ts = Timestamp::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(ts.to_string(), "2023-11-14T22:13:20.123456789Z");
        let back: Timestamp = serde_json::from_str("\"2023-11-14T22:13:20.123456789Z\"").unwrap();
        assert_eq!(back, ts);
        let int: Timestamp = serde_json::from_str("1700000000123456789").unwrap();
        assert_eq!(int, ts);
    }
}
