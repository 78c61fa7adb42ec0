use super::*;

#[test]
fn round_trip_and_fresh_nonces() {
    let key = NodeKey::generate().unwrap();
    let secret = b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
    let a = key.seal(secret);
    let b = key.seal(secret);
    assert_ne!(a, b, "each seal uses a new nonce");
    assert_eq!(a.len(), 1 + NONCE_LEN + secret.len() + aead::MAX_TAG_LEN);
    assert!(!a.windows(11).any(|w| w == b"PRIVATE KEY"));
    assert_eq!(key.open(&a).unwrap(), secret);
    assert_eq!(key.open(&b).unwrap(), secret);
    assert_eq!(key.open(&key.seal(b"")).unwrap(), b"");
}

#[test]
fn tampering_is_detected() {
    let key = NodeKey::generate().unwrap();
    let sealed = key.seal(b"secret key");
    for i in 1..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert_eq!(key.open(&bad), Err(SealError::Auth), "byte {i}");
    }
    let mut bad = sealed.clone();
    bad[0] = 2;
    assert_eq!(key.open(&bad), Err(SealError::Version(2)));
    assert_eq!(key.open(&sealed[..20]), Err(SealError::Truncated(20)));
    let other = NodeKey::generate().unwrap();
    assert_eq!(other.open(&sealed), Err(SealError::Auth));
}

#[test]
fn load_or_create_persists_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-key");
    let first = NodeKey::load_or_create(&path).unwrap();
    let sealed = first.seal(b"kept");
    let again = NodeKey::load_or_create(&path).unwrap();
    assert_eq!(again.open(&sealed).unwrap(), b"kept");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim().len(), 64);
}

#[test]
fn malformed_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node-key");
    fs::write(&path, "not hex").unwrap();
    assert!(matches!(
        NodeKey::load_or_create(&path),
        Err(NodeKeyError::Malformed { .. })
    ));
    fs::write(&path, "zz".repeat(32)).unwrap();
    assert!(matches!(
        NodeKey::load_or_create(&path),
        Err(NodeKeyError::Malformed { .. })
    ));
}

#[test]
fn debug_is_redacted() {
    let key = NodeKey::from_bytes(&[7; NODE_KEY_LEN]);
    assert_eq!(format!("{key:?}"), "NodeKey(<redacted>)");
}
