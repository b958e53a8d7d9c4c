//! The buffer behind `shanhai_alloc`: the host asks for `len` bytes,
//! writes the event's envelope there and passes the same pointer to
//! `shanhai_event`. Kept free of `unsafe` so it can be tested natively.

/// Buffers larger than this are released after their event instead of
/// being kept for the next one.
const RETAINED_CAPACITY: usize = 64 * 1024;

/// The envelope buffer of one instance.
#[derive(Debug, Default)]
pub(crate) struct InputBuffer {
    bytes: Vec<u8>,
}

impl InputBuffer {
    /// An empty buffer.
    pub(crate) const fn new() -> Self {
        Self { bytes: Vec::new() }
    }

    /// Makes room for `len` zeroed bytes and returns where they start, or
    /// `None` for a negative length or when memory cannot grow.
    pub(crate) fn alloc(&mut self, len: i32) -> Option<*mut u8> {
        let len = usize::try_from(len).ok()?;
        self.bytes.clear();
        self.bytes.try_reserve_exact(len).ok()?;
        self.bytes.resize(len, 0);
        Some(self.bytes.as_mut_ptr())
    }

    /// Takes the envelope the host wrote at `ptr..ptr+len`, which must lie
    /// at the start of the region [`alloc`](Self::alloc) returned; `None`
    /// for anything else.
    pub(crate) fn take(&mut self, ptr: *const u8, len: i32) -> Option<Vec<u8>> {
        let len = usize::try_from(len).ok()?;
        if len == 0 {
            return Some(Vec::new());
        }
        if ptr != self.bytes.as_ptr() || len > self.bytes.len() {
            return None;
        }
        let mut envelope = std::mem::take(&mut self.bytes);
        envelope.truncate(len);
        Some(envelope)
    }

    /// Returns a taken envelope's allocation for reuse by the next event,
    /// unless it is large.
    pub(crate) fn recycle(&mut self, mut envelope: Vec<u8>) {
        if envelope.capacity() <= RETAINED_CAPACITY && envelope.capacity() > self.bytes.capacity() {
            envelope.clear();
            self.bytes = envelope;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_then_take_returns_the_written_bytes() {
        let mut input = InputBuffer::new();
        let ptr = input.alloc(5).unwrap();
        // What the host does through the pointer, done safely here.
        input.bytes.copy_from_slice(b"hello");
        assert_eq!(input.take(ptr, 5).unwrap(), b"hello");
    }

    #[test]
    fn foreign_pointers_and_bad_lengths_are_refused() {
        let mut input = InputBuffer::new();
        let ptr = input.alloc(4).unwrap();
        let other = [0u8; 4];
        assert_eq!(input.take(other.as_ptr(), 4), None);
        assert_eq!(input.take(ptr, 5), None);
        assert_eq!(input.take(ptr, -1), None);
        assert_eq!(input.alloc(-1), None);
        assert_eq!(input.take(std::ptr::null(), 0), Some(Vec::new()));
    }

    #[test]
    fn small_buffers_are_reused_and_large_ones_released() {
        let mut input = InputBuffer::new();
        let ptr = input.alloc(16).unwrap();
        let envelope = input.take(ptr, 16).unwrap();
        input.recycle(envelope);
        assert!(input.bytes.capacity() >= 16);
        assert_eq!(input.alloc(8), Some(ptr));

        let big = i32::try_from(RETAINED_CAPACITY + 1).unwrap();
        let ptr = input.alloc(big).unwrap();
        let envelope = input.take(ptr, big).unwrap();
        input.recycle(envelope);
        assert!(input.bytes.capacity() <= RETAINED_CAPACITY);
    }
}
