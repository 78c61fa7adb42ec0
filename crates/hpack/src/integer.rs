//! Prefix-coded integers (RFC 7541 §5.1).
//!
//! An integer fills the low `N` bits of its first byte (the prefix); if it does
//! not fit, the prefix is all 1s and the rest follows in groups of 7 bits,
//! least significant first, each byte but the last with its top bit set.

use crate::DecodeError;

/// The most continuation bytes accepted after a full prefix. Five of them carry
/// 35 bits, more than any value that passes the `u32` check needs; a longer run
/// is either an overflow or padding with zero groups, and neither has a use.
const MAX_CONTINUATION_BYTES: u32 = 5;

/// Reads an integer with a `prefix_bits`-bit prefix (1 to 8) from the front of
/// `input` and advances `input` past it. The first byte's bits above the prefix
/// are ignored: they belong to the caller.
///
/// Values above `u32::MAX`, or written with more than five continuation bytes,
/// are [`DecodeError::IntegerOverflow`]; HPACK integers are indices, string
/// lengths and table sizes, and none of them legitimately needs more.
pub(crate) fn decode(input: &mut &[u8], prefix_bits: u32) -> Result<usize, DecodeError> {
    let (&first, mut rest) = input.split_first().ok_or(DecodeError::Truncated)?;
    let max_prefix = (1u32 << prefix_bits) - 1;
    let prefix = u32::from(first) & max_prefix;
    if prefix < max_prefix {
        *input = rest;
        return Ok(prefix as usize);
    }

    let mut value = u64::from(max_prefix);
    let mut shift = 0;
    loop {
        let (&byte, after) = rest.split_first().ok_or(DecodeError::Truncated)?;
        rest = after;
        value += u64::from(byte & 0x7f) << shift;
        if value > u64::from(u32::MAX) {
            return Err(DecodeError::IntegerOverflow);
        }
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift >= 7 * MAX_CONTINUATION_BYTES {
            return Err(DecodeError::IntegerOverflow);
        }
    }
    *input = rest;
    usize::try_from(value).map_err(|_| DecodeError::IntegerOverflow)
}

/// Appends `value` with a `prefix_bits`-bit prefix (1 to 8); `flags` supplies
/// the first byte's bits above the prefix.
#[inline]
pub(crate) fn encode(out: &mut Vec<u8>, flags: u8, prefix_bits: u32, value: usize) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push(rest as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(flags: u8, prefix_bits: u32, value: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, flags, prefix_bits, value);
        out
    }

    fn decoded(bytes: &[u8], prefix_bits: u32) -> Result<(usize, usize), DecodeError> {
        let mut input = bytes;
        let value = decode(&mut input, prefix_bits)?;
        Ok((value, input.len()))
    }

    #[test]
    fn rfc_examples() {
        // C.1.1: 10 with a 5-bit prefix.
        assert_eq!(encoded(0, 5, 10), [0x0a]);
        assert_eq!(decoded(&[0xea], 5), Ok((10, 0)));
        // C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(encoded(0, 5, 1337), [0x1f, 0x9a, 0x0a]);
        assert_eq!(decoded(&[0xff, 0x9a, 0x0a, 0x55], 5), Ok((1337, 1)));
        // C.1.3: 42 on a whole byte.
        assert_eq!(encoded(0, 8, 42), [0x2a]);
        assert_eq!(decoded(&[0x2a], 8), Ok((42, 0)));
    }

    #[test]
    fn flags_are_kept_and_ignored() {
        assert_eq!(encoded(0x80, 7, 2), [0x82]);
        assert_eq!(encoded(0x40, 6, 63), [0x7f, 0x00]);
        assert_eq!(decoded(&[0x7f, 0x00], 6), Ok((63, 0)));
        assert_eq!(decoded(&[0xc1], 6), Ok((1, 0)));
    }

    #[test]
    fn round_trips() {
        let values = [
            0, 1, 14, 15, 16, 30, 31, 126, 127, 128, 254, 255, 256, 4096, 16_383,
        ];
        for prefix_bits in 1..=8 {
            for &value in values.iter().chain(&[65_535, 1 << 20, u32::MAX as usize]) {
                let bytes = encoded(0, prefix_bits, value);
                assert_eq!(
                    decoded(&bytes, prefix_bits),
                    Ok((value, 0)),
                    "{value} on {prefix_bits}"
                );
            }
        }
    }

    #[test]
    fn truncated() {
        assert_eq!(decoded(&[], 5), Err(DecodeError::Truncated));
        assert_eq!(decoded(&[0x1f], 5), Err(DecodeError::Truncated));
        assert_eq!(decoded(&[0x1f, 0x9a], 5), Err(DecodeError::Truncated));
    }

    #[test]
    fn overflow() {
        // u32::MAX itself is accepted...
        let max = encoded(0, 7, u32::MAX as usize);
        assert_eq!(decoded(&max, 7), Ok((u32::MAX as usize, 0)));
        // ...one more is not.
        assert_eq!(
            decoded(&[0x7f, 0x81, 0xff, 0xff, 0xff, 0x0f], 7),
            Err(DecodeError::IntegerOverflow)
        );
        // Nor is a large value in few bytes.
        assert_eq!(
            decoded(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0x7f], 7),
            Err(DecodeError::IntegerOverflow)
        );
        // Five continuation bytes are allowed, even as padding; six are not.
        assert_eq!(
            decoded(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x00], 5),
            Ok((31, 0))
        );
        assert_eq!(
            decoded(&[0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 5),
            Err(DecodeError::IntegerOverflow)
        );
        // An endless run stops at the limit, not at the end of the input.
        let mut endless = vec![0xff];
        endless.extend(std::iter::repeat_n(0x80, 1000));
        assert_eq!(decoded(&endless, 8), Err(DecodeError::IntegerOverflow));
    }
}
