//! Numbers as text on hot paths, without the `fmt` machinery.

/// `n` in decimal, written at the end of `buf`; returns the digits.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_display() {
        for n in [0, 7, 10, 1234, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(super::decimal(n, &mut [0; 20]), n.to_string());
        }
    }
}
