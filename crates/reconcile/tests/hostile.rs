//! A peer that lies, truncates, floods, repeats itself or stalls gets a typed
//! error, never a panic, never a session that goes on for ever.

use std::sync::OnceLock;

use proptest::prelude::*;
use ripem_core::exit::{self, ExitStatus};
use ripem_reconcile::{Error, Id, Initiator, Limits, Message, Responder, Summary};
use sha2::Digest;

fn id(seed: u64) -> Id {
    Id(sha2::Sha256::digest(seed.to_be_bytes()).into())
}

fn message(text: &str) -> Message {
    Message::from_text(text.to_string())
}

/// Two sets of 5,000 ids differing in 10, and the honest transcript
/// between them (three exchanges: c, c, l, then h and w).
/// Two summaries and the exchanges between them.
type Honest = (Summary, Summary, Vec<(Message, Message)>);

fn honest() -> &'static Honest {
    static HONEST: OnceLock<Honest> = OnceLock::new();
    HONEST.get_or_init(make_honest)
}

fn make_honest() -> Honest {
    let a = Summary::from_ids((0..5000).map(id));
    let b = Summary::from_ids((5..5005).map(id));
    let mut initiator = Initiator::new(Limits::default());
    let mut responder = Responder::new(Limits::default());
    let mut transcript = Vec::new();
    while let Some(message) = initiator.next_message(&a).unwrap() {
        let reply = responder.answer(&b, &message).unwrap();
        initiator.receive(&a, &reply).unwrap();
        transcript.push((message, reply));
        assert!(transcript.len() < 50);
    }
    assert!(transcript.len() >= 3, "a transcript with something to cut");
    (a, b, transcript)
}

/// A responder fed the first `upto` honest messages, then `last`.
fn responder_after(
    b: &Summary,
    transcript: &[(Message, Message)],
    upto: usize,
    last: &Message,
) -> Result<Message, Error> {
    let mut responder = Responder::new(Limits::default());
    for (message, _) in &transcript[..upto] {
        responder.answer(b, message).unwrap();
    }
    responder.answer(b, last)
}

/// An initiator fed the first `upto` honest replies, then `last`.
fn initiator_after(a: &Summary, transcript: &[(Message, Message)], upto: usize, last: &Message) -> Result<(), Error> {
    let mut initiator = Initiator::new(Limits::default());
    for (_, reply) in &transcript[..upto] {
        initiator.next_message(a).unwrap();
        initiator.receive(a, reply).unwrap();
    }
    initiator.next_message(a).unwrap();
    initiator.receive(a, last)
}

#[test]
fn every_truncated_message_is_refused_on_both_sides() {
    let (a, b, transcript) = honest();
    for (i, (message, reply)) in transcript.iter().enumerate() {
        for cut in 0..message.len() {
            let cut_message = Message::from_text(message.as_str()[..cut].to_string());
            assert!(
                responder_after(b, transcript, i, &cut_message).is_err(),
                "message {i} cut at {cut}"
            );
        }
        for cut in 0..reply.len() {
            let cut_reply = Message::from_text(reply.as_str()[..cut].to_string());
            assert!(
                initiator_after(a, transcript, i, &cut_reply).is_err(),
                "reply {i} cut at {cut}"
            );
        }
    }
}

#[test]
fn oversized_and_overfull_messages_are_refused_before_they_are_read() {
    let b = Summary::new();
    let huge = "x".repeat((1 << 20) + 1);
    let err = Responder::new(Limits::default())
        .answer(&b, &message(&huge))
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { size, limit: 1_048_576 } if size == huge.len()),
        "{err}"
    );
    let lines: String = (0..12_289).map(|seed| format!("h {}\n", id(seed))).collect();
    let err = Responder::new(Limits::default())
        .answer(&b, &message(&format!("{lines}ack 0\n")))
        .unwrap_err();
    assert!(matches!(err, Error::TooManyIds { count: 12_289, .. }), "{err}");
    assert_eq!(err.exit_code(), exit::DATAERR);
}

/// The initiator's first message for `a`, and what it makes of `reply`.
fn first_reply(a: &Summary, reply: &str) -> Result<(), Error> {
    let mut initiator = Initiator::new(Limits::default());
    initiator.next_message(a).unwrap();
    initiator.receive(a, &message(reply))
}

fn kids(count: &str) -> String {
    vec![format!("{count}:{}", "ab".repeat(16)); 16].join(" ")
}

