//! Users of a `wss://` target against a scripted server behind TLS, with certificates made
//! here: a CA, and a certificate for 127.0.0.1 signed by it.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::stats::ConnectFailure;

/// A new CA: its certificate (PEM) and the issuer that signs with its key.
fn ca() -> (String, CertifiedIssuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    (ca.pem(), ca)
}

/// A TLS server whose certificate, for 127.0.0.1, `ca` signed.
fn acceptor(ca: &CertifiedIssuer<'static, KeyPair>) -> TlsAcceptor {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

async fn listen_tls(ca_file: String) -> (Target, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}", listener.local_addr().unwrap());
    (Target::parse(&url, Some(ca_file)).unwrap(), listener)
}

#[tokio::test]
async fn a_user_speaks_protocol_v1_over_tls_to_a_server_its_ca_file_trusts() {
    let (ca_pem, ca) = ca();
    let tls = acceptor(&ca);
    let (target, listener) = listen_tls(ca_pem).await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = upgrade_and_greet(tls.accept(tcp).await.unwrap()).await;
        let id = next_from_user(&mut ws).await.unwrap();
        say(&mut ws, goodbye("server_shutdown", false)).await;
        say(&mut ws, answer(&id)).await;
        assert_eq!(next_from_user(&mut ws).await, Err(CloseCode::Normal));
        read_to_end(&mut ws).await;
    });
    let ctx = Arc::new(context(target, closed_loop(10_000)));
    let user = run_user(ctx.clone(), 1, None, CancellationToken::new());
    timeout(Duration::from_secs(20), user)
        .await
        .expect("the user leaves when told goodbye for good");
    server.await.unwrap();
    let counts = ctx.recorder.take(1).counts;
    assert_eq!((counts.connects, counts.connect_failed()), (1, 0));
    assert_eq!((counts.sent, counts.answered), (1, 1));
    assert_eq!(counts.close_codes, [("1000".to_owned(), 1)].into());
}

#[tokio::test]
async fn a_certificate_no_trusted_ca_signed_fails_the_connect_as_tls() {
    let (_, server_ca) = ca();
    let (other_ca_pem, _) = ca();
    let tls = acceptor(&server_ca);
    let (target, listener) = listen_tls(other_ca_pem).await;
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        assert!(tls.accept(tcp).await.is_err(), "the user went on");
    });
    let ctx = context(target, closed_loop(10_000));
    let failure = connect(&ctx, "u", None).await.err();
    server.await.unwrap();
    assert_eq!(failure, Some(ConnectFailure::Tls));
}
