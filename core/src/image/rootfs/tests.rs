use super::*;

#[test]
fn machine_ids_are_checked() {
    let f = RootFile::machine_id("0123456789abcdef0123456789abcdef").unwrap();
    assert_eq!(f.bytes, b"0123456789abcdef0123456789abcdef\n");
    assert_eq!(f.mode, 0o444);
    for bad in [
        "",
        "0123456789ABCDEF0123456789ABCDEF",
        "xyz",
        "0123456789abcdef0123456789abcde",
    ] {
        assert!(RootFile::machine_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn armbian_firstrun_sets_the_key_once_and_keeps_the_rest() {
    let golden = b"# comment\nFR_net_change_defaults=0\nOPENSSHD_REGENERATE_HOST_KEYS=true\nX=1\n";
    let f = RootFile::armbian_firstrun(Some(golden));
    assert_eq!(
        String::from_utf8(f.bytes).unwrap(),
        "# comment\nFR_net_change_defaults=0\nOPENSSHD_REGENERATE_HOST_KEYS=false\nX=1\n"
    );
    let f = RootFile::armbian_firstrun(None);
    assert_eq!(f.bytes, b"OPENSSHD_REGENERATE_HOST_KEYS=false\n");
}

#[test]
fn paths_are_checked() {
    for bad in ["etc/x", "/etc//x", "/etc/../x", "/etc/a b", "/etc/\"x"] {
        let f = RootFile {
            path: bad.into(),
            bytes: vec![],
            mode: 0o644,
        };
        assert!(f.components().is_err(), "{bad:?}");
    }
    let f = RootFile {
        path: "/etc/x".into(),
        bytes: vec![],
        mode: 0o100644,
    };
    assert!(f.components().is_err(), "file type bits refused");
}

#[test]
fn stat_output_is_parsed() {
    let body = "Inode: 15   Type: regular    Mode:  0444   Flags: 0x80000\nGeneration: 0\n";
    assert_eq!(
        Stat::parse(body),
        Some(Stat {
            dir: false,
            mode: 0o444
        })
    );
    let body = "Inode: 2   Type: directory    Mode:  0755   Flags: 0x80000\n";
    assert_eq!(
        Stat::parse(body),
        Some(Stat {
            dir: true,
            mode: 0o755
        })
    );
    assert_eq!(Stat::parse(""), None);
}
