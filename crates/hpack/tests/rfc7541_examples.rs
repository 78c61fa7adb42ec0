//! The examples of RFC 7541 Appendix C, decoded with one decoder per sequence.

mod common;

use common::{decode, f, hex, table, Field};
use ledge_hpack::Decoder;

/// One block of an example: its encoding, the fields it decodes to, and the
/// dynamic table's entries (newest first) and size afterwards.
type Step<'a> = (&'a str, Vec<Field>, Vec<(&'a str, &'a str)>, usize);

/// Decodes each block in turn with one decoder and checks the fields, the
/// dynamic table's entries and its size after each.
fn run_sequence(max_table_size: usize, steps: &[Step]) {
    let mut d = Decoder::new(max_table_size);
    for (i, (block, fields, entries, size)) in steps.iter().enumerate() {
        let got = decode(&mut d, &hex(block)).unwrap_or_else(|e| panic!("block {}: {e}", i + 1));
        assert_eq!(&got, fields, "fields of block {}", i + 1);
        let entries: Vec<(String, String)> = entries
            .iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(table(&d), entries, "table after block {}", i + 1);
        assert_eq!(
            d.dynamic_table_size(),
            *size,
            "table size after block {}",
            i + 1
        );
    }
}

#[test]
fn c2_1_literal_with_indexing() {
    run_sequence(
        4096,
        &[(
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            vec![f("custom-key", "custom-header")],
            vec![("custom-key", "custom-header")],
            55,
        )],
    );
}

#[test]
fn c2_2_literal_without_indexing() {
    run_sequence(
        4096,
        &[(
            "040c 2f73 616d 706c 652f 7061 7468",
            vec![f(":path", "/sample/path")],
            vec![],
            0,
        )],
    );
}

#[test]
fn c2_3_literal_never_indexed() {
    let mut password = f("password", "secret");
    password.2 = true;
    run_sequence(
        4096,
        &[(
            "1008 7061 7373 776f 7264 0673 6563 7265 74",
            vec![password],
            vec![],
            0,
        )],
    );
}

#[test]
fn c2_4_indexed() {
    run_sequence(4096, &[("82", vec![f(":method", "GET")], vec![], 0)]);
}

/// The three requests of C.3 and C.4, with the given encodings.
fn requests(blocks: [&str; 3]) {
    let authority = (":authority", "www.example.com");
    let no_cache = ("cache-control", "no-cache");
    let custom = ("custom-key", "custom-value");
    run_sequence(
        4096,
        &[
            (
                blocks[0],
                vec![
                    f(":method", "GET"),
                    f(":scheme", "http"),
                    f(":path", "/"),
                    f(":authority", "www.example.com"),
                ],
                vec![authority],
                57,
            ),
            (
                blocks[1],
                vec![
                    f(":method", "GET"),
                    f(":scheme", "http"),
                    f(":path", "/"),
                    f(":authority", "www.example.com"),
                    f("cache-control", "no-cache"),
                ],
                vec![no_cache, authority],
                110,
            ),
            (
                blocks[2],
                vec![
                    f(":method", "GET"),
                    f(":scheme", "https"),
                    f(":path", "/index.html"),
                    f(":authority", "www.example.com"),
                    f("custom-key", "custom-value"),
                ],
                vec![custom, no_cache, authority],
                164,
            ),
        ],
    );
}

#[test]
fn c3_requests_without_huffman() {
    requests([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

#[test]
fn c4_requests_with_huffman() {
    requests([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

/// The three responses of C.5 and C.6 (table size 256, so entries are evicted).
fn responses(blocks: [&str; 3]) {
    let date21 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let date22 = "Mon, 21 Oct 2013 20:13:22 GMT";
    let location = "https://www.example.com";
    let cookie = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
    run_sequence(
        256,
        &[
            (
                blocks[0],
                vec![
                    f(":status", "302"),
                    f("cache-control", "private"),
                    f("date", date21),
                    f("location", location),
                ],
                vec![
                    ("location", location),
                    ("date", date21),
                    ("cache-control", "private"),
                    (":status", "302"),
                ],
                222,
            ),
            (
                blocks[1],
                vec![
                    f(":status", "307"),
                    f("cache-control", "private"),
                    f("date", date21),
                    f("location", location),
                ],
                vec![
                    (":status", "307"),
                    ("location", location),
                    ("date", date21),
                    ("cache-control", "private"),
                ],
                222,
            ),
            (
                blocks[2],
                vec![
                    f(":status", "200"),
                    f("cache-control", "private"),
                    f("date", date22),
                    f("location", location),
                    f("content-encoding", "gzip"),
                    f("set-cookie", cookie),
                ],
                vec![
                    ("set-cookie", cookie),
                    ("content-encoding", "gzip"),
                    ("date", date22),
                ],
                215,
            ),
        ],
    );
}

#[test]
fn c5_responses_without_huffman() {
    responses([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
         54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
         5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
         3d31",
    ]);
}

#[test]
fn c6_responses_with_huffman() {
    responses([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
         2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
         77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
         9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]);
}
