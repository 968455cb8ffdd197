//! Reading a stream of concatenated frames: [`Frames`] over a byte slice, and
//! [`FrameReader`], which buffers input that arrives in pieces (files, sockets).

use std::io;

use super::batch::BatchRef;
use super::error::{DecodeError, FrameKind};
use super::event_ref::EventRef;
use super::frame::parse_header;
use super::Limits;

/// One decoded frame of a stream.
#[derive(Clone, Debug)]
pub enum Frame<'a> {
    /// An event frame.
    Event(EventRef<'a>),
    /// A batch frame.
    Batch(BatchRef<'a>),
}

impl Frame<'_> {
    /// Which kind of frame this is.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Event(_) => FrameKind::Event,
            Frame::Batch(_) => FrameKind::Batch,
        }
    }

    /// The number of events in the frame.
    pub fn len(&self) -> usize {
        match self {
            Frame::Event(_) => 1,
            Frame::Batch(b) => b.len(),
        }
    }

    /// Whether the frame holds no event (an empty batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the start of a buffer holds.
// Short-lived and returned by value; boxing the frame would allocate per frame.
#[allow(clippy::large_enum_variant)]
enum Next<'a> {
    /// A complete frame of this many bytes, decoded or not.
    Frame(usize, Result<Frame<'a>, DecodeError>),
    /// An incomplete frame: wait for more input.
    NeedMore,
}

/// Looks at the frame at the start of `bytes`. A header error is returned as
/// `Err` (the stream cannot be resynchronised past it); an error inside a
/// complete frame comes with the frame's length, so the caller can skip it.
fn next_frame<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Next<'a>, DecodeError> {
    let h = match parse_header(bytes, limits) {
        Ok(h) => h,
        Err(DecodeError::Truncated { .. }) => return Ok(Next::NeedMore),
        Err(e) => return Err(e),
    };
    let frame = &bytes[..h.frame_len];
    let decoded = match h.kind() {
        FrameKind::Event => EventRef::decode_with(frame, limits).map(|(e, _)| Frame::Event(e)),
        FrameKind::Batch => BatchRef::decode_with(frame, limits).map(|(b, _)| Frame::Batch(b)),
    };
    Ok(Next::Frame(h.frame_len, decoded))
}

/// An iterator over the frames of a byte slice holding concatenated frames.
///
/// It stops at the end of the slice or at an incomplete frame
/// ([`Frames::remainder`] is then that frame's beginning, to keep and complete).
/// An invalid frame of known length yields its error and the iteration goes on
/// after it; an invalid header (bad magic, unsupported version or flags, a frame
/// over the length limit) yields its error and ends the iteration.
///
/// ```
/// use ringbus::codec::{encode, Frames, Frame};
/// use ringbus::{event_type, source, Event};
///
/// let mut buf = Vec::new();
/// for i in 0..3 {
///     encode(&Event::new(event_type!("n"), source!("s"), i), &mut buf).unwrap();
/// }
/// let whole = buf.len();
/// buf.extend_from_slice(&buf[..5].to_vec()); // the start of a fourth frame
/// let mut frames = Frames::new(&buf);
/// let n = frames.by_ref().filter(|f| matches!(f, Ok(Frame::Event(_)))).count();
/// assert_eq!(n, 3);
/// assert_eq!(frames.remainder().len(), buf.len() - whole);
/// ```
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
    limits: Limits,
    done: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `bytes`, with the default [`Limits`].
    pub fn new(bytes: &'a [u8]) -> Self {
        Self::with_limits(bytes, Limits::DEFAULT)
    }

    /// Frames of `bytes`, under `limits`.
    pub fn with_limits(bytes: &'a [u8], limits: Limits) -> Self {
        Frames {
            rest: bytes,
            limits,
            done: false,
        }
    }

    /// The bytes not yet consumed: after the iteration ended, an incomplete last
    /// frame (or, after a header error, everything from the bad header on).
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        match next_frame(self.rest, &self.limits) {
            Ok(Next::Frame(len, r)) => {
                self.rest = &self.rest[len..];
                Some(r)
            }
            Ok(Next::NeedMore) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for Frames<'_> {}

/// A buffer that takes input in pieces and yields complete frames: feed it what a
/// socket or file returned, then take frames until it says it needs more.
///
/// A frame that is complete but invalid is consumed and its error returned; the
/// next call goes on with the next frame. An invalid header leaves no way to find
/// the next frame: the reader then returns that error on every call until
/// [`FrameReader::clear`].
///
/// The reader refuses a frame longer than [`Limits::max_frame_len`] as soon as
/// its header arrives, so it never buffers more than one frame plus one read
/// beyond that, if the caller reads in bounded pieces.
///
/// # Examples
/// ```
/// use ringbus::codec::{encode, Frame, FrameReader};
/// use ringbus::{event_type, source, Event};
///
/// let mut bytes = Vec::new();
/// for i in 0..3 {
///     encode(&Event::new(event_type!("n"), source!("s"), i), &mut bytes).unwrap();
/// }
/// let mut reader = FrameReader::new();
/// let mut seen = Vec::new();
/// for piece in bytes.chunks(7) {
///     reader.feed(piece);
///     while let Some(frame) = reader.next_frame().unwrap() {
///         if let Frame::Event(e) = frame {
///             seen.push(e.data::<i32>().unwrap());
///         }
///     }
/// }
/// assert_eq!(seen, [0, 1, 2]);
/// assert_eq!(reader.buffered(), 0);
/// ```
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`, in `0 ..= buf.len()`.
    pos: usize,
    limits: Limits,
    /// The header error that stopped the stream, if any.
    poisoned: Option<DecodeError>,
}

impl FrameReader {
    /// An empty reader with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::DEFAULT)
    }

    /// An empty reader with `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        FrameReader {
            buf: Vec::new(),
            pos: 0,
            limits,
            poisoned: None,
        }
    }

    /// Appends input.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Reads once from `src` (up to 64 KiB) into the buffer; returns the number
    /// of bytes read, 0 at end of input.
    pub fn read_from<R: io::Read + ?Sized>(&mut self, src: &mut R) -> io::Result<usize> {
        const CHUNK: usize = 64 * 1024;
        self.compact();
        let old = self.buf.len();
        self.buf.resize(old + CHUNK, 0);
        let r = src.read(&mut self.buf[old..]);
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        r
    }

    /// The next complete frame, `Ok(None)` if the buffer holds only part of one
    /// (feed more), or the error of an invalid frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        match next_frame(rest, &self.limits) {
            Ok(Next::NeedMore) => Ok(None),
            Ok(Next::Frame(len, r)) => {
                self.pos += len;
                r.map(Some)
            }
            Err(e) => {
                self.poisoned = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Drops everything buffered and any header error: start afresh.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.poisoned = None;
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}
