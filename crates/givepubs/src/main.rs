//! givepubs: answer a request mail with the flat keyring (run by the MTA),
//! at most once a day per return address (see `givepubs::daily_record`).

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use givepubs::daily_record::{DailyRecord, Verdict};
use ripem_core::cli::{finish, parse_args, CommonArgs};
use ripem_core::exit;
use ripem_core::mail::{RequestMail, ReturnAddress};
use ripem_core::reply::{Mailer, Reply, ReplyAttachment};

/// Mail the flat public keyring back to the sender of the message on stdin.
#[derive(clap::Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = args.common.load()?;
    let mut raw = Vec::new();
    std::io::stdin()
        .take(config.keyreg.max_message_bytes + 1)
        .read_to_end(&mut raw)
        .context("reading the request from standard input")?;
    if raw.len() as u64 > config.keyreg.max_message_bytes {
        eprintln!(
            "givepubs: message larger than {} bytes",
            config.keyreg.max_message_bytes
        );
        return Ok(ExitCode::from(exit::DATAERR));
    }
    let mail = match RequestMail::parse(&raw) {
        Ok(mail) => mail,
        Err(err) => {
            eprintln!("givepubs: {err}; no reply");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let to = match mail.return_address {
        ReturnAddress::Reply(to) => to,
        ReturnAddress::NoReply(reason) => {
            eprintln!("givepubs: no reply: {reason}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    // Held until the keyring is sent and recorded: see daily_record.
    let record_path = config.paths.state_dir.join("givepubs.sent");
    let mut record = match DailyRecord::open_today(&record_path) {
        Ok(record) => record,
        Err(err) => {
            eprintln!("givepubs: {err}; try again later");
            return Ok(ExitCode::from(exit::TEMPFAIL));
        }
    };
    match record.verdict(&to) {
        Verdict::Send => {}
        Verdict::AlreadySent => {
            eprintln!("givepubs: keyring already mailed to {to} today; not again before tomorrow (UTC)");
            return Ok(ExitCode::SUCCESS);
        }
        Verdict::Full => {
            eprintln!("givepubs: keyring already mailed to as many addresses as a day allows; none to {to}");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let keyring_path = config.paths.flat_armored();
    let keyring = match std::fs::read(&keyring_path) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!(
                "givepubs: {}: {err}; try again after db2flat has run",
                keyring_path.display()
            );
            return Ok(ExitCode::from(exit::TEMPFAIL));
        }
    };
    let body = format!(
        "This is the RIPEM key server at {}.\n\nAttached is the keyring of every key registered here, as one armored\nOpenPGP keyring. Import it with:\n\n    gpg --import pubkeys.asc\n\nTo register your own key, mail it to {}.\n",
        config.mail.from, config.addresses.register
    );
    let reply = Reply {
        to: to.clone(),
        subject: config.mail.givepubs_subject.clone(),
        in_reply_to: mail.message_id,
        body,
        attachment: Some(ReplyAttachment {
            filename: "pubkeys.asc".into(),
            content_type: "application/pgp-keys".into(),
            bytes: keyring,
        }),
    };
    Mailer::from_config(&config.mail, &config.paths)?
        .send(&reply)
        .with_context(|| format!("mailing the keyring to {to}"))?;
    // Sent but not recorded would only allow one more keyring today.
    if let Err(err) = record.record(&to) {
        eprintln!("givepubs: {err}");
    }
    eprintln!("givepubs: keyring mailed to {to}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    finish("givepubs", &[], run(parse_args(exit::USAGE)))
}
