//! A small MSB-first bit reader for codec headers (H.265 SPS, AAC ASC).

use super::CodecError;

/// Removes the emulation-prevention bytes (`00 00 03` → `00 00`) of a NAL unit payload.
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0usize;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    pub(crate) fn bits_left(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    pub(crate) fn bit(&mut self, what: &'static str) -> Result<bool, CodecError> {
        Ok(self.bits(1, what)? == 1)
    }

    /// Reads `n` (at most 32) bits as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32, what: &'static str) -> Result<u32, CodecError> {
        debug_assert!(n <= 32);
        if self.bits_left() < n as usize {
            return Err(CodecError::Truncated(what));
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            let byte = self.data[self.pos / 8];
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            v = (v << 1) | bit as u64;
            self.pos += 1;
        }
        Ok(v as u32)
    }

    pub(crate) fn skip(&mut self, n: usize, what: &'static str) -> Result<(), CodecError> {
        if self.bits_left() < n {
            return Err(CodecError::Truncated(what));
        }
        self.pos += n;
        Ok(())
    }

    /// Unsigned Exp-Golomb code; values that need more than 32 bits are malformed.
    pub(crate) fn ue(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let mut zeros = 0u32;
        while !self.bit(what)? {
            zeros += 1;
            if zeros > 31 {
                return Err(CodecError::Malformed(format!(
                    "{what}: Exp-Golomb code too long"
                )));
            }
        }
        if zeros == 0 {
            return Ok(0);
        }
        let rest = self.bits(zeros, what)? as u64;
        let v = (1u64 << zeros) - 1 + rest;
        u32::try_from(v)
            .map_err(|_| CodecError::Malformed(format!("{what}: Exp-Golomb value too large")))
    }

    /// Signed Exp-Golomb code.
    pub(crate) fn se(&mut self, what: &'static str) -> Result<i64, CodecError> {
        let k = self.ue(what)? as i64;
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    /// `ue(v)` that must not exceed `max`.
    pub(crate) fn ue_max(&mut self, max: u32, what: &'static str) -> Result<u32, CodecError> {
        let v = self.ue(what)?;
        if v > max {
            return Err(CodecError::Malformed(format!(
                "{what} = {v} (at most {max})"
            )));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_and_bits() {
        // 1 | 010 | 011 | 00100 | 0001000 → ue 0, 1, 2, 3, 7
        let data = [0b1010_0110, 0b0100_0001, 0b0000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue("a").unwrap(), 0);
        assert_eq!(r.ue("b").unwrap(), 1);
        assert_eq!(r.ue("c").unwrap(), 2);
        assert_eq!(r.ue("d").unwrap(), 3);
        assert_eq!(r.ue("e").unwrap(), 7);
        assert!(matches!(r.ue("f"), Err(CodecError::Truncated("f"))));

        // se: codeNum 1 → 1, 2 → -1, 3 → 2
        let data = [0b0100_1100, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.se("a").unwrap(), 1);
        assert_eq!(r.se("b").unwrap(), -1);
        assert_eq!(r.se("c").unwrap(), 2);

        let mut r = BitReader::new(&[0xAB, 0xCD, 0xEF, 0x01, 0x23]);
        assert_eq!(r.bits(4, "x").unwrap(), 0xA);
        assert_eq!(r.bits(32, "y").unwrap(), 0xBCDE_F012);
        assert!(r.bits(5, "z").is_err());
        assert_eq!(r.bits(4, "w").unwrap(), 3);
        assert_eq!(r.bits_left(), 0);
    }

    #[test]
    fn exp_golomb_too_long_is_an_error() {
        let mut r = BitReader::new(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert!(matches!(r.ue("x"), Err(CodecError::Malformed(_))));
        // 32 leading zeros would overflow u32; 31 is still fine only if the value fits.
        let mut data = vec![0u8; 4];
        data.extend_from_slice(&[0x80, 0, 0, 0, 0]);
        let mut r = BitReader::new(&data);
        assert!(r.ue("x").is_err());
    }

    #[test]
    fn unescape_removes_emulation_prevention() {
        assert_eq!(unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
        assert_eq!(unescape_rbsp(&[0, 0, 3, 0, 0, 3, 0]), vec![0, 0, 0, 0, 0]);
        assert_eq!(unescape_rbsp(&[1, 2, 3]), vec![1, 2, 3]);
    }
}
