//! keyreg under a configured key policy laxer than the default: a key the
//! configuration lets in keeps working after registration (merged when
//! sent again, its signed requests verified), because every re-check of
//! the stored copy uses the configured policy, not the default one.

mod common;

use common::*;

#[test]
fn a_key_below_the_default_size_but_allowed_by_the_configuration_merges_and_signs() {
    let server = Server::with_extra("\n[keyreg]\nmin_rsa_bits = 1536\n");
    let gpg = Gpg::new();
    let key = gpg.key("Rob <rob@example.org>", "rsa1536");
    let fpr = gpg.fingerprint("rob@example.org");
    server.mail("add", &plain_mail("rob@example.org", &key));
    server.keyreg_once();
    assert!(
        replies_to(&server, "rob@example.org").contains("rob@example.org: registered"),
        "{}",
        replies_to(&server, "rob@example.org")
    );

    // Sent again with a new user ID: merged into the registered copy.
    next_second();
    let added = gpg.run(&["--quick-add-uid", &fpr, "Rob <rob@example.net>"], b"");
    assert_eq!(added.code, 0, "{}", added.stderr);
    let key = gpg.run(&["--armor", "--export", &fpr], b"").stdout;
    server.mail("add", &plain_mail("rob@example.org", &key));
    server.keyreg_once();
    let replies = replies_to(&server, "rob@example.org");
    assert!(!replies.contains("could not be merged"), "{replies}");
    let keyserv = server.start_keyserv();
    assert_eq!(
        record_fingerprint(&keyserv.lookup("rob@example.net")).as_deref(),
        Some(fpr.as_str()),
        "the merged user ID is published"
    );
    drop(keyserv);

    // A signed removal is verified against the stored copy.
    next_second();
    let remove = mail_to("remove", "rob@example.org", &clearsign(&gpg, &fpr, "RemoveKey\n"));
    server.mail("remove", &remove);
    server.keyreg_once();
    let replies = replies_to(&server, "rob@example.org");
    assert!(!replies.contains("not signed"), "{replies}");
    assert!(replies.contains(&format!("key {fpr} removed")), "{replies}");
    let keyserv = server.start_keyserv();
    assert_eq!(record_fingerprint(&keyserv.lookup("rob@example.org")), None, "removed");
}
