//! Huffman decoding of any bytes must never panic; any bytes must encode and
//! decode back to themselves; and a string that decodes must be the encoding
//! of what it decodes to (the code and its padding leave no other choice).
#![no_main]
use ledge_hpack::huffman;
use libfuzzer_sys::fuzz_target;

/// Bytes already in the output buffer, which decoding must append after and
/// leave alone on failure.
const PREFIX: &[u8] = b"kept";

fuzz_target!(|data: &[u8]| {
    // The input as a Huffman-coded string.
    let mut out = PREFIX.to_vec();
    match huffman::decode(data, &mut out) {
        Ok(()) => {
            assert!(out.starts_with(PREFIX), "decoding changed what was there");
            let decoded = &out[PREFIX.len()..];
            let mut again = Vec::new();
            huffman::encode(decoded, &mut again);
            assert_eq!(
                again, data,
                "a valid string is the encoding of its decoding"
            );
        }
        Err(_) => assert_eq!(out, PREFIX, "a failed decode leaves the buffer as it was"),
    }

    // The input as a string to encode.
    let mut coded = PREFIX.to_vec();
    huffman::encode(data, &mut coded);
    assert!(coded.starts_with(PREFIX), "encoding changed what was there");
    let coded = &coded[PREFIX.len()..];
    assert_eq!(
        coded.len(),
        huffman::encoded_len(data),
        "encoded_len is exact"
    );
    let mut back = Vec::new();
    huffman::decode(coded, &mut back).expect("an encoding decodes");
    assert_eq!(back, data, "decode(encode(x)) == x");
});
