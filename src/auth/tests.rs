//! Every refusal reason, with tokens signed at test time: HS256 with a test secret, RS256 and
//! ES256 with keys that `openssl` generates for the run (skipped, saying so, without it).

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::config::AuthKey;

const SECRET: &[u8] = b"test-only secret, at least 32 bytes long";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256() -> Verifier {
    Verifier::new(&AuthKey {
        algorithm: Algorithm::HS256,
        decoding: DecodingKey::from_secret(SECRET),
        source: ("AUTH_JWT_SECRET_FILE", "test".into()),
    })
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(algorithm), claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn alice() -> Value {
    json!({"sub": "alice", "exp": now() + 60, "channels": ["room:*", "news"]})
}

/// A token with this header and claims, and the signature of another token.
fn forged(header: &Value, claims: &Value, signature: &str) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!("{}.{}.{signature}", part(header), part(claims))
}

#[test]
fn a_valid_token_proves_its_user_and_channels() {
    let identity = hs256().verify(&hs(&alice())).unwrap();
    assert_eq!(&*identity.user, "alice");
    assert!(identity.may_access("room:7"));
    assert!(identity.may_access("news"));
    assert!(!identity.may_access("admin"));
    let left = identity.lifetime_left(SystemTime::now()).as_secs();
    assert!((55..=60).contains(&left), "{left}");
}

#[test]
fn an_identity_record_carries_the_user_expiry_and_channels() {
    let identity = hs256().verify(&hs(&alice())).unwrap();
    let json = serde_json::to_value(identity.record()).unwrap();
    assert_eq!(json["sub"], "alice");
    assert_eq!(json["exp"], alice()["exp"]);
    assert_eq!(json["channels"], json!(["room:*", "news"]));
    let back = Identity::from_record(serde_json::from_value(json).unwrap()).unwrap();
    assert_eq!(back, identity);
    let nobody = IdentityRecord {
        sub: String::new(),
        exp: now(),
        channels: Vec::new(),
    };
    assert!(Identity::from_record(nobody).is_none());
}

#[test]
fn an_expiry_beyond_any_clock_is_capped() {
    let identity = hs256()
        .verify(&hs(&json!({"sub": "a", "exp": u64::MAX})))
        .unwrap();
    assert_eq!(identity.lifetime_left(SystemTime::now()), MAX_LIFETIME);
}

#[test]
fn a_token_without_channels_allows_none() {
    let identity = hs256()
        .verify(&hs(&json!({"sub": "bob", "exp": now() + 60})))
        .unwrap();
    assert!(!identity.may_access("room:1"));
}

#[test]
fn malformed_tokens() {
    let v = hs256();
    for token in ["", "abc", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30"] {
        assert_eq!(v.verify(token), Err(AuthRefusal::Malformed), "{token:?}");
    }
    let missing_sub = hs(&json!({"exp": now() + 60}));
    let missing_exp = hs(&json!({"sub": "alice"}));
    let numeric_sub = hs(&json!({"sub": 7, "exp": now() + 60}));
    let empty_sub = hs(&json!({"sub": "", "exp": now() + 60}));
    let text_exp = hs(&json!({"sub": "alice", "exp": "tomorrow"}));
    for token in [missing_sub, missing_exp, numeric_sub, empty_sub, text_exp] {
        assert_eq!(v.verify(&token), Err(AuthRefusal::Malformed));
    }
}

#[test]
fn a_bad_signature_is_refused() {
    let other = EncodingKey::from_secret(b"another secret, also 32 bytes or more");
    let token = sign(Algorithm::HS256, &other, &alice());
    assert_eq!(hs256().verify(&token), Err(AuthRefusal::BadSignature));
    // Claims changed after signing.
    let signed = hs(&alice());
    let signature = signed.rsplit('.').next().unwrap();
    let changed = json!({"sub": "mallory", "exp": now() + 60});
    let token = forged(&json!({"alg": "HS256", "typ": "JWT"}), &changed, signature);
    assert_eq!(hs256().verify(&token), Err(AuthRefusal::BadSignature));
}

