//! Random tokens: anonymous cart ids, one-time form ids, session handles, request ids.

/// 128 random bits in lower-case hex (URL- and header-safe): anonymous cart ids,
/// submission ids, request ids.
pub fn random() -> String {
    use rand::Rng;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 16] = rand::thread_rng().gen();
    let mut token = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        token.push(char::from(HEX[usize::from(byte >> 4)]));
        token.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (random(), random());
        for token in [&a, &b] {
            assert_eq!(token.len(), 32);
            assert!(token
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        }
        assert_ne!(a, b);
    }
}
