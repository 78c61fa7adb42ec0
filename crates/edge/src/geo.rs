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

/// What a city database knows of an address, for edge functions'
/// `context.geo` (English names).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Place {
    /// City name.
    pub city: Option<String>,
    /// Country name, as the database spells it.
    pub country_name: Option<String>,
    /// First subdivision: ISO code and name.
    pub subdivision: Option<(String, String)>,
    /// Postal code.
    pub postal_code: Option<String>,
    /// Latitude and longitude.
    pub location: Option<(f64, f64)>,
    /// IANA time zone.
    pub timezone: Option<String>,
}

impl Geo {
    /// The details of `client_ip` in the operator's database, when the
    /// site's source is `default` and a database is configured.
    pub fn place(&self, source: GeoSource, client_ip: IpAddr) -> Option<Place> {
        if source != GeoSource::Default {
            return None;
        }
        let db = self.db.as_ref()?;
        let found = db.lookup(client_ip).ok()?;
        let text = |path: &[PathElement<'_>]| -> Option<String> {
            found
                .decode_path::<String>(path)
                .ok()
                .flatten()
                .filter(|s| !s.is_empty() && s.len() <= 256)
        };
        let number = |path: &[PathElement<'_>]| -> Option<f64> {
            found.decode_path::<f64>(path).ok().flatten()
        };
        use PathElement::{Index, Key};
        let sub_code = text(&[Key("subdivisions"), Index(0), Key("iso_code")]);
        let sub_name = text(&[Key("subdivisions"), Index(0), Key("names"), Key("en")]);
        Some(Place {
            city: text(&[Key("city"), Key("names"), Key("en")]),
            country_name: text(&[Key("country"), Key("names"), Key("en")]),
            subdivision: match (sub_code, sub_name) {
                (Some(c), Some(n)) => Some((c, n)),
                (Some(c), None) => Some((c.clone(), c)),
                (None, Some(n)) => Some((String::new(), n)),
                (None, None) => None,
            },
            postal_code: text(&[Key("postal"), Key("code")]),
            location: number(&[Key("location"), Key("latitude")])
                .zip(number(&[Key("location"), Key("longitude")])),
            timezone: text(&[Key("location"), Key("time_zone")]),
        })
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

/// The English short name of an ISO 3166-1 alpha-2 code (for edge
/// functions' `context.geo.country.name`).
pub fn country_name(code: &str) -> Option<&'static str> {
    COUNTRY_NAMES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| COUNTRY_NAMES[i].1)
}