#[test]
fn alg_none_and_other_algorithms_are_refused() {
    let v = hs256();
    let none = forged(&json!({"alg": "none", "typ": "JWT"}), &alice(), "");
    assert_eq!(v.verify(&none), Err(AuthRefusal::WrongAlgorithm));
    let no_alg = forged(&json!({"typ": "JWT"}), &alice(), "");
    assert_eq!(v.verify(&no_alg), Err(AuthRefusal::WrongAlgorithm));
    let hs384 = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET),
        &alice(),
    );
    assert_eq!(v.verify(&hs384), Err(AuthRefusal::WrongAlgorithm));
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let v = hs256();
    let expired = hs(&json!({"sub": "alice", "exp": now() - 1}));
    assert_eq!(v.verify(&expired), Err(AuthRefusal::Expired));
    let early = hs(&json!({"sub": "alice", "exp": now() + 60, "nbf": now() + 30}));
    assert_eq!(v.verify(&early), Err(AuthRefusal::NotYetValid));
    let started = hs(&json!({"sub": "alice", "exp": now() + 60, "nbf": now() - 1}));
    assert!(v.verify(&started).is_ok());
}

/// A key pair made by `openssl genpkey` with `options`: (private PEM, public PEM).
fn openssl_key_pair(options: &[&str]) -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    let ran = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    let private_arg = private.to_str().unwrap();
    let mut generate = vec!["genpkey", "-out", private_arg];
    generate.extend_from_slice(options);
    if !ran(&generate) {
        eprintln!("SKIP: openssl is missing or failed; RS256/ES256 keys not generated");
        return None;
    }
    let public_arg = public.to_str().unwrap();
    assert!(ran(&[
        "pkey",
        "-in",
        private_arg,
        "-pubout",
        "-out",
        public_arg
    ]));
    Some((
        std::fs::read(&private).unwrap(),
        std::fs::read(&public).unwrap(),
    ))
}

/// A public-key verifier takes its own algorithm's tokens and refuses the same claims as
/// HS256 signed with the public key as secret (the algorithm confusion attack).
fn public_key_verifier_checks(algorithm: Algorithm, signer: EncodingKey, public_pem: &[u8]) {
    let decoding = match algorithm {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(public_pem).unwrap(),
        _ => DecodingKey::from_ec_pem(public_pem).unwrap(),
    };
    let v = Verifier::new(&AuthKey {
        algorithm,
        decoding,
        source: ("AUTH_JWT_PUBLIC_KEY_FILE", "test".into()),
    });
    let identity = v.verify(&sign(algorithm, &signer, &alice())).unwrap();
    assert_eq!(&*identity.user, "alice");
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(public_pem),
        &alice(),
    );
    assert_eq!(v.verify(&confused), Err(AuthRefusal::WrongAlgorithm));
    let expired = sign(algorithm, &signer, &json!({"sub": "a", "exp": now() - 5}));
    assert_eq!(v.verify(&expired), Err(AuthRefusal::Expired));
}

#[test]
fn rs256_public_keys_verify_rs256_only() {
    let Some((private, public)) = openssl_key_pair(&["-algorithm", "RSA"]) else {
        return;
    };
    let signer = EncodingKey::from_rsa_pem(&private).unwrap();
    public_key_verifier_checks(Algorithm::RS256, signer, &public);
}

#[test]
fn es256_public_keys_verify_es256_only() {
    let curve = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let Some((private, public)) = openssl_key_pair(&curve) else {
        return;
    };
    let signer = EncodingKey::from_ec_pem(&private).unwrap();
    public_key_verifier_checks(Algorithm::ES256, signer, &public);
    // An RS256 token cannot pass an ES256 key.
    let rsa = openssl_key_pair(&["-algorithm", "RSA"]).unwrap();
    let rs = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&rsa.0).unwrap(),
        &alice(),
    );
    let v = Verifier::new(&AuthKey {
        algorithm: Algorithm::ES256,
        decoding: DecodingKey::from_ec_pem(&public).unwrap(),
        source: ("AUTH_JWT_PUBLIC_KEY_FILE", "test".into()),
    });
    assert_eq!(v.verify(&rs), Err(AuthRefusal::WrongAlgorithm));
}
