//! HPACK (RFC 7541): the header compression of HTTP/2.
//!
//! - [`Decoder`] turns the header blocks a peer sends back into fields. It
//!   implements all of RFC 7541: the static and dynamic tables, every field
//!   representation, dynamic table size updates, prefix integers and
//!   Huffman-coded strings. Malformed input of any kind is a [`DecodeError`],
//!   never a panic.
//! - [`Encoder`] writes header blocks. It is built for speed rather than size:
//!   it never adds to the dynamic table, uses the static table where it can
//!   and writes everything else as raw literals.
//! - [`huffman`] is the static Huffman code (RFC 7541 Appendix B).
//!
//! ```
//! use ledge_hpack::{Decoder, Encoder};
//!
//! let mut encoder = Encoder::new();
//! let mut block = Vec::new();
//! encoder.begin(&mut block);
//! encoder.status(200, &mut block);
//! encoder.field(b"content-type", b"text/plain", false, &mut block);
//!
//! let mut decoder = Decoder::new(4096);
//! let mut fields = Vec::new();
//! decoder
//!     .decode(&block, 16 * 1024, |name, value, _sensitive| {
//!         fields.push((name.to_vec(), value.to_vec()));
//!     })
//!     .unwrap();
//! assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
//! assert_eq!(fields[1], (b"content-type".to_vec(), b"text/plain".to_vec()));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decoder;
mod dynamic;
mod encoder;
pub mod huffman;
mod integer;
mod table;

pub use decoder::{DecodeError, Decoder};
pub use encoder::Encoder;
pub use table::static_name_index;
