//! The man pages against the programs: every option a program's `--help`
//! lists is documented in its page, and every page has the sections an
//! operator looks for. (scripts/check-install renders each page with
//! `man --warnings` as installed.)

mod common;

use std::path::Path;

use common::*;

const PROGRAMS: [&str; 7] = [
    "copymail",
    "keyreg",
    "keyserv",
    "hkpd",
    "db2flat",
    "givepubs",
    "keylookup",
];

fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The long and short options in clap's `--help` text.
fn options(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .flat_map(|line| {
            line.split([',', ' '])
                .filter(|word| word.starts_with('-') && word.len() > 1)
                .map(|word| word.split('=').next().unwrap_or(word).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_option_is_documented() {
    for program in PROGRAMS {
        let mut command = std::process::Command::new(bin(program));
        command.arg("--help");
        let help = run_with(command, b"");
        assert_eq!(help.code, 0, "{program} --help");
        let options = options(&help.stdout);
        assert!(options.contains(&"--config".to_string()), "{program}: {options:?}");
        // In roff a minus sign is written \-.
        let text = page(&format!("{program}.1")).replace("\\-", "-");
        for option in options {
            assert!(text.contains(&option), "{program}.1 does not document {option}");
        }
    }
}

#[test]
fn every_page_has_the_sections_an_operator_reads() {
    for program in PROGRAMS {
        let text = page(&format!("{program}.1"));
        let mut wanted = vec![
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "EXIT STATUS",
            "EXAMPLES",
            "SEE ALSO",
        ];
        if program != "keylookup" {
            wanted.push("FILES");
        }
        if matches!(program, "keyserv" | "keyreg" | "hkpd") {
            wanted.push("SIGNALS");
        }
        for section in wanted {
            assert!(
                text.contains(&format!("\n.SH {section}\n")),
                "{program}.1 has no {section} section"
            );
        }
    }
    let config = page("keyserver.toml.5");
    for key in [
        "state_dir",
        "listen",
        "log_requests",
        "log_answers",
        "transport",
        "register",
        "wkd_domains",
        "tls_cert",
        "max_request_bytes",
        "max_connections",
        "timeout_seconds",
    ] {
        assert!(config.contains(key), "keyserver.toml.5 does not document {key}");
    }
}
