use super::errors::tls_problem;
use super::token::parse_challenge;

#[test]
fn tls_failures_in_plain_words() {
    let host = "harbor.lab:443";
    let sending = "error sending request for url (https://harbor.lab/v2/): client error \
                   (Connect): ";
    for (rustls, words) in [
        (
            "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
            "is a CA certificate used as a server certificate: issue a server certificate \
             from your CA",
        ),
        (
            "invalid peer certificate: UnknownIssuer",
            "is not signed by a CA this machine trusts: pass the lab CA",
        ),
        (
            "invalid peer certificate: certificate expired: verification time 1796000000 \
             (UNIX), but certificate is not valid after 1795000000 (1000000 seconds ago)",
            "has expired (or this machine's clock is wrong)",
        ),
        (
            "invalid peer certificate: certificate not valid for name \"harbor.lab\"; \
             certificate is only valid for IpAddress(10.0.0.5)",
            "is not issued for harbor.lab: reach the registry by a name its certificate lists, \
             or issue one whose subjectAltName includes harbor.lab",
        ),
        (
            "invalid peer certificate: certificate not valid yet: verification time 1",
            "is not valid yet",
        ),
        ("invalid peer certificate: Revoked", "was refused"),
        (
            "received corrupt message of type InvalidContentType",
            "did not answer in TLS",
        ),
    ] {
        let problem = tls_problem(&format!("{sending}{rustls}"), host)
            .unwrap_or_else(|| panic!("{rustls}: not seen as TLS"));
        assert!(problem.contains(words), "{rustls}: {problem}");
    }
    for other in [
        "error sending request for url (https://harbor.lab/v2/): client error (Connect): \
         tcp connect error: Connection refused (os error 111)",
        "error sending request: dns error: failed to lookup address information: Name or \
         service not known",
        "error sending request: operation timed out",
    ] {
        assert_eq!(tls_problem(other, host), None, "{other}");
    }
}

#[test]
fn bearer_challenge_parameters() {
    let p = parse_challenge(
        r#"realm="https://harbor.lab/service/token",service="harbor-registry",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(
        p[0],
        ("realm".into(), "https://harbor.lab/service/token".into())
    );
    assert_eq!(p[1], ("service".into(), "harbor-registry".into()));
    assert_eq!(p[2], ("scope".into(), "repository:a/b:pull,push".into()));
}
