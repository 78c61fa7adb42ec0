//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ledge_hpack::{DecodeError, Decoder};

/// A decoded field: name, value, sensitive.
pub type Field = (Vec<u8>, Vec<u8>, bool);

/// Bytes from hex digits; anything else (spaces, newlines) is skipped.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Decodes `block` with no list size limit, collecting the fields.
pub fn decode(d: &mut Decoder, block: &[u8]) -> Result<Vec<Field>, DecodeError> {
    decode_limited(d, block, usize::MAX)
}

/// Decodes `block` with a list size limit, returning the fields passed to the
/// callback along with the result.
pub fn decode_limited(
    d: &mut Decoder,
    block: &[u8],
    limit: usize,
) -> Result<Vec<Field>, DecodeError> {
    let mut fields = Vec::new();
    d.decode(block, limit, |n, v, s| {
        fields.push((n.to_vec(), v.to_vec(), s))
    })?;
    Ok(fields)
}

/// A field, from string slices.
pub fn f(name: &str, value: &str) -> Field {
    (name.as_bytes().to_vec(), value.as_bytes().to_vec(), false)
}

/// The decoder's dynamic table, newest first, as (name, value) strings.
pub fn table(d: &Decoder) -> Vec<(String, String)> {
    (0..d.dynamic_table_len())
        .map(|i| {
            let (n, v) = d.dynamic_entry(i).unwrap();
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// A small xorshift generator, so that "random" tests are repeatable.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
