//! A small ISO BMFF box writer: length-prefixed boxes appended to one buffer.
//!
//! Boxes are written by closures so that every box that is opened is also
//! closed; the size field is patched when the closure returns. A box whose
//! size does not fit 32 bits is rewritten with the 64-bit `largesize` form, so
//! writing never fails and never panics.

use bytes::{BufMut, Bytes, BytesMut};

/// A FourCC box type.
pub type FourCc = [u8; 4];

/// Appends boxes and plain fields to one growing buffer.
#[derive(Debug, Default)]
pub struct BoxWriter {
    buf: BytesMut,
}

impl BoxWriter {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(capacity),
        }
    }

    /// Bytes written so far: the position the next byte goes to.
    pub fn position(&self) -> usize {
        self.buf.len()
    }

    /// A plain box: `size`, `type`, then whatever `body` writes.
    pub fn boxed(&mut self, kind: &FourCc, body: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        self.buf.put_u32(0);
        self.buf.put_slice(kind);
        body(self);
        self.close(start);
    }

    /// A full box: like [`BoxWriter::boxed`] with a version byte and 24 flag bits.
    pub fn full_box(
        &mut self,
        kind: &FourCc,
        version: u8,
        flags: u32,
        body: impl FnOnce(&mut Self),
    ) {
        self.boxed(kind, |w| {
            w.u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
            body(w);
        });
    }

    /// Patches the size of the box that starts at `start` and ends here.
    fn close(&mut self, start: usize) {
        self.close_with_limit(start, u32::MAX);
    }

    /// [`BoxWriter::close`] with the largest size still written in 32 bits as a
    /// parameter, so that the 64-bit form can be tested without 4 GiB buffers.
    fn close_with_limit(&mut self, start: usize, limit: u32) {
        let size = self.buf.len() - start;
        match u32::try_from(size) {
            Ok(size) if size <= limit => {
                self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes())
            }
            _ => {
                // size = 1 and a 64-bit largesize right after the type.
                let body = self.buf.split_off(start + 8);
                self.buf[start..start + 4].copy_from_slice(&1u32.to_be_bytes());
                self.buf.put_u64(size as u64 + 8);
                self.buf.unsplit(body);
            }
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.put_u16(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.put_i32(v);
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.put_slice(v);
    }

    pub fn zeros(&mut self, n: usize) {
        self.buf.put_bytes(0, n);
    }

    /// Overwrites four bytes written earlier (at `pos`, from the start of the buffer).
    /// Out-of-range positions are ignored.
    pub fn patch_u32(&mut self, pos: usize, v: u32) {
        if let Some(slot) = self.buf.get_mut(pos..pos.saturating_add(4)) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sizes_are_patched() {
        let mut w = BoxWriter::default();
        w.boxed(b"moov", |w| {
            w.full_box(b"mvhd", 1, 0x0102_0304, |w| w.u16(7));
            w.boxed(b"free", |_| {});
        });
        let b = w.finish();
        assert_eq!(
            &b[..],
            &[
                0, 0, 0, 30, b'm', b'o', b'o', b'v', // moov
                0, 0, 0, 14, b'm', b'v', b'h', b'd', 1, 2, 3, 4, 0, 7, // mvhd
                0, 0, 0, 8, b'f', b'r', b'e', b'e', // free
            ][..]
        );
    }

    #[test]
    fn oversized_box_uses_largesize() {
        let mut w = BoxWriter::default();
        w.u8(0xAA);
        w.buf.put_u32(0);
        w.buf.put_slice(b"mdat");
        w.bytes(&[1, 2, 3]);
        w.close_with_limit(1, 10);
        let b = w.finish();
        assert_eq!(
            &b[..],
            &[0xAA, 0, 0, 0, 1, b'm', b'd', b'a', b't', 0, 0, 0, 0, 0, 0, 0, 19, 1, 2, 3][..]
        );
    }

    #[test]
    fn patch() {
        let mut w = BoxWriter::default();
        w.bytes(&[0x0A, 0x0B, 0x0C]);
        w.u32(0);
        w.patch_u32(3, 0xDEADBEEF);
        w.patch_u32(5, 1); // out of range: ignored
        assert_eq!(&w.finish()[..], &[0x0A, 0x0B, 0x0C, 0xDE, 0xAD, 0xBE, 0xEF]);
    }
}
