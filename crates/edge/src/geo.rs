//! The visitor's country, for `Country` conditions and the `X-Country` header.
//!
//! Sources, per site (`geo_source` setting): `default` looks the client address
//! up in the operator's MaxMind database when one is configured, else reads the
//! trusted header; `header` reads only the header a trusted front proxy sets;
//! `none` never knows a country. A header from a peer that is not a trusted
//! proxy is never believed.

use std::net::IpAddr;
use std::path::Path;

use http::{HeaderMap, HeaderName};
use ledge_store::settings::GeoSource;
use maxminddb::PathElement;

/// Where countries come from on this node.
#[derive(Debug, Default)]
pub struct Geo {
    /// Header set by a trusted front proxy.
    pub header: Option<HeaderName>,
    /// A MaxMind (GeoIP2/GeoLite2 Country or City) database.
    pub db: Option<maxminddb::Reader<Vec<u8>>>,
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {source}")]
pub struct GeoError {
    path: String,
    source: maxminddb::MaxMindDbError,
}

impl Geo {
    /// Opens a MaxMind database file (read whole into memory).
    pub fn open_db(path: &Path) -> Result<maxminddb::Reader<Vec<u8>>, GeoError> {
        maxminddb::Reader::open_readfile(path).map_err(|source| GeoError {
            path: path.display().to_string(),
            source,
        })
    }

    /// The country of a request, upper-case ISO 3166-1 alpha-2.
    pub fn country(
        &self,
        source: GeoSource,
        client_ip: IpAddr,
        peer_trusted: bool,
        headers: &HeaderMap,
    ) -> Option<String> {
        let from_header = || {
            if !peer_trusted {
                return None;
            }
            let v = headers.get(self.header.as_ref()?)?.to_str().ok()?.trim();
            valid(v)
        };
        match source {
            GeoSource::None => None,
            GeoSource::Header => from_header(),
            GeoSource::Default => match &self.db {
                Some(db) => lookup(db, client_ip),
                None => from_header(),
            },
        }
    }
}

fn lookup(db: &maxminddb::Reader<Vec<u8>>, ip: IpAddr) -> Option<String> {
    let found = db.lookup(ip).ok()?;
    let code: Option<String> = found
        .decode_path(&[PathElement::Key("country"), PathElement::Key("iso_code")])
        .ok()
        .flatten();
    valid(code.as_deref()?)
}

fn valid(code: &str) -> Option<String> {
    (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| code.to_ascii_uppercase())
}
