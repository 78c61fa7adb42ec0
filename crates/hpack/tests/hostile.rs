//! Malformed and hostile header blocks: each must give an error (or, where
//! the input happens to be valid, a result), never a panic.

mod common;

use common::{decode, decode_limited, f, hex, table, Rng};
use ledge_hpack::{DecodeError, Decoder, Encoder};

/// A decoder that has decoded the first two requests of RFC 7541 C.4, and the
/// third request's block, which refers to the entries they added.
fn c4_state() -> (Decoder, Vec<u8>) {
    let mut d = Decoder::new(4096);
    decode(&mut d, &hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
    decode(&mut d, &hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
    (
        d,
        hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
    )
}

fn c6_state() -> (Decoder, Vec<u8>) {
    let mut d = Decoder::new(256);
    decode(
        &mut d,
        &hex(
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
              2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        ),
    )
    .unwrap();
    decode(&mut d, &hex("4883 640e ffc1 c0bf")).unwrap();
    (
        d,
        hex(
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ),
    )
}

fn c5_first() -> (Decoder, Vec<u8>) {
    (
        Decoder::new(256),
        hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
             6c65 2e63 6f6d",
        ),
    )
}

/// Builds a decoder in some state and a valid block for it.
type Setup = fn() -> (Decoder, Vec<u8>);

/// Every [`Setup`] above and below.
const SETUPS: [Setup; 4] = [c4_state, c6_state, c5_first, encoder_block];

fn encoder_block() -> (Decoder, Vec<u8>) {
    let mut e = Encoder::new();
    e.set_peer_max_table_size(0);
    e.set_peer_max_table_size(1000);
    let mut block = Vec::new();
    e.begin(&mut block);
    e.status(302, &mut block);
    e.field(
        b"content-type",
        b"text/html; charset=utf-8",
        false,
        &mut block,
    );
    e.field(b"x-long", &[b'z'; 300], false, &mut block);
    e.field(b"set-cookie", b"a=b", true, &mut block);
    e.field(b"accept-encoding", b"gzip, deflate", false, &mut block);
    (Decoder::new(4096), block)
}

#[test]
fn truncated_at_every_offset() {
    for setup in SETUPS {
        let (mut full_decoder, block) = setup();
        let full = decode(&mut full_decoder, &block).unwrap();
        for cut in 0..block.len() {
            let (mut d, _) = setup();
            match decode(&mut d, &block[..cut]) {
                // A cut between representations is a shorter valid block.
                Ok(fields) => assert_eq!(fields, full[..fields.len()], "cut at {cut}"),
                Err(e) => assert!(
                    matches!(e, DecodeError::Truncated | DecodeError::StringTooLong),
                    "cut at {cut}: {e:?}"
                ),
            }
        }
    }
}

#[test]
fn integer_overflow() {
    let mut d = Decoder::new(4096);
    // Index 2^32 + 126.
    assert_eq!(
        decode(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(DecodeError::IntegerOverflow)
    );
    // A name length far beyond u32.
    assert_eq!(
        decode(
            &mut d,
            &[0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        ),
        Err(DecodeError::IntegerOverflow)
    );
    // A size update beyond u32.
    assert_eq!(
        decode(
            &mut Decoder::new(4096),
            &[0x3f, 0xff, 0xff, 0xff, 0xff, 0x7f]
        ),
        Err(DecodeError::IntegerOverflow)
    );
    // An endless run of continuation bytes.
    let mut block = vec![0xff];
    block.extend(std::iter::repeat_n(0x80, 10_000));
    assert_eq!(
        decode(&mut Decoder::new(4096), &block),
        Err(DecodeError::IntegerOverflow)
    );
    // Zero-padded but small: five continuation bytes are allowed, so this
    // is index 127, which does not exist (not an overflow).
    assert_eq!(
        decode(
            &mut Decoder::new(4096),
            &[0xff, 0x80, 0x80, 0x80, 0x80, 0x00]
        ),
        Err(DecodeError::BadIndex)
    );
}

#[test]
fn bad_indices() {
    let mut d = Decoder::new(4096);
    // Index 0 in an indexed field.
    assert_eq!(decode(&mut d, &[0x80]), Err(DecodeError::BadIndex));
    // Index 62 with an empty dynamic table, in each representation.
    assert_eq!(decode(&mut d, &[0xbe]), Err(DecodeError::BadIndex));
    assert_eq!(
        decode(&mut d, &[0x7e, 0x01, b'v']),
        Err(DecodeError::BadIndex)
    );
    assert_eq!(
        decode(&mut d, &[0x0f, 0x2f, 0x01, b'v']),
        Err(DecodeError::BadIndex)
    );
    assert_eq!(
        decode(&mut d, &[0x1f, 0x2f, 0x01, b'v']),
        Err(DecodeError::BadIndex)
    );
    // A huge index that still fits in u32.
    assert_eq!(
        decode(&mut d, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x0e]),
        Err(DecodeError::BadIndex)
    );

    // One entry: 62 is valid, 63 is not.
    let mut d = Decoder::new(4096);
    decode(&mut d, &[0x40, 0x01, b'a', 0x01, b'b']).unwrap();
    assert_eq!(decode(&mut d, &[0xbe]), Ok(vec![f("a", "b")]));
    assert_eq!(decode(&mut d, &[0xbf]), Err(DecodeError::BadIndex));
    // 61 is the last static entry.
    assert_eq!(decode(&mut d, &[0xbd]), Ok(vec![f("www-authenticate", "")]));
}

#[test]
fn bad_huffman() {
    let mut d = Decoder::new(4096);
    // Value "a" (00011) padded with 000 instead of 111.
    assert_eq!(
        decode(&mut d, &[0x04, 0x81, 0x18]),
        Err(DecodeError::BadHuffman)
    );
    // Correctly padded, for contrast.
    assert_eq!(
        decode(&mut d, &[0x04, 0x81, 0x1f]),
        Ok(vec![f(":path", "a")])
    );
    // Padding longer than 7 bits.
    assert_eq!(
        decode(&mut d, &[0x04, 0x82, 0x1f, 0xff]),
        Err(DecodeError::BadHuffman)
    );
    // EOS in the string.
    assert_eq!(
        decode(&mut d, &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]),
        Err(DecodeError::BadHuffman)
    );
    // In a name too.
    assert_eq!(
        decode(&mut d, &[0x00, 0x81, 0x18, 0x00]),
        Err(DecodeError::BadHuffman)
    );
    // In an entry to be indexed.
    assert_eq!(
        decode(&mut d, &[0x40, 0x81, 0x1f, 0x81, 0xff]),
        Err(DecodeError::BadHuffman)
    );
}

#[test]
fn table_size_updates() {
    let mut d = Decoder::new(4096);
    // After a field.
    assert_eq!(
        decode(&mut d, &[0x82, 0x20]),
        Err(DecodeError::TableSizeUpdateNotAtStart)
    );
    // Above the advertised maximum: 4097 = 31 + 0x62 + 0x1f * 128.
    let mut d = Decoder::new(4096);
    assert_eq!(
        decode(&mut d, &[0x3f, 0xe2, 0x1f]),
        Err(DecodeError::TableSizeUpdateTooLarge)
    );
    // Exactly the maximum is fine, and so are two in a row (lowest, then final).
    let mut d = Decoder::new(4096);
    assert_eq!(
        decode(&mut d, &[0x20, 0x3f, 0xe1, 0x1f, 0x82]),
        Ok(vec![f(":method", "GET")])
    );
    assert_eq!(d.dynamic_table_max_size(), 4096);
    // A block of nothing but an update is valid.
    assert_eq!(decode(&mut d, &[0x3f, 0x45]), Ok(vec![]));
    assert_eq!(d.dynamic_table_max_size(), 100);
    // An update at the start of a later block, after fields in an earlier one.
    decode(&mut d, &[0x40, 0x01, b'a', 0x01, b'b']).unwrap();
    assert_eq!(d.dynamic_table_size(), 34);
    assert_eq!(decode(&mut d, &[0x20, 0x82]), Ok(vec![f(":method", "GET")]));
    assert_eq!(d.dynamic_table_len(), 0);
    // With the maximum at 0, insertions leave the table empty (not an error).
    assert_eq!(
        decode(&mut d, &[0x40, 0x01, b'a', 0x01, b'b', 0xbe]),
        Err(DecodeError::BadIndex)
    );
}

#[test]
fn string_longer_than_block() {
    let mut d = Decoder::new(4096);
    // A name length of about 2^28 with one byte of data.
    assert_eq!(
        decode(&mut d, &[0x00, 0x7f, 0xff, 0xff, 0xff, 0x7f, b'a']),
        Err(DecodeError::StringTooLong)
    );
    // A value one byte longer than what is left.
    assert_eq!(
        decode(&mut d, &[0x04, 0x03, b'a', b'b']),
        Err(DecodeError::StringTooLong)
    );
    // Huffman-coded, likewise.
    assert_eq!(
        decode(&mut d, &[0x04, 0xff, 0x80, 0x01, 0x1f]),
        Err(DecodeError::StringTooLong)
    );
}

#[test]
fn name_of_an_entry_evicted_by_its_own_insertion() {
    // RFC 7541 §4.4: a new entry may use the name of an entry that adding it
    // evicts. Table maximum 70: "abcd: x" (37) fits; "abcd: yyyy" (40) with
    // indexed name 62 evicts it first.
    let mut d = Decoder::new(4096);
    let block = [
        0x3f, 0x27, // size update to 70
        0x40, 0x04, b'a', b'b', b'c', b'd', 0x01, b'x', // abcd: x, indexed
        0x7e, 0x04, b'y', b'y', b'y', b'y', // name 62, value yyyy, indexed
    ];
    assert_eq!(
        decode(&mut d, &block),
        Ok(vec![f("abcd", "x"), f("abcd", "yyyy")])
    );
    assert_eq!(table(&d), [("abcd".to_owned(), "yyyy".to_owned())]);
    assert_eq!(d.dynamic_table_size(), 40);
}

#[test]
fn list_size_limit() {
    // C.3.1: sizes 42 + 43 + 38 + 57 = 180.
    let first = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
    let second = hex("8286 84be 5808 6e6f 2d63 6163 6865");

    let mut d = Decoder::new(4096);
    assert_eq!(decode_limited(&mut d, &first, 180).unwrap().len(), 4);

    let mut d = Decoder::new(4096);
    let mut seen = Vec::new();
    let r = d.decode(&first, 179, |n, _, _| seen.push(n.to_vec()));
    assert_eq!(r, Err(DecodeError::ListTooLarge));
    // Fields are passed on until the limit is crossed, then no more.
    assert_eq!(
        seen,
        [b":method".to_vec(), b":scheme".to_vec(), b":path".to_vec()]
    );
    // The table was still updated, so the next block decodes as the RFC says.
    assert_eq!(d.dynamic_table_size(), 57);
    assert_eq!(
        decode(&mut d, &second).unwrap(),
        [
            f(":method", "GET"),
            f(":scheme", "http"),
            f(":path", "/"),
            f(":authority", "www.example.com"),
            f("cache-control", "no-cache"),
        ]
    );

    // A limit of 0 passes nothing on.
    let mut d = Decoder::new(4096);
    let mut calls = 0;
    assert_eq!(
        d.decode(&first, 0, |_, _, _| calls += 1),
        Err(DecodeError::ListTooLarge)
    );
    assert_eq!(calls, 0);
    // An empty block is within any limit.
    assert_eq!(d.decode(&[], 0, |_, _, _| calls += 1), Ok(()));

    // Many references to one large entry: refused, and cheaply.
    let mut d = Decoder::new(4096);
    // "x" with a value of 4000 bytes, indexed (entry size 4033); the length is
    // 127 + 3873, and 3873 = 0x21 + 0x1e * 128.
    let mut block = vec![0x40, 0x01, b'x', 0x7f, 0xa1, 0x1e];
    block.extend(std::iter::repeat_n(b'v', 4000));
    block.extend(std::iter::repeat_n(0xbe, 10_000));
    let mut calls = 0;
    assert_eq!(
        d.decode(&block, 64 * 1024, |_, _, _| calls += 1),
        Err(DecodeError::ListTooLarge)
    );
    // 64 KiB / (1 + 4000 + 32) is 16.
    assert_eq!(calls, 16);
}

#[test]
fn errors_display() {
    for e in [
        DecodeError::Truncated,
        DecodeError::IntegerOverflow,
        DecodeError::BadIndex,
        DecodeError::BadHuffman,
        DecodeError::TableSizeUpdateTooLarge,
        DecodeError::TableSizeUpdateNotAtStart,
        DecodeError::StringTooLong,
        DecodeError::ListTooLarge,
    ] {
        let text = e.to_string();
        assert!(!text.is_empty());
        let _: &dyn std::error::Error = &e;
    }
}

/// Random bytes, and valid blocks with random damage, never panic.
#[test]
fn fuzz_never_panics() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut total = 0;

    // Pure noise, in blocks of up to 64 bytes, through one long-lived decoder
    // (recreated after an error, as a connection would be) and fresh ones.
    let mut d = Decoder::new(4096);
    while total < 300_000 {
        let len = rng.below(65) as usize;
        let block: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        total += len;
        let limit = if rng.below(4) == 0 { 200 } else { 16 * 1024 };
        if d.decode(&block, limit, |_, _, _| {}).is_err() {
            d = Decoder::new(4096);
        }
        let _ = Decoder::new(rng.below(300) as usize).decode(&block, limit, |_, _, _| {});
    }

    // Valid blocks with bytes flipped, inserted or removed.
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..5_000 {
        let (mut d, mut block) = SETUPS[rng.below(4) as usize]();
        for _ in 0..=rng.below(4) {
            let at = rng.below(block.len() as u64 + 1) as usize;
            match rng.below(3) {
                0 if at < block.len() => block[at] ^= 1 << rng.below(8),
                1 => block.insert(at, rng.next() as u8),
                _ if at < block.len() => {
                    block.remove(at);
                }
                _ => {}
            }
        }
        match d.decode(&block, 4096, |_, _, _| {}) {
            Ok(()) => ok += 1,
            Err(_) => failed += 1,
        }
    }
    // Both outcomes were reached, so the damage was neither always fatal nor
    // always harmless.
    assert!(ok > 500 && failed > 500, "{ok} ok, {failed} failed");
}