#[test]
fn entries_that_answer_nothing_asked_are_refused() {
    let big = Summary::from_ids((0..5000).map(id));
    let small = Summary::from_ids((0..10).map(id));
    let listed = {
        let mut ids: Vec<Id> = (0..10).map(id).collect();
        ids.sort();
        ids
    };
    let deep = format!("/{}", "0".repeat(64));
    let cases = [
        (
            &big,
            format!("c / {}\nack 1\n", kids("9")),
            "the root, from the responder",
        ),
        (
            &big,
            format!("c /12 {}\nack 1\n", kids("9")),
            "two digits deep, under nothing asked",
        ),
        (
            &big,
            format!("c /1 {}\nc /1 {}\nack 1\n", kids("9"), kids("9")),
            "a child answered twice",
        ),
        (
            &big,
            format!("c /2 {}\nc /1 {}\nack 1\n", kids("9"), kids("9")),
            "children out of order",
        ),
        (
            &big,
            format!("c {deep} {}\nack 1\n", kids("1")),
            "children of a whole id",
        ),
        (&big, format!("l /1 {}\nack 1\n", id(1)), "an id outside its prefix"),
        (&big, "ack 2\n".to_string(), "an ack of more than was sent"),
        (
            &big,
            format!("c /1 {}\nend 1\n", kids("9")),
            "an end that asks something",
        ),
        (&big, "end 0\n".to_string(), "an end leaving the root unanswered"),
        (&big, format!("h {}\nack 1\n", id(1)), "an h where no list was sent"),
        (&small, format!("w {}\nend 1\n", id(99)), "a w for an id never listed"),
        (
            &small,
            format!("h {}\nh {}\nend 1\n", listed[3], listed[2]),
            "h lines out of order",
        ),
        (&small, format!("h {}\nh {}\nend 1\n", id(99), id(99)), "an h repeated"),
    ];
    for (local, reply, why) in cases {
        let err = first_reply(local, &reply).expect_err(why);
        assert!(matches!(err, Error::Protocol { .. }), "{why}: {err}");
        assert_eq!(err.exit_code(), exit::DATAERR);
    }
}

#[test]
fn lines_that_do_not_parse_are_refused() {
    let big = Summary::from_ids((0..5000).map(id));
    let listed: Vec<String> = (0..17).map(|seed| format!("{}", id(seed))).collect();
    let cases = [
        format!("c /1 {}\nack 1\n", kids("0")),
        format!("c /1 {}\nack 1\n", kids("-1")),
        format!("c /1 {}\nack 1\n", kids("99999999999999999999999")),
        format!("c /1 {} -\nack 1\n", kids("9")),
        format!("l / {}\nack 1\n", listed.join(" ")),
        format!("h {}\nack 1\n", listed[0].to_uppercase()),
        "ack 1".to_string(),
        "ACK 1\n".to_string(),
        "ack 1\n\n".to_string(),
        String::new(),
    ];
    for reply in cases {
        let err = first_reply(&big, &reply).expect_err(&reply);
        assert!(
            matches!(err, Error::Malformed { .. } | Error::Protocol { .. }),
            "{reply:?}: {err}"
        );
    }
}

#[test]
fn lying_counts_lead_to_no_differences_the_liar_cannot_name() {
    let a = Summary::from_ids((0..5000).map(id));
    let mut initiator = Initiator::new(Limits::default());
    initiator.next_message(&a).unwrap();
    let lies: String = (0..16)
        .map(|digit| format!("c /{digit:x} {}\n", kids("18446744073709551615")))
        .collect();
    initiator.receive(&a, &message(&format!("{lies}ack 1\n"))).unwrap();
    let answer = initiator.next_message(&a).unwrap().unwrap();
    let asked = answer
        .as_str()
        .lines()
        .filter(|line| line.starts_with("c ") || line.starts_with("l "))
        .count();
    assert_eq!(asked, 256, "every grandchild differs from the lie");
    initiator.receive(&a, &message("end 257\n")).unwrap();
    assert!(initiator.is_over());
    assert!(initiator.lacks().is_empty() && initiator.other_lacks().is_empty());
    assert!(matches!(
        initiator.receive(&a, &message("end 257\n")),
        Err(Error::Finished)
    ));
}

#[test]
fn a_peer_that_answers_nothing_is_a_stall() {
    let a = Summary::from_ids((0..5000).map(id));
    let mut initiator = Initiator::new(Limits::default());
    let mut result = Ok(());
    for _ in 0..10 {
        let Some(_) = initiator.next_message(&a).unwrap() else {
            break;
        };
        result = initiator.receive(&a, &message("ack 0\n"));
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(Error::Stalled)), "{result:?}");
    assert_eq!(Error::Stalled.exit_code(), exit::TEMPFAIL);
}

fn mutate(text: &str, edits: &[(usize, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(at, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match byte % 4 {
            0 => bytes[at] = b" -:/0af\nchlw."[usize::from(byte / 4) % 13],
            1 => {
                bytes.remove(at);
            }
            2 => {
                let line_end = bytes[at..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| at + p + 1);
                let copy = bytes[at..line_end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => bytes.insert(at, byte),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn mangled_messages_give_errors_or_answers_never_panics(
        which in 0usize..8,
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let (a, b, transcript) = honest();
        let which = which % transcript.len();
        let mangled = message(&mutate(transcript[which].0.as_str(), &edits));
        let _ = responder_after(b, transcript, which, &mangled);
        let mangled = message(&mutate(transcript[which].1.as_str(), &edits));
        let _ = initiator_after(a, transcript, which, &mangled);
    }
}
