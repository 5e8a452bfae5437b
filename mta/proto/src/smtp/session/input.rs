//! The session's input buffer.

/// Received bytes not processed yet. Consumed from the front by moving a
/// cursor: removing each line from the front of the buffer would copy the
/// rest of it every time, quadratic in the number of short lines. Compacted
/// when more input arrives, which copies only the unprocessed tail (at most a
/// partial line: [`Session::process`] consumes everything else).
#[derive(Default)]
pub(super) struct Input {
    buf: Vec<u8>,
    start: usize,
    /// Bytes moved within the buffer so far (tests check it stays linear).
    #[cfg(test)]
    pub(super) moved: usize,
}

impl Input {
    pub(super) fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            #[cfg(test)]
            {
                self.moved += self.buf.len() - self.start;
            }
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(super) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.clear();
        }
    }

    /// The next `n` bytes, consumed.
    pub(super) fn take(&mut self, n: usize) -> Vec<u8> {
        let taken = self.bytes()[..n].to_vec();
        self.consume(n);
        taken
    }

    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        // A burst of pipelined input must not pin its buffer for the
        // rest of the session.
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.start >= self.buf.len()
    }

    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.start
    }
}
