//! A run of header blocks through one `Decoder` must never panic, and the
//! dynamic table must stay within its limits after every block.
//!
//! Input: one byte of settings, then header blocks, each after its length as
//! two bytes (big-endian). A length past the end of the input takes the rest.
//! The settings byte picks the table size the decoder advertises (low three
//! bits) and the header list limit (next two bits).
#![no_main]
use ledge_hpack::{DecodeError, Decoder};
use libfuzzer_sys::fuzz_target;

const TABLE_SIZES: [usize; 8] = [0, 1, 32, 64, 100, 256, 4096, 65_536];
const LIST_LIMITS: [usize; 4] = [usize::MAX, 16 * 1024, 256, 0];
/// What an entry or a field costs beyond its name and value (RFC 7541 §4.1).
const OVERHEAD: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut rest)) = data.split_first() else {
        return;
    };
    let max_table_size = TABLE_SIZES[usize::from(settings & 7)];
    let max_list_size = LIST_LIMITS[usize::from(settings >> 3 & 3)];
    let mut decoder = Decoder::new(max_table_size);

    while !rest.is_empty() {
        let (block, after) = match rest {
            [hi, lo, tail @ ..] => {
                let len = usize::from(*hi) << 8 | usize::from(*lo);
                tail.split_at(len.min(tail.len()))
            }
            _ => (rest, &[][..]),
        };
        rest = after;

        let mut given = 0usize;
        let result = decoder.decode(block, max_list_size, |name, value, _sensitive| {
            given += name.len() + value.len() + OVERHEAD;
        });

        // Fields are handed over only while the list is within its limit.
        assert!(
            given <= max_list_size,
            "{given} bytes of fields over {max_list_size}"
        );

        let size = decoder.dynamic_table_size();
        let max = decoder.dynamic_table_max_size();
        assert!(size <= max, "table size {size} over its maximum {max}");
        assert!(
            max <= max_table_size,
            "table maximum {max} over the advertised {max_table_size}"
        );
        let len = decoder.dynamic_table_len();
        let mut sum = 0;
        for i in 0..len {
            let (name, value) = decoder
                .dynamic_entry(i)
                .unwrap_or_else(|| panic!("entry {i} of {len} missing"));
            sum += name.len() + value.len() + OVERHEAD;
        }
        assert!(
            decoder.dynamic_entry(len).is_none(),
            "an entry past the last"
        );
        assert_eq!(sum, size, "entries add up to the table size");

        match result {
            Ok(()) | Err(DecodeError::ListTooLarge) => {}
            // The decoder is not to be used after a malformed block.
            Err(_) => return,
        }
    }
});
