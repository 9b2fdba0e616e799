//! Cutting a results file's byte stream into lines with bounded memory, with the byte offsets a
//! checkpoint needs to resume exactly after a line.

/// Longest prefix of an over-long line kept on [`Line::bytes`], enough to recover a leading key.
pub const TOO_LONG_PREFIX: usize = 1024;

/// A buffer grown past this (by a long line) is shrunk again once it is mostly empty.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// One line cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based physical line number (blank lines are counted but never emitted).
    pub number: u64,
    /// The line without its `\n` / `\r\n`; for a too-long line, at most [`TOO_LONG_PREFIX`] bytes
    /// of its beginning.
    pub bytes: Vec<u8>,
    /// Absolute offset just past this line's `\n`: resuming there continues with the next line.
    pub end_offset: u64,
    /// The line exceeded `max_line_bytes` and was skipped.
    pub too_long: bool,
}

/// Splits a byte stream into lines with memory bounded by `max_line_bytes` plus one chunk.
///
/// Usage: `push` a chunk, drain `next_line` until `None`, repeat; at the end drain `finish`.
/// Blank (whitespace-only) lines advance the line count and offsets but are not emitted.
#[derive(Debug)]
pub struct LineSplitter {
    /// Unconsumed bytes; `buf[0]` is at absolute offset `base`.
    buf: Vec<u8>,
    base: u64,
    /// Where the current line starts in `buf`.
    start: usize,
    /// `buf[start..scanned]` holds no `\n` (so it is never rescanned).
    scanned: usize,
    /// While skipping an over-long line: the prefix kept for it.
    discarding: Option<Vec<u8>>,
    lines: u64,
    max: usize,
}

impl LineSplitter {
    /// Starts at absolute `start_offset`, where `start_line` lines have already been consumed (a
    /// fresh file is `new(0, 0, max)`; resume with a checkpoint's `(end_offset, number)`).
    pub fn new(start_offset: u64, start_line: u64, max_line_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            base: start_offset,
            start: 0,
            scanned: 0,
            discarding: None,
            lines: start_line,
            max: max_line_bytes.max(1),
        }
    }

    /// Appends a chunk. Call [`Self::next_line`] until `None` before pushing again.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.scanned -= self.start;
            self.start = 0;
        }
        // After a very long line, give its memory back instead of keeping it for good.
        if self.buf.capacity() > SHRINK_ABOVE && self.buf.capacity() > 4 * self.buf.len() {
            self.buf.shrink_to(self.buf.len().max(chunk.len()) * 2);
        }
        self.buf.extend_from_slice(chunk);
        if !self.buf[self.scanned..].contains(&b'\n') {
            self.scanned = self.buf.len();
            self.bound_partial();
        }
    }

    /// The next complete, non-blank line, if one is buffered.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = self.buf.len();
                self.bound_partial();
                return None;
            };
            let nl = self.scanned + pos;
            let (start, end_offset) = (self.start, self.base + nl as u64 + 1);
            self.start = nl + 1;
            self.scanned = self.start;
            self.lines += 1;
            if let Some(prefix) = self.discarding.take() {
                return Some(self.too_long(prefix, end_offset));
            }
            if let Some(line) = self.complete(start, nl, end_offset) {
                return Some(line);
            }
        }
    }

    /// At end of stream: the next buffered line, then the trailing line without `\n`. Call until
    /// `None`.
    pub fn finish(&mut self) -> Option<Line> {
        if let Some(line) = self.next_line() {
            return Some(line);
        }
        let end = self.buf.len();
        let end_offset = self.base + end as u64;
        let start = self.start;
        let prefix = self.discarding.take();
        if prefix.is_none() && start == end {
            return None;
        }
        self.lines += 1;
        self.start = end;
        self.scanned = end;
        match prefix {
            Some(p) => Some(self.too_long(p, end_offset)),
            None => self.complete(start, end, end_offset),
        }
    }

    /// Absolute offset of everything consumed so far (after the last emitted or skipped line).
    pub fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Bytes the buffer has room for (memory tests).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Lines consumed so far, blank ones included.
    pub fn line_count(&self) -> u64 {
        self.lines
    }

    /// A finished line `buf[start..end]`: `None` if blank.
    fn complete(&self, start: usize, end: usize, end_offset: u64) -> Option<Line> {
        let mut bytes = &self.buf[start..end];
        if let Some(b) = bytes.strip_suffix(b"\r") {
            bytes = b;
        }
        // Length first, so an over-long blank line is judged the same whatever the chunking.
        if bytes.len() > self.max {
            let keep = bytes.len().min(self.prefix_len());
            return Some(self.too_long(bytes[..keep].to_vec(), end_offset));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(Line {
            number: self.lines,
            bytes: bytes.to_vec(),
            end_offset,
            too_long: false,
        })
    }

    fn too_long(&self, prefix: Vec<u8>, end_offset: u64) -> Line {
        Line {
            number: self.lines,
            bytes: prefix,
            end_offset,
            too_long: true,
        }
    }

    fn prefix_len(&self) -> usize {
        self.max.min(TOO_LONG_PREFIX)
    }

    /// Drops the unfinished line once it cannot fit (one extra byte allowed for a `\r`).
    fn bound_partial(&mut self) {
        let partial = self.buf.len() - self.start;
        if self.discarding.is_none() && partial > self.max + 1 {
            let keep = self.prefix_len();
            self.discarding = Some(self.buf[self.start..self.start + keep].to_vec());
        }
        if self.discarding.is_some() {
            self.base += self.buf.len() as u64;
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        }
    }
}
