//! keyreg against hostile mail: broken and deeply nested MIME, thousands of
//! parts, huge headers, binary junk, non-UTF-8, oversized messages, broken
//! armor and keys with thousands of user IDs. Each gets a clear outcome or
//! moves to spool/failed with its reason logged, nothing panics, and the
//! good request queued behind them is still served.

mod common;

use common::*;

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn hostile_mail_never_blocks_the_queue() {
    let server = Server::with_extra("[keyreg]\nmax_message_bytes = 8000000\n");
    let keys = tempfile::tempdir().unwrap();
    let good = rpgp_key(keys.path(), "good", &["--uid", "Good <good@example.org>"]);
    let mut hostile: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut nested = String::from("From: nest@example.org\nMIME-Version: 1.0\n");
    for level in 0..3000 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{level}\"\n\n--b{level}\n"
        ));
    }
    nested.push_str(&format!("Content-Type: text/plain\n\n{good}\n"));
    hostile.push(("deep nesting", nested.into_bytes()));

    let mut many =
        String::from("From: parts@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"p\"\n\n");
    for index in 0..20_000 {
        many.push_str(&format!("--p\nContent-Type: text/plain\n\npart {index}\n"));
    }
    many.push_str("--p--\n");
    hostile.push(("thousands of parts", many.into_bytes()));

    hostile.push((
        "huge header",
        format!("From: big@example.org\nSubject: {}\n\nbody\n", "x".repeat(2_000_000)).into_bytes(),
    ));
    let mut headers = String::new();
    for index in 0..100_000 {
        headers.push_str(&format!("X-Header-{index}: value\n"));
    }
    hostile.push((
        "100k header lines",
        format!("From: hdr@example.org\n{headers}\nbody\n").into_bytes(),
    ));
    hostile.push(("binary junk", random_bytes(1_000_000, 7)));
    hostile.push((
        "broken MIME",
        b"From: mime@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\n\n--\n--\nContent-Transfer-Encoding: base64\n\n!!!!\n".to_vec(),
    ));
    let mut latin1 =
        b"From: latin@example.org\nContent-Type: text/plain; charset=iso-8859-1\n\nCl\xe9 publique:\n".to_vec();
    latin1.extend_from_slice(good.as_bytes());
    hostile.push(("non-UTF-8 body", latin1));
    let half = &good[..good.len() / 2];
    hostile.push((
        "truncated armor",
        plain_mail(
            "trunc@example.org",
            &format!("{half}\n-----END PGP PUBLIC KEY BLOCK-----\n"),
        ),
    ));
    // A packet header that claims 2 GiB in a ten-byte body, armored.
    let liar = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxv9/////BARiYWQ=\n-----END PGP PUBLIC KEY BLOCK-----\n";
    hostile.push(("armor lying about its length", plain_mail("liar@example.org", liar)));
    let uids: Vec<String> = (0..2000).map(|i| format!("U{i} <u{i}@many.example.org>")).collect();
    let mut args: Vec<&str> = Vec::new();
    for uid in &uids {
        args.push("--uid");
        args.push(uid);
    }
    args.push("--no-subkey");
    let crowded = rpgp_key(keys.path(), "crowded", &args);
    hostile.push(("2000 user IDs", plain_mail("crowd@example.org", &crowded)));
    hostile.push(("signed junk", b"From: sj@example.org\n\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nRemoveKey\n-----BEGIN PGP SIGNATURE-----\n\n!!!\n-----END PGP SIGNATURE-----\n".to_vec()));

    for (name, message) in &hostile {
        let queue = if *name == "signed junk" { "remove" } else { "add" };
        let run = server.run("copymail", &["--queue", queue], message);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
    }
    let oversized = server.run("copymail", &["--queue", "add"], &random_bytes(9_000_000, 3));
    assert_eq!(oversized.code, 65, "over the limit is refused at the door");
    server.mail("add", &plain_mail("good@example.org", &good));

    let run = server.run("keyreg", &["--once"], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        server.pending("add") + server.pending("remove"),
        0,
        "nothing left behind"
    );

    let log = std::fs::read(server.path("transactions.log")).unwrap();
    let entries = log.windows(9).filter(|w| w == b"\n=== end\n").count();
    assert_eq!(entries, hostile.len() + 1, "every request logged: {}", run.stderr);
    let failed: Vec<String> = std::fs::read_dir(server.path("spool/failed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        failed.iter().any(|name| name.ends_with(".reason")),
        "junk quarantined with a reason: {failed:?}"
    );

    let keyserv = server.start_keyserv();
    assert!(
        keyserv.lookup("good@example.org").starts_with("USERINFO"),
        "the good request behind was served"
    );
    assert!(keyserv.lookup("u1@many.example.org").starts_with("NOTFOUND"));
    let replies = server.outbox();
    let reply_to = |who: &str| {
        replies
            .iter()
            .find(|m| m.to == who)
            .map(|m| m.body.clone())
            .unwrap_or_default()
    };
    assert!(
        reply_to("crowd@example.org").contains("user IDs"),
        "{}",
        reply_to("crowd@example.org")
    );
    assert!(
        reply_to("trunc@example.org").contains("refused"),
        "{}",
        reply_to("trunc@example.org")
    );
    assert!(
        reply_to("liar@example.org").contains("refused"),
        "{}",
        reply_to("liar@example.org")
    );
    assert!(
        reply_to("sj@example.org").contains("refused"),
        "{}",
        reply_to("sj@example.org")
    );
    assert!(reply_to("latin@example.org").contains("registered") || reply_to("latin@example.org").contains("already"));
}
