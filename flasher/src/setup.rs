//! `metis-flash setup`: the one-time set-up of an operator's laptop, from a lab
//! profile or flags. The signing keys are the root of trust, so each key's
//! fingerprint is shown and confirmed: on a terminal by the operator, in a script
//! only by `--expect-fingerprint` (`--yes` alone is refused by the CLI).

use std::io::{BufRead, IsTerminal, Write};

use metis_core::profile::LabProfile;
use metis_core::trust::{PublicKey, DEMO_KEY_FINGERPRINT};
use metis_engine::source::parse_location;
use metis_engine::{settings, EngineError, Exit, SetupRequest};

use crate::cli::SetupArgs;
use crate::fail;

/// Runs `metis-flash setup`.
pub fn setup(args: SetupArgs) -> Exit {
    match run(&args) {
        Ok(code) => code,
        Err(e) => fail(&e, false),
    }
}

fn bad(text: String) -> EngineError {
    EngineError::BadInput(text)
}

/// A fingerprint as typed by a person: hex, any case, `:` or spaces allowed.
fn normalise(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_lowercase()
}

fn request(args: &SetupArgs) -> Result<SetupRequest, EngineError> {
    let mut request = match &args.profile {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| bad(format!("reading the lab profile {}: {e}", path.display())))?;
            let profile =
                LabProfile::parse(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
            SetupRequest::from_profile(&profile)?
        }
        None => SetupRequest::default(),
    };
    if let Some(registry) = &args.registry {
        parse_location(registry)?;
        request.registry = Some(registry.clone());
    }
    if let Some(ca) = &args.ca_file {
        let pem = std::fs::read_to_string(ca)
            .map_err(|e| bad(format!("reading the CA certificate {}: {e}", ca.display())))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ca.display()
            )));
        }
        request.ca_pem = Some(pem);
    }
    for key in &args.trust_key {
        request.keys.push(
            PublicKey::read(key).map_err(|e| bad(format!("reading {}: {e}", key.display())))?,
        );
    }
    if let Some(identity) = &args.identity {
        if !identity.is_file() {
            return Err(EngineError::Identity(format!(
                "the identity {} is not a readable file",
                identity.display()
            )));
        }
        request.identity = Some(identity.clone());
    }
    if let Some(lab) = &args.lab {
        request.lab = Some(lab.clone());
    }
    if request.registry.is_none()
        && request.keys.is_empty()
        && request.identity.is_none()
        && request.ca_pem.is_none()
        && request.lab.is_none()
    {
        return Err(bad(
            "nothing to set up: give the lab profile (`metis-flash setup lab.metis`; the lab's \
             maintainer makes it with `metis-build operator-profile > lab.metis`), or \
             --registry, --trust-key, --ca-file, --identity"
                .into(),
        ));
    }
    Ok(request)
}

fn run(args: &SetupArgs) -> Result<Exit, EngineError> {
    let request = request(args)?;
    let dir = settings::config_dir()?;
    eprintln!("Setting up this laptop ({}):", dir.display());
    if let Some(lab) = &request.lab {
        eprintln!("  lab        {lab}");
    }
    if let Some(registry) = &request.registry {
        eprintln!("  registry   {registry}");
    }
    if let Some(prefix) = &request.prefix {
        eprintln!("  prefix     {prefix}");
    }
    if request.ca_pem.is_some() {
        eprintln!("  lab CA     from the profile (trusted for the registry only)");
    }
    if let Some(identity) = &request.identity {
        eprintln!("  identity   {}", identity.display());
    }
    let fingerprints = request.fingerprints();
    for f in &fingerprints {
        let demo = if f == DEMO_KEY_FINGERPRINT {
            "  (the example lab's DEMO key: its private half is public)"
        } else {
            ""
        };
        eprintln!("  signing key SHA-256 {f}{demo}");
    }
    if !fingerprints.is_empty() {
        if !args.expect_fingerprint.is_empty() {
            let expected: Vec<String> = args
                .expect_fingerprint
                .iter()
                .map(|f| normalise(f))
                .collect();
            let unexpected: Vec<&String> = fingerprints
                .iter()
                .filter(|f| !expected.contains(f))
                .collect();
            if !unexpected.is_empty() {
                eprintln!(
                    "error: key fingerprint {} is not one of --expect-fingerprint: nothing was saved",
                    unexpected
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                eprintln!(
                    "  hint: compare with the fingerprint your lab published; a different one \
                     means the profile is not your lab's"
                );
                return Ok(Exit::Failure);
            }
            if !args.yes && !ask_yes()? {
                return Ok(not_saved());
            }
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            eprintln!(
                "Compare each fingerprint with the one your lab published (e.g. on its wiki or \
                 from its maintainer)."
            );
            if !ask_yes()? {
                return Ok(not_saved());
            }
        } else {
            return Err(bad(
                "no terminal to confirm the signing keys: run setup on a terminal, or pass \
                 --yes --expect-fingerprint HEX for each key"
                    .into(),
            ));
        }
    }
    let saved = request.apply(&dir)?;
    eprintln!("saved in {}", dir.join(settings::SETTINGS_FILE).display());
    if saved.registry.is_some() {
        eprintln!("next: `metis-flash list` shows the lab's nodes; `metis-flash NODE` flashes one");
    }
    Ok(Exit::Ok)
}

fn not_saved() -> Exit {
    eprintln!("not confirmed: nothing was saved");
    Exit::Failure
}

fn ask_yes() -> Result<bool, EngineError> {
    eprint!("Trust these keys for every card you flash? Type yes to save: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| bad(format!("reading the answer: {e}")))?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn fingerprints_compare_as_people_type_them() {
        assert_eq!(normalise("AB:cd 01"), "abcd01");
    }
}