/// ISO 3166-1 alpha-2 codes and short names, sorted by code.
const COUNTRY_NAMES: [(&str, &str); 249] = [
    ("AD", "Andorra"),
    ("AE", "United Arab Emirates"),
    ("AF", "Afghanistan"),
    ("AG", "Antigua and Barbuda"),
    ("AI", "Anguilla"),
    ("AL", "Albania"),
    ("AM", "Armenia"),
    ("AO", "Angola"),
    ("AQ", "Antarctica"),
    ("AR", "Argentina"),
    ("AS", "American Samoa"),
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("AW", "Aruba"),
    ("AX", "Åland Islands"),
    ("AZ", "Azerbaijan"),
    ("BA", "Bosnia and Herzegovina"),
    ("BB", "Barbados"),
    ("BD", "Bangladesh"),
    ("BE", "Belgium"),
    ("BF", "Burkina Faso"),
    ("BG", "Bulgaria"),
    ("BH", "Bahrain"),
    ("BI", "Burundi"),
    ("BJ", "Benin"),
    ("BL", "Saint Barthélemy"),
    ("BM", "Bermuda"),
    ("BN", "Brunei Darussalam"),
    ("BO", "Bolivia"),
    ("BQ", "Bonaire, Sint Eustatius and Saba"),
    ("BR", "Brazil"),
    ("BS", "Bahamas"),
    ("BT", "Bhutan"),
    ("BV", "Bouvet Island"),
    ("BW", "Botswana"),
    ("BY", "Belarus"),
    ("BZ", "Belize"),
    ("CA", "Canada"),
    ("CC", "Cocos (Keeling) Islands"),
    ("CD", "Congo, The Democratic Republic of the"),
    ("CF", "Central African Republic"),
    ("CG", "Congo"),
    ("CH", "Switzerland"),
    ("CI", "Côte d'Ivoire"),
    ("CK", "Cook Islands"),
    ("CL", "Chile"),
    ("CM", "Cameroon"),
    ("CN", "China"),
    ("CO", "Colombia"),
    ("CR", "Costa Rica"),
    ("CU", "Cuba"),
    ("CV", "Cabo Verde"),
    ("CW", "Curaçao"),
    ("CX", "Christmas Island"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("DJ", "Djibouti"),
    ("DK", "Denmark"),
    ("DM", "Dominica"),
    ("DO", "Dominican Republic"),
    ("DZ", "Algeria"),
    ("EC", "Ecuador"),
    ("EE", "Estonia"),
    ("EG", "Egypt"),
    ("EH", "Western Sahara"),
    ("ER", "Eritrea"),
    ("ES", "Spain"),
    ("ET", "Ethiopia"),
    ("FI", "Finland"),
    ("FJ", "Fiji"),
    ("FK", "Falkland Islands (Malvinas)"),
    ("FM", "Micronesia, Federated States of"),
    ("FO", "Faroe Islands"),
    ("FR", "France"),
    ("GA", "Gabon"),
    ("GB", "United Kingdom"),
    ("GD", "Grenada"),
    ("GE", "Georgia"),
    ("GF", "French Guiana"),
    ("GG", "Guernsey"),
    ("GH", "Ghana"),
    ("GI", "Gibraltar"),
    ("GL", "Greenland"),
    ("GM", "Gambia"),
    ("GN", "Guinea"),
    ("GP", "Guadeloupe"),
    ("GQ", "Equatorial Guinea"),
    ("GR", "Greece"),
    ("GS", "South Georgia and the South Sandwich Islands"),
    ("GT", "Guatemala"),
    ("GU", "Guam"),
    ("GW", "Guinea-Bissau"),
    ("GY", "Guyana"),
    ("HK", "Hong Kong"),
    ("HM", "Heard Island and McDonald Islands"),
    ("HN", "Honduras"),
    ("HR", "Croatia"),
    ("HT", "Haiti"),
    ("HU", "Hungary"),
    ("ID", "Indonesia"),
    ("IE", "Ireland"),
    ("IL", "Israel"),
    ("IM", "Isle of Man"),
    ("IN", "India"),
    ("IO", "British Indian Ocean Territory"),
    ("IQ", "Iraq"),
    ("IR", "Iran"),
    ("IS", "Iceland"),
    ("IT", "Italy"),
    ("JE", "Jersey"),
    ("JM", "Jamaica"),
    ("JO", "Jordan"),
    ("JP", "Japan"),
    ("KE", "Kenya"),
    ("KG", "Kyrgyzstan"),
    ("KH", "Cambodia"),
    ("KI", "Kiribati"),
    ("KM", "Comoros"),
    ("KN", "Saint Kitts and Nevis"),
    ("KP", "North Korea"),
    ("KR", "South Korea"),
    ("KW", "Kuwait"),
    ("KY", "Cayman Islands"),
    ("KZ", "Kazakhstan"),
    ("LA", "Laos"),
    ("LB", "Lebanon"),
    ("LC", "Saint Lucia"),
    ("LI", "Liechtenstein"),
    ("LK", "Sri Lanka"),
    ("LR", "Liberia"),
    ("LS", "Lesotho"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("LV", "Latvia"),
    ("LY", "Libya"),
    ("MA", "Morocco"),
    ("MC", "Monaco"),
    ("MD", "Moldova"),
    ("ME", "Montenegro"),
    ("MF", "Saint Martin (French part)"),
    ("MG", "Madagascar"),
    ("MH", "Marshall Islands"),
    ("MK", "North Macedonia"),
    ("ML", "Mali"),
    ("MM", "Myanmar"),
    ("MN", "Mongolia"),
    ("MO", "Macao"),
    ("MP", "Northern Mariana Islands"),
    ("MQ", "Martinique"),
    ("MR", "Mauritania"),
    ("MS", "Montserrat"),
    ("MT", "Malta"),
    ("MU", "Mauritius"),
    ("MV", "Maldives"),
    ("MW", "Malawi"),
    ("MX", "Mexico"),
    ("MY", "Malaysia"),
    ("MZ", "Mozambique"),
    ("NA", "Namibia"),
    ("NC", "New Caledonia"),
    ("NE", "Niger"),
    ("NF", "Norfolk Island"),
    ("NG", "Nigeria"),
    ("NI", "Nicaragua"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("NP", "Nepal"),
    ("NR", "Nauru"),
    ("NU", "Niue"),
    ("NZ", "New Zealand"),
    ("OM", "Oman"),
    ("PA", "Panama"),
    ("PE", "Peru"),
    ("PF", "French Polynesia"),
    ("PG", "Papua New Guinea"),
    ("PH", "Philippines"),
    ("PK", "Pakistan"),
    ("PL", "Poland"),
    ("PM", "Saint Pierre and Miquelon"),
    ("PN", "Pitcairn"),
    ("PR", "Puerto Rico"),
    ("PS", "Palestine, State of"),
    ("PT", "Portugal"),
    ("PW", "Palau"),
    ("PY", "Paraguay"),
    ("QA", "Qatar"),
    ("RE", "Réunion"),
    ("RO", "Romania"),
    ("RS", "Serbia"),
    ("RU", "Russian Federation"),
    ("RW", "Rwanda"),
    ("SA", "Saudi Arabia"),
    ("SB", "Solomon Islands"),
    ("SC", "Seychelles"),
    ("SD", "Sudan"),
    ("SE", "Sweden"),
    ("SG", "Singapore"),
    ("SH", "Saint Helena, Ascension and Tristan da Cunha"),
    ("SI", "Slovenia"),
    ("SJ", "Svalbard and Jan Mayen"),
    ("SK", "Slovakia"),
    ("SL", "Sierra Leone"),
    ("SM", "San Marino"),
    ("SN", "Senegal"),
    ("SO", "Somalia"),
    ("SR", "Suriname"),
    ("SS", "South Sudan"),
    ("ST", "Sao Tome and Principe"),
    ("SV", "El Salvador"),
    ("SX", "Sint Maarten (Dutch part)"),
    ("SY", "Syria"),
    ("SZ", "Eswatini"),
    ("TC", "Turks and Caicos Islands"),
    ("TD", "Chad"),
    ("TF", "French Southern Territories"),
    ("TG", "Togo"),
    ("TH", "Thailand"),
    ("TJ", "Tajikistan"),
    ("TK", "Tokelau"),
    ("TL", "Timor-Leste"),
    ("TM", "Turkmenistan"),
    ("TN", "Tunisia"),
    ("TO", "Tonga"),
    ("TR", "Türkiye"),
    ("TT", "Trinidad and Tobago"),
    ("TV", "Tuvalu"),
    ("TW", "Taiwan"),
    ("TZ", "Tanzania"),
    ("UA", "Ukraine"),
    ("UG", "Uganda"),
    ("UM", "United States Minor Outlying Islands"),
    ("US", "United States"),
    ("UY", "Uruguay"),
    ("UZ", "Uzbekistan"),
    ("VA", "Holy See (Vatican City State)"),
    ("VC", "Saint Vincent and the Grenadines"),
    ("VE", "Venezuela"),
    ("VG", "Virgin Islands, British"),
    ("VI", "Virgin Islands, U.S."),
    ("VN", "Vietnam"),
    ("VU", "Vanuatu"),
    ("WF", "Wallis and Futuna"),
    ("WS", "Samoa"),
    ("YE", "Yemen"),
    ("YT", "Mayotte"),
    ("ZA", "South Africa"),
    ("ZM", "Zambia"),
    ("ZW", "Zimbabwe"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_names_are_sorted_and_found() {
        assert!(COUNTRY_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(country_name("DE"), Some("Germany"));
        assert_eq!(country_name("US"), Some("United States"));
        assert_eq!(country_name("ZZ"), None);
    }
}
